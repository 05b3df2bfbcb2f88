"""The report's secondary tables, collapsed at the end: evidence a reader may want to check
(lockstep, determinism, environment, exact commands, the remaining numbers), each cut to one
row per preset or run group where more rows would say nothing more."""

from __future__ import annotations

import shlex

import pandas as pd

from bench.report.numbers.tables import determinism
from bench.report.numbers.verdicts import pairs
from bench.report.pages import fmt
from bench.report.pages.front import PLACES, overrides
from bench.report.pages.render import Code, Section
from bench.tracking import store
from bench.tracking.runs import REPEAT_TOLERANCE
from implementations import impl_key


def canonical(table: pd.DataFrame, *first: str) -> pd.DataFrame:
    """Rows sorted by `first`, then in the canonical implementation order."""
    order = table.implementation.map(impl_key)
    keys = [*first, "_o"]
    return table.assign(_o=order).sort_values(keys).drop(columns="_o").reset_index(drop=True)


def more_numbers(summary: pd.DataFrame) -> Section | None:
    """The summary's columns the key tables leave out, in human formats."""
    if summary.empty:
        return None
    gap = 100 * (summary.train_accuracy_mean - summary.test_accuracy_mean)
    out = pd.DataFrame(
        {
            "preset": summary.preset,
            "implementation": summary.implementation,
            "device": summary.device,
            "runs": summary.runs,
            "first epoch (median)": summary.first_epoch_s_median.map(fmt.seconds),
            "total job (mean)": summary.total_time_s_mean.map(fmt.seconds),
            "setup (median)": summary.setup_s_median.map(fmt.seconds),
            "overhead (median)": summary.overhead_s_median.map(fmt.seconds),
            "job memory MB": summary.job_memory_mb_max.map(fmt.number),
            "process peak RSS MB": summary.peak_rss_mb_max.map(fmt.number),
            "train accuracy": summary.train_accuracy_mean.map(fmt.percent),
            "train - test": gap.map(lambda x: f"{x:+.2f} points"),
        }
    )
    text = [
        "Setup: data and network before the first epoch, for every job. Job memory: what the job "
        "added over the memory it started with; process peak RSS also counts what earlier jobs "
        "of the same process loaded (a framework's libraries). Overhead: the job's time outside "
        "its epochs (setup, evaluations, tracking, figures), without its framework's one-time "
        "import and the model's logging. Train accuracy over the last epoch's batches as they "
        "trained (what Keras reports); a large train - test gap is overfitting."
    ]
    return Section(
        "More numbers per implementation", text, [canonical(out, "preset")], appendix=True
    )


def lockstep_pairs(runs: pd.DataFrame, hist: pd.DataFrame) -> pd.DataFrame:
    """Per preset and pair of lockstep runs: the largest train-loss difference over every
    epoch and shared seed, and where it was."""
    lock = runs[runs.get("tags.lockstep", pd.Series(index=runs.index)) == "true"]
    loss = hist[(hist.key == "train_loss") & hist.run_id.isin(lock.run_id)].merge(
        lock[["run_id", "params.seed", "tags.preset", "tags.implementation"]], on="run_id"
    )
    records = []
    for preset, g in loss.groupby("tags.preset"):
        wide = g.pivot_table(
            index=["params.seed", "step"], columns="tags.implementation", values="value"
        )
        for a, b in pairs(wide.columns):
            diff = (wide[a] - wide[b]).abs().dropna()
            if diff.empty:
                continue
            seed, epoch = diff.idxmax()
            records.append(
                {
                    "preset": preset,
                    "pair": f"{a} vs {b}",
                    "seeds": diff.index.get_level_values(0).nunique(),
                    "epochs": diff.index.get_level_values(1).nunique(),
                    "max |loss difference|": fmt.number(diff.max()),
                    "at (seed, epoch)": f"({seed}, {epoch})",
                }
            )
    return pd.DataFrame(records)


