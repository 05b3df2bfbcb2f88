"""Read a selection of runs (a sweep, a filter, or every run) and their per-epoch histories
from MLflow into pandas."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import pandas as pd
from mlflow.exceptions import MlflowException

from bench.job.redact import redact
from bench.tracking import store

HISTORY_KEYS = (
    "train_loss",
    "val_accuracy",
    "epoch_time_s",
    "host_other_cores",  # other processes' CPU during each epoch (runs since they were logged)
    "host_steal_cores",
)
SETTING_EXCLUDE = ("params.implementation.", "params.seed", "params.tracking.")
# where the data is read from and the divergence threshold change nothing a run computes
NOT_COMPARED = ("params.dataset.data_dir", "params.dataset.download", "params.train.diverge_factor")
COMPARED_TAGS = (  # recorded by every run, so equal within a comparison
    "tags.dataset_digest",
    "tags.host",
    "tags.device_name",
    "tags.cpu_model",
    "tags.blas",
    "tags.threads",
    "tags.device",
    "tags.git_commit",
    "tags.git_dirty",
    "tags.version.python",
    "tags.version.numpy",
    "tags.version.mlflow",
    "tags.version.hydra",
)


class ReportError(Exception):
    """Nothing to report, or a selection that matches nothing; one line."""


@dataclass
class Selection:
    runs: pd.DataFrame
    label: str  # what the report says it covers
    name: str  # the report's folder under --out: the sweep id, else one derived from the label
    sweep_id: str | None = None  # the sweep it reports, if it reports one
    notes: list[str] = field(default_factory=list)  # its grid jobs missing or run by other sweeps
    # several stores (`--tracking-uri A --tracking-uri B`): each run's `store` column names one
    # of these (label -> URI), and the histories come read from each store already
    stores: dict[str, str] = field(default_factory=dict)
    hist: pd.DataFrame | None = None

    def client(self, store_label: str | None = None):
        """The MLflow client of a run's store (the one store that is open, for one store)."""
        from mlflow import MlflowClient

        uri = self.stores.get(store_label or "")
        return MlflowClient(tracking_uri=uri) if uri else MlflowClient()


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


def select_stores(uris: list[str], experiment: str, sweep_id: str | None = None,
                  filter_string: str | None = None, all_runs: bool = False) -> Selection:  # fmt: skip
    """One selection over several stores (another host's, a GPU machine's): in each store the
    same selection (by default its latest sweep), the runs side by side with the store they
    came from, and their histories read from it. One store is `select` itself."""
    if len(uris) == 1:
        return select(uris[0], experiment, sweep_id, filter_string, all_runs)
    if len(set(uris)) < len(uris):
        raise ReportError("a store is given twice: give each --tracking-uri once")
    parts, stores, hists = [], {}, []
    for i, uri in enumerate(uris, start=1):
        label = f"store {i}"
        part = select(uri, experiment, sweep_id, filter_string, all_runs)
        parts.append((label, uri, part))
        stores[label] = uri
        hists.append(histories(part.runs))  # while this store is the open one
    runs = pd.concat([p.runs.assign(store=label) for label, _, p in parts], ignore_index=True)
    label = "; ".join(f"{p.label} in {label} ({redact(uri)})" for label, uri, p in parts)
    digest = hashlib.sha256("|".join(p.name for _, _, p in parts).encode()).hexdigest()[:8]
    notes = [f"{label}: {note}" for label, _, p in parts for note in p.notes]
    return Selection(runs, label, f"stores-{digest}", None, notes, stores, pd.concat(hists))


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
    notes: list[str] = []
    if sweep_id is not None:
        jobs, notes = sweep_jobs(jobs, experiment_id, sweep_id)
    if jobs.empty:
        raise ReportError(f"no runs match sweep {sweep_id!r}")
    jobs = jobs.assign(run_name=jobs["tags.mlflow.runName"])
    digest = hashlib.sha256((filter_string or "").encode()).hexdigest()[:8]
    if sweep_id:
        label, name = f"sweep {sweep_id}" + (f" ({'; '.join(notes)})" if notes else ""), sweep_id
        if filter_string:  # a part of the sweep: its own folder, never the sweep's summary
            label, name = f"{label}, filtered by {filter_string!r}", f"{name}-filter-{digest}"
    elif filter_string:
        label, name = f"filter {filter_string!r}", f"filter-{digest}"
    else:
        label, name = f"all runs of {experiment}", "all"
    if not (jobs["status"] == "FINISHED").any():
        counts = jobs["status"].value_counts()
        summary = ", ".join(f"{n} {s}" for s, n in counts.items())
        raise ReportError(f"{label}: no FINISHED run to report ({summary})")
    whole_sweep = (sweep_id or None) if not filter_string else None  # what refreshes a parent
    return Selection(jobs.reset_index(drop=True), label, name, whole_sweep, notes)


