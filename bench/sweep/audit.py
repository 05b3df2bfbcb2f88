"""The audit of a sweep: the grid it was asked to run against what the store holds (FINISHED,
FAILED, KILLED, RUNNING or missing), and the one command that runs only the holes. The report
uses the same lookup (bench.tracking.store.grid_status), so a sweep resumed by a second command
still reports as one sweep."""

from __future__ import annotations

import shlex

from mlflow.entities import Run

from bench.tracking.store import GridJob, StoreError, grid_status, load_grid, sweep_parent


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
    """The sweep's parent run, each grid job with the run standing for it, and the command
    that fills the holes (None: none)."""
    parent = sweep_parent(experiment_id, sweep_id)
    grid = load_grid(parent)
    if grid is None:
        raise StoreError(
            f"sweep {parent.data.tags.get('sweep_id')} has no recorded grid "
            "(not a basic-sweeper grid, or recorded before grids were)"
        )
    jobs = grid_status(experiment_id, parent, grid)
    return parent, jobs, holes_command(jobs, grid.get("hydra_overrides", []))
