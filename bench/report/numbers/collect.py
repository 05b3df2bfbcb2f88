"""Read a selection of runs (a sweep, a filter, or every run) and their per-epoch histories
from MLflow into pandas."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import pandas as pd
from mlflow.exceptions import MlflowException

from bench.tracking import store

HISTORY_KEYS = (
    "train_loss",
    "val_accuracy",
    "epoch_time_s",
    "host_other_cores",  # other processes' CPU during each epoch (runs since they were logged)
    "host_steal_cores",
)
SETTING_EXCLUDE = ("params.implementation.", "params.seed", "params.tracking.")


class ReportError(Exception):
    """Nothing to report, or a selection that matches nothing; one line."""


@dataclass
class Selection:
    runs: pd.DataFrame
    label: str  # what the report says it covers
    name: str  # the report's folder under --out: the sweep id, else one derived from the label
    sweep_id: str | None = None  # the sweep it reports, if it reports one


def select(
    uri: str,
    experiment: str,
    sweep_id: str | None = None,
    filter_string: str | None = None,
    all_runs: bool = False,
) -> Selection:
    """Job runs (not sweep parents, any status) of one selection, its description and its
    folder name: the sweep id, `filter-<hash>` for a filter (the filter text never reaches a
    path), `all` for every run. Default: the latest sweep. The store is opened read-only and
    checked like the job checks it; a selection without a FINISHED run is refused."""
    try:
        store.check_sweep_id(sweep_id)
        experiment_id = store.open_experiment(uri, experiment)
        return _select(experiment_id, experiment, sweep_id, filter_string, all_runs)
    except store.StoreError as e:
        raise ReportError(str(e)) from None
    except MlflowException as e:
        raise ReportError(f"the store at {uri}: {store.one_line(e)}") from None


def _select(experiment_id, experiment, sweep_id, filter_string, all_runs) -> Selection:
    try:
        runs = store.runs_frame(experiment_id, filter_string)
    except MlflowException as e:
        if not filter_string:
            raise
        raise ReportError(
            f"--filter {filter_string!r} is not an MLflow filter: {store.one_line(e)}"
        ) from None
    if runs.empty:
        raise ReportError(
            f"experiment {experiment!r} has no runs"
            + (f" matching {filter_string!r}" if filter_string else "")
        )
    is_parent = runs.get("tags.sweep_parent", pd.Series(index=runs.index)).eq("true")
    jobs, parents = runs[~is_parent], runs[is_parent]
    latest = sweep_id is None and filter_string is None and not all_runs
    if latest and "tags.sweep_id" in jobs:
        if parents.empty:
            raise ReportError("no sweep found; pass --sweep-id or --filter")
        sweep_id = parents.sort_values("start_time").iloc[-1]["tags.sweep_id"]
    note = ""
    if sweep_id is not None:
        jobs, note = sweep_jobs(jobs, experiment_id, sweep_id)
    if jobs.empty:
        raise ReportError(f"no runs match sweep {sweep_id!r}")
    jobs = jobs.assign(run_name=jobs["tags.mlflow.runName"])
    if sweep_id:
        label, name = f"sweep {sweep_id}{note}", sweep_id
    elif filter_string:
        digest = hashlib.sha256(filter_string.encode()).hexdigest()[:8]
        label, name = f"filter {filter_string!r}", f"filter-{digest}"
    else:
        label, name = f"all runs of {experiment}", "all"
    if not (jobs["status"] == "FINISHED").any():
        counts = jobs["status"].value_counts()
        summary = ", ".join(f"{n} {s}" for s, n in counts.items())
        raise ReportError(f"{label}: no FINISHED run to report ({summary})")
    return Selection(jobs.reset_index(drop=True), label, name, sweep_id or None)


def sweep_jobs(jobs: pd.DataFrame, experiment_id: str, sweep_id: str) -> tuple[pd.DataFrame, str]:
    """A sweep's runs. Where the sweep recorded its grid, the run standing for each grid job
    (so a sweep resumed by a second command reports whole), and a note on what is missing."""
    own = jobs[jobs.get("tags.sweep_id", pd.Series(index=jobs.index)) == sweep_id]
    try:
        parent = store.sweep_parent(experiment_id, sweep_id)
    except store.StoreError:
        return own, ""
    grid = store.load_grid(parent)
    if grid is None:
        return own, ""
    grid_jobs = store.grid_status(experiment_id, parent, grid)
    chosen = jobs[jobs.run_id.isin([j.run_id for j in grid_jobs if j.run_id])]
    reused = int((chosen.get("tags.sweep_id") != sweep_id).sum())
    missing = sum(j.status == store.MISSING for j in grid_jobs)
    parts = [f"{reused} runs from earlier sweeps"] if reused else []
    parts += [f"{missing} of {len(grid_jobs)} grid jobs missing"] if missing else []
    return chosen, f" ({'; '.join(parts)})" if parts else ""


def histories(runs: pd.DataFrame) -> pd.DataFrame:
    """Long table: run_id, key, step, value for the per-epoch metrics the report reads."""
    return store.histories(runs["run_id"], HISTORY_KEYS)


def setting_signature(runs: pd.DataFrame) -> pd.Series:
    """Every param except implementation, seed and tracking: runs compared must share it."""
    cols = sorted(
        c for c in runs.columns if c.startswith("params.") and not c.startswith(SETTING_EXCLUDE)
    )
    return runs[cols].apply(lambda row: "|".join(map(str, row)), axis=1)
