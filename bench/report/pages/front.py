"""The report's first screen: what was compared (when, where, which code, how to run it
again), then per preset a verdict box and a key table, then the tutorial reproductions.
A reader who stops here has the answer; everything after it is evidence."""

from __future__ import annotations

import pandas as pd

from bench.job.host import CONTENDED
from bench.report.numbers import stats
from bench.report.numbers.stats import NO_DIFFERENCE
from bench.report.numbers.tables import TOLERANCE, reproduction
from bench.report.pages import fmt
from bench.report.pages.render import Box, Code, Section, Table
from bench.report.pages.sentences import time_text, verdict_sentence
from implementations import impl_key

FIRST_KEYS = ("+experiment", "implementation", "seed")


def _tag(runs: pd.DataFrame, name: str) -> list[str]:
    col = f"tags.{name}"
    return sorted(runs[col].dropna().astype(str).unique()) if col in runs else []


def _overrides(text: str) -> list[tuple[str, str]]:
    """key=value pairs of a run's hydra_overrides tag (a token without '=' belongs to the
    value before it: the tag joins the overrides with spaces)."""
    pairs: list[list[str]] = []
    for token in str(text).split(" "):
        if "=" in token:
            pairs.append(token.split("=", 1))
        elif pairs and token:
            pairs[-1][1] += " " + token
    return [(k, v) for k, v in pairs]


def _seed_key(value: str):
    return (0, int(value), "") if value.lstrip("-").isdigit() else (1, 0, value)


def reproduce_commands(runs: pd.DataFrame) -> list[str]:
    """One `mnist-bench -m` command per preset that runs its grid again: every override its
    runs used, the values that varied joined with commas (implementations in canonical order,
    seeds in numeric order)."""
    commands = []
    for _preset, g in runs.groupby("tags.preset", sort=True):
        values: dict[str, list[str]] = {}
        for text in g.get("tags.hydra_overrides", pd.Series(dtype=str)).dropna():
            for key, value in _overrides(text):
                if value not in values.setdefault(key, []):
                    values[key].append(value)
        if "implementation" in values:
            values["implementation"].sort(key=impl_key)
        if "seed" in values:
            values["seed"].sort(key=_seed_key)
        keys = [k for k in FIRST_KEYS if k in values] + [k for k in values if k not in FIRST_KEYS]
        commands.append(" ".join(["mnist-bench -m", *(f"{k}={','.join(values[k])}" for k in keys)]))
    return commands


def _when(runs: pd.DataFrame) -> str:
    start = pd.to_datetime(runs.start_time, utc=True).min()
    end = pd.to_datetime(runs.get("end_time", runs.start_time), utc=True).max()
    if pd.isna(start):
        return "unknown"
    last = end if pd.notna(end) else start
    same_day = last.date() == start.date()
    return (
        f"{start:%Y-%m-%d %H:%M} to {last:%H:%M}"
        if same_day
        else f"{start:%Y-%m-%d} to {last:%Y-%m-%d}"
    )


def header_section(runs: pd.DataFrame, label: str) -> Section:
    """Facts under the title, from the runs' tags: what, when, sweep, host, code, commands."""
    finished = runs[runs.status == "FINISHED"]
    compared = []
    for preset, g in runs.groupby("tags.preset", sort=True):
        impls = sorted(g["tags.implementation"].dropna().unique(), key=impl_key)
        seeds = sorted(g["params.seed"].dropna().astype(str).unique(), key=_seed_key)
        compared.append(f"{preset}: {', '.join(impls)} x {len(seeds)} seed(s)")
    commits = _tag(runs, "git_commit")
    dirty = set(_tag(runs, "git_dirty"))
    state = (
        "tree clean"
        if dirty == {"false"}
        else "uncommitted changes in the tree"
        if "true" in dirty
        else "tree state unknown"
    )
    threads = ", ".join(_tag(runs, "threads")) or "?"
    text = [
        f"Compared: {'; '.join(compared)}. {len(runs)} runs, {len(finished)} finished.",
        f"When (UTC): {_when(runs)}. Sweep: {', '.join(_tag(runs, 'sweep_id')) or 'none'} "
        f"(selection: {label}).",
        f"Host: {', '.join(_tag(runs, 'host')) or '?'}; CPU: {', '.join(_tag(runs, 'cpu_model')) or '?'}"
        f"; device: {', '.join(_tag(runs, 'device_name')) or '?'}; threads: {threads}.",
        f"Commit: {', '.join(c[:12] for c in commits) or 'unknown'} ({state}).",
        "Reproduce (one command per preset):",
    ]
    return Section(
        "What, when, where", text, blocks=[Code(reproduce_commands(runs))], css_id="header"
    )


def _key_label(impl: str, device: str, setting: int, many: tuple) -> str:
    label = impl
    if many[0]:
        label += f" ({device})"
    if many[1]:
        label += f" (setting {setting})"
    return label


