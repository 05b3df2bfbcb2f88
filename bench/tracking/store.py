"""The MLflow store: where it is, opening it, and every query the commands make of it (runs of
a config, a sweep's parent and grid, the run standing for each grid job, per-epoch histories).
Writing a job's run is bench.tracking.runs's; the sweep's parent run is bench.sweep's. Every
run, a job's or a sweep's parent, is ended by `end_run`.

Opening a store checks it first, in seconds and in one line: an http(s) server must answer, a
PostgreSQL server must accept a connection and its driver be installed, a SQLite file must be
a SQLite database in a directory that can hold it (never in memory: it would keep nothing).
Commands that only read a store never create one. The first use of a SQLite file (creating its
tables, migrating them, creating the experiment) holds a file lock beside it, so sweeps started
together never race on the schema. Writes to a SQLite store that another process holds locked
are retried for `tracking.busy_timeout_s` seconds."""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import re
import signal
import socket
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import mlflow
import pandas as pd
import psutil
from filelock import FileLock
from mlflow import MlflowClient
from mlflow.entities import Run, RunTag

from bench.job.redact import redact, redacted
from bench.job.settings import ConfigError, TrackingSettings
from bench.tracking import names
from bench.tracking.sweep_env import SweepEnv

log = logging.getLogger("bench")
# MLflow logs every SQLAlchemy error with its traceback before raising it; the commands
# report each failure in one line themselves
logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)  # one warning per retry
DEFAULT_URI = "sqlite:///results/mlflow.db"
SERVER_PROBE_TIMEOUT_S = 5
BUSY_TIMEOUT_S = 120.0  # tracking.busy_timeout_s: how long a write waits for a locked store
SERVER_GONE = False  # this process waited a whole busy_timeout_s for the server in vain
SCHEMES = ("sqlite", "http", "https", "postgresql", "mysql", "mssql", "databricks")
ALLOWED = (
    "sqlite:///FILE, http(s)://HOST:PORT (an MLflow server), "
    "postgresql://USER:PASS@HOST:PORT/DB (the postgres extra)"
)
GRID_ARTIFACT = "sweep_grid.json"
MISSING = "MISSING"
SWEEP_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
SQLITE_MAGIC = b"SQLite format 3\x00"
_BUSY = ("database is locked", "database is busy", "database table is locked")
_UNREACHABLE = (  # an MLflow server restarting, overloaded or hung: worth waiting for
    "Max retries exceeded",
    "Connection refused",
    "Connection reset",
    "Connection aborted",
    "RemoteDisconnected",
    "Connection broken",  # killed while sending its answer: IncompleteRead, ChunkedEncodingError
    "IncompleteRead",
    "Read timed out",
    "ConnectTimeout",
    "502 Server Error",
    "503 Server Error",
    "504 Server Error",
    "Bad Gateway",
    "Service Unavailable",
)


class TrackingError(ConfigError):
    """The tracking store cannot be used (unreachable server, unknown URI scheme)."""


class StoreError(Exception):
    """What a reading command asked for is not in the store (no sweep, no grid); one line,
    with any credentials in it masked."""

    def __init__(self, message: str):
        super().__init__(redact(message))


def add_store_arguments(
    parser, experiment: str = "mnist-bench", sweeps: bool = True, several: bool = False
) -> None:
    """The command-line options of the commands that read a store: where (`several`: a list,
    one store per --tracking-uri), which experiment, and (for sweep readers) which sweep."""
    uri = os.environ.get("MLFLOW_TRACKING_URI", DEFAULT_URI)
    if several:
        parser.add_argument("--tracking-uri", action="append", metavar="URI",
                            help=f"repeat to read several stores; default: {redact(uri)}")  # fmt: skip
        parser.set_defaults(several_default=[uri])
    else:
        parser.add_argument("--tracking-uri", default=uri, help=f"default: {redact(uri)}")
    parser.add_argument("--experiment", default=experiment)
    if sweeps:
        parser.add_argument("--sweep-id", help="default: the latest sweep")


def tracking_uri(tracking: TrackingSettings) -> str:
    """The store a job writes to: tracking.uri, else $MLFLOW_TRACKING_URI, else the local
    SQLite file."""
    return tracking.uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


