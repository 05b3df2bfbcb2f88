"""Verdicts decided by intervals, the sentences that say them, the machine-readable tables
(verdicts.csv, summary.csv) and the reproducibility checklist computed from the runs.

Pairing: within one preset and setting (the runs' signature), two implementations' runs are
paired by seed; repeats of one seed are one replicate (their median). n = seeds both have.

Pair order: each unordered pair once, a = the first in IMPL_ORDER (numpy, tf_tape, keras,
jax, then the others alphabetically); every verdict is said of a against b.

Quantities and rules (95% intervals over seeds, never over epochs):
- epoch_time: estimate = geometric mean over seeds of b's steady epoch / a's (how many times
  faster a is; 1 = no difference), t-interval on the logs back-transformed. "faster" or
  "slower" only when the interval excludes 1.
- time_to_target: the same on time_to_target_s when every paired run reached the target. If
  any did not (censored), there is no interval: estimate = b's median / a's median with the
  censored runs as +inf (inf, 0 or NaN when neither side's median reached it), verdict
  "no significant difference". At 3 runs no paired test of censored times can reach p < 0.05
  (a sign test's smallest two-sided p is 0.25), so claiming more would be a guess.
- test_accuracy: estimate = mean over seeds of a's minus b's accuracy in points (0 = no
  difference), t-interval. "equivalent" when the whole interval lies within ±margin
  (analysis.equivalence_margin: 1.96 binomial s.e. of the difference of two accuracies on
  the 10,000 test images), else "more/less accurate" when it excludes 0.
- Host contention (time quantities only): seeds where either run was contended throughout
  (other processes busy during every epoch 2+, analysis.per_run's all_contended) are set aside
  while at least MIN_RUNS calm seeds remain (n counts the seeds used, the note how many were
  set aside); with fewer calm seeds there is no interval and no claim ("host contended in k
  of n seeds: no claim"). Accuracy does not depend on the host and keeps every seed.
- One paired run gives no interval (NaN bounds): verdict "no significant difference", the
  sentence says "1 run: no interval" and n = 1 in the CSV says why.
"""

from __future__ import annotations

import hashlib
import itertools
from pathlib import Path

import numpy as np
import pandas as pd

from bench.report.analysis import (
    MIN_RUNS,
    NO_DIFFERENCE,
    PUBLISHED,
    accuracy_verdict,
    censored_median,
    equivalence_margin,
    noise_floor,
    ratio_interval,
    speed_verdict,
    t_interval,
)

IMPL_ORDER = ("numpy", "tf_tape", "keras", "jax")
VERDICT_COLUMNS = ["preset", "a", "b", "quantity", "estimate", "ci_low", "ci_high", "n", "verdict"]
QUANTITIES = ("epoch_time", "time_to_target", "test_accuracy")
WORDS = {"epoch_time": "steady epoch", "time_to_target": "time to target"}


def impl_key(name: str) -> tuple[int, str]:
    """Canonical implementation order: IMPL_ORDER first, the others alphabetically."""
    return (IMPL_ORDER.index(name), "") if name in IMPL_ORDER else (len(IMPL_ORDER), name)


def pairs(implementations) -> list[tuple[str, str]]:
    """Each unordered pair once, a before b in the canonical order."""
    return list(itertools.combinations(sorted(set(implementations), key=impl_key), 2))