def lockstep_section(runs: pd.DataFrame, hist: pd.DataFrame) -> Section | None:
    """The largest train-loss gap between lockstep implementations (None without two)."""
    table = lockstep_pairs(runs, hist)
    if table.empty:
        return None
    text = [
        "Lockstep runs share initial weights and batch order, so their train losses should "
        "agree to float32 rounding: the largest difference over all epochs and seeds."
    ]
    return Section("Lockstep check", text, [table], appendix=True)


def determinism_section(runs: pd.DataFrame) -> Section | None:
    """How repeats of one config matched their earlier runs (None without a repeat: a run
    again with tracking.skip_completed=false makes one)."""
    table = determinism(runs)
    if table.empty:
        return None
    shaky = table[table.bitwise < table[["bitwise", "tolerance", "divergent"]].sum(axis=1)]
    text = [
        "Runs whose config and seed ran before, compared epoch by epoch on the train loss: "
        f"bitwise = identical, tolerance = within {REPEAT_TOLERANCE:g} relative."
    ]
    text += [
        f"{r.implementation} is not bitwise reproducible here: largest relative loss "
        f"difference {r['max rel. loss diff']:.2g}."
        for _, r in shaky.iterrows()
    ] or ["Every repeated run reproduced its losses bitwise."]
    table["max rel. loss diff"] = table["max rel. loss diff"].map(lambda x: f"{x:.2g}")
    return Section("Determinism", text, [table], appendix=True)


ENV_TAGS = ("device_name", "threads", "blas", "git_commit", "git_dirty", "dataset_digest")


def environment_section(runs: pd.DataFrame) -> Section:
    """One row per preset and implementation: machine, package versions (each implementation
    records its framework's), code and data."""
    versions = sorted(c for c in runs.columns if c.startswith("tags.version."))
    records = []
    for (preset, impl), g in runs.groupby(["tags.preset", "tags.implementation"]):
        record = {"preset": preset, "implementation": impl, "runs": len(g)}
        for tag in ENV_TAGS:
            values = g.get(f"tags.{tag}", pd.Series(dtype=str)).dropna().astype(str).unique()
            short = [v[:12] if tag in ("git_commit", "dataset_digest") else v for v in values]
            record[tag] = ", ".join(sorted(short))
        record["versions"] = ", ".join(
            f"{c.removeprefix('tags.version.')} {'/'.join(sorted(g[c].dropna().unique()))}"
            for c in versions
            if g[c].notna().any()
        )
        records.append(record)
    table = canonical(pd.DataFrame(records), "preset") if records else pd.DataFrame()
    return Section("Environment per run group", [], [table], appendix=True)


def commands_section(runs: pd.DataFrame, clean=str, with_places: bool = True) -> Section:
    """Each run's exact command (without the local places its files went, unless
    `with_places`: pasted elsewhere, a shortened path would make a store of its own), and each
    sweep's command as it was typed (a record, paths shortened by `clean`)."""
    typed = []
    for experiment_id in runs.experiment_id.dropna().unique():
        for sweep_id in runs.get("tags.sweep_id", pd.Series(dtype=str)).dropna().unique():
            try:
                parent = store.sweep_parent(experiment_id, sweep_id)
            except store.StoreError:
                continue
            if parent.data.tags.get("sweep_command"):
                typed.append(f"{clean(parent.data.tags['sweep_command'])}  # sweep {sweep_id}")
    per_run = [
        shlex.join(
            [
                "mnist-bench",
                *(
                    f"{k}={v}"
                    for k, v in overrides(str(o))
                    if with_places or k.lstrip("+~") not in PLACES
                ),
            ]
        )  # fmt: skip
        + f"  # {name}"
        for name, o in sorted(zip(runs.run_name, runs.get("tags.hydra_overrides", "")))
    ]
    section = Section("Exact commands", appendix=True)
    if typed:
        section.text.append("Each sweep as it was typed:")
        section.blocks.append(Code(typed))
    section.blocks += ["Each run (the overrides it ran with):", Code(per_run)]
    return section