def key_table(rows: pd.DataFrame, preset: str, fairness: list[str]) -> pd.DataFrame:
    """At most 8 columns in human formats, rows in the canonical implementation order."""
    g = rows[rows.preset == preset]
    settings = {s: i + 1 for i, s in enumerate(sorted(g.signature.unique()))}
    many = (g.device.nunique() > 1, len(settings) > 1)
    target = g.get("target", pd.Series(dtype=float)).dropna().unique()
    tt_name = f"time to {100 * target[0]:g}% val." if len(target) == 1 else "time to target"
    records = []
    for (impl, device, sig), r in g.groupby(["implementation", "device", "signature"]):
        acc = stats.t_interval(r.test_accuracy)
        steady = stats.ratio_interval(r.steady_epoch_s)
        notes = [f"only {len(r)} run(s)"] if len(r) < stats.MIN_RUNS else []
        notes += fairness
        records.append(
            {
                "_order": (impl_key(impl), device, settings[sig]),
                "implementation": _key_label(impl, device, settings[sig], many),
                "runs": len(r),
                "test accuracy [95% CI]": fmt.percent(*acc),
                "steady epoch [95% CI]": fmt.seconds(*steady),
                "_steady": steady[0],
                "samples/s": fmt.number(r.samples_per_s.mean()),
                tt_name: time_text(*stats.censored_median(r.time_to_target_s)),
                "notes": "; ".join(notes),
            }
        )
    table = pd.DataFrame(records).sort_values("_order")
    fastest = table["_steady"].min()
    table.insert(4, "speed", [fmt.relative(fastest / s) for s in table["_steady"]])
    return table.drop(columns=["_order", "_steady"]).reset_index(drop=True)


def box_lines(v: pd.DataFrame, preset_rows: pd.DataFrame, fairness: list[str]) -> list[str]:
    """The verdict box of one preset: a sentence per pair for the steady epoch, the accuracy
    said once when every pair is equivalent, time to target only where it differs."""
    lines = [verdict_sentence(r) for r in v[v.quantity == "epoch_time"].itertuples()]
    acc = v[v.quantity == "test_accuracy"]
    if len(acc) and (acc.verdict == "equivalent").all():
        worst = acc.loc[acc.estimate.abs().idxmax()]
        lines.append(
            f"test accuracy equivalent within ±{acc.margin.max():.2f} points for every pair "
            f"(largest difference {worst.a} - {worst.b}: {worst.estimate:+.2f} points "
            f"[{worst.ci_low:+.2f}, {worst.ci_high:+.2f}])"
        )
    else:
        lines += [verdict_sentence(r) for r in acc.itertuples()]
    ttt = v[v.quantity == "time_to_target"]
    differs = ttt[ttt.verdict != NO_DIFFERENCE]
    lines += [verdict_sentence(r) for r in differs.itertuples()]
    if len(ttt) and differs.empty:
        if ttt.estimate.isna().all() and preset_rows.time_to_target_s.isna().all():
            lines.append("time to target: no validation set")
        else:
            lines.append(f"time to target: {NO_DIFFERENCE} for any pair (see Time to accuracy)")
    if preset_rows.seed.nunique() < stats.MIN_RUNS:
        lines.append(
            f"only {preset_rows.seed.nunique()} seed(s): intervals are wide; "
            f"use >= {stats.MIN_RUNS} before publishing"
        )
    lines += [f"WARNING: {w}" for w in fairness]
    if len(v) == 0:
        lines.insert(0, "one implementation only: nothing to compare")
    return lines


def verdict_section(
    rows: pd.DataFrame, v: pd.DataFrame, warnings: list[tuple[str, str]]
) -> Section:
    """Per preset: its verdict box, then its key table (boxes side by side in the HTML)."""
    s = Section("Verdicts", css_id="verdicts")
    if rows.empty:
        s.text.append("No finished run: nothing to compare.")
        return s
    s.notes.append(
        "95% intervals over seeds, paired by seed. Steady epoch: geometric mean over seeds of "
        "the slower implementation's epoch time / the faster one's, with a t-interval on the "
        "logs (the first epoch, which carries tracing, is left out). Time to target: median "
        "over runs, a run that never reached it counted as +inf. Accuracy: difference in "
        "points; 'equivalent' = the whole interval inside the test set's 95% noise margin."
    )
    if (contended := rows[rows.contended_epochs > 0]).size:
        kept = contended[contended.all_contended].run_name.tolist()
        s.notes.append(
            f"Host contention: {len(contended)} of {len(rows)} runs had epochs during which "
            f"other processes used more than {CONTENDED} of a core "
            f"({int(contended.contended_epochs.sum())} epochs); their steady epoch is the "
            "median of their uncontended epochs 2+"
            + (f", except {', '.join(kept)}, contended throughout (all kept)." if kept else ".")
        )
    tables = []
    for preset, g in rows.groupby("preset", sort=True):
        fair = [w for of, w in warnings if of == preset]
        s.blocks.append(Box(preset, box_lines(v[v.preset == preset], g, fair)))
        tables.append(Table(key_table(rows, preset, fair), caption=f"{preset}: key numbers"))
    s.blocks += tables
    return s


def reproduction_section(rows: pd.DataFrame) -> Section:
    """Published tutorial accuracy against ours (mean with its interval) and the verdict."""
    repro = reproduction(rows)
    if repro.empty:
        return Section(
            "Reproduction of published results", ["No tutorial preset in this selection."]
        )
    ours = []
    for r in repro.itertuples():
        g = rows[(rows.preset == r.preset) & (rows.implementation == r.implementation)]
        ours.append(fmt.percent(*stats.t_interval(g.test_accuracy)))
    repro = repro.assign(measured=ours, _o=repro.implementation.map(impl_key))
    repro = repro.sort_values(["preset", "_o"]).drop(columns="_o")
    repro = repro.rename(columns={"measured": "ours [95% CI]"})
    text = [
        "Test accuracy of the tutorial presets against the number their tutorial published; "
        f"'reproduced' = our mean within ±{100 * TOLERANCE:.1f} points of it."
    ]
    return Section("Reproduction of published results", text, [repro.reset_index(drop=True)])