def one_line(e: BaseException) -> str:
    """An exception's message as one line, without MLflow's trailing pointers nor the SQL
    statement SQLAlchemy quotes."""
    text = re.split(r"\. See |\[SQL: |\(Background on this error", str(e))[0]
    return redact(" ".join(text.split())[:300]) or type(e).__name__


def check_server(uri: str, wait_s: float = 0) -> None:
    """An http(s) store must answer within seconds, or within `wait_s` (a sweep's job: the
    server answered when the sweep began, so it is restarting, not wrong)."""
    import requests

    def probe():
        requests.get(f"{uri.rstrip('/')}/health", timeout=SERVER_PROBE_TIMEOUT_S).raise_for_status()

    try:
        if wait_s:
            retrying(probe, what="health")
        else:
            probe()
    except requests.RequestException as e:
        reason = type(e).__name__
        raise TrackingError(
            f"tracking.uri={uri}: no MLflow server answers ({reason}); start one with "
            "`mlflow server --host 127.0.0.1 --port PORT` or leave tracking.uri unset "
            "for the local SQLite store"
        ) from None


def sqlite_path(uri: str) -> Path | None:
    """The file of a sqlite:/// URI (None for other schemes); in-memory stores are refused."""
    if urlparse(uri).scheme != "sqlite":
        return None
    path = uri.removeprefix("sqlite://")
    path = path.split("?", 1)[0]
    if path in ("", "/", "/:memory:") or path.startswith("/file::memory:"):
        raise TrackingError(
            f"tracking.uri={uri}: an in-memory SQLite store keeps nothing after the job; "
            "give a file: sqlite:///results/mlflow.db"
        )
    if not path.startswith("/"):
        raise TrackingError(f"tracking.uri={uri}: expected sqlite:///FILE (three slashes)")
    return Path(path[1:])  # sqlite:///rel/x.db -> rel/x.db, sqlite:////abs/x.db -> /abs/x.db


def sqlite_tables(path: Path) -> set[str] | None:
    """The tables of a SQLite file, read-only; None when it cannot be read now (locked)."""
    try:
        with contextlib.closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True,
                                                timeout=5)) as db:  # fmt: skip
            return {name for (name,) in db.execute("select name from sqlite_master")}
    except sqlite3.Error:
        return None


def _check_sqlite_file(uri: str, path: Path, create: bool) -> None:
    try:
        path.exists()
    except OSError as e:  # a name too long, a loop of links
        raise TrackingError(f"tracking.uri={uri}: {path.name[:40]}...: {e.strerror}") from None
    if path.is_dir():
        raise TrackingError(f"tracking.uri={uri}: {path} is a directory, not a SQLite file")
    if path.exists():
        try:
            with open(path, "rb") as f:
                head = f.read(len(SQLITE_MAGIC))
        except OSError as e:
            raise TrackingError(f"tracking.uri={uri}: cannot read {path} ({e.strerror})") from None
        if head and head != SQLITE_MAGIC:
            raise TrackingError(f"tracking.uri={uri}: {path} is not a SQLite database")
        if not os.access(path, os.W_OK) and create:
            raise TrackingError(f"tracking.uri={uri}: {path} is not writable")
        tables = sqlite_tables(path)
        if tables and "experiments" not in tables:  # MLflow would migrate its tables into it
            raise TrackingError(f"tracking.uri={uri}: {path} is a SQLite database of something "
                                f"else ({', '.join(sorted(tables)[:3])}), not an MLflow store")  # fmt: skip
        if tables == set() and not create:  # a read never turns an empty file into a store
            raise StoreError(f"no MLflow store at {uri} ({path} holds no tables)")
        return
    if not create:
        raise StoreError(f"no MLflow store at {uri} ({path} does not exist)")
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise TrackingError(
            f"tracking.uri={uri}: cannot create {path}: a parent of it is a file"
        ) from None
    except OSError as e:
        raise TrackingError(f"tracking.uri={uri}: cannot create {parent} ({e.strerror})") from None
    if not os.access(parent, os.W_OK):
        raise TrackingError(f"tracking.uri={uri}: {parent} is not writable")


