"""The report's tables of numbers: the summary per group (summary.csv), the tutorials'
reproduction, prediction agreement and determinism."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from bench.report.numbers.rows import setting_id
from bench.report.numbers.stats import (
    accuracy_interval,
    censored_median,
    mcnemar_p,
    noise_floor,
    pooled_mcnemar_p,
    ratio_interval,
)
from implementations import impl_key

PUBLISHED = {
    "simple_network": (0.95, 0.95),
    "tape_sigmoid": (0.9368, 0.9368),
    "keras_dense512": (0.978, 0.9804),
    "relu_mcp": (0.977, 0.977),
}

TOLERANCE = 0.005
TUTORIAL_DATASET = "mnist"  # every tutorial preset published its accuracy on MNIST
# overrides that leave a tutorial what it published: where it runs, how it is tracked
AS_PUBLISHED = ("implementation", "seed", "device", "train.threads", "tracking.", "hydra.",
                "dataset.data_dir", "dataset.download", "experiment")  # fmt: skip


def deviations(overrides: str) -> list[str]:
    """The overrides (as a run's hydra_overrides tag records them) that change what a
    tutorial preset trains: "train.epochs=1"; its published accuracy does not judge those."""
    changed = []
    for word in str(overrides or "").split():
        key = word.split("=", 1)[0].lstrip("+~")
        if "=" in word and key != "dataset" and not key.startswith(AS_PUBLISHED):  # the
            # dataset itself is checked apart: a tutorial is judged on its own one only
            changed.append(word)
    return changed


def summary_table(rows: pd.DataFrame) -> pd.DataFrame:
    """summary.csv: one row per preset, implementation and device (and setting: `setting` is a
    short hash of the comparison key, so two comparisons of one preset never pool). Accuracy: mean and
    t-interval; steady epoch: mean, and geometric mean with its log t-interval (the scale the
    speed ratios use); time to target: median over runs with censored runs as +inf (inf: half
    or more never reached it; NaN: no validation set) and how many reached it."""
    records = []
    groups = rows.groupby(["preset", "implementation", "device", "comparison"], sort=False)
    for (preset, impl, device, sig), g in groups:
        acc, acc_low, acc_high = accuracy_interval(g.test_accuracy)
        geo, geo_low, geo_high = ratio_interval(g.steady_epoch_s)
        target, reached, measured = censored_median(g.time_to_target_s)
        records.append(
            {
                "preset": preset,
                "implementation": impl,
                "device": device,
                "runs": len(g),
                "variant": "/".join(sorted(set(g.get("variant", pd.Series(dtype=str))) - {""})),
                "test_accuracy_mean": acc,
                "test_accuracy_ci_low": acc_low,
                "test_accuracy_ci_high": acc_high,
                "test_accuracy_noise_floor": noise_floor(acc) if np.isfinite(acc) else np.nan,
                "steady_epoch_s_mean": g.steady_epoch_s.mean(),
                "steady_epoch_s_geomean": geo,
                "steady_epoch_s_ci_low": geo_low,
                "steady_epoch_s_ci_high": geo_high,
                "first_epoch_s_median": g.first_epoch_s.median(),
                "samples_per_s_mean": g.samples_per_s.mean(),  # every epoch, tracing too
                "steady_samples_per_s_median": g.steady_samples_per_s.median(),
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
                "setting": setting_id(sig),
                **({"group": g.group.iloc[0]} if "group" in g else {}),
            }
        )
    table = pd.DataFrame(records)
    if table.empty:
        return table
    order = table.implementation.map(impl_key)
    return table.assign(_o=order).sort_values(["preset", "_o"]).drop(columns="_o")


def reproduction(rows: pd.DataFrame) -> pd.DataFrame:
    """Per tutorial preset, implementation and comparison run on the tutorial's own dataset:
    the published accuracy against the mean measured, and whether it is within TOLERANCE.
    Runs on another dataset, or of another config, are never judged against it nor pooled."""
    records = []
    for (preset, impl, key), g in rows.groupby(["preset", "implementation", "comparison"]):
        datasets = set(g.dataset) if "dataset" in g else {TUTORIAL_DATASET}
        if preset not in PUBLISHED or datasets != {TUTORIAL_DATASET}:
            continue
        low, high = PUBLISHED[preset]
        acc = g.test_accuracy.mean()
        ok = low - TOLERANCE <= acc <= high + TOLERANCE
        changed = sorted(
            {w for o in g.get("overrides", pd.Series(dtype=str)) for w in deviations(o)}
        )
        verdict = "reproduced" if ok else "not reproduced"
        if changed:  # the tutorial's own settings were not run: nothing to judge
            verdict = f"not judged (not the tutorial's settings: {', '.join(changed)})"
        records.append(
            {
                "preset": preset,
                "implementation": impl,
                "comparison": key,
                "runs": len(g),
                "published": f"{low:.2%}" if low == high else f"{low:.2%}-{high:.2%}",
                "measured": f"{acc:.2%}",
                "tolerance": f"±{TOLERANCE:.1%}",
                "verdict": verdict,
            }
        )
    return pd.DataFrame(records)


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


def agreement_over_seeds(by_seed: dict) -> pd.DataFrame:
    """Per pair over every seed both ran ({seed: {impl: (predicted, labels)}}): seeds, mean
    agreement, images only A / only B got right per seed (mean), McNemar's p pooled over the
    seeds, and in how many seeds alone p < 0.05."""
    impls = sorted({i for preds in by_seed.values() for i in preds}, key=impl_key)
    records = []
    for a, b in itertools.combinations(impls, 2):
        shared = [s for s, preds in sorted(by_seed.items()) if a in preds and b in preds]
        if not shared:
            continue
        per_seed = []
        for s in shared:
            (pa, labels), (pb, _) = by_seed[s][a], by_seed[s][b]
            ca, cb = pa == labels, pb == labels
            per_seed.append(
                ((pa == pb).mean(), (ca & ~cb).sum(), (~ca & cb).sum(), mcnemar_p(ca, cb))
            )
        agree, only_a, only_b, p = (np.array(x, dtype=float) for x in zip(*per_seed))
        records.append({
            "A": a, "B": b, "seeds": len(shared), "agree": float(agree.mean()),
            "only A right": float(only_a.mean()), "only B right": float(only_b.mean()),
            "McNemar p": pooled_mcnemar_p(only_a, only_b),
            "p < 0.05 in": f"{int((p < 0.05).sum())} of {len(shared)} seeds",
        })  # fmt: skip
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
