"""Implementations on more than one platform (a host with its CPU, or its GPU): each one's speed
on one platform against another, never paired by seed across them.

Runs of one implementation that ran the same setting on two platforms are compared as two
independent samples (bench.report.numbers.stats.unpaired_ratio_interval); the verdicts pair
seeds only within a platform (the comparison key holds the host, CPU, GPU and device)."""

from __future__ import annotations

import itertools

import pandas as pd

from bench.report.numbers import stats
from bench.report.numbers.collect import NOT_COMPARED, joined
from bench.report.numbers.scaling import crossovers

# what a platform is: where a run ran; and the params that set it (not the setting)
PLATFORM_TAGS = ("tags.host", "tags.device", "tags.device_name", "tags.cpu_model")
PLATFORM_PARAMS = ("params.device.", "params.implementation.", "params.seed", "params.tracking.",
                   "params.train.threads", "params.train.batch_size")  # fmt: skip


def platform_names(runs: pd.DataFrame) -> pd.Series:
    """Per run, where it ran: "vm (cpu: Intel Xeon)", "gpu-1 (gpu: NVIDIA H200)"."""
    tag = lambda name: runs.get(f"tags.{name}", pd.Series("?", index=runs.index)).fillna("?")  # noqa: E731
    device = tag("device").astype(str)
    chip = tag("device_name").where(device == "gpu", tag("cpu_model")).astype(str)
    return tag("host").astype(str) + " (" + device + ": " + chip + ")"


def settings(runs: pd.DataFrame) -> pd.Series:
    """Per run, its setting apart from where it ran and its batch size: the params every
    platform's runs of one comparison across platforms share."""
    columns = sorted(c for c in runs.columns if c.startswith("params.") and c not in NOT_COMPARED
                     and not c.startswith(PLATFORM_PARAMS))  # fmt: skip
    return runs["tags.preset"].astype(str) + "|" + joined(runs, columns)


def _order(platforms: list[str]) -> list[str]:
    """CPUs first, then GPUs, each alphabetically: "GPU / CPU" ratios read as speed-ups."""
    return sorted(platforms, key=lambda p: (": " in p and "(gpu" in p, p))


def across(rows: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """One row per implementation, setting, batch size and pair of platforms: the second
    platform's steady epoch over the first's with its 95% interval, both medians of the time
    to target, and the runs on each."""
    params = runs.set_index("run_id")
    data = rows.assign(
        platform=rows.run_id.map(platform_names(runs).set_axis(runs.run_id)),
        setting_key=rows.run_id.map(settings(runs).set_axis(runs.run_id)),
        batch=rows.run_id.map(params.get("params.train.batch_size", pd.Series(dtype=str))),
    )
    records = []
    for (preset, _, impl, batch), g in data.groupby(
        ["preset", "setting_key", "implementation", "batch"], sort=True
    ):
        for first, second in itertools.combinations(_order(list(g.platform.unique())), 2):
            a, b = g[g.platform == first], g[g.platform == second]
            ratio, low, high = stats.unpaired_ratio_interval(a.steady_epoch_s, b.steady_epoch_s)
            records.append({
                "preset": preset, "implementation": impl, "batch": batch,
                "platform a": first, "platform b": second, "runs a": len(a), "runs b": len(b),
                "steady epoch b/a": ratio, "ci low": low, "ci high": high,
                "verdict": _verdict(low, high),
                "time to target a": stats.censored_median(a.time_to_target_s)[0],
                "time to target b": stats.censored_median(b.time_to_target_s)[0],
            })  # fmt: skip
    return pd.DataFrame(records)


def _verdict(low: float, high: float) -> str:
    """b against a, in the verdicts' words: faster only when the interval of b/a lies below 1."""
    return {"faster": "b slower", "slower": "b faster"}.get(stats.speed_verdict(low, high),
                                                           stats.speed_verdict(low, high))  # fmt: skip


def overtakes(table: pd.DataFrame) -> list[str]:
    """Where one platform overtakes another for one implementation along the batch size:
    "torch on gpu-1 (gpu: NVIDIA H200) overtakes torch on vm (cpu: ...) above batch 256"."""
    found = []
    for (preset, impl), g in table.groupby(["preset", "implementation"], sort=True):
        sizes = pd.to_numeric(g.batch, errors="coerce")
        if sizes.nunique() < 2:
            continue
        curve = []
        for (platform, batch), p in g.groupby(["platform", "batch"]):
            times = p.steady_epoch_s.dropna()
            if len(times):
                curve.append({"implementation": f"{impl} on {platform}", "size": int(batch),
                              "epoch s": times.median(), "min s": times.min(),
                              "max s": times.max()})  # fmt: skip
        found += [f"{preset}: {line}" for line in crossovers(pd.DataFrame(curve), "batch")]
    return found


def per_platform(rows: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """The rows with their platform and batch size, for `overtakes`."""
    params = runs.set_index("run_id")
    return rows.assign(
        platform=rows.run_id.map(platform_names(runs).set_axis(runs.run_id)),
        batch=rows.run_id.map(params.get("params.train.batch_size", pd.Series(dtype=str))),
    )


def hosts_line(runs: pd.DataFrame) -> str:
    """Every host with what ran on it: "vm (cpu: Intel Xeon); gpu-1 (gpu: NVIDIA H200)"."""
    names = sorted(set(platform_names(runs)))
    return "; ".join(names) if names else "?"
