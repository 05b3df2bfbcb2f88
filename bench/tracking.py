"""MLflow: one run per job, by hand from the harness (no autolog: it would cover one framework).

Params are the whole resolved config; per-epoch metrics go in one batched call per epoch;
a failed job's run ends FAILED (KILLED for Ctrl-C) with the reason in a tag, keeping
whatever it had logged.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import tempfile
from pathlib import Path
from urllib.parse import urlparse

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
from bench.settings import ConfigError

DEFAULT_URI = "sqlite:///results/mlflow.db"
PARENT_RUN_ENV = "MNIST_BENCH_PARENT_RUN_ID"
SWEEP_ID_ENV = "MNIST_BENCH_SWEEP_ID"
FAILURES: list[str] = []  # jobs of this process (and sweeps) that did not finish
SERVER_PROBE_TIMEOUT_S = 5
SCHEMES = ("", "file", "sqlite", "http", "https", "postgresql", "mysql", "mssql", "databricks")
REPEAT_TOLERANCE = 1e-4  # relative loss difference still called `tolerance`, not `divergent`


class TrackingError(ConfigError):
    """The tracking store cannot be used (unreachable server, unknown URI scheme)."""


def add_store_arguments(parser, experiment: str = "mnist-bench", sweeps: bool = True) -> None:
    """The command-line options of the commands that read a store: where, which experiment,
    and (for sweep readers) which sweep."""
    uri = os.environ.get("MLFLOW_TRACKING_URI", DEFAULT_URI)
    parser.add_argument("--tracking-uri", default=uri, help=f"default: {uri}")
    parser.add_argument("--experiment", default=experiment)
    if sweeps:
        parser.add_argument("--sweep-id", help="default: the latest sweep")


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


def check_server(uri: str) -> None:
    """An http(s) store must answer within seconds: MLflow's own client retries a dead server
    with backoff for minutes before it gives up."""
    import requests

    try:
        requests.get(f"{uri.rstrip('/')}/health", timeout=SERVER_PROBE_TIMEOUT_S).raise_for_status()
    except requests.RequestException as e:
        reason = type(e).__name__
        raise TrackingError(
            f"tracking.uri={uri}: no MLflow server answers ({reason}); start one with "
            "`mlflow server --host 127.0.0.1 --port PORT` or leave tracking.uri unset "
            "for the local SQLite store"
        ) from None


def ensure_experiment(tracking: DictConfig) -> str:
    """Sets the tracking URI and returns the experiment id, creating store and experiment."""
    uri = tracking_uri(tracking)
    scheme = urlparse(uri).scheme
    if scheme not in SCHEMES and not re.fullmatch(r"[a-zA-Z]", scheme):  # C:\ on Windows
        raise TrackingError(
            f"tracking.uri={uri}: unsupported scheme {scheme!r}; allowed: sqlite:///FILE, "
            "http(s)://HOST:PORT (an MLflow server), a directory or file:DIR, postgresql://, mysql://"
        )
    if scheme in ("http", "https"):
        check_server(uri)
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    try:
        experiment = mlflow.get_experiment_by_name(tracking.experiment)
    except mlflow.exceptions.MlflowException as e:
        message = str(e).split(". See ")[0].replace("\n", " ")
        raise TrackingError(f"tracking.uri={uri}: {message}") from None
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
    """Stable identity of what a run computes: the config without tracking settings and
    without where the data is read from (the dataset digest tag says what it was)."""
    body = {k: v for k, v in job_config(cfg).items() if k != "tracking"}
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


def finished_runs(experiment_id: str, identity: str) -> list:
    """FINISHED runs of one config, newest first."""
    return MlflowClient().search_runs(
        [experiment_id],
        f"tags.config_hash = '{identity}' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
    )


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
        history = MlflowClient().get_metric_history(previous.info.run_id, "train_loss")
        losses = [m.value for m in sorted(history, key=lambda m: m.step)]
        outcome, diff = compare_repeat(self.losses, losses)
        tags = {"determinism": outcome, "determinism_max_rel_diff": f"{diff:.3g}"}
        mlflow.set_tags({**tags, "determinism_compared_to": previous.info.run_id})
        if "determinism" not in previous.data.tags:
            for key, value in {**tags, "determinism_compared_to": self.run.info.run_id}.items():
                MlflowClient().set_tag(previous.info.run_id, key, value)

    def fail(self, reason: str, status: str = "FAILED") -> None:
        mlflow.flush_async_logging()  # the epochs logged so far are kept
        mlflow.set_tag("failure_reason", reason[:MAX_PARAM_VAL_LENGTH])
        mlflow.end_run(status)
