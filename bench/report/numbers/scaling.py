"""How each implementation's cost grows with the size of the work: where the fastest one
changes (crossovers) and the log-log slope of its time against the size. The speed benchmark's
`--scaling` mode and the report's scaling section (a sweep over the batch size or the width)
read their tables the same way.

A scaling table has one row per axis, size and implementation: `epoch s` (the median),
`min s` and `max s` (its spread over repeats or seeds), and optionally `work flops` (the
epoch's work, which the slope is taken against where it varies)."""

from __future__ import annotations

import ast

import numpy as np
import pandas as pd

# the sweep axes the report plots, by the run param that sets them
SWEPT_AXES = {"params.train.batch_size": "batch", "params.model.hidden": "width"}
SIZE_NAMES = {"batch": "batch size", "width": "hidden width"}


def _within_noise(a: pd.Series, b: pd.Series) -> bool:
    """The two medians differ less than the spread: their min..max ranges overlap."""
    return max(a["min s"], b["min s"]) <= min(a["max s"], b["max s"])


def crossovers(table: pd.DataFrame, noun: str) -> list[str]:
    """Where the faster of each pair of implementations changes between adjacent sizes of one
    axis, e.g. "jax overtakes numpy above batch 256"; "(within noise)" when at either side of
    the change the pair's ranges overlap, so the order there is not established."""
    found = []
    names = list(dict.fromkeys(table["implementation"]))
    by = {name: table[table["implementation"] == name].set_index("size").sort_index()
          for name in names}  # fmt: skip
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            sizes = sorted(set(by[a].index) & set(by[b].index))
            for lo, hi in zip(sizes, sizes[1:]):
                before = by[a].loc[lo, "epoch s"] < by[b].loc[lo, "epoch s"]
                after = by[a].loc[hi, "epoch s"] < by[b].loc[hi, "epoch s"]
                if before == after:
                    continue
                winner, loser = (a, b) if after else (b, a)
                noisy = any(_within_noise(by[a].loc[s], by[b].loc[s]) for s in (lo, hi))
                found.append(f"{winner} overtakes {loser} above {noun} {lo}"
                             + (" (within noise)" if noisy else ""))  # fmt: skip
    return found


def slope(work, seconds) -> float:
    """The exponent of seconds ~ work**slope: the least-squares line through the log-log
    points (1: cost grows as the work does; below 1: fixed costs still dominate)."""
    return float(
        np.polyfit(np.log(np.asarray(work, float)), np.log(np.asarray(seconds, float)), 1)[0]
    )


def slopes(table: pd.DataFrame) -> pd.DataFrame:
    """Per axis and implementation, the log-log slope of the epoch time against the epoch's
    work (train_flops x samples) where the table has it and it varies; else against the size
    (along the batch axis the work is constant: a negative slope there means bigger batches
    amortize the per-step costs)."""
    rows = []
    for (axis, impl), group in table.groupby(["axis", "implementation"], sort=False):
        work = group.get("work flops")
        by_work = work is not None and work.nunique() > 1
        x = work if by_work else group["size"]
        rows.append({"axis": axis, "implementation": impl,
                     "against": "work (FLOPs)" if by_work else SIZE_NAMES[noun(axis)],
                     "slope": slope(x, group["epoch s"]) if len(group) > 1 else float("nan")})  # fmt: skip
    return pd.DataFrame(rows)


def noun(axis: str) -> str:
    """How a crossover names an axis's sizes ("above batch 256", "above width 1024")."""
    return "batch" if axis.startswith("batch") else "width"


def width(hidden) -> int | None:
    """The width of equal hidden layers ("[256, 256]" -> 256); None where they differ."""
    layers = ast.literal_eval(hidden) if isinstance(hidden, str) else list(hidden)
    return layers[0] if layers and len(set(layers)) == 1 else None


def sweep_axis(runs: pd.DataFrame) -> str | None:
    """The one swept axis (a SWEPT_AXES param) that sets a preset's comparisons apart, where
    it is the only thing that does: each of its values is one comparison. None otherwise."""
    varying = [c for c in SWEPT_AXES if c in runs and runs[c].nunique() > 1]
    if len(varying) != 1 or runs.comparison.nunique() != runs[varying[0]].nunique():
        return None
    if varying[0] == "params.model.hidden" and runs[varying[0]].map(width).isna().any():
        return None
    return varying[0]


def sweep_table(rows: pd.DataFrame, runs: pd.DataFrame, param: str) -> pd.DataFrame:
    """A scaling table of one preset's sweep: per implementation and size, the median over
    seeds of the steady epoch's seconds per training image, and its min..max over seeds."""
    sizes = runs.set_index("run_id")[param]
    data = rows.assign(size=rows.run_id.map(sizes))
    data["size"] = (
        data["size"].map(int) if param.endswith("batch_size") else data["size"].map(width)
    )
    data["per_image"] = 1 / data.steady_samples_per_s
    table = (
        data.dropna(subset=["per_image"])
        .groupby(["implementation", "size"])["per_image"]
        .agg(["median", "min", "max"])
        .reset_index()
        .rename(columns={"median": "epoch s", "min": "min s", "max": "max s"})
    )
    return table.assign(axis=SWEPT_AXES[param])