def _sql_uri(uri: str) -> str:
    """A database URI with a driver that is installed (postgresql://: psycopg 3 from the
    postgres extra, else psycopg2), whose server accepts a connection within seconds, not
    after MLflow's minutes of retries."""
    scheme = urlparse(uri).scheme
    if scheme == "postgresql":
        for driver in ("psycopg2", "psycopg"):
            if importlib.util.find_spec(driver) is not None:
                uri = f"postgresql+{driver}" + uri[len("postgresql") :]
                break
        else:
            raise TrackingError(
                f"tracking.uri={redact(uri)}: no PostgreSQL driver is installed: "
                "pip install 'mnist-bench[postgres]'"
            )
    import sqlalchemy

    try:
        url = sqlalchemy.engine.make_url(uri)
        url.get_dialect().import_dbapi()
    except (ImportError, sqlalchemy.exc.ArgumentError) as e:
        extra = (
            "; pip install 'mnist-bench[postgres]' for postgresql://"
            if scheme.startswith("postgresql")
            else ""
        )
        driver = getattr(e, "name", None) or scheme
        raise TrackingError(
            f"tracking.uri={redact(uri)}: its driver {driver} is not installed{extra}"
        ) from None
    connect_args = (
        {"connect_timeout": 5} if url.get_backend_name() in ("postgresql", "mysql") else {}
    )
    try:
        engine = sqlalchemy.create_engine(uri, connect_args=connect_args)
        with engine.connect():
            pass
        engine.dispose()
    except Exception as e:  # the driver's own error types
        reason = one_line(getattr(e, "orig", None) or e)
        raise TrackingError(f"tracking.uri={redact(uri)}: cannot connect ({reason})") from None
    return uri


def check_store(uri: str, create: bool, wait_s: float = 0) -> str:
    """Checks the store a URI names and returns the URI MLflow gets; TrackingError (or, for a
    read that finds no store, StoreError) in one line."""
    scheme = urlparse(uri).scheme
    if scheme in ("", "file"):
        raise TrackingError(
            f"tracking.uri={uri}: MLflow 3 has no file store any more; allowed: {ALLOWED}"
        )
    if scheme.split("+")[0] not in SCHEMES:
        raise TrackingError(
            f"tracking.uri={uri}: unsupported scheme {scheme!r}; allowed: {ALLOWED}"
        )
    if scheme in ("http", "https"):
        check_server(uri, wait_s)
    elif scheme.split("+")[0] in ("postgresql", "mysql", "mssql"):
        uri = _sql_uri(uri)
    elif (path := sqlite_path(uri)) is not None:
        _check_sqlite_file(uri, path, create)
    return uri


@contextlib.contextmanager
def first_use_lock(uri: str, required: bool = True):
    """Serializes creating and migrating a SQLite store across processes. A reader that
    cannot create the lock file (a read-only folder) goes on without it."""
    path = sqlite_path(uri)
    if path is None:
        yield
        return
    lock = f"{path}.lock"
    try:
        open(lock, "a").close()  # FileLock would retry a lock it can never create until timeout
    except OSError as e:
        if not required:
            yield
            return
        raise TrackingError(f"tracking.uri={uri}: cannot create {lock} ({e.strerror})") from None
    with FileLock(lock, timeout=max(BUSY_TIMEOUT_S, 60)):
        yield


def is_busy(e: BaseException) -> bool:
    """A SQLite store locked by another writer: worth waiting for."""
    return any(s in str(e) for s in _BUSY)


def is_unreachable(e: BaseException) -> bool:
    """A tracking server that does not answer now (restarting, hung, overloaded)."""
    import requests

    cut_off = requests.ConnectionError | requests.Timeout | requests.exceptions.ChunkedEncodingError
    return isinstance(e, cut_off) or any(s in str(e) for s in _UNREACHABLE)