def sweep_jobs(
    jobs: pd.DataFrame, experiment_id: str, sweep_id: str
) -> tuple[pd.DataFrame, list[str]]:
    """A sweep's runs. Where the sweep recorded its grid, the run standing for each grid job
    (so a sweep resumed by a second command reports whole), and a note on what is missing."""
    own = jobs[jobs.get("tags.sweep_id", pd.Series(index=jobs.index)) == sweep_id]
    try:
        parent = store.sweep_parent(experiment_id, sweep_id)
    except store.StoreError:
        return own, []
    grid = store.load_grid(parent)
    stop = parent.data.tags.get("sweep_stop")  # a sequential sweep's end: its looks and why
    sequential = [f"sequential rule: {stop}"] if stop else []
    if grid is None:
        return own, sequential
    grid_jobs = store.grid_status(experiment_id, parent, grid)
    chosen = jobs[jobs.run_id.isin([j.run_id for j in grid_jobs if j.run_id])]
    missing = sum(j.status == store.MISSING for j in grid_jobs)
    parts = other_sweeps(chosen, parent, sweep_id)
    parts += [f"{missing} of {len(grid_jobs)} grid jobs missing"] if missing else []
    return chosen, parts + sequential


def other_sweeps(chosen: pd.DataFrame, parent, sweep_id: str, most: int = 6) -> list[str]:
    """Which of a sweep's grid jobs stand on runs of another sweep, by name and by that
    sweep, and whether it ran before or after this one."""
    owner = chosen.get("tags.sweep_id", pd.Series(index=chosen.index)).fillna("no sweep")
    started = pd.to_datetime(parent.info.start_time, unit="ms", utc=True)
    parts = []
    for other, g in chosen[owner != sweep_id].groupby(owner[owner != sweep_id]):
        when = "later" if (pd.to_datetime(g.start_time, utc=True) > started).all() else "earlier"
        names = sorted(g["tags.mlflow.runName"].astype(str))
        shown = ", ".join(names[:most]) + (
            f" and {len(names) - most} more" if len(names) > most else ""
        )
        parts.append(f"{len(g)} runs from {when} sweep {other}: {shown}")
    return parts


def histories(runs: pd.DataFrame) -> pd.DataFrame:
    """Long table: run_id, key, step, value for the per-epoch metrics the report reads."""
    return store.histories(runs["run_id"], HISTORY_KEYS)


def comparison_keys(runs: pd.DataFrame) -> pd.Series:
    """Per run, what every run it is compared with must share: every config key but the
    compared axis (implementation) and the seed, the data (digest), the host, its CPU or GPU,
    the device, the commit and dirty flag, and the versions every run records. An
    implementation whose runs within one comparison differ in their options or framework
    versions keeps its most common kind there; the others get a comparison of their own, so
    runs that differ are never paired or pooled."""
    params = sorted(c for c in runs.columns if c.startswith("params.") and c not in NOT_COMPARED
                    and not c.startswith(SETTING_EXCLUDE))  # fmt: skip
    shared = [c for c in COMPARED_TAGS if c in runs]
    key = joined(runs, params + shared)
    impl = runs.get("tags.implementation", pd.Series("", index=runs.index)).astype(str)
    kind = joined(runs, arm_columns(runs))
    for _, g in runs.groupby([key, impl]):
        kinds = kind[g.index]
        if kinds.nunique() > 1:
            main = kinds.value_counts().index[0]
            odd = kinds.index[kinds != main]
            key[odd] = key[odd] + "|" + impl[odd] + "|" + kinds[odd]
    return key


def what_differs(runs: pd.DataFrame, key: pd.Series) -> dict[str, str]:
    """Per comparison key among these runs (one preset's), what sets it apart from the others:
    "optimizer.lr=0.01", "host=other-host". Empty where the runs hold one comparison."""
    if key.nunique() < 2:
        return {}
    params = [c for c in runs.columns if c.startswith("params.") and c not in NOT_COMPARED
              and not c.startswith(SETTING_EXCLUDE)]  # fmt: skip
    columns = [*params, *(c for c in COMPARED_TAGS if c in runs), *arm_columns(runs)]
    groups = dict(list(runs.groupby(key)))
    values_of = lambda g, c: tuple(sorted(g[c].dropna().astype(str).unique()))  # noqa: E731
    # what differs between comparisons, not between the implementations within each one
    varying = [c for c in columns if len({values_of(g, c) for g in groups.values()}) > 1]
    out = {}
    for k, g in groups.items():
        facets = []
        for c in varying:
            values = list(values_of(g, c))
            name = c.removeprefix("params.").removeprefix("tags.")
            short = (
                [v[:12] for v in values]
                if c in ("tags.git_commit", "tags.dataset_digest")
                else values
            )
            facets.append(f"{name}={'/'.join(short) or 'none'}")
        out[k] = ", ".join(facets)
    return out


def joined(runs: pd.DataFrame, columns: list[str]) -> pd.Series:
    """Per run, its values of these columns as one string."""
    if not columns:
        return pd.Series("", index=runs.index)
    return runs[columns].apply(lambda row: "|".join(map(str, row)), axis=1)


def arm_columns(runs: pd.DataFrame) -> list[str]:
    """What one implementation's runs of a comparison must also share: its options and the
    versions of the packages it runs on (other implementations record other ones)."""
    return sorted(
        c
        for c in runs.columns
        if c.startswith("params.implementation.options.")
        or (c.startswith("tags.version.") and c not in COMPARED_TAGS)
    )
