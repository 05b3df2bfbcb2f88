"""One row per run with what the statistics need: its status and grouping keys, its final
metrics, its steady epoch (contended epochs set aside) and its times to accuracy, from the
run's per-epoch history."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from bench.data.catalog import SPLIT_SIZES
from bench.job.host import CONTENDED
from bench.report.numbers.collect import what_differs
from bench.report.numbers.sequential import schedule, schedule_text
from bench.report.numbers.stats import SPEED_MARGIN

THRESHOLDS = (0.95, 0.96, 0.97, 0.975, 0.98)


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
            "comparison",
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
        "comparison",
    ]
    out["setting"] = out.comparison.map(setting_id)
    out["group"] = runs["group"].to_numpy() if "group" in runs else group_labels(out)
    overrides = runs.get("tags.hydra_overrides", pd.Series("", index=runs.index))
    out["overrides"] = overrides.fillna("").to_numpy()  # what a tutorial run changed of it
    out["dataset"] = runs.get("params.dataset.name", pd.Series("mnist", index=runs.index)).values
    # the framework variant a run trained with (train.variant); "" for runs from before the tag
    out["variant"] = runs.get("tags.variant", pd.Series("", index=runs.index)).fillna("").values
    out["store"] = runs.get("store", pd.Series("", index=runs.index)).values  # several stores
    out["speed_margin"] = pd.to_numeric(
        runs.get("params.sweep.speed_margin", pd.Series(SPEED_MARGIN, index=runs.index)),
        errors="coerce",
    ).fillna(SPEED_MARGIN).to_numpy()  # fmt: skip
    out["looks"] = sequential_looks(runs).to_numpy()
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
    out["epochs"] = out.run_id.map(times.groupby("run_id").size()).fillna(0).astype(int)
    out["steady_epoch_s"] = out.run_id.map(steady)  # NaN for a one-epoch run: no steady state
    # images per second of a steady epoch: the first (tracing) epoch left out, as in the
    # verdicts (samples_per_s counts every epoch)
    out["steady_samples_per_s"] = train_images(runs, out) / out.steady_epoch_s
    out["has_val"] = has_validation(runs, hist).to_numpy()
    # not reached = censored (+inf), kept for the medians; NaN only without a validation set
    out["time_to_target_s"] = np.where(out.has_val, out.time_to_target_s.fillna(np.inf), np.nan)
    for threshold in THRESHOLDS:
        out[f"to_{threshold:.3g}"] = out.run_id.map(
            lambda r, th=threshold: time_to_accuracy(hist, r, th)
        )
    return out


def sequential_looks(runs: pd.DataFrame) -> pd.Series:
    """Per run, the seed counts a sequential sweep (sweep.until_decided) looked at, "5,7,9,11,12";
    "" for a sweep of fixed seeds."""

    def param(key):
        return runs.get(f"params.sweep.{key}", pd.Series(None, index=runs.index, dtype=object))

    looks = pd.Series("", index=runs.index)
    on = param("until_decided").astype(str).str.lower().eq("true")
    for i in runs.index[on]:
        first, batch, most = (pd.to_numeric(param(k)[i], errors="coerce")
                              for k in ("first_seeds", "seed_batch", "max_seeds"))  # fmt: skip
        if np.isfinite([first, batch, most]).all():
            looks[i] = schedule_text(schedule(int(first), int(batch), int(most)))
    return looks


def train_images(runs: pd.DataFrame, out: pd.DataFrame) -> pd.Series:
    """Per run, the images of one epoch: dataset.n_train where set, else the training pool
    less the validation set (bench.data.prepare's split); without those params, from the
    harness's samples/s (n_train x epochs / train time; its stored digits are rounded)."""
    n_train, val_size = (
        pd.to_numeric(runs.get(f"params.dataset.{k}", pd.Series(index=runs.index)), errors="coerce")
        for k in ("n_train", "val_size")
    )  # "null" (every image of the pool) reads NaN
    split = n_train.fillna(SPLIT_SIZES["train"] - val_size)
    harness = out.samples_per_s * out.train_time_s / out.epochs.where(out.epochs > 0)
    return split.fillna(harness)


def setting_id(comparison: str) -> str:
    """A comparison's short name in the tables (summary.csv's and verdicts.csv's `setting`)."""
    return hashlib.sha1(str(comparison).encode()).hexdigest()[:8]


def setting_numbers(rows: pd.DataFrame) -> pd.Series:
    """Per row (of runs, or of verdicts), its comparison's number within its preset (1, 2, ...,
    in the order of their `setting` ids): the report names comparisons "setting 1", "setting 2"
    where a preset holds more than one."""
    settings = rows.setting if "setting" in rows else rows.comparison.map(setting_id)
    number = settings.groupby(rows.preset).transform(
        lambda ids: ids.map({k: i + 1 for i, k in enumerate(sorted(ids.unique()))})
    )
    return number.astype(int)


def group_names(runs: pd.DataFrame, longest: int = 48) -> pd.Series:
    """Per run, the name of its comparison: its preset, and where the preset holds several
    comparisons, what sets this one apart ("custom (train.batch_size=64)"), or "setting k"
    (numbered as `rows.setting_numbers` does) where that is too long to read in a table row."""
    names = runs["tags.preset"].astype(str)
    for preset, g in runs.groupby("tags.preset"):
        differs = what_differs(g, g.comparison)
        number = {k: i + 1 for i, k in enumerate(sorted(g.comparison.map(setting_id).unique()))}
        for key, facets in differs.items():
            shown = facets if len(facets) <= longest else f"setting {number[setting_id(key)]}"
            names = names.mask(runs.comparison == key, f"{preset} ({shown})")
    return names


def group_labels(rows: pd.DataFrame) -> pd.Series:
    """Per row, its comparison's name: the `group` it carries (group_names), else its preset,
    with "(setting k)" where the preset holds several comparisons."""
    if "group" in rows:
        return rows.group
    settings = rows.setting if "setting" in rows else rows.comparison.map(setting_id)
    several = settings.groupby(rows.preset).transform("nunique") > 1
    number = setting_numbers(rows).astype(str)
    return rows.preset.where(~several, rows.preset + " (setting " + number + ")")


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
