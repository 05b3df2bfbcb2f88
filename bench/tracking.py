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
from mlflow.data.http_dataset_source import HTTPDatasetSource
from mlflow.data.meta_dataset import MetaDataset
from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH
from omegaconf import DictConfig, OmegaConf

from bench.data import Dataset
from bench.data.catalog import dataset_info

DEFAULT_URI = "sqlite:///results/mlflow.db"
PARENT_RUN_ENV = "MNIST_BENCH_PARENT_RUN_ID"
SWEEP_ID_ENV = "MNIST_BENCH_SWEEP_ID"
FAILURES: list[str] = []  # jobs of this process (and sweeps) that did not finish


def tracking_uri(tracking: DictConfig) -> str:
    return tracking.uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


def process_tags() -> dict[str, str]:
    """Who owns a run: lets a later job tell a live run from one whose process died."""
    me = psutil.Process()
    return {
        "host": socket.gethostname(),
        "pid": str(me.pid),
        "pid_started": f"{me.create_time():.3f}",
    }


def owner_alive(tags: dict[str, str]) -> bool:
    try:
        return f"{psutil.Process(int(tags['pid'])).create_time():.3f}" == tags["pid_started"]
    except (psutil.NoSuchProcess, KeyError, ValueError):
        return False


def reap_stale_runs(experiment_id: str) -> list[str]:
    """Runs of this host left RUNNING by a process that no longer exists end FAILED."""
    client = MlflowClient()
    reaped = []
    for run in client.search_runs([experiment_id], "attributes.status = 'RUNNING'"):
        tags = run.data.tags
        if tags.get("host") == socket.gethostname() and not owner_alive(tags):
            client.set_tag(run.info.run_id, "failure_reason", "stale: process gone")
            client.set_terminated(run.info.run_id, "FAILED")
            reaped.append(run.info.run_name)
    return reaped


def ensure_experiment(tracking: DictConfig) -> str:
    """Sets the tracking URI and returns the experiment id, creating store and experiment."""
    uri = tracking_uri(tracking)
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    experiment = mlflow.get_experiment_by_name(tracking.experiment)
    if experiment is not None:
        reap_stale_runs(experiment.experiment_id)
        return experiment.experiment_id
    location = None
    if not uri.startswith(("http://", "https://")):
        location = Path(tracking.artifact_root).resolve().as_uri()
    try:
        return mlflow.create_experiment(tracking.experiment, artifact_location=location)
    except mlflow.exceptions.MlflowException:  # another writer created it first
        return mlflow.get_experiment_by_name(tracking.experiment).experiment_id


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
    """Stable identity of what a run computes (tracking settings excluded)."""
    body = {k: v for k, v in job_config(cfg).items() if k != "tracking"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


class MlflowRun:
    """The MLflow side of one job; the app ends it with finish() or fail(), never leaves it
    RUNNING."""

    def __init__(self, cfg: DictConfig, run_name: str, tags: dict[str, str]):
        self.cfg = cfg
        self.experiment_id = ensure_experiment(cfg.tracking)
        parent = os.environ.get(PARENT_RUN_ENV)
        tags = {**tags, **process_tags(), "config_hash": config_hash(cfg)}
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
        params = flatten(job_config(self.cfg))
        long = sorted(k for k, v in params.items() if len(v) > MAX_PARAM_VAL_LENGTH)
        mlflow.log_params({k: v for k, v in params.items() if k not in long})
        if long:  # too long for a param: the config artifact holds them whole
            mlflow.set_tag("params_in_config_artifact", ",".join(long))
        mlflow.log_text(OmegaConf.to_yaml(job_config(self.cfg)), "config.yaml")

    def data_loaded(self, dataset: Dataset) -> None:
        source = HTTPDatasetSource(url=dataset_info(dataset.name).mirrors[0])
        mlflow.log_input(
            MetaDataset(source, name=dataset.name, digest=dataset.digest[:32]), context="training"
        )
        mlflow.set_tags({"dataset_digest": dataset.digest, "dataset_source": dataset.source})

    def epoch_done(self, epoch: int, metrics: dict[str, float]) -> None:
        mlflow.log_metrics(metrics, step=epoch)

    def finish(
        self, metrics: dict[str, float], predictions: np.ndarray, labels: np.ndarray
    ) -> None:
        mlflow.log_metrics(metrics)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "predictions.npz"
            np.savez_compressed(path, predicted=predictions, labels=labels)
            mlflow.log_artifact(str(path))
        mlflow.end_run("FINISHED")

    def fail(self, reason: str, status: str = "FAILED") -> None:
        mlflow.set_tag("failure_reason", reason[:MAX_PARAM_VAL_LENGTH])
        mlflow.end_run(status)