@contextlib.contextmanager
def deferred_signals():
    """Ctrl-C and SIGTERM wait until the block is done, so a run row is never created
    without being registered, nor ended half-way, and no store write is cut off mid-way
    (an interrupt inside SQLAlchemy can leave its session unusable, and the run RUNNING).
    A signal that came meanwhile is raised after the block (unless it is already raising)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    sigs = (signal.SIGINT, signal.SIGTERM)
    previous = {s: signal.signal(s, lambda signum, frame: pending.append(signum)) for s in sigs}
    raised = True
    try:
        yield
        raised = False
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if pending and not raised:
            handler = previous[pending[0]]
            if callable(handler):
                handler(pending[0], None)
            elif handler != signal.SIG_IGN:
                raise KeyboardInterrupt


def retrying(fn, *args, what: str = "write", **kwargs):
    """fn(*args, **kwargs), retried while the store is busy (SQLite locked by another writer)
    or its server does not answer (restarted, hung), for up to BUSY_TIMEOUT_S; the first wait
    for a server is said at once. Other errors are raised at once."""
    global SERVER_GONE
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    delay, told = 0.2, False
    while True:
        try:
            with deferred_signals():  # each call whole; Ctrl-C still ends the waits between
                result = fn(*args, **kwargs)
            if told:
                log.warning("tracking server answers again (%s)", what)
            SERVER_GONE = False
            return result
        except Exception as e:
            away = is_unreachable(e)
            if away and SERVER_GONE:  # a whole wait already ran out: fail at once, not again
                raise
            if not (away or is_busy(e)) or time.monotonic() + delay > deadline:
                SERVER_GONE = SERVER_GONE or away
                raise
            if away and not told:
                log.warning("tracking server not answering (%s: %s); retrying for up to %.0f s "
                            "(tracking.busy_timeout_s)", what, one_line(e), BUSY_TIMEOUT_S)  # fmt: skip
                told = True
            log.debug("store busy (%s), retrying in %.1fs", what, delay)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def ensure_experiment(tracking: TrackingSettings) -> str:
    """Sets the tracking URI and returns the experiment id, creating store and experiment."""
    global BUSY_TIMEOUT_S
    BUSY_TIMEOUT_S = tracking.busy_timeout_s
    name = tracking.experiment
    given = tracking_uri(tracking)
    in_sweep = SweepEnv.current().parent_run_id is not None
    uri = check_store(given, create=True, wait_s=BUSY_TIMEOUT_S if in_sweep else 0)
    mlflow.set_tracking_uri(uri)
    try:
        with first_use_lock(uri):
            experiment = retrying(mlflow.get_experiment_by_name, name)
            if experiment is None:
                location = None
                if not uri.startswith(("http://", "https://")):
                    location = Path(tracking.artifact_root).resolve().as_uri()
                try:
                    retrying(mlflow.create_experiment, name, artifact_location=location)
                except mlflow.exceptions.MlflowException:  # another writer created it first
                    pass
                experiment = retrying(mlflow.get_experiment_by_name, name)
                if experiment is None:
                    raise TrackingError(f"tracking.experiment={name!r} could not be created")
        if experiment.lifecycle_stage != "active":
            raise TrackingError(
                f"tracking.experiment={name!r} is deleted in {given}; restore it "
                "(`mlflow experiments restore`) or choose another name"
            )
        check_artifact_root(experiment.artifact_location)
        reap_stale_runs(experiment.experiment_id)
        return experiment.experiment_id
    except (mlflow.exceptions.MlflowException, OSError) as e:
        raise TrackingError(f"tracking.uri={redact(given)}: {one_line(e)}") from None


def check_artifact_root(location: str) -> None:
    """A local artifact folder (the experiment's, from tracking.artifact_root) gets the store
    folder's check: it can be created and written, or one line before any job trains."""
    parsed = urlparse(location or "")
    if parsed.scheme not in ("", "file"):
        return  # a server's proxied artifacts, or a remote store: its own server checks them
    path = Path(parsed.path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise TrackingError(f"artifact root {path}: a parent of it is a file") from None
    except OSError as e:
        raise TrackingError(f"artifact root {path} cannot be created ({e.strerror})") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise TrackingError(f"artifact root {path} is not writable")


def open_store(uri: str) -> str:
    """For the commands that only read: check the store as the job does, never create it;
    TrackingError or StoreError in one line. Returns the URI set for MLflow."""
    uri = check_store(uri, create=False)
    mlflow.set_tracking_uri(uri)
    return uri


def open_experiment(uri: str, experiment: str) -> str:
    """The id of an experiment a reading command asks for; StoreError when it is not there."""
    uri = open_store(uri)
    try:
        with first_use_lock(uri, required=False):  # an older schema is migrated on first open
            found = mlflow.get_experiment_by_name(experiment)
    except mlflow.exceptions.MlflowException as e:
        raise TrackingError(f"{redact(uri)}: {one_line(e)}") from None
    if found is None:
        raise StoreError(f"experiment {experiment!r} not found at {redact(uri)}")
    return found.experiment_id


def check_sweep_id(sweep_id: str | None) -> None:
    """StoreError unless a --sweep-id looks like one."""
    if sweep_id is not None and not SWEEP_ID.fullmatch(sweep_id):
        raise StoreError(
            f"--sweep-id={sweep_id!r} is not a sweep id (letters, digits, '.', '_', '-')"
        )


# --- runs and their owners


def end_run(client: MlflowClient, run_id: str, status: str, **tags: str) -> None:
    """The one place a run ends: its last tags (the failure reason, a description) in one
    write, then its status; each retried while the store is busy."""
    if tags:
        batch = [RunTag(k, str(v)) for k, v in tags.items()]
        retrying(client.log_batch, run_id, tags=batch, what="end run")
    retrying(client.set_terminated, run_id, status, what="end run")


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
    running = retrying(
        client.search_runs, [experiment_id], "attributes.status = 'RUNNING'", what="read"
    )
    for run in running:
        tags = run.data.tags
        if tags.get("host") == socket.gethostname() and not owner_alive(tags):
            end_run(client, run.info.run_id, "FAILED", failure_reason="stale: process gone")
            reaped.append(run.info.run_name)
    return reaped


def config_runs(experiment_id: str, identity: str, finished_only: bool = False) -> list[Run]:
    """Runs of one config (its `config_hash` tag), newest first."""
    where = f"tags.config_hash = '{identity}'"
    if finished_only:
        where += " and attributes.status = 'FINISHED'"
    search = MlflowClient().search_runs
    return retrying(search, [experiment_id], where, order_by=["attributes.start_time DESC"],
                    what="read")  # fmt: skip


def on_host(run: Run, host: str) -> bool:
    """Whether the run ran on `host` (a run without the tag, from an old version, does)."""
    return run.data.tags.get("host", host) == host


def finished_runs(experiment_id: str, identity: str) -> list[Run]:
    """Complete FINISHED runs of one config (is_complete) on this host, newest first: a run
    of another machine is another comparison, never one this host's sweep stands on."""
    runs = config_runs(experiment_id, identity, finished_only=True)
    return [r for r in runs if is_complete(r) and on_host(r, socket.gethostname())]


def metric_values(run_id: str, key: str) -> list[float]:
    """One run's per-epoch values of a metric (its short name), in step order."""
    found = names.history(MlflowClient(), run_id, key)
    return [m.value for m in sorted(found, key=lambda m: m.step)]


def histories(run_ids, keys) -> pd.DataFrame:
    """Long table: run_id, key (the short name), step, value for the per-epoch metrics."""
    client = MlflowClient()
    rows = [
        {"run_id": run_id, "key": key, "step": m.step, "value": m.value}
        for run_id in run_ids
        for key in keys
        for m in names.history(client, run_id, key)
    ]
    return pd.DataFrame(rows, columns=["run_id", "key", "step", "value"])


def runs_frame(experiment_id: str, filter_string: str | None = None) -> pd.DataFrame:
    """Every run of the experiment (or those the filter selects) as one row each, its
    metrics by their short names (`metrics.test_accuracy`), whichever kind of store."""
    return names.short_columns(
        mlflow.search_runs([experiment_id], filter_string=filter_string or "")
    )


def end_orphans(parent_id: str, status: str, reason: str, wait_s: float = 15) -> list[str]:
    """Children of a sweep's parent still RUNNING once the sweep stops: their processes get
    wait_s to end them (a joblib or submitit worker ends its run KILLED itself); any still
    RUNNING after that end with `status` and the reason."""
    client = MlflowClient()
    parent = client.get_run(parent_id)
    where = f"tags.mlflow.parentRunId = '{parent_id}' and attributes.status = 'RUNNING'"
    running = client.search_runs([parent.info.experiment_id], where)
    procs = []
    for run in running:
        tags = run.data.tags
        if tags.get("host") == socket.gethostname() and owner_alive(tags):
            with contextlib.suppress(psutil.Error, ValueError):
                procs.append(psutil.Process(int(tags["pid"])))
    if procs:
        psutil.wait_procs(procs, timeout=wait_s)
    ended = []
    for run in client.search_runs([parent.info.experiment_id], where):
        end_run(client, run.info.run_id, status, failure_reason=reason)
        ended.append(run.info.run_name)
    return ended


# --- sweeps


@dataclass
class GridJob:
    overrides: list[str]
    config_hash: str
    status: str = MISSING  # FINISHED, FAILED, KILLED, RUNNING, INCOMPLETE or MISSING
    run_id: str | None = None
    reason: str = ""

    @property
    def is_hole(self) -> bool:
        return self.status != "FINISHED"


def is_complete(run: Run) -> bool:
    """FINISHED with everything a finished job logs: its final metrics, and (runs of this
    version) the tag saying its per-epoch history was read back whole before it ended. A run
    an interrupted older version left FINISHED with part of its metrics is a hole."""
    return (
        run.info.status == "FINISHED"
        and "test_accuracy" in names.short_metrics(run.data.metrics)
        and run.data.tags.get("history_verified", "true") == "true"
    )


def sweep_parent(experiment_id: str, sweep_id: str | None = None) -> Run:
    """The sweep's parent run: the given sweep id, else the latest sweep."""
    check_sweep_id(sweep_id)
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
        return retrying(mlflow.artifacts.load_dict, f"runs:/{parent.info.run_id}/{GRID_ARTIFACT}",
                        what="read")  # fmt: skip
    except Exception:  # a sweep from before grids were recorded, or another sweeper
        return None


def append_grid(parent_id: str, entries: list[dict]) -> None:
    """Jobs a sequential sweep added, appended to the grid its parent recorded."""
    client = MlflowClient()
    grid = load_grid(retrying(client.get_run, parent_id, what="read"))
    if grid is None:
        return
    grid["jobs"] += [{**e, "overrides": redacted(e["overrides"])} for e in entries]
    retrying(client.log_dict, parent_id, grid, GRID_ARTIFACT, what="grid")
    retrying(client.set_tag, parent_id, "sweep_jobs", str(len(grid["jobs"])), what="grid")


SEQUENTIAL_ARTIFACT = "sequential.json"


def record_sequential(parent_id: str, summary: dict) -> None:
    """How a sequential sweep ended, on its parent: the looks, the level of each look's
    intervals, each pair's seeds, why it stopped (the `sweep_stop` tag, which the report and
    the audit print, and the whole summary as an artifact)."""
    client = MlflowClient()
    retrying(client.log_dict, parent_id, summary, SEQUENTIAL_ARTIFACT, what="sequential")
    looks, planned = (",".join(map(str, summary[k])) for k in ("looks", "planned"))
    stop = (f"{summary['stopped']} (looks at {looks} seeds, of the planned {planned}; every "
            f"interval at {summary['level_per_look']:.1%}, so that all looks together hold "
            f"{summary['level']:.0%})")  # fmt: skip
    retrying(client.set_tag, parent_id, "sweep_stop", stop, what="sequential")


def grid_status(experiment_id: str, parent: Run, grid: dict) -> list[GridJob]:
    """Each grid job with the run that stands for it: a FINISHED run of this sweep, else a
    FINISHED run of the same config on the sweep's host (the newest one that existed when the
    sweep ended: the one it skipped to; else the first one after: the one that filled the
    hole), else the newest run of it in any state. So a sweep's report stays what its end
    said, however many runs of its configs come later."""
    sweep_id, host = parent.data.tags.get("sweep_id"), parent.data.tags.get("host")
    ended = parent.info.end_time or float("inf")
    jobs = []
    for entry in grid["jobs"]:
        job = GridJob(entry["overrides"], entry["config_hash"])
        runs = config_runs(experiment_id, job.config_hash)
        finished = [r for r in runs if is_complete(r) and (host is None or on_host(r, host))]
        own = [r for r in finished if r.data.tags.get("sweep_id") == sweep_id]
        before = [r for r in finished if r.info.start_time <= ended]
        after = [r for r in finished if r.info.start_time > ended][::-1]
        best = (own or before or after or runs or [None])[0]
        if best is not None:
            job.status, job.run_id = best.info.status, best.info.run_id
            job.reason = best.data.tags.get("failure_reason", "")
            if job.status == "FINISHED" and not is_complete(best):
                job.status, job.reason = "INCOMPLETE", "FINISHED without all its metrics"
        jobs.append(job)
    return jobs
