"""MLflow: one run per job, by hand from the harness (no autolog: it would cover one framework).

Params are the whole resolved config; per-epoch metrics go in one batched call per epoch,
written by a thread of ours while the next epoch trains, retried while the store is busy.
A run ends FINISHED only after its whole per-epoch history has been read back from the
store; otherwise it ends FAILED (KILLED for Ctrl-C/SIGTERM) with the reason in a tag,
keeping whatever it had logged. Runs are written through MlflowClient, never MLflow's
fluent "active run": MLflow ends an active run FINISHED from its exit handler, whatever
interrupted it. A run this process leaves open is ended by close_open_runs (the app's
handlers, and an exit handler of ours that ends it FAILED).
"""

from __future__ import annotations

import atexit
import json
import logging
import posixpath
import queue
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import mlflow
import numpy as np
import psutil
from mlflow import MlflowClient
from mlflow.entities import DatasetInput, InputTag, Metric, Param, RunTag
from mlflow.tracking.context.registry import resolve_tags
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT, MLFLOW_PARENT_RUN_ID
from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH
from omegaconf import OmegaConf

from bench.data import Dataset
from bench.job.redact import redact, redacted
from bench.job.settings import Job
from bench.tracking import names, store
from bench.tracking.store import (
    deferred_signals,
    end_run,
    ensure_experiment,
    finished_runs,
    metric_values,
    retrying,
)
from bench.tracking.sweep_env import SweepEnv
from bench.tracking.ui import dataset_input, uniform_params

log = logging.getLogger("bench")
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


class HistoryLost(RuntimeError):
    """Part of a run's per-epoch history is not in the store; the run cannot end FINISHED."""


class HistoryWriter:
    """Writes each epoch's metrics from a thread while the next epoch trains (an SQLite
    commit is an fsync), retrying while the store is busy; `drain` waits until all is
    written and says what was not."""

    def __init__(self, client: MlflowClient, run_id: str):
        self.client, self.run_id = client, run_id
        self.queue: queue.Queue = queue.Queue()
        self.errors: list[str] = []
        self.thread = threading.Thread(target=self._loop, name="mnist-bench-history", daemon=True)
        self.thread.start()

    def put(self, metrics: list[Metric]) -> None:
        self.queue.put(metrics)

    def _loop(self) -> None:
        while (batch := self.queue.get()) is not None:
            try:
                if not self.errors:  # after a failure the store is gone or locked for good
                    retrying(self.client.log_batch, self.run_id, metrics=batch, what="epoch")
            except Exception as e:
                self.errors.append(store.one_line(e))
            finally:
                self.queue.task_done()
        self.queue.task_done()

    def drain(self) -> None:
        if self.thread.is_alive():
            self.queue.put(None)
            self.thread.join()


OPEN_RUNS: dict[str, MlflowRun] = {}  # runs this process created and has not ended


def close_open_runs(reason: str, status: str) -> None:
    """End every run this process left open (an interrupt or an error while it was being
    created, trained or finished) with `status` and the reason; never raises."""
    for run in list(OPEN_RUNS.values()):
        try:
            run.fail(reason, status)
        except Exception as e:  # the store itself is gone: the run is reaped as stale later
            OPEN_RUNS.pop(run.run_id, None)
            print(f"error: could not end run {run.run_id} {status}: {store.one_line(e)}",
                  file=sys.stderr)  # fmt: skip


@atexit.register
def _exit_handler() -> None:
    if OPEN_RUNS:
        close_open_runs("the process exited before the run ended", "FAILED")


def shown(key: str, value: float) -> float:
    """A final metric as stored: a duration in 4 significant digits (3.231 s, not
    3.2311305...: a timer on a shared host resolves no more), anything else as it is."""
    duration = key.endswith("_s") and not key.endswith("_per_s")  # samples_per_s is a rate
    return float(f"{value:.4g}") if duration else float(value)


