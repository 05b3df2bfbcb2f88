"""Verdicts decided by intervals: one row per preset, pair and quantity (verdicts.csv), with
why a row has no interval as fields (REASON_COLUMNS) that bench.report.pages.sentences says in
words.

Words, said of a against b, each following from the interval alone:
- "faster" / "slower": the interval of b's time / a's lies above / below 1.
- "more accurate" / "less accurate": the interval of a's minus b's accuracy lies above / below
  0 and reaches outside ±margin.
- "equivalent": the whole accuracy interval lies inside ±margin (what the test set resolves).
- "same speed": the whole interval of b's time / a's lies within the speed margin
  ([1/1.1, 1.1] by default: `sweep.speed_margin`), two one-sided tests on the same interval.
- "undecided": there is an interval, it contains 1 (or 0) and reaches outside the margin:
  more seeds could settle it (a sequential sweep adds them: bench.report.numbers.sequential).
- "not tested": there is no interval (one seed, a time some run never reached, too few calm
  seeds, no value at all): nothing was tested, whatever the estimate says.

Pairing: within one preset and comparison (collect.comparison_keys: what must be equal), two
implementations' runs are paired by seed; repeats of one seed are one replicate (their median).
n = seeds both have; `setting` names the comparison (summary.csv's short hash of its key).

Pair order: each unordered pair once, a = the first in IMPL_ORDER (numpy, tf_tape, keras,
jax, then the others alphabetically); every verdict is said of a against b.

Quantities and rules (95% intervals over seeds, never over epochs):
- epoch_time: estimate = geometric mean over seeds of b's steady epoch / a's (how many times
  faster a is; 1 = no difference), t-interval on the logs back-transformed. "faster" or
  "slower" only when the interval excludes 1.
- time_to_target: the same on time_to_target_s when every paired run reached the target. If
  any did not (censored), there is no interval: estimate = b's median / a's median with the
  censored runs as +inf (inf, 0 or NaN when neither side's median reached it), verdict
  "not tested". At 3 runs no paired test of censored times can reach p < 0.05
  (a sign test's smallest two-sided p is 0.25), so claiming more would be a guess.
- test_accuracy: estimate = mean over seeds of a's minus b's accuracy in points (0 = no
  difference), t-interval. "equivalent" when the whole interval lies within ±margin
  (stats.equivalence_margin: 1.96 binomial s.e. of the difference of two accuracies on
  the 10,000 test images), else "more/less accurate" when it excludes 0.
- Host contention (time quantities only): seeds where either run was contended throughout
  (other processes busy during every epoch 2+, rows.per_run's all_contended) are set aside
  while at least MIN_RUNS calm seeds remain (n counts the seeds used, `set_aside` how many
  were set aside); with fewer calm seeds there is no interval and no claim (`contended`: in
  how many of the n seeds). Accuracy does not depend on the host and keeps every seed.
- One paired run gives no interval (NaN bounds): verdict "not tested", and n = 1 in the CSV
  says why. "undecided" is kept for an interval that contains 1 (or 0).
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from bench.report.numbers.rows import setting_id
from bench.report.numbers.sequential import level_per_look
from bench.report.numbers.stats import (
    LEVEL,
    MIN_RUNS,
    SPEED_MARGIN,
    accuracy_verdict,
    censored_median,
    equivalence_margin,
    ratio_interval,
    speed_verdict,
    t_interval,
)
from implementations import impl_key

VERDICT_COLUMNS = [
    "preset", "setting", "a", "b", "quantity", "estimate", "ci_low", "ci_high", "n", "verdict"
]  # fmt: skip
REASONS = {  # why a row has no interval, as facts (default: none of them)
    "measured": 0,  # paired seeds with a value on both sides (NaN: cannot exist)
    "missing": "",  # no value at all: "epoch_times", "one_epoch" or "validation" (none held out)
    "censored": False,  # some paired run never reached the target
    "reached_a": 0,  # of runs_a (a's paired runs) reached the target, and b's
    "runs_a": 0,
    "reached_b": 0,
    "runs_b": 0,
    "set_aside": 0,  # contended seeds set aside (at least MIN_RUNS calm ones remain)
    "contended": 0,  # contended seeds when too few calm ones remain: no claim
}
REASON_COLUMNS = list(REASONS)


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


def calm_time_comparison(g: pd.DataFrame, column: str, a: str, b: str, missing: str,
                         level: float = LEVEL) -> dict:  # fmt: skip
    """time_comparison over the calm seeds when at least MIN_RUNS of them remain (or none was
    contended); otherwise no interval and no claim: a timing taken while another process held
    a core of this machine measures the host, not the implementation."""
    every = paired_values(g, column, a, b)
    calm = paired_values(g, column, a, b, calm=True)
    aside = len(every[0]) - len(calm[0])
    if aside == 0 or len(calm[0]) >= MIN_RUNS:
        cmp = time_comparison(*calm, missing=missing, level=level)
        return {**cmp, "n": len(calm[0]), "set_aside": aside}
    cmp = time_comparison(*every, missing=missing, level=level)
    if np.isnan(cmp["estimate"]):
        return {**cmp, "n": len(every[0])}
    return {**cmp, "ci_low": np.nan, "ci_high": np.nan, "contended": aside, "n": len(every[0])}


def time_comparison(ta: np.ndarray, tb: np.ndarray, missing: str = "validation",
                    level: float = LEVEL) -> dict:  # fmt: skip
    """b's time / a's time over paired runs (see the module docstring for censored runs).
    NaN is a time that cannot exist (`missing` says why), +inf one never reached."""
    measured = ~(np.isnan(ta) | np.isnan(tb))
    ta, tb = ta[measured], tb[measured]
    if len(ta) == 0:
        return dict(estimate=np.nan, ci_low=np.nan, ci_high=np.nan, missing=missing, measured=0)
    if np.isfinite(ta).all() and np.isfinite(tb).all():
        est, low, high = ratio_interval(tb / ta, level)
        return dict(estimate=est, ci_low=low, ci_high=high, measured=len(ta))
    (ma, ka, na), (mb, kb, nb) = censored_median(ta), censored_median(tb)
    with np.errstate(invalid="ignore"):
        est = float(np.float64(mb) / ma)
    return dict(estimate=est, ci_low=np.nan, ci_high=np.nan, measured=len(ta), censored=True,
                reached_a=ka, runs_a=na, reached_b=kb, runs_b=nb)  # fmt: skip


def accuracy_comparison(acc_a: np.ndarray, acc_b: np.ndarray, level: float = LEVEL) -> dict:
    """a's minus b's test accuracy in points, paired by seed, with its equivalence margin."""
    est, low, high = t_interval(100 * (acc_a - acc_b), level)
    margin = equivalence_margin(float(np.nanmean(np.concatenate([acc_a, acc_b]))))
    return dict(estimate=est, ci_low=low, ci_high=high, margin=margin, measured=len(acc_a))


def verdicts(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per preset, pair and quantity: VERDICT_COLUMNS, `margin` (accuracy's equivalence
    margin, points) and REASON_COLUMNS (why there is no interval). Pairs that share no seed are
    left out: there is nothing to pair."""
    records = []
    for (preset, key), g in rows.groupby(["preset", "comparison"], sort=True):
        one_epoch = "epochs" in g and (g.epochs <= 1).all()
        rule = rule_of(g)
        for a, b in pairs(g.implementation):
            acc_a, acc_b = paired_values(g, "test_accuracy", a, b)
            if len(acc_a) == 0:
                continue
            base = {"preset": preset, "setting": setting_id(key), "a": a, "b": b, "margin": np.nan,
                    **rule}  # fmt: skip
            if "group" in g:  # the comparison's name, for the tables that show the verdict
                base["group"] = g.group.iloc[0]
            for quantity, column, missing in (
                ("epoch_time", "steady_epoch_s", "one_epoch" if one_epoch else "epoch_times"),
                ("time_to_target", "time_to_target_s", "validation"),
            ):
                cmp = calm_time_comparison(g, column, a, b, missing, rule["level"])
                records.append({**base, "quantity": quantity, **cmp})
            cmp = accuracy_comparison(acc_a, acc_b, rule["level"])
            records.append({**base, "n": len(acc_a), "quantity": "test_accuracy", **cmp})
    extra = ["margin", "group", "level", "speed_margin", "looks", *REASONS]
    table = pd.DataFrame(records, columns=VERDICT_COLUMNS + extra)
    table = table.fillna(REASONS).astype({k: type(v) for k, v in REASONS.items()})
    table["verdict"] = [verdict_of(r) for r in table.itertuples()]
    return table


def rule_of(g: pd.DataFrame) -> dict:
    """How one comparison's intervals are made: the level of each (95%, or a sequential
    sweep's per-look level for its schedule of looks) and the speed margin."""
    looks = str(g.looks.iloc[0]) if "looks" in g and g.looks.iloc[0] else ""
    level = level_per_look(tuple(map(int, looks.split(",")))) if looks else LEVEL
    margin = float(g.speed_margin.iloc[0]) if "speed_margin" in g else SPEED_MARGIN
    return {"level": level, "speed_margin": margin, "looks": looks}


def verdict_of(row) -> str:
    """The verdict word, from the interval alone (NaN bounds: no interval, not tested)."""
    if row.quantity == "test_accuracy":
        return accuracy_verdict(row.ci_low, row.ci_high, row.margin)
    return speed_verdict(row.ci_low, row.ci_high, row.speed_margin)
