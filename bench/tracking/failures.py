"""How a job that does not finish ends, in one place: `reports_failures` wraps the job (as
lightning-hydra-template's task_wrapper does), so the job itself reads as a straight list.

- A bad setting, bad data, a refused spec, a diverged run or a store that lost part of the
  run's history is the user's to fix: one line, no traceback.
- An error of the tracking store (MLflow's) is one line too, named as the store's.
- Anything else is a bug: its traceback is logged.
In every case the run this process left open ends FAILED with the reason, the failure is
recorded for the command's exit status (and the sweep's failure file), and the sweep goes on.
Ctrl-C and SIGTERM end the open run KILLED and stop the command; so does SLURM's time limit
or preemption, without stopping it."""

from __future__ import annotations

import functools
import logging
import signal
import sys
import threading

from bench.data import DataError
from bench.job.harness import Diverged
from bench.job.redact import redact
from bench.job.settings import ConfigError
from bench.tracking.sweep_env import record_failure
from implementations.spec import SpecError

log = logging.getLogger("bench")
USER_ERRORS = (ConfigError, DataError, SpecError, Diverged)
# MLflow is imported by the jobs that track (its import is ~1.8 s of a command): the errors
# and open runs below exist only where it was, so this module never imports it itself
RUNS = "bench.tracking.runs"


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: the current run ends KILLED, the process exits non-zero."""


def terminate(signum, frame) -> None:
    raise Terminated("terminated (SIGTERM)")


def handle_sigterm() -> None:
    """SIGTERM ends the run KILLED like Ctrl-C, in the main process and in a launcher's
    worker process (joblib, submitit) alike, where the command's main() did not run. On SLURM
    it replaces submitit's handler, which ignores SIGTERM: `scancel`, a time limit and a
    requeue send it, then SIGKILL after the cluster's KillWait, and a job that ignored it would
    die with its run RUNNING."""
    if threading.current_thread() is threading.main_thread():
        current = signal.getsignal(signal.SIGTERM)
        submitit = "submitit" in str(getattr(current, "__module__", "") or current)
        if current in (signal.SIG_DFL, None) or submitit:
            signal.signal(signal.SIGTERM, terminate)


def failed(message: str) -> None:
    """One line on stderr (credentials masked), recorded for the exit status; the job returns
    nothing."""
    message = redact(message)
    print(message, file=sys.stderr)
    record_failure(message)


def reason_of(e: Exception) -> tuple[str, bool]:
    """The failure's one-line reason, and whether it is the user's to fix (no traceback)."""
    if (mlflow := sys.modules.get("mlflow")) and (
        isinstance(e, mlflow.exceptions.MlflowException)
        or type(e).__module__.startswith("sqlalchemy")
    ):
        from bench.tracking.store import one_line

        return f"tracking store: {one_line(e)}", True  # the store failed under the run
    runs = sys.modules.get(RUNS)
    if isinstance(e, USER_ERRORS) or (runs and isinstance(e, runs.HistoryLost)):
        return str(e), True
    return f"{type(e).__name__}: {e}", False


def stopped_by_cluster(e: Exception) -> bool:
    """submitit's answer to SLURM's warning signal (USR2, `signal_delay_s` before the time
    limit, or on preemption) when it does not requeue the job: the job was stopped from
    outside, like `scancel`, not by a bug."""
    return type(e).__name__ == "UncompletedJobError" and type(e).__module__.startswith("submitit")


def close_open_runs(reason: str, status: str) -> None:
    """End the runs this process left open, if it opened any."""
    if runs := sys.modules.get(RUNS):
        runs.close_open_runs(reason, status)


def reports_failures(job_fn):
    """Wraps `job_fn(job, ...)`: its result, or None (and one recorded line naming the job's
    run) when it failed."""

    @functools.wraps(job_fn)
    def wrapper(job, *args, **kwargs):
        handle_sigterm()
        try:
            return job_fn(job, *args, **kwargs)
        except ConfigError as e:  # the tracking settings, or a store that cannot be used
            close_open_runs(str(e), "FAILED")
            return failed(f"error: {e}")
        except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM (see Terminated)
            close_open_runs(str(e) or "interrupted (SIGINT)", "KILLED")
            raise
        except Exception as e:  # the run must end FAILED with the reason, never stay RUNNING
            if stopped_by_cluster(e):
                reason = f"stopped by SLURM (time limit or preemption): {e}"
                close_open_runs(reason, "KILLED")
                return failed(f"error: {job.run_name}: {reason}")
            reason, users = reason_of(e)
            close_open_runs(reason, "FAILED")
            if not users:
                log.exception("%s failed", job.run_name)
            return failed(f"error: {job.run_name}: {' '.join(reason.split())}")

    return wrapper