class MlflowRun:
    """The MLflow side of one job, written from its `Job`; ended by finish() or fail(), never
    left RUNNING."""

    def __init__(self, job: Job, run_name: str, tags: dict[str, str]):
        self.job = job
        self.experiment_id = ensure_experiment(job.tracking)
        self.client = MlflowClient()
        self.identity = job.config_hash
        self.losses: list[float] = []
        self.history: dict[str, list[int]] = {}  # metric key -> steps logged
        self.writer: HistoryWriter | None = None
        self.settled = False
        self.expected: set[str] = set()  # artifact paths this run wrote: checked before FINISHED
        self.model_id: str | None = None  # the logged model (bench.tracking.view sets it)
        sweep = SweepEnv.current()
        tags = {**tags, **process_tags(), "config_hash": self.identity}
        if sweep.sweep_id:
            tags["sweep_id"] = sweep.sweep_id
        if sweep.parent_run_id:
            tags[MLFLOW_PARENT_RUN_ID] = sweep.parent_run_id
        with deferred_signals():  # the row and its registration, or neither
            self.run = retrying(
                self.client.create_run,
                self.experiment_id,
                run_name=run_name,
                tags=resolve_tags(tags),
                what="create run",
            )
            self.run_id = self.run.info.run_id
            OPEN_RUNS[self.run_id] = self
        self.writer = HistoryWriter(self.client, self.run_id)
        self._log_config()
        self.monitor = None  # MLflow's system metrics, where tracking.system_metrics asks
        if job.tracking.system_metrics:
            from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

            self.monitor = SystemMetricsMonitor(self.run_id, sampling_interval=1,
                                                tracking_uri=mlflow.get_tracking_uri())  # fmt: skip
            self.monitor.start()

    def _stop_monitor(self) -> None:
        """The system metrics sampled so far written, before the run ends."""
        if getattr(self, "monitor", None) is not None:
            self.monitor.finish()
            self.monitor = None

    def _batch(self, metrics=(), params=(), tags=()) -> None:
        retrying(self.client.log_batch, self.run_id, metrics=metrics, params=params, tags=tags)

    def set_tags(self, tags: dict[str, str]) -> None:
        self._batch(tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def _log_config(self) -> None:
        config = redacted(self.job.config)  # a password in tracking.uri is never stored
        params = uniform_params(flatten(config))
        long = sorted(k for k, v in params.items() if len(v) > MAX_PARAM_VAL_LENGTH)
        items = [Param(k, v) for k, v in params.items() if k not in long]
        for i in range(0, len(items), 100):  # MLflow's limit per batch
            self._batch(params=items[i : i + 100])
        if long:  # too long for a param: the config artifact holds them whole
            self.set_tags({"params_in_config_artifact": ",".join(long)})
        text = OmegaConf.to_yaml(config)
        retrying(self.client.log_text, self.run_id, text, "config.yaml")
        self.expect("config.yaml")

    def expect(self, path: str) -> None:
        """An artifact this run wrote: it must be in the store before the run ends FINISHED."""
        self.expected.add(path)

    def _verify_artifacts(self) -> None:
        """Every artifact written is listed back by the store, or HistoryLost."""
        present = set()
        for folder in sorted({posixpath.dirname(p) for p in self.expected}):
            listed = retrying(self.client.list_artifacts, self.run_id, folder or None, what="read")
            present |= {a.path for a in listed}
        if missing := sorted(self.expected - present):
            raise HistoryLost(f"artifacts not stored: {', '.join(missing)}")

    def data_loaded(self, dataset: Dataset) -> None:
        ds, input_tags = dataset_input(dataset, self.job.data)  # named with its splits
        tags = [InputTag(MLFLOW_DATASET_CONTEXT, "training")]
        tags += [InputTag(k, str(v)) for k, v in input_tags.items() if k != MLFLOW_DATASET_CONTEXT]
        entry = DatasetInput(ds._to_mlflow_entity(), tags)
        for attempt in range(5):  # MLflow's get-or-create of the dataset row is not atomic:
            try:  # a job beside this one may create it between the two; the retry finds it
                retrying(self.client.log_inputs, self.run_id, datasets=[entry])
                break
            except Exception as e:
                if attempt == 4 or "unique constraint" not in str(e).lower():
                    raise
        self.set_tags({"dataset_digest": dataset.digest, "dataset_source": dataset.source})

    def epoch_done(self, epoch: int, metrics: dict[str, float]) -> None:
        """Queued, not written: the store's commit (an fsync with SQLite) happens on our
        writer thread while the next epoch trains. finish() and fail() wait for it."""
        if self.writer.errors:  # stop now, not after every remaining epoch
            raise HistoryLost(f"per-epoch history could not be written: {self.writer.errors[0]}")
        self.losses.append(metrics["train_loss"])
        now = int(time.time() * 1000)
        stored = {names.stored(k, per_epoch=True): float(v) for k, v in metrics.items()}
        for key in stored:
            self.history.setdefault(key, []).append(epoch)
        self.writer.put([Metric(k, v, now, epoch) for k, v in stored.items()])

    def model_of(self, name: str) -> str | None:
        """The logged model a final metric also describes (the model page lists it): the
        training's results, not the job's costs."""
        return self.model_id if name.startswith(names.FINAL) else None

    def _verify_history(self) -> None:
        """Every epoch queued is in the store (read back), or HistoryLost."""
        self.writer.drain()
        missing = []
        for key, steps in self.history.items():
            stored = retrying(self.client.get_metric_history, self.run_id, key, what="read")
            lost = sorted(set(steps) - {m.step for m in stored})
            if lost:
                missing.append(f"{key} epochs {','.join(map(str, lost))}")
        if missing:
            cause = f" ({self.writer.errors[0]})" if self.writer.errors else ""
            raise HistoryLost(f"per-epoch history not stored: {'; '.join(missing)}{cause}")

    def settle(self) -> None:
        """The per-epoch history verified in the store (once): finish() needs it, and the
        app calls it first to count its cost in the run's overhead."""
        if not self.settled:
            self._verify_history()
            self.settled = True

    def finish(
        self, metrics: dict[str, float], predictions: np.ndarray, labels: np.ndarray
    ) -> None:
        """FINISHED, once the history is verified and the final metrics and predictions are
        written; any error on the way leaves the run open for the caller to fail."""
        self.settle()
        now = int(time.time() * 1000)
        metrics = {names.stored(k, per_epoch=False): shown(k, v) for k, v in metrics.items()}
        self._batch(
            metrics=[Metric(k, v, now, 0, model_id=self.model_of(k)) for k, v in metrics.items()]
        )
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "predictions.npz"
            np.savez_compressed(path, predicted=predictions, labels=labels)
            try:
                retrying(self.client.log_artifact, self.run_id, str(path), what="artifact")
            except OSError as e:  # the artifact store (a folder here) refused it
                raise HistoryLost(f"predictions.npz not stored: {e}") from None
        self.expect("predictions.npz")
        self._verify_artifacts()
        self._certify_determinism()
        stored = retrying(self.client.get_run, self.run_id, what="read").data.metrics
        if lost := sorted(set(metrics) - set(stored)):
            raise HistoryLost(f"final metrics not stored: {', '.join(lost)}")
        self._stop_monitor()
        with deferred_signals():
            end_run(self.client, self.run_id, "FINISHED", history_verified="true")
            OPEN_RUNS.pop(self.run_id, None)

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
        self.set_tags({**tags, "determinism_compared_to": previous.info.run_id})
        if "determinism" not in previous.data.tags:
            for key, value in {**tags, "determinism_compared_to": self.run_id}.items():
                retrying(self.client.set_tag, previous.info.run_id, key, value)

    def fail(self, reason: str, status: str = "FAILED") -> None:
        """Ends the run `status` with the reason, after writing the epochs logged so far.
        Signals wait meanwhile: a second Ctrl-C cannot leave the run half-ended."""
        with deferred_signals():
            log.info(
                "%s: ending run %s %s (%s)", self.run.info.run_name, self.run_id, status, reason
            )
            if self.writer is not None:
                self.writer.drain()  # the epochs logged so far are kept
                if self.writer.errors and "could not be written" not in reason:
                    reason += f" (and part of the history was not stored: {self.writer.errors[0]})"
            reason = redact(reason)[:MAX_PARAM_VAL_LENGTH]
            self._stop_monitor()
            end_run(self.client, self.run_id, status, failure_reason=reason)
            OPEN_RUNS.pop(self.run_id, None)
