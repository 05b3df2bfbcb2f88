"""`mnist-bench-audit`: compare the grid a sweep was asked to run with what the store holds
(FINISHED, FAILED, KILLED, RUNNING or missing) and print the one command that runs only the
holes. The report uses the same lookup, so a sweep resumed by a second command still reports
as one sweep."""

from __future__ import annotations

import argparse
import os
import shlex
import sys

from mlflow.entities import Run
from mlflow.exceptions import MlflowException

from bench.store import (
    GridJob,
    StoreError,
    TrackingError,
    add_store_arguments,
    check_sweep_id,
    grid_status,
    load_grid,
    one_line,
    open_experiment,
    reap_stale_runs,
    sweep_parent,
)


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
        raise StoreError(
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
    try:
        check_sweep_id(args.sweep_id)
        experiment_id = open_experiment(args.tracking_uri, args.experiment)
        reap_stale_runs(experiment_id)  # a dead process's run is a hole, not RUNNING
        parent, jobs, command = audit(experiment_id, args.sweep_id)
    except (StoreError, TrackingError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except MlflowException as e:
        print(f"error: the store at {args.tracking_uri}: {one_line(e)}", file=sys.stderr)
        return 2
    counts = {s: sum(j.status == s for j in jobs) for s in dict.fromkeys(j.status for j in jobs)}
    summary = ", ".join(f"{n} {s}" for s, n in counts.items())
    print(f"sweep {parent.data.tags.get('sweep_id')}: {len(jobs)} jobs: {summary}")
    for job in jobs:
        if job.is_hole:
            reason = f"  ({job.reason})" if job.reason else ""
            print(f"  {job.status:<8} {' '.join(job.overrides)}{reason}")
    if not jobs:
        print("empty: the sweep's grid has no jobs")
        return 1
    if command is None:
        print("complete: every job of the grid has a FINISHED run")
        return 0
    print("run only the holes (configs already FINISHED are skipped):")
    print(f"  {command}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
