"""The sequential rule of `sweep.until_decided`: a sweep runs its first seeds, then adds seeds
in batches of `sweep.seed_batch` for the pairs whose verdicts are still undecided, and stops
when every verdict is decided or the pairs have `sweep.max_seeds` seeds.

Looking again and again at a 95% interval does not keep 95%: with looks at 5, 7, 9, 11 and 12
seeds, a pair with no difference would read "faster" or "slower" at some look about 12% of
the time. So every look uses one wider interval, whose level is set for the whole schedule of
looks: the level at which all of a pair's intervals, at every look, hold the true ratio 95% of
the time (a repeated confidence interval, Pocock's constant boundary, for t-statistics). The
interval a pair stops with then holds it at least 95% of the time, and exactly 95% for the
pairs that take every look; a pair decided at its first look is covered more often.

`simulate` checks this by simulation (tests/test_sequential.py), as the fixed-n intervals are.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy import stats

from bench.report.numbers.stats import LEVEL

SIMULATIONS = 200_000  # draws behind a schedule's level: its p-value to about +-0.0005


def schedule(first: int, batch: int, most: int) -> tuple[int, ...]:
    """The seed counts at which the rule looks: first, first + batch, ..., up to most."""
    looks = list(range(first, most, batch)) + [most]
    return tuple(sorted(set(n for n in looks if n >= 1)))


def schedule_text(looks) -> str:
    return ",".join(map(str, looks))


@lru_cache(maxsize=32)
def level_per_look(looks: tuple[int, ...], level: float = LEVEL) -> float:
    """The level of each look's t-interval such that all of them hold the true mean (of the
    paired log ratios, or accuracy differences) with probability `level`: 1 - the
    (1 - level) quantile of the smallest p-value over the looks, simulated on normal data
    (t-statistics are pivotal: the answer does not depend on the mean or the spread)."""
    if len(looks) == 1:
        return level
    if looks[0] < 2:
        raise ValueError(f"a sequential schedule needs 2 seeds at its first look, not {looks[0]}")
    rng = np.random.default_rng(20261207)
    draws = rng.standard_normal((SIMULATIONS, looks[-1]))
    smallest = np.ones(SIMULATIONS)
    for n in looks:
        x = draws[:, :n]
        t = x.mean(axis=1) / (x.std(axis=1, ddof=1) / np.sqrt(n))
        smallest = np.minimum(smallest, 2 * stats.t.sf(np.abs(t), n - 1))
    return float(1 - np.quantile(smallest, 1 - level))


def simulate(mu: float, sigma: float, looks, margin: float, reps: int, rng,
             level: float | None = None) -> dict:  # fmt: skip
    """The rule on `reps` simulated pairs whose per-seed log ratio is N(mu, sigma): the share
    of pairs whose final interval holds mu (coverage), the mean seeds taken, and the share of
    each verdict. `level`: the per-look level (default: the schedule's)."""
    level = level_per_look(tuple(looks)) if level is None else level
    bound = np.log1p(margin)
    draws = rng.normal(mu, sigma, (reps, looks[-1]))
    open_ = np.ones(reps, bool)
    low, high = np.full(reps, np.nan), np.full(reps, np.nan)
    taken, verdict = np.zeros(reps, int), np.full(reps, "undecided", dtype=object)
    for n in looks:
        x = draws[open_, :n]
        half = stats.t.ppf(0.5 + level / 2, n - 1) * x.std(axis=1, ddof=1) / np.sqrt(n)
        lo, hi = x.mean(axis=1) - half, x.mean(axis=1) + half
        low[open_], high[open_], taken[open_] = lo, hi, n
        same = (lo >= -bound) & (hi <= bound)
        decided = same | (lo > 0) | (hi < 0)
        words = np.where(same, "same", np.where(lo > 0, "faster", np.where(hi < 0, "slower", "")))
        index = np.flatnonzero(open_)
        verdict[index[decided]] = words[decided]
        open_[index[decided]] = False
        if not open_.any():
            break
    shares = {w: float(np.mean(verdict == w)) for w in ("same", "faster", "slower", "undecided")}
    return {"coverage": float(np.mean((low <= mu) & (mu <= high))),
            "mean_seeds": float(taken.mean()), **shares}  # fmt: skip
