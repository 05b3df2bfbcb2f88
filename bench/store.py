"""The MLflow store: where it is, opening it, and every query the commands make of it (runs of
a config, a sweep's parent and grid, the run standing for each grid job, per-epoch histories).
Writing a job's run is bench.tracking's; the sweep's parent run is bench.sweep's."""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import mlflow
import pandas as pd
import psutil
from mlflow import MlflowClient
from mlflow.entities import Run
from omegaconf import DictConfig

from bench.settings import ConfigError

DEFAULT_URI = "sqlite:///results/mlflow.db"
SERVER_PROBE_TIMEOUT_S = 5
SCHEMES = ("", "file", "sqlite", "http", "https", "postgresql", "mysql", "mssql", "databricks")
GRID_ARTIFACT = "sweep_grid.json"
MISSING = "MISSING"


class TrackingError(ConfigError):
    """The tracking store cannot be used (unreachable server, unknown URI scheme)."""


class StoreError(Exception):
    """What a reading command asked for is not in the store (no sweep, no grid); one line."""


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


def open_experiment(uri: str, experiment: str) -> str:
    """The id of an experiment a reading command asks for; StoreError when it is not there."""
    mlflow.set_tracking_uri(uri)
    found = mlflow.get_experiment_by_name(experiment)
    if found is None:
        raise StoreError(f"experiment {experiment!r} not found at {uri}")
    return found.experiment_id


# --- runs and their owners


def owner_alive(tags: dict[str, str]) -> bool:
    """Whether the process that started a run (its host/pid/pid_started tags) still runs."""
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


def config_runs(experiment_id: str, identity: str, finished_only: bool = False) -> list[Run]:
    """Runs of one config (its `config_hash` tag), newest first."""
    where = f"tags.config_hash = '{identity}'"
    if finished_only:
        where += " and attributes.status = 'FINISHED'"
    return MlflowClient().search_runs(
        [experiment_id], where, order_by=["attributes.start_time DESC"]
    )


def finished_runs(experiment_id: str, identity: str) -> list[Run]:
    """FINISHED runs of one config, newest first."""
    return config_runs(experiment_id, identity, finished_only=True)


def metric_values(run_id: str, key: str) -> list[float]:
    """One run's per-epoch values of a metric, in step order."""
    history = MlflowClient().get_metric_history(run_id, key)
    return [m.value for m in sorted(history, key=lambda m: m.step)]


def histories(run_ids, keys) -> pd.DataFrame:
    """Long table: run_id, key, step, value for the per-epoch metrics."""
    client = MlflowClient()
    rows = [
        {"run_id": run_id, "key": key, "step": m.step, "value": m.value}
        for run_id in run_ids
        for key in keys
        for m in client.get_metric_history(run_id, key)
    ]
    return pd.DataFrame(rows, columns=["run_id", "key", "step", "value"])


def runs_frame(experiment_id: str, filter_string: str | None = None) -> pd.DataFrame:
    """Every run of the experiment (or those the filter selects) as one row each."""
    return mlflow.search_runs([experiment_id], filter_string=filter_string or "")


# --- sweeps


@dataclass
class GridJob:
    overrides: list[str]
    config_hash: str
    status: str = MISSING  # FINISHED, FAILED, KILLED, RUNNING or MISSING
    run_id: str | None = None
    reason: str = ""

    @property
    def is_hole(self) -> bool:
        return self.status != "FINISHED"


def sweep_parent(experiment_id: str, sweep_id: str | None = None) -> Run:
    """The sweep's parent run: the given sweep id, else the latest sweep."""
    where = "tags.sweep_parent = 'true'"
    if sweep_id:
        where += f" and tags.sweep_id = '{sweep_id}'"
    runs = MlflowClient().search_runs(
        [experiment_id], where, order_by=["attributes.start_time DESC"], max_results=1
    )
    if not runs:
        raise StoreError(f"no sweep {sweep_id!r} found" if sweep_id else "no sweep found")
    return runs[0]


def load_grid(parent: Run) -> dict | None:
    """The grid a sweep recorded on its parent run (None: another sweeper, or an old sweep)."""
    try:
        return mlflow.artifacts.load_dict(f"runs:/{parent.info.run_id}/{GRID_ARTIFACT}")
    except Exception:  # a sweep from before grids were recorded, or another sweeper
        return None


def grid_status(experiment_id: str, parent: Run, grid: dict) -> list[GridJob]:
    """Each grid job with the run that stands for it: a FINISHED run of this sweep, else the
    newest FINISHED run of the same config, else the newest run of it in any state."""
    sweep_id = parent.data.tags.get("sweep_id")
    jobs = []
    for entry in grid["jobs"]:
        job = GridJob(entry["overrides"], entry["config_hash"])
        runs = config_runs(experiment_id, job.config_hash)
        finished = [r for r in runs if r.info.status == "FINISHED"]
        own = [r for r in finished if r.data.tags.get("sweep_id") == sweep_id]
        best = (own or finished or runs or [None])[0]
        if best is not None:
            job.status, job.run_id = best.info.status, best.info.run_id
            job.reason = best.data.tags.get("failure_reason", "")
        jobs.append(job)
    return jobs
