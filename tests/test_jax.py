"""The fourth implementation, JAX, in the README's compare sweep beside the other three: same
initial weights and batch order, so the same trajectory up to float32 summation order."""

from __future__ import annotations

import numpy as np
import pytest
from mlflow import MlflowClient

from implementations import registry
from implementations.spec import SpecError
from tests.docs import run_documented
from tests.test_app import runs_of, store_overrides


def test_jax_joins_the_compare_sweep_in_lockstep(tmp_path):
    proc = run_documented(
        "mnist-bench -m +experiment=compare implementation=numpy,tf_tape,keras,jax",
        "seed=0", "dataset.n_train=2000", "train.epochs=3", *store_overrides(tmp_path), cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = {
        r.data.tags["implementation"]: r
        for r in runs_of(tmp_path)
        if "sweep_parent" not in r.data.tags
    }
    assert sorted(runs) == ["jax", "keras", "numpy", "tf_tape"]
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


def test_jax_refuses_to_change_its_process_settings():
    jax = registry()["jax"]
    jax.configure(2, "cpu")  # what every test process uses
    with pytest.raises(SpecError, match=r"train.threads=1 cannot change inside one process"):
        jax.configure(1, "cpu")
