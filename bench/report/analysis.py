"""The numbers a report shows: summary rows with confidence intervals, paired speed ratios,
time to accuracy, fairness warnings, reproduction verdicts, prediction agreement.

The unit of replication is the run (one seed): the epochs of one run share the host's state
(other load, clock, caches), so intervals are always over runs, never over epochs."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
from scipy import stats

from bench.host import CONTENDED

THRESHOLDS = (0.95, 0.96, 0.97, 0.975, 0.98)
TEST_SIZE = 10000
MIN_RUNS = 3
# published test accuracy (low, high) of the tutorial presets; tolerance in accuracy points
PUBLISHED = {
    "simple_network": (0.95, 0.95),
    "tape_sigmoid": (0.9368, 0.9368),
    "keras_dense512": (0.978, 0.9804),
    "relu_mcp": (0.977, 0.977),
}
TOLERANCE = 0.005
LEVEL = 0.95  # every interval the report shows
Z = stats.norm.ppf(0.5 + LEVEL / 2)  # 1.96: the binomial noise floor's multiplier
NO_DIFFERENCE = "no significant difference"


def t_interval(values) -> tuple[float, float, float]:
    """Mean and its 95% Student-t confidence interval (nan bounds for fewer than 2 values)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return np.nan, np.nan, np.nan
    mean = v.mean()
    if len(v) < 2:
        return mean, np.nan, np.nan
    half = stats.t.ppf(0.5 + LEVEL / 2, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v))
    return mean, mean - half, mean + half


def ratio_interval(ratios) -> tuple[float, float, float]:
    """Geometric mean of positive ratios and its 95% interval: a t-interval on their logs,
    back-transformed. Timing noise is multiplicative, so its logs are close to normal and
    the t-interval keeps its coverage even at 3 runs (a bootstrap of 3 values does not)."""
    r = np.asarray(ratios, dtype=float)
    r = r[np.isfinite(r) & (r > 0)]
    return tuple(float(np.exp(x)) for x in t_interval(np.log(r)))


def censored_median(values) -> tuple[float, int, int]:
    """Median over runs of a time that some runs never reached (+inf: censored, kept, not
    dropped), how many reached it and how many could (NaN: not measurable, e.g. no validation
    set). The median is inf once half or more runs never reached it."""
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    if len(v) == 0:
        return np.nan, 0, 0
    return float(np.median(v)), int(np.isfinite(v).sum()), len(v)


def speed_verdict(low: float, high: float) -> str:
    """How a is against b, from the interval of b's time / a's time: a difference only when
    the interval excludes 1. No interval (one run) is no evidence, hence no difference."""
    if low > 1:
        return "faster"
    if high < 1:
        return "slower"
    return NO_DIFFERENCE


def equivalence_margin(accuracy: float) -> float:
    """Equivalence margin, in accuracy points, for the difference of two accuracies near
    `accuracy`: 1.96 binomial standard errors of a difference of two measurements on the
    10,000 test images. Differences inside it are below what the test set can resolve."""
    return float(100 * Z * np.sqrt(2 * accuracy * (1 - accuracy) / TEST_SIZE))


def accuracy_verdict(low: float, high: float, margin: float) -> str:
    """How a is against b, from the interval of a's minus b's accuracy (points). An interval
    inside ±margin is "equivalent" even if it excludes 0: such a difference is real but
    smaller than the test set's own noise floor, so calling one "more accurate" would mislead."""
    if -margin <= low and high <= margin:
        return "equivalent"
    if low > 0:
        return "more accurate"
    if high < 0:
        return "less accurate"
    return NO_DIFFERENCE


def mcnemar_p(correct_a: np.ndarray, correct_b: np.ndarray) -> float:
    """McNemar's exact p on the images exactly one of the two models gets right (a two-sided
    binomial test of those discordant counts at 1/2); 1 when there are none."""
    only_a = int((correct_a & ~correct_b).sum())
    n = only_a + int((~correct_a & correct_b).sum())
    return float(stats.binomtest(only_a, n, 0.5).pvalue) if n else 1.0


