"""The GPU path: the scratch network on CuPy follows the NumPy one, and a device=gpu run is
tracked with its GPU. Skipped where CuPy sees no GPU (always in CI)."""

from __future__ import annotations

import numpy as np
import pytest

from bench.data import prepare
from implementations.spec import ModelSpec, OptimizerSpec, init_weights
from tests.helpers import build
from tests.test_app import SMALL, cupy_sees_a_gpu, mnist_bench, runs_of

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not cupy_sees_a_gpu(), reason="CuPy sees no GPU"),
]


@pytest.mark.parametrize("dtype,rtol", [("float64", 1e-9), ("float32", 1e-4)])
def test_cupy_network_follows_the_numpy_one(mnist, dtype, rtol):
    model = ModelSpec(hidden=(64, 32), activation="relu", dtype=dtype)
    opt = OptimizerSpec(name="adam")
    weights = init_weights(model, 0)
    s = prepare(mnist, 0, 2000, 0, dtype=dtype)
    cpu, gpu = (build("numpy", model, opt, 100, weights, 0, device=d) for d in ("cpu", "gpu"))
    for _ in range(2):
        assert np.allclose(
            cpu.train_epoch(s.x_train, s.y_train), gpu.train_epoch(s.x_train, s.y_train), rtol=rtol
        )
    for a, b in zip(cpu.get_weights(), gpu.get_weights()):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol)
    assert isinstance(gpu.predict(s.x_test), np.ndarray)


def test_gpu_run_is_tracked_with_its_gpu(tmp_path):
    proc = mnist_bench(tmp_path, "implementation=numpy", "device=gpu", *SMALL)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = runs_of(tmp_path)
    tags, metrics = run.data.tags, run.data.metrics
    assert tags["device"] == "gpu" and tags["device_name"] != "none"
    assert tags["gpu_driver"] and tags["cuda_version"]
    assert metrics["job/gpu_peak_mb"] > 0 and metrics["final/test_accuracy"] > 0.8


@pytest.mark.parametrize("name", ["jax", "torch"])
def test_framework_on_cuda_follows_the_numpy_network(mnist, name):
    """JAX and PyTorch on CUDA, in float32 lockstep with the NumPy network on the CPU: the
    same initial weights and batches give the same epochs up to summation order."""
    model = ModelSpec(hidden=(64,), activation="relu")
    opt = OptimizerSpec(name="rmsprop")
    weights = init_weights(model, 0)
    s = prepare(mnist, 0, 2000, 0)
    cpu = build("numpy", model, opt, 100, weights, 0)
    gpu = build(name, model, opt, 100, weights, 0, device="gpu")
    for _ in range(2):
        np.testing.assert_allclose(
            cpu.train_epoch(s.x_train, s.y_train), gpu.train_epoch(s.x_train, s.y_train), rtol=1e-3
        )
    np.testing.assert_allclose(cpu.predict(s.x_test), gpu.predict(s.x_test), rtol=1e-2, atol=1e-3)
