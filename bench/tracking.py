"""MLflow: one run per job, by hand from the harness (no autolog: it would cover one framework).

Params are the whole resolved config; per-epoch metrics go in one batched call per epoch;
a failed job's run ends FAILED (KILLED for Ctrl-C) with the reason in a tag, keeping
whatever it had logged.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import tempfile
from pathlib import Path

import mlflow
import numpy as np
import psutil
from mlflow import MlflowClient
from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH
from omegaconf import DictConfig, OmegaConf

from bench.data import Dataset
from bench.mlflow_ui import log_dataset, uniform_params
from bench.settings import ConfigError
from bench.store import ensure_experiment, finished_runs, metric_values

PARENT_RUN_ENV = "MNIST_BENCH_PARENT_RUN_ID"
SWEEP_ID_ENV = "MNIST_BENCH_SWEEP_ID"
FAILURES: list[str] = []  # jobs of this process (and sweeps) that did not finish
REPEAT_TOLERANCE = 1e-4  # relative loss difference still called `tolerance`, not `divergent`


def process_tags() -> dict[str, str]:
    """Who owns a run: lets a later job tell a live run from one whose process died."""
    me = psutil.Process()
    return {
        "host": socket.gethostname(),
        "pid": str(me.pid),
        "pid_started": f"{me.create_time():.3f}",
    }


def flatten(node, prefix: str = "") -> dict[str, str]:
    """{'model.hidden': '[512]', ...}: dotted keys, JSON values."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    return {
        prefix[:-1]: json.dumps(node)
        if isinstance(node, (list, bool)) or node is None
        else str(node)
    }


def job_config(cfg: DictConfig) -> dict:
    """The resolved config without Hydra's own node."""
    return {k: v for k, v in OmegaConf.to_container(cfg, resolve=True).items() if k != "hydra"}


def config_hash(cfg: DictConfig) -> str:
    """Stable identity of what a run computes: the config without tracking settings, without
    what a sweeper optimizes, and without where the data is read from (the dataset digest tag
    says what it was)."""
    body = {k: v for k, v in job_config(cfg).items() if k not in ("tracking", "optimized_metric")}
    for key in ("data_dir", "download"):
        body.get("dataset", {}).pop(key, None)
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


def skip_completed(tracking: DictConfig, multirun: bool) -> bool:
    """tracking.skip_completed: null means on in a sweep (-m), off for a single run."""
    value = tracking.get("skip_completed")
    if value is None:
        return multirun
    if not isinstance(value, bool):
        raise ConfigError(f"tracking.skip_completed={value!r} must be true, false or null")
    return value


def compare_repeat(losses: list[float], earlier: list[float]) -> tuple[str, float]:
    """How a repeat of a config matches an earlier run: bitwise-identical losses, equal within
    REPEAT_TOLERANCE (relative), or divergent; with the largest relative difference."""
    if len(losses) != len(earlier):
        return "divergent", float("inf")
    a, b = np.asarray(losses, dtype=np.float64), np.asarray(earlier, dtype=np.float64)
    if np.array_equal(a, b):
        return "bitwise", 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        diff = float(np.nanmax(np.abs(a - b) / np.maximum(np.abs(b), 1e-12)))
    return ("tolerance" if diff <= REPEAT_TOLERANCE else "divergent"), diff


class MlflowRun:
    """The MLflow side of one job; the app ends it with finish() or fail(), never leaves it
    RUNNING."""

    def __init__(self, cfg: DictConfig, run_name: str, tags: dict[str, str]):
        self.cfg = cfg
        self.experiment_id = ensure_experiment(cfg.tracking)
        self.identity = config_hash(cfg)
        self.losses: list[float] = []
        parent = os.environ.get(PARENT_RUN_ENV)
        tags = {**tags, **process_tags(), "config_hash": self.identity}
        if sweep_id := os.environ.get(SWEEP_ID_ENV):
            tags["sweep_id"] = sweep_id
        self.run = mlflow.start_run(
            experiment_id=self.experiment_id,
            run_name=run_name,
            parent_run_id=parent or None,
            tags=tags,
        )
        self._log_config()

    def _log_config(self) -> None:
        params = uniform_params(flatten(job_config(self.cfg)))
        long = sorted(k for k, v in params.items() if len(v) > MAX_PARAM_VAL_LENGTH)
        mlflow.log_params({k: v for k, v in params.items() if k not in long})
        if long:  # too long for a param: the config artifact holds them whole
            mlflow.set_tag("params_in_config_artifact", ",".join(long))
        mlflow.log_text(OmegaConf.to_yaml(job_config(self.cfg)), "config.yaml")

    def data_loaded(self, dataset: Dataset) -> None:
        log_dataset(dataset, self.cfg)  # with its splits; full digest and source as tags

    def epoch_done(self, epoch: int, metrics: dict[str, float]) -> None:
        """Queued, not written: the store's commit (an fsync with SQLite) happens on MLflow's
        logging thread while the next epoch trains. finish() and fail() flush the queue."""
        self.losses.append(metrics["train_loss"])
        mlflow.log_metrics(metrics, step=epoch, synchronous=False)

    def finish(
        self, metrics: dict[str, float], predictions: np.ndarray, labels: np.ndarray
    ) -> None:
        mlflow.flush_async_logging()
        mlflow.log_metrics(metrics)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "predictions.npz"
            np.savez_compressed(path, predicted=predictions, labels=labels)
            mlflow.log_artifact(str(path))
        self._certify_determinism()
        mlflow.end_run("FINISHED")

    def _certify_determinism(self) -> None:
        """When this config has run before, tag how exactly this run repeats the latest earlier
        one (and tag that one too, if it has no outcome yet)."""
        earlier = finished_runs(self.experiment_id, self.identity)
        if not earlier:
            return
        previous = earlier[0]
        outcome, diff = compare_repeat(
            self.losses, metric_values(previous.info.run_id, "train_loss")
        )
        tags = {"determinism": outcome, "determinism_max_rel_diff": f"{diff:.3g}"}
        mlflow.set_tags({**tags, "determinism_compared_to": previous.info.run_id})
        if "determinism" not in previous.data.tags:
            for key, value in {**tags, "determinism_compared_to": self.run.info.run_id}.items():
                MlflowClient().set_tag(previous.info.run_id, key, value)

    def fail(self, reason: str, status: str = "FAILED") -> None:
        mlflow.flush_async_logging()  # the epochs logged so far are kept
        mlflow.set_tag("failure_reason", reason[:MAX_PARAM_VAL_LENGTH])
        mlflow.end_run(status)
