"""The PyTorch implementation's own verbs and its compiled variant; its lockstep with the others
is in tests/test_equivalence.py, its learning in tests/test_learning.py and its tutorials in
tests/test_tutorials.py (every implementation the registry lists)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from mlflow import MlflowClient

from bench.data import prepare
from implementations import registry
from implementations.spec import ModelSpec, OptimizerSpec, SpecError, init_weights
from tests.docs import run_documented
from tests.helpers import build
from tests.test_app import SMALL, mnist_bench, runs_of, store_overrides


def test_the_compiled_step_follows_the_eager_one(mnist):
    """torch.compile of the training step (TorchInductor, C++ on a CPU) computes the same
    epochs: one batch shape (640 images in batches of 64), so one compile."""
    s = prepare(mnist, 0, 640, 0)
    model, opt = ModelSpec(hidden=(32,)), OptimizerSpec(name="adam")
    weights = init_weights(model, 0)
    eager, compiled = (build("torch", model, opt, 64, weights, 0, compile=c) for c in (False, True))
    for _ in range(2):
        np.testing.assert_allclose(
            eager.train_epoch(s.x_train, s.y_train), compiled.train_epoch(s.x_train, s.y_train),
            rtol=1e-5,
        )  # fmt: skip
    for a, b in zip(eager.get_weights(), compiled.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_the_thread_budget_and_versions():
    build("torch", ModelSpec(hidden=(8,)), OptimizerSpec(), 32, None, 0)  # configure(2, "cpu")
    assert torch.get_num_threads() == 2
    assert registry()["torch"].versions() == {"torch": torch.__version__.split("+")[0]}
    assert set(registry()["torch"].variants()) == {"compiled"}


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_device_gpu_without_a_gpu_is_one_line(tmp_path):
    proc = mnist_bench(tmp_path, "implementation=torch", "device=gpu", *SMALL)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "device=gpu but PyTorch sees no GPU; use device=cpu" in proc.stderr
    [run] = runs_of(tmp_path)
    assert run.info.status == "FAILED"


def test_compile_without_a_cpp_compiler_is_one_line(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("CXX", raising=False)
    with pytest.raises(SpecError, match="needs a C\\+\\+ compiler"):
        build("torch", ModelSpec(hidden=(8,)), OptimizerSpec(), 32, None, 0, compile=True)


def test_five_implementations_in_the_compare_sweep_in_lockstep(tmp_path):
    """The compare sweep with jax and torch beside the preset's three: the same initial weights
    and batch order, so the same trajectory (float32 train loss within 1e-3 relative, epoch by
    epoch) and test accuracies within the test set's noise."""
    proc = run_documented(
        "mnist-bench -m +experiment=compare implementation=numpy,tf_tape,keras,jax,torch",
        "seed=0", "dataset.n_train=2000", "train.epochs=3", *store_overrides(tmp_path), cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = {
        r.data.tags["implementation"]: r
        for r in runs_of(tmp_path)
        if "sweep_parent" not in r.data.tags
    }
    assert sorted(runs) == ["jax", "keras", "numpy", "tf_tape", "torch"]
    client = MlflowClient()  # on the store runs_of opened
    losses = {
        name: [m.value for m in sorted(client.get_metric_history(r.info.run_id, "epoch/train_loss"), key=lambda m: m.step)]
        for name, r in runs.items()
    }  # fmt: skip
    for name, curve in losses.items():
        assert len(curve) == 3
        np.testing.assert_allclose(curve, losses["jax"], rtol=1e-3, err_msg=name)
    accuracy = {name: r.data.metrics["final/test_accuracy"] for name, r in runs.items()}
    floor = 1.96 * np.sqrt(2 * accuracy["jax"] * (1 - accuracy["jax"]) / 10_000)
    assert max(accuracy.values()) - min(accuracy.values()) <= floor, accuracy
    tags = runs["jax"].data.tags
    assert tags["version.jax"] and tags["version.optax"] and "version.tensorflow" not in tags
    assert runs["torch"].data.tags["version.torch"] == torch.__version__.split("+")[0]
