"""Verdicts said in words, rendered from the verdict rows' fields at the edge (never parsed
back): the report's sentences, the estimate cells of the verdict tables, and the censored
medians' "12.3 s (3/3 reached)"."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench.report.numbers.stats import NOT_TESTED, SAME_SPEED, UNDECIDED

WORDS = {"epoch_time": "steady epoch", "time_to_target": "time to target"}
MISSING = {
    "epoch_times": "no epoch times",
    "one_epoch": "one epoch per run: no steady epoch",
    "validation": "no validation set",
}


def verdict_sentence(row) -> str:
    """The report's sentence for one verdicts row (a Series or an itertuples row), e.g.
    "numpy 1.70x faster than keras [1.40, 2.10] (steady epoch, 3 seeds)". A verdict against
    a is said the other way round: "keras 1.70x faster than numpy", never "1.7x slower"."""
    if row.quantity == "test_accuracy":
        return accuracy_sentence(row)
    return time_sentence(row)


def time_sentence(row) -> str:
    """A speed or time-to-target verdict, said of the faster implementation."""
    a, b, est, low, high = row.a, row.b, row.estimate, row.ci_low, row.ci_high
    what, aside = WORDS[row.quantity], aside_text(row)
    seeds = f"{what}, {row.n} seed{'s' if row.n != 1 else ''}"
    note = reason_text(row)
    if aside:
        seeds += f", {aside}"
    else:
        note = note or "no interval"
    if row.verdict == "faster":
        return f"{a} {est:.2f}x faster than {b} [{low:.2f}, {high:.2f}] ({seeds})"
    if row.verdict == "slower":
        return f"{b} {1 / est:.2f}x faster than {a} [{1 / high:.2f}, {1 / low:.2f}] ({seeds})"
    if row.verdict == SAME_SPEED:
        within = f"within {100 * row.speed_margin:g}%" if hasattr(row, "speed_margin") else ""
        return (f"{a} vs {b}: {SAME_SPEED} {within} ({est:.2f}x [{low:.2f}, {high:.2f}]; "
                f"{seeds})").replace("  ", " ")  # fmt: skip
    if np.isnan(est) and row.missing:
        return f"{a} vs {b}, {what}: {note}"
    if np.isnan(low):
        ratio = f"; {est:.2f}x" if not np.isnan(est) else ""
        return f"{a} vs {b}, {what}: {NOT_TESTED} ({note}{ratio})"
    return f"{a} vs {b}: {UNDECIDED} ({est:.2f}x [{low:.2f}, {high:.2f}]; {seeds})"


def accuracy_sentence(row) -> str:
    """An accuracy verdict, said of the more accurate implementation."""
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
        note = reason_text(row) or "no interval"
        return f"{a} vs {b}, test accuracy: {NOT_TESTED} ({note}; {est:+.2f} points)"
    return (
        f"{a} vs {b}, test accuracy: {UNDECIDED} "
        f"({est:+.2f} [{low:+.2f}, {high:+.2f}] points, {seeds})"
    )


def undecided(row) -> str:
    """ "undecided (5 seeds)": an interval that settles nothing yet, and on how many seeds."""
    return f"{UNDECIDED} ({row.n} seed{'s' if row.n != 1 else ''})"


def reason_text(row) -> str:
    """Why a row has no interval (or no claim), from its reason fields: "" when it has one."""
    if row.missing:
        return MISSING[row.missing]
    if row.contended:
        return f"host contended in {row.contended} of {row.n} seeds"
    if row.censored:
        some = "no" if row.reached_a + row.reached_b == 0 else "not every"
        reached = f"{row.a} {row.reached_a}/{row.runs_a}, {row.b} {row.reached_b}/{row.runs_b}"
        return f"{some} run reached it: {reached}"
    return "1 seed" if row.measured == 1 else ""


def aside_text(row) -> str:
    """How many contended seeds a time verdict set aside ("" for none)."""
    if not row.set_aside or np.isnan(row.estimate):
        return ""
    return f"{row.set_aside} contended seed(s) set aside"


def estimate_text(r) -> str:
    """ "1.64x [1.36, 1.99]" for times (b's / a's), "+0.05 [-0.10, +0.20] pts" for accuracy."""
    if r.quantity == "test_accuracy":
        interval = f" [{r.ci_low:+.2f}, {r.ci_high:+.2f}]" if pd.notna(r.ci_low) else ""
        return f"{r.estimate:+.2f}{interval} pts"
    if pd.notna(r.ci_low):
        aside = f" ({aside_text(r)})" if aside_text(r) else ""
        return f"{r.estimate:.2f}x [{r.ci_low:.2f}, {r.ci_high:.2f}]{aside}"
    if r.censored and not r.contended:
        return "not reached by every run: no interval"
    if r.measured == 1 and not r.contended:
        return f"{r.estimate:.2f}x (1 seed: no interval)"
    if r.contended:
        return f"{r.estimate:.2f}x, {reason_text(r)}"
    note = "; ".join(filter(None, [reason_text(r), aside_text(r)]))
    return note or "no interval"


def verdict_text(r) -> str:
    """The verdict said of a ("numpy faster"), so no line reads the wrong way round."""
    if r.verdict == UNDECIDED:
        return undecided(r)
    if r.verdict in ("equivalent", SAME_SPEED, NOT_TESTED):
        return r.verdict
    return f"{r.a} {r.verdict}"


def time_text(median: float, reached: int, n: int) -> str:
    """A censored median as the report says it: "12.3 s (3/3 reached)", "not reached (1/3
    reached)", or "no validation set"."""
    if n == 0:
        return "no validation set"
    if not np.isfinite(median):
        return f"not reached ({reached}/{n} reached)"
    return f"{median:.3g} s ({reached}/{n} reached)"
