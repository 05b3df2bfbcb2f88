"""The reproducibility checklist and the fairness warnings, each computed from the selected
runs (never asserted)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench.report.numbers.stats import MIN_RUNS, ratio_interval, t_interval
from bench.report.numbers.tables import PUBLISHED

TUNING_MARKERS = ("optuna", "experiment=tune")
ENVIRONMENT = ("tags.dataset_digest", "tags.host", "tags.device_name", "tags.cpu_model",
               "tags.blas", "tags.threads", "tags.git_commit", "tags.git_dirty")  # fmt: skip
SHORTENED = ("tags.dataset_digest", "tags.git_commit")


def fairness_warnings(runs: pd.DataFrame) -> list[tuple[str, str]]:
    """(preset, warning): settings (other than implementation and seed) that differ between
    compared runs of a preset."""
    cols = [
        c
        for c in runs.columns
        if c.startswith("params.")
        and not c.startswith(("params.implementation.", "params.seed", "params.tracking."))
    ]
    warnings = []
    for preset, g in runs.groupby("tags.preset"):
        for col in cols:
            values = g[col].dropna().astype(str).unique()
            if len(values) > 1:
                differs = f"{col.removeprefix('params.')} differs: {', '.join(sorted(values))}"
                warnings.append((preset, differs))
        for tag in ("tags.device", "tags.lockstep"):
            if tag in g and g[tag].nunique() > 1:
                warnings.append((preset, f"{tag.removeprefix('tags.')} differs"))
        for tag in [*ENVIRONMENT, *sorted(c for c in g.columns if c.startswith("tags.version."))]:
            values = g[tag].dropna().astype(str).unique() if tag in g else []
            if len(values) > 1:
                short = sorted(v[:12] if tag in SHORTENED else v for v in values)
                differs = f"{tag.removeprefix('tags.')} differs: {', '.join(short)}"
                warnings.append((preset, f"{differs} (compared apart, never pooled)"))
        if "tags.parallel_jobs" in g and g["tags.parallel_jobs"].notna().any():
            n = int(g["tags.parallel_jobs"].notna().sum())
            width = ", ".join(sorted(g["tags.parallel_jobs"].dropna().unique()))
            beside = (
                f"timings of {n} runs were taken beside other jobs (parallel_jobs={width}); "
                "use a serial sweep for published timings"
            )
            warnings.append((preset, beside))
    return warnings


def checklist(runs: pd.DataFrame, rows: pd.DataFrame) -> list[tuple[str, bool, str]]:
    """(item, ok, detail) for each checklist item, computed from the selected runs: `runs` is
    the MLflow frame (params.*, tags.*, metrics.*, status), `rows` the finished runs'
    analysis.per_run table (the rows the report's statistics use)."""
    groups = rows.groupby(["preset", "implementation", "device", "comparison"])
    sizes = groups.size()
    few = [f"{p}/{i}: {n}" for (p, i, _d, _s), n in sizes.items() if n < MIN_RUNS]
    no_ci = [f"{p}/{i}" for (p, i, _d, _s), g in groups if not _has_intervals(g)]
    return [
        _all_present(
            runs, "Compute described (CPU/GPU, threads)", "tags.device_name", "tags.threads"
        ),
        (
            f"Runs per row >= {MIN_RUNS}",
            not sizes.empty and not few,
            "; ".join(few) or _range("runs per row", sizes),
        ),
        _all_present(runs, "Seeds recorded", "params.seed"),
        _all_present(
            runs, "Hyperparameters recorded", "params.optimizer.lr", "params.model.hidden"
        ),
        tuning_item(runs),
        _all_present(
            runs,
            "Data splits stated (val_size, split_seed)",
            "params.dataset.val_size",
            "params.dataset.split_seed",
        ),
        (
            "95% CI for every row (accuracy and epoch time)",
            not sizes.empty and not no_ci,
            f"no interval for {', '.join(no_ci)}" if no_ci else f"{len(sizes)} rows",
        ),
        finished_item(runs),
        serial_item(runs),
        _all_present(runs, "Runtime reported", "metrics.train_time_s"),
        _all_present(runs, "Exact command per run", "tags.hydra_overrides"),
        _all_present(runs, "Data digest recorded", "tags.dataset_digest"),
        code_item(runs),
    ]


def _present(runs: pd.DataFrame, col: str) -> pd.Series:
    return runs[col].notna() if col in runs else pd.Series(False, index=runs.index)


def _all_present(runs: pd.DataFrame, item: str, *cols: str) -> tuple[str, bool, str]:
    absent = {c: int((~_present(runs, c)).sum()) for c in cols}
    missing = [f"{c} in {k} runs" for c, k in absent.items() if k]
    ok = len(runs) > 0 and not missing
    return item, ok, ("missing " + "; ".join(missing)) if missing else f"all {len(runs)} runs"


def _range(what: str, sizes: pd.Series) -> str:
    return f"{what}: {sizes.min()}-{sizes.max()}" if not sizes.empty else "no finished runs"


def _has_intervals(g: pd.DataFrame) -> bool:
    acc = t_interval(g.test_accuracy)[1]
    speed = ratio_interval(g.steady_epoch_s)[1]
    return bool(np.isfinite(acc) and np.isfinite(speed))


def is_tuning(runs: pd.DataFrame) -> pd.Series:
    """Runs of a tuning sweep: the `tune` preset, or an Optuna sweeper in their overrides."""
    preset = runs.get("tags.preset", pd.Series("", index=runs.index)).fillna("")
    overrides = runs.get("tags.hydra_overrides", pd.Series("", index=runs.index)).fillna("")
    marked = overrides.astype(str).str.contains("|".join(TUNING_MARKERS), regex=True)
    return (preset == "tune") | marked


def tuning_item(runs: pd.DataFrame) -> tuple[str, bool, str]:
    """What the hyperparameters were chosen on. A tuning sweep maximizes final_val_accuracy
    (the validation split), so it is "tuned on validation" when every tuning run held one
    out; without tuning runs the selection only says the settings came from its presets."""
    item = "Hyperparameters not chosen on the test set"
    tuned = runs[is_tuning(runs)]
    if tuned.empty:
        presets = sorted(runs.get("tags.preset", pd.Series(dtype=str)).dropna().unique())
        origin = [
            f"{p}: {'published tutorial settings' if p in PUBLISHED else 'config values'}"
            for p in presets
        ]
        return item, True, "no tuning run in this selection; " + "; ".join(origin)
    val = pd.to_numeric(tuned.get("params.dataset.val_size"), errors="coerce")
    objective = _present(tuned, "metrics.final_val_accuracy")
    ok = bool((val > 0).all() and objective.all())
    detail = (
        f"tuned on validation (final_val_accuracy) in {len(tuned)} tuning runs"
        if ok
        else f"{int((~objective).sum())} of {len(tuned)} tuning runs have no validation "
        "objective (val_size=0 or failed): what they were chosen on is unknown"
    )
    return item, ok, detail


def finished_item(runs: pd.DataFrame) -> tuple[str, bool, str]:
    """Every selected run FINISHED, or which did not."""
    bad = runs[runs.status != "FINISHED"]
    names = ", ".join(f"{r.run_name} ({r.status})" for r in bad.itertuples())
    return "Every selected run finished", bad.empty, f"not finished: {names}" if names else ""


def serial_item(runs: pd.DataFrame) -> tuple[str, bool, str]:
    """Timings taken beside other jobs of a parallel sweep are not comparable."""
    parallel = _present(runs, "tags.parallel_jobs")
    detail = f"{int(parallel.sum())} runs timed beside other jobs" if parallel.any() else ""
    return "Timings from a serial sweep", not parallel.any(), detail


def code_item(runs: pd.DataFrame) -> tuple[str, bool, str]:
    """Every run's commit is recorded, it is one commit, and its tree was clean: runs of two
    commits are compared apart, and a report over them is not one version's."""
    commits = runs.get("tags.git_commit", pd.Series(dtype=str)).dropna().value_counts()
    dirty = runs.get("tags.git_dirty", pd.Series("unknown", index=runs.index)).fillna("unknown")
    not_clean = runs[dirty != "false"]
    recorded = len(runs) > 0 and _present(runs, "tags.git_commit").all()
    ok = recorded and not_clean.empty and len(commits) == 1
    detail = ", ".join(f"{c[:12]} ({n} runs)" for c, n in commits.items()) or "no commit recorded"
    if len(commits) > 1:
        detail = f"{len(commits)} commits, compared apart: {detail}"
    if not not_clean.empty:
        detail += f"; tree not clean for {len(not_clean)} runs: " + ", ".join(not_clean.run_name)
    return "One commit, recorded, tree clean", ok, detail