def per_run(runs: pd.DataFrame, hist: pd.DataFrame) -> pd.DataFrame:
    """One row per run with the derived timings: first epoch, steady-state median, thresholds."""
    out = runs[
        [
            "run_id",
            "run_name",
            "status",
            "tags.implementation",
            "tags.device",
            "tags.preset",
            "params.seed",
            "signature",
        ]
    ].copy()
    out.columns = [
        "run_id",
        "run_name",
        "status",
        "implementation",
        "device",
        "preset",
        "seed",
        "signature",
    ]
    for m in (
        "test_accuracy",
        "final_train_accuracy",
        "samples_per_s",
        "total_time_s",
        "peak_rss_mb",
        "job_memory_mb",
        "setup_s",
        "overhead_s",
        "train_time_s",
        "time_to_target_s",
    ):
        out[m] = runs.get(f"metrics.{m}", np.nan)
    times = hist[hist.key == "epoch_time_s"]
    first = times[times.step == 1].set_index("run_id")["value"]
    later = times[times.step >= 2].merge(contended_epochs(hist), on=["run_id", "step"], how="left")
    later["contended"] = later.contended.fillna(False).astype(bool)
    # contended epochs are set aside where the run has uncontended ones to stand for it
    calm = later[~later.contended]
    steady = later.groupby("run_id")["value"].median()
    steady.update(calm.groupby("run_id")["value"].median())
    out["contended_epochs"] = out.run_id.map(later.groupby("run_id").contended.sum()).fillna(0)
    out["all_contended"] = out.run_id.map(later.groupby("run_id").contended.all()).fillna(False)
    out["first_epoch_s"] = out.run_id.map(first)
    # a one-epoch run has no steady state: its only epoch (tracing included) stands in
    out["steady_epoch_s"] = out.run_id.map(steady).fillna(out.first_epoch_s)
    out["has_val"] = has_validation(runs, hist).to_numpy()
    # not reached = censored (+inf), kept for the medians; NaN only without a validation set
    out["time_to_target_s"] = np.where(out.has_val, out.time_to_target_s.fillna(np.inf), np.nan)
    for threshold in THRESHOLDS:
        out[f"to_{threshold:.3g}"] = out.run_id.map(
            lambda r, th=threshold: time_to_accuracy(hist, r, th)
        )
    return out


def contended_epochs(hist: pd.DataFrame) -> pd.DataFrame:
    """run_id, step, contended: epochs during which other processes (and the hypervisor's
    steal) took more than CONTENDED cores on average (logged per epoch by the harness)."""
    load = hist[hist.key.isin(["host_other_cores", "host_steal_cores"])]
    if load.empty:
        return pd.DataFrame(columns=["run_id", "step", "contended"])
    total = load.groupby(["run_id", "step"])["value"].sum()
    return (total > CONTENDED).rename("contended").reset_index()


def has_validation(runs: pd.DataFrame, hist: pd.DataFrame) -> pd.Series:
    """Per run: did it hold out a validation set? From dataset.val_size where recorded, else
    from a logged val_accuracy. Without one, a time to accuracy cannot exist (NaN), which is
    not the same as never reaching it (+inf)."""
    size = runs.get("params.dataset.val_size", pd.Series(np.nan, index=runs.index))
    size = pd.to_numeric(size, errors="coerce")
    logged = runs.run_id.isin(hist.run_id[hist.key == "val_accuracy"])
    return (size > 0).where(size.notna(), logged).astype(bool)


def time_to_accuracy(hist: pd.DataFrame, run_id: str, threshold: float) -> float:
    """Training seconds until the validation accuracy first reached `threshold`: +inf if it
    never did (censored), NaN without a validation set. A cumulative sum of epoch times, so a
    higher threshold never takes less time within one run."""
    h = hist[hist.run_id == run_id].pivot_table(index="step", columns="key", values="value")
    if "val_accuracy" not in h or "epoch_time_s" not in h:
        return np.nan
    elapsed = h["epoch_time_s"].cumsum()
    reached = h.index[h["val_accuracy"] >= threshold]
    return float(elapsed.loc[reached[0]]) if len(reached) else np.inf


