"""`mnist-bench`: the Hydra app. One job trains one implementation and records one MLflow run."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import sys
import time
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from bench.settings import ConfigError, Job, job_from_config

log = logging.getLogger("bench")
SWEEP_JOBS_ENV = "MNIST_BENCH_SWEEP_JOBS"  # the sweep's job count, set by bench.sweep
CONFIG_DIR = str(Path(__file__).resolve().parents[1] / "conf")


def run(cfg: DictConfig) -> dict[str, float] | None:
    """Run one job and return its final metrics (those of the earlier FINISHED run when it is
    skipped); None when it did not finish. Failures are logged in one line, never raised, so a
    sweep goes on; Ctrl-C ends the run KILLED and stops."""
    started = time.perf_counter()  # the run's overhead_s counts from here
    try:
        job = job_from_config(cfg)
    except ConfigError as e:
        return _failed(f"error: {e}")
    parallel = parallel_jobs()
    if parallel > 1 and job.threads:
        job = share_thread_budget(job, parallel)
    from bench.harness import ConsoleProgress, run_job
    from bench.run_view import RunView

    observers = [ConsoleProgress(job)]
    tracker = None
    _handle_sigterm()
    try:
        if cfg.tracking.enabled:
            try:
                if (done := _finished_before(cfg, job)) is not None:
                    return done
                tracker, import_s = _start_run(cfg, job, parallel)
            except ConfigError as e:  # tracking settings or an unusable store
                return _failed(f"error: {e}")
            view = RunView(job, tracker, cfg.tracking.get("log_model", True))
            observers += [tracker, view]
        result = run_job(job, observers)
        if tracker:
            view.finished(result)  # the MLflow UI's view of the run; never fails the run
            tracker.settle()  # the history written and verified: part of the overhead
            result.metrics["overhead_s"] = (
                time.perf_counter() - started - result.metrics["train_time_s"] - import_s
            ) - view.model_s  # outside the epochs, the framework's import and model logging
            result.metrics["framework_import_s"] = import_s
            tracker.finish(result.metrics, result.predictions, result.labels)
    except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM (see Terminated)
        from bench.tracking import close_open_runs

        close_open_runs(str(e) or "interrupted (SIGINT)", "KILLED")
        raise
    except Exception as e:  # the run must end FAILED with the reason, never stay RUNNING
        from bench.tracking import close_open_runs

        user_error = _is_user_error(e)
        reason = str(e) if user_error else f"{type(e).__name__}: {e}"
        if _is_store_error(e):  # the store failed under the run: one line, no traceback
            from bench.store import one_line

            user_error, reason = True, f"tracking store: {one_line(e)}"
        close_open_runs(reason, "FAILED")
        if not user_error:
            log.exception("%s failed", job.run_name)
        return _failed(f"error: {job.run_name}: {' '.join(reason.split())}")
    m = result.metrics
    log.info(
        "%s: test accuracy %.4f, train time %.2fs",
        job.run_name,
        m["test_accuracy"],
        m["train_time_s"],
    )
    return m


def _finished_before(cfg: DictConfig, job: Job) -> dict[str, float] | None:
    """With tracking.skip_completed, a config that already has a FINISHED run is not run again,
    so re-running an interrupted sweep only runs what is missing: that run's metrics."""
    from bench import store, tracking

    if not tracking.skip_completed(cfg.tracking, multirun=_in_sweep()):
        return None
    experiment_id = store.ensure_experiment(cfg.tracking)
    done = store.finished_runs(experiment_id, tracking.config_hash(cfg))
    if done:
        log.info(
            "%s: skipped, already FINISHED as run %s (tracking.skip_completed=false runs it again)",
            job.run_name,
            done[0].info.run_id,
        )
        return done[0].data.metrics
    return None


def _start_run(cfg: DictConfig, job: Job, parallel: int):
    """The job's run, and the seconds its framework's import took (where this job brought it:
    that import is reported as `framework_import_s`, outside the run's `overhead_s`)."""
    from bench.environment import environment_tags
    from bench.job_setup import job_implementation
    from bench.mlflow_ui import ordered_tags, run_label
    from bench.tracking import MlflowRun

    versions = {}
    started = time.perf_counter()
    with contextlib.suppress(Exception):  # a failing import fails the run itself, next
        versions = job_implementation(job).versions()  # the framework's import, first job only
    import_s = time.perf_counter() - started
    tags = {
        **environment_tags(job.device, job.threads, versions),
        "implementation": job.implementation,
        "preset": job.preset,
        "lockstep": str(job.lockstep).lower(),
    }
    if HydraConfig.initialized():
        tags["hydra_overrides"] = " ".join(HydraConfig.get().overrides.task)
    if parallel > 1:  # timings measured beside other jobs: the report flags them
        tags["parallel_jobs"] = str(parallel)
    return MlflowRun(cfg, run_label(job), ordered_tags(job, tags)), import_s


