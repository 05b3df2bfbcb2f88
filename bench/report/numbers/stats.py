"""The statistics every verdict and interval rests on, tested against reference values.

The unit of replication is the run (one seed): the epochs of one run share the host's state
(other load, clock, caches), so intervals are always over runs, never over epochs."""

from __future__ import annotations

import numpy as np
from scipy import stats

TEST_SIZE = 10000

MIN_RUNS = 3

LEVEL = 0.95  # every interval the report shows

Z = stats.norm.ppf(0.5 + LEVEL / 2)  # 1.96: the binomial noise floor's multiplier

UNDECIDED = "undecided"  # an interval that neither excludes "no difference" nor lies in the margin
NOT_TESTED = "not tested"  # no interval at all (1 seed, censored, contended): no test was made
SAME_SPEED = "same speed"  # the whole interval of the time ratio lies within the speed margin
SPEED_MARGIN = 0.10  # default: times within 10% of each other (either way) are the same speed


def t_interval(values, level: float = LEVEL) -> tuple[float, float, float]:
    """Mean and its Student-t confidence interval at `level` (95%; a sequential sweep's looks
    use a wider one: bench.report.numbers.sequential), nan bounds for fewer than 2 values."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return np.nan, np.nan, np.nan
    mean = v.mean()
    if len(v) < 2:
        return mean, np.nan, np.nan
    half = stats.t.ppf(0.5 + level / 2, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v))
    return mean, mean - half, mean + half


def accuracy_interval(values) -> tuple[float, float, float]:
    """Mean accuracy (a fraction) over runs and its 95% t-interval, bounded to [0, 1]: a few
    runs far apart must not read "74.54% [-5.69, 154.78]"."""
    mean, low, high = t_interval(values)
    return (
        mean,
        max(low, 0.0) if np.isfinite(low) else low,
        min(high, 1.0) if np.isfinite(high) else high,
    )


def ratio_interval(ratios, level: float = LEVEL) -> tuple[float, float, float]:
    """Geometric mean of positive ratios and its 95% interval: a t-interval on their logs,
    back-transformed. Timing noise is multiplicative, so its logs are close to normal and
    the t-interval keeps its coverage even at 3 runs (a bootstrap of 3 values does not)."""
    r = np.asarray(ratios, dtype=float)
    r = r[np.isfinite(r) & (r > 0)]
    return tuple(float(np.exp(x)) for x in t_interval(np.log(r), level))


def unpaired_ratio_interval(a_times, b_times) -> tuple[float, float, float]:
    """b's time over a's where no seed pairs them (two hosts, two devices): the ratio of
    their geometric means and its 95% interval, Welch's t-interval on the difference of the
    mean logs (unequal variances: one host is noisier than another), back-transformed."""
    a, b = (np.asarray(t, dtype=float) for t in (a_times, b_times))
    a, b = (np.log(t[np.isfinite(t) & (t > 0)]) for t in (a, b))
    if len(a) == 0 or len(b) == 0:
        return np.nan, np.nan, np.nan
    estimate = float(np.exp(b.mean() - a.mean()))
    if len(a) < 2 or len(b) < 2:
        return estimate, np.nan, np.nan
    low, high = stats.ttest_ind(b, a, equal_var=False).confidence_interval(LEVEL)
    return estimate, float(np.exp(low)), float(np.exp(high))


def censored_median(values) -> tuple[float, int, int]:
    """Median over runs of a time that some runs never reached (+inf: censored, kept, not
    dropped), how many reached it and how many could (NaN: not measurable, e.g. no validation
    set). The median is inf once half or more runs never reached it."""
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    if len(v) == 0:
        return np.nan, 0, 0
    return float(np.median(v)), int(np.isfinite(v).sum()), len(v)


def speed_verdict(low: float, high: float, margin: float = SPEED_MARGIN) -> str:
    """How a is against b, from the interval of b's time / a's time. "same speed" when the
    whole interval lies within the margin, [1/(1 + margin), 1 + margin]: two one-sided tests
    (TOST) on the same interval, each at half its error rate. Else "faster"/"slower" when it
    excludes 1, else "undecided": more seeds could still settle it. No interval (one seed, a
    censored time, a contended host) is no test, and says so."""
    if np.isnan(low) or np.isnan(high):
        return NOT_TESTED
    if 1 / (1 + margin) <= low and high <= 1 + margin:
        return SAME_SPEED
    if low > 1:
        return "faster"
    if high < 1:
        return "slower"
    return UNDECIDED


def equivalence_margin(accuracy: float) -> float:
    """Equivalence margin, in accuracy points, for the difference of two accuracies near
    `accuracy`: 1.96 binomial standard errors of a difference of two measurements on the
    10,000 test images. Differences inside it are below what the test set can resolve."""
    return float(100 * Z * np.sqrt(2 * accuracy * (1 - accuracy) / TEST_SIZE))


def noise_floor(accuracy: float) -> float:
    """Binomial standard error of an accuracy measured on the 10,000 test images."""
    return float(np.sqrt(accuracy * (1 - accuracy) / TEST_SIZE))


def accuracy_verdict(low: float, high: float, margin: float) -> str:
    """How a is against b, from the interval of a's minus b's accuracy (points). An interval
    inside ±margin is "equivalent" even if it excludes 0: such a difference is real but
    smaller than the test set's own noise floor, so calling one "more accurate" would mislead.
    No interval (one seed) is no test."""
    if np.isnan(low) or np.isnan(high):
        return NOT_TESTED
    if -margin <= low and high <= margin:
        return "equivalent"
    if low > 0:
        return "more accurate"
    if high < 0:
        return "less accurate"
    return UNDECIDED


def pooled_mcnemar_p(only_a, only_b) -> float:
    """McNemar's exact p over several seeds: the images only a got right, and only b, summed
    over the seeds and tested as one binomial at 1/2. Under "neither is better in any seed"
    each discordant image is a fair coin, so their sum is too; 1 when there are none."""
    k, n = int(np.sum(only_a)), int(np.sum(only_a) + np.sum(only_b))
    return float(stats.binomtest(k, n, 0.5).pvalue) if n else 1.0


def mcnemar_p(correct_a: np.ndarray, correct_b: np.ndarray) -> float:
    """McNemar's exact p on the images exactly one of the two models gets right (a two-sided
    binomial test of those discordant counts at 1/2); 1 when there are none."""
    only_a = int((correct_a & ~correct_b).sum())
    n = only_a + int((~correct_a & correct_b).sum())
    return float(stats.binomtest(only_a, n, 0.5).pvalue) if n else 1.0
