"""`mnist-bench-audit`: compare the grid a sweep was asked to run with what the store holds
(FINISHED, FAILED, KILLED, RUNNING or missing) and print the one command that runs only the
holes. The report uses the same lookup, so a sweep resumed by a second command still reports
as one sweep."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from dataclasses import dataclass

import mlflow
from mlflow import MlflowClient
from mlflow.entities import Run

from bench.tracking import add_store_arguments, reap_stale_runs

GRID_ARTIFACT = "sweep_grid.json"
MISSING = "MISSING"


class AuditError(Exception):
    """No sweep to audit, or a sweep without a recorded grid; one line."""


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
        raise AuditError(f"no sweep {sweep_id!r} found" if sweep_id else "no sweep found")
    return runs[0]


def load_grid(parent: Run) -> dict | None:
    try:
        return mlflow.artifacts.load_dict(f"runs:/{parent.info.run_id}/{GRID_ARTIFACT}")
    except Exception:  # a sweep from before grids were recorded, or another sweeper
        return None


def grid_status(experiment_id: str, parent: Run, grid: dict) -> list[GridJob]:
    """Each grid job with the run that stands for it: a FINISHED run of this sweep, else the
    newest FINISHED run of the same config, else the newest run of it in any state."""
    client = MlflowClient()
    sweep_id = parent.data.tags.get("sweep_id")
    jobs = []
    for entry in grid["jobs"]:
        job = GridJob(entry["overrides"], entry["config_hash"])
        runs = client.search_runs(
            [experiment_id],
            f"tags.config_hash = '{job.config_hash}'",
            order_by=["attributes.start_time DESC"],
        )
        finished = [r for r in runs if r.info.status == "FINISHED"]
        own = [r for r in finished if r.data.tags.get("sweep_id") == sweep_id]
        best = (own or finished or runs or [None])[0]
        if best is not None:
            job.status, job.run_id = best.info.status, best.info.run_id
            job.reason = best.data.tags.get("failure_reason", "")
        jobs.append(job)
    return jobs


def holes_command(jobs: list[GridJob], launcher: list[str]) -> str | None:
    """`mnist-bench -m ...` over the smallest product of swept values that covers the holes;
    configs in it that already FINISHED are skipped (tracking.skip_completed)."""
    holes = [j for j in jobs if j.is_hole]
    if not holes:
        return None
    keys: dict[str, list[str]] = {}
    for job in holes:
        for override in job.overrides:
            key, value = override.split("=", 1)
            values = keys.setdefault(key, [])
            if value not in values:
                values.append(value)
    args = [f"{key}={','.join(values)}" for key, values in keys.items()]
    return shlex.join(["mnist-bench", "-m", *args, *launcher])


def audit(experiment_id: str, sweep_id: str | None = None) -> tuple[Run, list[GridJob], str | None]:
    parent = sweep_parent(experiment_id, sweep_id)
    grid = load_grid(parent)
    if grid is None:
        raise AuditError(
            f"sweep {parent.data.tags.get('sweep_id')} has no recorded grid "
            "(not a basic-sweeper grid, or recorded before grids were)"
        )
    jobs = grid_status(experiment_id, parent, grid)
    return parent, jobs, holes_command(jobs, grid.get("hydra_overrides", []))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mnist-bench-audit", description=__doc__)
    add_store_arguments(parser)
    args = parser.parse_args(argv)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    mlflow.set_tracking_uri(args.tracking_uri)
    try:
        experiment = mlflow.get_experiment_by_name(args.experiment)
        if experiment is None:
            raise AuditError(f"experiment {args.experiment!r} not found at {args.tracking_uri}")
        reap_stale_runs(experiment.experiment_id)  # a dead process's run is a hole, not RUNNING
        parent, jobs, command = audit(experiment.experiment_id, args.sweep_id)
    except AuditError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    counts = {s: sum(j.status == s for j in jobs) for s in dict.fromkeys(j.status for j in jobs)}
    summary = ", ".join(f"{n} {s}" for s, n in counts.items())
    print(f"sweep {parent.data.tags.get('sweep_id')}: {len(jobs)} jobs: {summary}")
    for job in jobs:
        if job.is_hole:
            reason = f"  ({job.reason})" if job.reason else ""
            print(f"  {job.status:<8} {' '.join(job.overrides)}{reason}")
    if command is None:
        print("complete: every job of the grid has a FINISHED run")
        return 0
    print("run only the holes (configs already FINISHED are skipped):")
    print(f"  {command}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