def parallel_jobs() -> int:
    """How many jobs of this sweep run at once on this machine: joblib's n_jobs, every job for
    submitit_local (it starts them all), capped by the sweep's size and by the sweeper's
    max_batch_size; 1 when serial or on SLURM (each job has its own allocation)."""
    if not HydraConfig.initialized():
        return 1
    hydra_cfg = HydraConfig.get()
    launcher = str(hydra_cfg.launcher.get("_target_", ""))
    size = int(os.environ.get(SWEEP_JOBS_ENV, 0)) or sys.maxsize
    if "joblib" in launcher:
        n_jobs = hydra_cfg.launcher.get("n_jobs") or 1
        width = (os.cpu_count() or 1) if n_jobs < 0 else n_jobs  # joblib: -1 = one per core
    elif launcher.endswith("submitit_launcher.LocalLauncher"):
        width = size
    else:
        return 1
    batch = hydra_cfg.sweeper.get("max_batch_size") or sys.maxsize
    return max(1, min(width, size, batch))


def share_thread_budget(job: Job, parallel: int) -> Job:
    """Jobs side by side split the thread budget, so they do not oversubscribe the cores. The
    params keep the configured budget (the run's identity); the `threads` tag records what the
    job really had."""
    threads = max(1, job.threads // parallel)
    log.info("%d jobs in parallel: train.threads %d -> %d per job", parallel, job.threads, threads)
    return dataclasses.replace(job, threads=threads)


def _in_sweep() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def _is_user_error(e: Exception) -> bool:
    from bench.data import DataError
    from bench.harness import Diverged
    from bench.tracking import HistoryLost
    from implementations.spec import SpecError

    return isinstance(e, (ConfigError, DataError, SpecError, Diverged, HistoryLost))


def _is_store_error(e: Exception) -> bool:
    from mlflow.exceptions import MlflowException

    return isinstance(e, MlflowException)


def _failed(message: str) -> None:
    from bench.tracking import record_failure

    print(message, file=sys.stderr)
    record_failure(message)
    return None


def _handle_sigterm() -> None:
    """SIGTERM ends the run KILLED like Ctrl-C, in the main process and in a launcher's
    worker process (joblib, submitit) alike, where main() did not run."""
    import threading

    if threading.current_thread() is threading.main_thread():
        if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
            signal.signal(signal.SIGTERM, _terminate)


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def hydra_main(cfg: DictConfig) -> float | None:
    """Returns the job's `optimized_metric` (set by a tuning preset): what a sweeper such as
    Optuna optimizes; NaN, a failed trial, when the job failed or did not log that metric."""
    metrics = run(cfg) or {}
    if cfg.get("optimized_metric"):
        return metrics.get(cfg.optimized_metric, float("nan"))
    return None


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: the current run ends KILLED, the process exits non-zero."""


def _terminate(signum, frame) -> None:
    raise Terminated("terminated (SIGTERM)")


def main() -> None:
    from bench.extras import MissingExtra, check_extras
    from bench.tracking import FAILURES, PARENT_RUN_ENV

    try:
        check_extras(sys.argv[1:])
    except MissingExtra as e:
        sys.exit(f"error: {e}")
    signal.signal(signal.SIGTERM, _terminate)
    try:
        hydra_main()
    except KeyboardInterrupt as e:
        reason = str(e) or "interrupted (SIGINT)"
        _end_sweep(os.environ.get(PARENT_RUN_ENV), "KILLED", reason)
        print(f"error: {reason}", file=sys.stderr)
        sys.exit(130)
    except SystemExit as e:  # Hydra reports an error and exits; a sweep left mid-way fails
        if e.code not in (None, 0):
            _end_sweep(os.environ.get(PARENT_RUN_ENV), "FAILED", "the sweep stopped on an error")
        raise
    if FAILURES:
        sys.exit(1)


def _end_sweep(parent: str | None, status: str, reason: str) -> None:
    """The sweep stops early: its jobs still RUNNING (in worker processes) and its parent end
    `status`, with the reason as the parent's description; a second signal waits."""
    if parent is None:
        return
    from mlflow import MlflowClient

    from bench.store import end_orphans, one_line, retrying
    from bench.tracking import deferred_signals

    with deferred_signals():
        try:
            ended = end_orphans(parent, status, reason)
            client = MlflowClient()
            note = f"{reason}; {len(ended)} running jobs ended {status}" if ended else reason
            retrying(client.set_tag, parent, "mlflow.note.content", note)
            retrying(client.set_tag, parent, "failure_reason", reason)
            retrying(client.set_terminated, parent, status)
        except Exception as e:  # the store is gone: the parent is reaped as stale later
            print(f"error: could not end the sweep's parent run: {one_line(e)}", file=sys.stderr)


if __name__ == "__main__":
    main()