def paired_values(
    g: pd.DataFrame, column: str, a: str, b: str, calm: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """a's and b's values of `column` for each seed both ran (median of a seed's repeats).
    With `calm`, only seeds where neither run was contended throughout (other processes busy
    during every epoch 2+)."""
    both = g[g.implementation.isin([a, b])]
    per_seed = both.groupby(["seed", "implementation"])[column].median().unstack()
    ran = both.groupby(["seed", "implementation"]).size().unstack().notna()
    seeds = ran.index[ran.get(a, False) & ran.get(b, False)]
    if calm and "all_contended" in both:
        seeds = seeds.difference(both[both.all_contended.astype(bool)].seed.unique())
    return per_seed.loc[seeds, a].to_numpy(float), per_seed.loc[seeds, b].to_numpy(float)


def calm_time_comparison(g: pd.DataFrame, column: str, a: str, b: str, missing: str) -> dict:
    """time_comparison over the calm seeds when at least MIN_RUNS of them remain (or none was
    contended); otherwise no interval and no claim: a timing taken while another process held
    a core of this machine measures the host, not the implementation."""
    every = paired_values(g, column, a, b)
    calm = paired_values(g, column, a, b, calm=True)
    aside = len(every[0]) - len(calm[0])
    if aside == 0 or len(calm[0]) >= MIN_RUNS:
        cmp = time_comparison(*calm, a, b, missing=missing)
        if aside and not np.isnan(cmp["estimate"]):
            cmp["note"] = "; ".join(
                filter(None, [cmp["note"], f"{aside} contended seed(s) set aside"])
            )
        return {**cmp, "n": len(calm[0])}
    cmp = time_comparison(*every, a, b, missing=missing)
    if np.isnan(cmp["estimate"]):
        return {**cmp, "n": len(every[0])}
    note = f"host contended in {aside} of {len(every[0])} seeds: no claim"
    return {**cmp, "ci_low": np.nan, "ci_high": np.nan, "note": note, "n": len(every[0])}


def time_comparison(
    ta: np.ndarray, tb: np.ndarray, a: str, b: str, missing: str = "no validation set"
) -> dict:
    """b's time / a's time over paired runs (see the module docstring for censored runs).
    NaN is a time that cannot exist (`missing` says why), +inf one never reached."""
    measured = ~(np.isnan(ta) | np.isnan(tb))
    ta, tb = ta[measured], tb[measured]
    if len(ta) == 0:
        return dict(estimate=np.nan, ci_low=np.nan, ci_high=np.nan, note=missing)
    if np.isfinite(ta).all() and np.isfinite(tb).all():
        est, low, high = ratio_interval(tb / ta)
        note = "1 run: no interval" if len(ta) == 1 else ""
        return dict(estimate=est, ci_low=low, ci_high=high, note=note)
    (ma, ka, na), (mb, kb, nb) = censored_median(ta), censored_median(tb)
    with np.errstate(invalid="ignore"):
        est = float(np.float64(mb) / ma)
    reached = f"{a} {ka}/{na}, {b} {kb}/{nb} reached"
    note = f"{'no' if ka + kb == 0 else 'not every'} run reached it ({reached}): no interval"
    return dict(estimate=est, ci_low=np.nan, ci_high=np.nan, note=note)


def accuracy_comparison(acc_a: np.ndarray, acc_b: np.ndarray) -> dict:
    """a's minus b's test accuracy in points, paired by seed, with its equivalence margin."""
    est, low, high = t_interval(100 * (acc_a - acc_b))
    margin = equivalence_margin(float(np.nanmean(np.concatenate([acc_a, acc_b]))))
    note = "1 run: no interval" if len(acc_a) == 1 else ""
    return dict(estimate=est, ci_low=low, ci_high=high, margin=margin, note=note)


def verdicts(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per preset, pair and quantity: VERDICT_COLUMNS plus `margin` (accuracy's
    equivalence margin, points) and `note` (why there is no interval), which the sentences
    use. Pairs that share no seed are left out: there is nothing to pair."""
    records = []
    for (preset, _sig), g in rows.groupby(["preset", "signature"], sort=True):
        for a, b in pairs(g.implementation):
            acc_a, acc_b = paired_values(g, "test_accuracy", a, b)
            if len(acc_a) == 0:
                continue
            base = {"preset": preset, "a": a, "b": b, "margin": np.nan}
            for quantity, column, missing in (
                ("epoch_time", "steady_epoch_s", "no epoch times"),
                ("time_to_target", "time_to_target_s", "no validation set"),
            ):
                cmp = calm_time_comparison(g, column, a, b, missing)
                records.append({**base, "quantity": quantity, **cmp})
            cmp = accuracy_comparison(acc_a, acc_b)
            records.append({**base, "n": len(acc_a), "quantity": "test_accuracy", **cmp})
    table = pd.DataFrame(records, columns=VERDICT_COLUMNS + ["margin", "note"])
    table["verdict"] = [verdict_of(r) for r in table.itertuples()]
    return table


def verdict_of(row) -> str:
    """The verdict word, from the interval alone (NaN bounds: no interval, no difference)."""
    if row.quantity == "test_accuracy":
        return accuracy_verdict(row.ci_low, row.ci_high, row.margin)
    return speed_verdict(row.ci_low, row.ci_high)


def verdict_sentence(row) -> str:
    """The report's sentence for one verdicts row (a Series or an itertuples row), e.g.
    "numpy 1.70x faster than keras [1.40, 2.10] (steady epoch, 3 seeds)". A verdict against
    a is said the other way round: "keras 1.70x faster than numpy", never "1.7x slower"."""
    if row.quantity == "test_accuracy":
        return accuracy_sentence(row)
    return time_sentence(row)


def time_sentence(row) -> str:
    a, b, est, low, high = row.a, row.b, row.estimate, row.ci_low, row.ci_high
    what, note = WORDS[row.quantity], _note(row)
    seeds = f"{what}, {row.n} seed{'s' if row.n != 1 else ''}"
    if "set aside" in note:
        seeds += f", {note.split('; ')[-1]}"
        note = note.rsplit("; ", 1)[0] if "; " in note else ""
    if row.verdict == "faster":
        return f"{a} {est:.2f}x faster than {b} [{low:.2f}, {high:.2f}] ({seeds})"
    if row.verdict == "slower":
        return f"{b} {1 / est:.2f}x faster than {a} [{1 / high:.2f}, {1 / low:.2f}] ({seeds})"
    if np.isnan(est) and note in ("no validation set", "no epoch times"):
        return f"{a} vs {b}, {what}: {note}"
    if np.isnan(low):
        ratio = f"{est:.2f}x; " if not np.isnan(est) else ""
        return f"{a} vs {b}: {NO_DIFFERENCE}, {note} ({ratio}{seeds})"
    return f"{a} vs {b}: {NO_DIFFERENCE} ({est:.2f}x [{low:.2f}, {high:.2f}]; {seeds})"


def accuracy_sentence(row) -> str:
    a, b, est, low, high = row.a, row.b, row.estimate, row.ci_low, row.ci_high
    seeds = f"{row.n} seed{'s' if row.n != 1 else ''}"
    if row.verdict == "equivalent":
        margin = getattr(row, "margin", np.nan)
        within = f"±{margin:.2f} points" if np.isfinite(margin) else "the noise floor"
        return (
            f"{a} vs {b}: test accuracy equivalent within {within} "
            f"({est:+.2f} [{low:+.2f}, {high:+.2f}] points, {seeds})"
        )
    if row.verdict == "more accurate":
        return f"{a} more accurate than {b} by {est:.2f} points [{low:.2f}, {high:.2f}] ({seeds})"
    if row.verdict == "less accurate":
        return (
            f"{b} more accurate than {a} by {-est:.2f} points [{-high:.2f}, {-low:.2f}] ({seeds})"
        )
    if np.isnan(low):
        return f"{a} vs {b}, test accuracy: {NO_DIFFERENCE}, {_note(row)} ({est:+.2f} points)"
    return (
        f"{a} vs {b}, test accuracy: {NO_DIFFERENCE} "
        f"({est:+.2f} [{low:+.2f}, {high:+.2f}] points, {seeds})"
    )


def _note(row) -> str:
    note = getattr(row, "note", "")
    return note if isinstance(note, str) and note else "no interval"


def summary_table(rows: pd.DataFrame) -> pd.DataFrame:
    """summary.csv: one row per preset, implementation and device (and setting: `setting` is a
    short hash of the signature, so two settings of one preset never pool). Accuracy: mean and
    t-interval; steady epoch: mean, and geometric mean with its log t-interval (the scale the
    speed ratios use); time to target: median over runs with censored runs as +inf (inf: half
    or more never reached it; NaN: no validation set) and how many reached it."""
    records = []
    groups = rows.groupby(["preset", "implementation", "device", "signature"], sort=False)
    for (preset, impl, device, sig), g in groups:
        acc, acc_low, acc_high = t_interval(g.test_accuracy)
        geo, geo_low, geo_high = ratio_interval(g.steady_epoch_s)
        target, reached, measured = censored_median(g.time_to_target_s)
        records.append(
            {
                "preset": preset,
                "implementation": impl,
                "device": device,
                "runs": len(g),
                "test_accuracy_mean": acc,
                "test_accuracy_ci_low": acc_low,
                "test_accuracy_ci_high": acc_high,
                "test_accuracy_noise_floor": noise_floor(acc) if np.isfinite(acc) else np.nan,
                "steady_epoch_s_mean": g.steady_epoch_s.mean(),
                "steady_epoch_s_geomean": geo,
                "steady_epoch_s_ci_low": geo_low,
                "steady_epoch_s_ci_high": geo_high,
                "first_epoch_s_median": g.first_epoch_s.median(),
                "samples_per_s_mean": g.samples_per_s.mean(),
                "time_to_target_s_median": target if measured else np.nan,
                "time_to_target_reached": reached if measured else np.nan,
                "train_time_s_mean": g.train_time_s.mean(),
                "total_time_s_mean": g.total_time_s.mean(),
                "peak_rss_mb_max": g.peak_rss_mb.max(),  # the process's, frameworks loaded earlier too
                "job_memory_mb_max": g.get(
                    "job_memory_mb", pd.Series(dtype=float)
                ).max(),  # what the job itself added
                "setup_s_median": g.get("setup_s", pd.Series(dtype=float)).median(),
                "overhead_s_median": g.get(  # outside epochs, framework import, model logging
                    "overhead_s", pd.Series(dtype=float)
                ).median(),
                "train_accuracy_mean": g.final_train_accuracy.mean(),
                "setting": hashlib.sha1(str(sig).encode()).hexdigest()[:8],
            }
        )
    table = pd.DataFrame(records)
    if table.empty:
        return table
    order = table.implementation.map(impl_key)
    return table.assign(_o=order).sort_values(["preset", "_o"]).drop(columns="_o")


def write_verdict_tables(rows: pd.DataFrame, out_dir: Path) -> tuple[Path, Path]:
    """Write verdicts.csv (exactly VERDICT_COLUMNS) and summary.csv into out_dir; their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    v_path, s_path = out_dir / "verdicts.csv", out_dir / "summary.csv"
    verdicts(rows)[VERDICT_COLUMNS].to_csv(v_path, index=False)
    summary_table(rows).to_csv(s_path, index=False)
    return v_path, s_path


# --- reproducibility checklist ------------------------------------------------------------

TUNING_MARKERS = ("optuna", "experiment=tune")


def checklist(runs: pd.DataFrame, rows: pd.DataFrame) -> list[tuple[str, bool, str]]:
    """(item, ok, detail) for each checklist item, computed from the selected runs: `runs` is
    the MLflow frame (params.*, tags.*, metrics.*, status), `rows` the finished runs'
    analysis.per_run table (the rows the report's statistics use)."""
    groups = rows.groupby(["preset", "implementation", "device", "signature"])
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
    bad = runs[runs.status != "FINISHED"]
    names = ", ".join(f"{r.run_name} ({r.status})" for r in bad.itertuples())
    return "Every selected run finished", bad.empty, f"not finished: {names}" if names else ""


def serial_item(runs: pd.DataFrame) -> tuple[str, bool, str]:
    """Timings taken beside other jobs of a parallel sweep are not comparable."""
    parallel = _present(runs, "tags.parallel_jobs")
    detail = f"{int(parallel.sum())} runs timed beside other jobs" if parallel.any() else ""
    return "Timings from a serial sweep", not parallel.any(), detail


def code_item(runs: pd.DataFrame) -> tuple[str, bool, str]:
    commits = runs.get("tags.git_commit", pd.Series(dtype=str)).dropna().unique()
    dirty = runs.get("tags.git_dirty", pd.Series("unknown", index=runs.index)).fillna("unknown")
    not_clean = runs[dirty != "false"]
    ok = len(runs) > 0 and _present(runs, "tags.git_commit").all() and not_clean.empty
    detail = f"{len(commits)} commit(s)"
    if not not_clean.empty:
        detail += f"; tree not clean for {len(not_clean)} runs: " + ", ".join(not_clean.run_name)
    return "Code version recorded, tree clean", ok, detail