def time_to_accuracy_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Per implementation and preset, each threshold's median time over runs with "k/n
    reached". Censored runs count as +inf, so a higher threshold never shows a shorter
    median (the median is monotone in each run's time, which is monotone in the threshold)."""
    records = []
    for (impl, preset, _sig), g in rows.groupby(["implementation", "preset", "signature"]):
        record = {"implementation": impl, "preset": preset}
        for threshold in THRESHOLDS:
            col = f"to_{threshold:.3g}"
            record[col] = time_text(*censored_median(g[col]))
        records.append(record)
    return pd.DataFrame(records)


def time_text(median: float, reached: int, n: int) -> str:
    """A censored median as the report says it: "12.3 s (3/3 reached)", "not reached (1/3
    reached)", or "no validation set"."""
    if n == 0:
        return "no validation set"
    if not np.isfinite(median):
        return f"not reached ({reached}/{n} reached)"
    return f"{median:.3g} s ({reached}/{n} reached)"


def summary(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per (implementation, device, preset, setting), aggregated over seeds. The
    steady epoch is a geometric mean with a t-interval on the logs (timing noise is
    multiplicative; an arithmetic interval of 2 runs can go below 0 s); the time to target is
    the median over runs, runs that never reached it counted as +inf."""
    records = []
    for (impl, device, preset, sig), g in rows.groupby(
        ["implementation", "device", "preset", "signature"], sort=True
    ):
        acc, lo, hi = t_interval(g.test_accuracy)
        steady, s_lo, s_hi = ratio_interval(g.steady_epoch_s)  # the speed ratios' scale
        records.append(
            {
                "implementation": impl,
                "device": device,
                "preset": preset,
                "runs": len(g),
                "test acc": acc,
                "acc 95% CI": f"{lo:.4f}-{hi:.4f}" if np.isfinite(lo) else "n/a",
                "first epoch s": g.first_epoch_s.median(),
                "steady epoch s": steady,
                "steady 95% CI": f"{s_lo:.3f}-{s_hi:.3f}" if np.isfinite(s_lo) else "n/a",
                "samples/s": g.samples_per_s.mean(),
                "time to target": time_text(*censored_median(g.time_to_target_s)),
                "total s": g.total_time_s.mean(),
                "peak MB": g.peak_rss_mb.max(),
                "job MB": g.get("job_memory_mb", pd.Series(dtype=float)).max(),
                "setup s": g.get("setup_s", pd.Series(dtype=float)).median(),
                "overhead s": g.get("overhead_s", pd.Series(dtype=float)).median(),
                "train acc": g.final_train_accuracy.mean(),
                "few runs": "yes" if len(g) < MIN_RUNS else "",
                "signature": sig,
            }
        )
    table = pd.DataFrame(records)
    if not table.empty:
        fastest = table.groupby("preset")["steady epoch s"].transform("min")
        table["speed vs fastest"] = fastest / table["steady epoch s"]  # within the same preset
        table["gap (train-test)"] = table["train acc"] - table["test acc"]
    return table


def paired_speedups(rows: pd.DataFrame) -> pd.DataFrame:
    """The steady-epoch verdicts of `verdicts.verdicts` (ratios paired by seed, log
    t-interval), each with its sentence in `statement`, for the report's speed section."""
    from bench.report import verdicts  # verdicts builds on this module

    table = verdicts.verdicts(rows)
    table = table[table.quantity == "epoch_time"].reset_index(drop=True)
    table["statement"] = [f"{r.preset}: {verdicts.verdict_sentence(r)}" for r in table.itertuples()]
    return table


def noise_floor(accuracy: float) -> float:
    """Binomial standard error of an accuracy measured on the 10,000 test images."""
    return float(np.sqrt(accuracy * (1 - accuracy) / TEST_SIZE))


def fairness_warnings(runs: pd.DataFrame) -> list[str]:
    """Settings (other than implementation and seed) that differ between compared runs."""
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
                warnings.append(
                    f"{preset}: {col.removeprefix('params.')} differs: {', '.join(sorted(values))}"
                )
        for tag in ("tags.threads", "tags.device", "tags.lockstep"):
            if tag in g and g[tag].nunique() > 1:
                warnings.append(f"{preset}: {tag.removeprefix('tags.')} differs")
        if "tags.parallel_jobs" in g and g["tags.parallel_jobs"].notna().any():
            n = int(g["tags.parallel_jobs"].notna().sum())
            width = ", ".join(sorted(g["tags.parallel_jobs"].dropna().unique()))
            warnings.append(
                f"{preset}: timings of {n} runs were taken beside other jobs "
                f"(parallel_jobs={width}); use a serial sweep for published timings"
            )
    return warnings


def reproduction(rows: pd.DataFrame) -> pd.DataFrame:
    records = []
    for (preset, impl), g in rows.groupby(["preset", "implementation"]):
        if preset not in PUBLISHED:
            continue
        low, high = PUBLISHED[preset]
        acc = g.test_accuracy.mean()
        ok = low - TOLERANCE <= acc <= high + TOLERANCE
        records.append(
            {
                "preset": preset,
                "implementation": impl,
                "runs": len(g),
                "published": f"{low:.2%}" if low == high else f"{low:.2%}-{high:.2%}",
                "measured": f"{acc:.2%}",
                "tolerance": f"±{TOLERANCE:.1%}",
                "verdict": "reproduced" if ok else "not reproduced",
            }
        )
    return pd.DataFrame(records)


def lockstep_gaps(runs: pd.DataFrame, hist: pd.DataFrame) -> pd.DataFrame:
    """Largest train-loss difference between implementations per epoch, for lockstep runs."""
    lock = runs[runs.get("tags.lockstep", pd.Series(index=runs.index)) == "true"]
    loss = hist[(hist.key == "train_loss") & hist.run_id.isin(lock.run_id)].merge(
        lock[["run_id", "params.seed", "tags.preset"]], on="run_id"
    )
    if loss.empty:
        return pd.DataFrame()
    spread = loss.groupby(["tags.preset", "params.seed", "step"])["value"].agg(
        lambda v: v.max() - v.min() if len(v) > 1 else np.nan
    )
    out = spread.groupby(level=["tags.preset", "step"]).max().reset_index()
    out.columns = ["preset", "epoch", "max loss difference"]
    return out.dropna()


def agreement(predictions: dict[str, np.ndarray], labels: np.ndarray) -> pd.DataFrame:
    """Fraction of test images on which two implementations agree, and McNemar's exact p on
    their correct/incorrect disagreements."""
    records = []
    for a, b in itertools.combinations(sorted(predictions), 2):
        pa, pb = predictions[a], predictions[b]
        ca, cb = pa == labels, pb == labels
        only_a, only_b = int((ca & ~cb).sum()), int((~ca & cb).sum())
        p = mcnemar_p(ca, cb)
        records.append(
            {
                "A": a,
                "B": b,
                "agree": float((pa == pb).mean()),
                "only A right": only_a,
                "only B right": only_b,
                "McNemar p": p,
            }
        )
    return pd.DataFrame(records)


def determinism(runs: pd.DataFrame) -> pd.DataFrame:
    """Per implementation: how repeats of the same config and seed matched (the `determinism`
    tag a run gets when its config has run before)."""
    if "tags.determinism" not in runs or runs["tags.determinism"].isna().all():
        return pd.DataFrame()
    tagged = runs[runs["tags.determinism"].notna()]
    counts = pd.crosstab(tagged["tags.implementation"], tagged["tags.determinism"])
    counts = counts.reindex(columns=["bitwise", "tolerance", "divergent"], fill_value=0)
    diffs = tagged["tags.determinism_max_rel_diff"].astype(float)
    counts["max rel. loss diff"] = diffs.groupby(tagged["tags.implementation"]).max()
    return counts.rename_axis("implementation").reset_index().rename_axis(None, axis=1)
