"""What a sweep hands its jobs: five environment variables, set by the sweep's Hydra callback
before any job starts and read by each job. Local, joblib and submitit workers all inherit the
environment, so this works whichever launcher runs the jobs."""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass

PARENT_RUN = "MNIST_BENCH_PARENT_RUN_ID"  # the sweep's parent run: the jobs nest under it
SWEEP_ID = "MNIST_BENCH_SWEEP_ID"  # tagged on every job's run
FAILURES_FILE = "MNIST_BENCH_FAILURES_FILE"  # each job that did not finish appends a line
SWEEP_JOBS = "MNIST_BENCH_SWEEP_JOBS"  # the grid's size: how many jobs can run side by side
VARYING = "MNIST_BENCH_SWEEP_VARYING"  # JSON: what differs between the jobs (their run names)
ALL = (PARENT_RUN, SWEEP_ID, FAILURES_FILE, SWEEP_JOBS, VARYING)


@dataclass
class SweepEnv:
    """The sweep as one of its jobs sees it; every field None outside a sweep."""

    parent_run_id: str | None = None
    sweep_id: str | None = None
    failures_file: str | None = None
    jobs: int | None = None
    varying: dict | None = None

    @classmethod
    def current(cls) -> SweepEnv:
        env = os.environ
        return cls(
            parent_run_id=env.get(PARENT_RUN),
            sweep_id=env.get(SWEEP_ID),
            failures_file=env.get(FAILURES_FILE),
            jobs=int(env[SWEEP_JOBS]) if env.get(SWEEP_JOBS) else None,
            varying=json.loads(env[VARYING]) if env.get(VARYING) else None,
        )

    def export(self) -> None:
        """Into this process's environment, which the jobs inherit."""
        values = {
            PARENT_RUN: self.parent_run_id,
            SWEEP_ID: self.sweep_id,
            FAILURES_FILE: self.failures_file,
            SWEEP_JOBS: None if self.jobs is None else str(self.jobs),
            VARYING: None if self.varying is None else json.dumps(self.varying),
        }
        for key, value in values.items():
            if value is not None:
                os.environ[key] = value


def clear() -> SweepEnv:
    """The sweep's end: what it had handed its jobs, removed from the environment."""
    ended = SweepEnv.current()
    for key in ALL:
        os.environ.pop(key, None)
    return ended


FAILURES: list[str] = []  # jobs of this process (and sweeps) that did not finish


def record_failure(message: str) -> None:
    """A job that did not finish: in this process's list, and in the sweep's failure file
    (a joblib or submitit worker's list is not the sweep process's)."""
    FAILURES.append(message)
    if path := os.environ.get(FAILURES_FILE):
        with contextlib.suppress(OSError), open(path, "a") as f:
            f.write(" ".join(message.split()) + "\n")
