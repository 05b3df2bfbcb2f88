"""The report's first screen: what was compared (when, where, which code, how to run it
again), then per preset a verdict box and a key table, then the tutorial reproductions.
A reader who stops here has the answer; everything after it is evidence."""

from __future__ import annotations

import re
import shlex

import pandas as pd

from bench.job.host import CONTENDED
from bench.report.numbers import platforms, stats
from bench.report.numbers.collect import what_differs
from bench.report.numbers.rows import setting_id, setting_numbers
from bench.report.numbers.stats import NOT_TESTED, UNDECIDED
from bench.report.numbers.tables import PUBLISHED, TOLERANCE, TUTORIAL_DATASET, reproduction
from bench.report.pages import fmt
from bench.report.pages.render import Box, Code, Section, Table
from bench.report.pages.sentences import time_text, verdict_sentence
from implementations import impl_key

FIRST_KEYS = ("+experiment", "implementation", "seed")


def _tag(runs: pd.DataFrame, name: str) -> list[str]:
    col = f"tags.{name}"
    return sorted(runs[col].dropna().astype(str).unique()) if col in runs else []


def overrides(text: str) -> list[tuple[str, str]]:
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


PLACES = (
    "tracking.uri",
    "tracking.artifact_root",
    "hydra.sweep.dir",
    "hydra.run.dir",
    "dataset.data_dir",
)  # fmt: skip  where a run's files went, not what it computed


def reproduce_commands(runs: pd.DataFrame, with_places: bool = False) -> list[str]:
    """One `mnist-bench -m` command per preset that runs its grid again: every override its
    runs used (without the local places their files went, unless `with_places`), the values
    that varied joined with commas (implementations in canonical order, seeds in numeric
    order), shell-quoted."""
    commands = []
    for _preset, g in runs.groupby("tags.preset", sort=True):
        values: dict[str, list[str]] = {}
        for text in g.get("tags.hydra_overrides", pd.Series(dtype=str)).dropna():
            for key, value in overrides(text):
                if key.lstrip("+~") in PLACES and not with_places:
                    continue
                if value not in values.setdefault(key, []):
                    values[key].append(value)
        if "implementation" in values:
            values["implementation"].sort(key=impl_key)
        if "seed" in values:
            values["seed"].sort(key=_seed_key)
        keys = [k for k in FIRST_KEYS if k in values] + [k for k in values if k not in FIRST_KEYS]
        words = ["mnist-bench", "-m", *(f"{k}={','.join(values[k])}" for k in keys)]
        commands.append(shlex.join(words))  # pasteable: a value with a space stays one word
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


def _seeds(n: int) -> str:
    return f"{n} seed" + ("" if n == 1 else "s")


def header_section(runs: pd.DataFrame, label: str, with_places: bool = False) -> Section:
    """Facts under the title, from the runs' tags: what, when, sweep, host, code, commands."""
    finished = runs[runs.status == "FINISHED"]
    compared = []
    for preset, g in runs.groupby("tags.preset", sort=True):
        seeds = g.groupby("tags.implementation")["params.seed"].nunique()
        seeds = seeds.reindex(sorted(seeds.index, key=impl_key))
        if seeds.nunique() == 1:
            compared.append(f"{preset}: {', '.join(seeds.index)} x {_seeds(seeds.iloc[0])}")
        else:  # say which implementation ran fewer seeds: only shared seeds are paired
            each = ", ".join(f"{impl} x {_seeds(n)}" for impl, n in seeds.items())
            compared.append(f"{preset}: {each}")
    commits = _tag(runs, "git_commit")
    dirty = runs.get("tags.git_dirty", pd.Series(dtype=str)).dropna().astype(str)
    state = (
        "tree clean"
        if set(dirty) == {"false"}
        else "uncommitted changes in the tree"
        + ("" if (dirty == "true").all() else f" of {(dirty == 'true').sum()} of {len(dirty)} runs")
        if "true" in set(dirty)
        else "tree state unknown"
    )
    threads = ", ".join(_tag(runs, "threads")) or "?"
    text = [
        f"Compared: {'; '.join(compared)}. {len(runs)} runs, {len(finished)} finished.",
        f"When (UTC): {_when(runs)}. Sweep: {', '.join(_tag(runs, 'sweep_id')) or 'none'} "
        f"(selection: {label}).",
        f"Host: {', '.join(_tag(runs, 'host')) or '?'}; CPU: {', '.join(_tag(runs, 'cpu_model')) or '?'}"
        f"; device: {', '.join(_tag(runs, 'device_name')) or '?'}; threads: {threads}.",
        *(
            [f"Platforms (never paired by seed): {platforms.hosts_line(runs)}."]
            if platforms.platform_names(runs).nunique() > 1
            else []
        ),  # fmt: skip
        f"Commit: {', '.join(c[:12] for c in commits) or 'unknown'} ({state}).",
        f"Dataset: {datasets(runs)}.",
        "Reproduce (one command per preset):",
    ]
    return Section(
        "What, when, where",
        text,
        blocks=[Code(reproduce_commands(runs, with_places))],
        css_id="header",
    )


def datasets(runs: pd.DataFrame) -> str:
    """Each dataset the runs trained on, by name with its digest: "mnist (sha256 c6558067)"."""
    name = runs.get("params.dataset.name", pd.Series("?", index=runs.index)).fillna("?")
    digest = runs.get("tags.dataset_digest", pd.Series("", index=runs.index)).fillna("")
    pairs = sorted(set(zip(name.astype(str), digest.astype(str))))
    return ", ".join(f"{n} (sha256 {d[:8]})" if d else n for n, d in pairs) or "unknown"


def _key_label(impl: str, device: str, setting: int, many: tuple) -> str:
    label = impl
    if many[0]:
        label += f" ({device})"
    if many[1]:
        label += f" (setting {setting})"
    return label


def speed_cells(v: pd.DataFrame) -> dict[str, str]:
    """Each implementation's speed as the paired steady-epoch verdicts of one comparison say
    it: "fastest" only for an implementation faster than every other by its verdict, the
    others' paired ratio to that one; where no implementation is, no fastest is named."""
    ep = v[v.quantity == "epoch_time"]
    impls = set(ep.a) | set(ep.b)
    wins = {i: 0 for i in impls}
    for r in ep.itertuples():
        if r.verdict in ("faster", "slower"):
            wins[r.a if r.verdict == "faster" else r.b] += 1
    fastest = [i for i, n in wins.items() if n == len(impls) - 1]
    if not fastest:
        return dict.fromkeys(impls, "no fastest (see the verdicts)") if impls else {}
    best = fastest[0]
    cells = {best: "fastest"}
    for r in ep[(ep.a == best) | (ep.b == best)].itertuples():
        other, ratio = (r.b, r.estimate) if r.a == best else (r.a, 1 / r.estimate)
        cells[other] = f"{ratio:.2f}x slower (paired)"
    return cells


def key_table(
    rows: pd.DataFrame, v: pd.DataFrame, preset: str, fairness: list[str]
) -> pd.DataFrame:
    """Human formats, rows in the canonical implementation order, the answer first (speed
    and steady epoch before the rest, so a phone shows them): the speed column says what the
    paired verdicts of the row's comparison say; throughput counts steady epochs (the first,
    tracing, epoch has its own column). A one-seed preset gets single-run numbers only."""
    g = rows[rows.preset == preset]
    settings = dict(zip(g.comparison, setting_numbers(g)))
    many = (g.device.nunique() > 1, len(settings) > 1)
    target = g.get("target", pd.Series(dtype=float)).dropna().unique()
    tt_name = f"time to {100 * target[0]:g}% val." if len(target) == 1 else "time to target"
    one_seed = g.seed.nunique() == 1
    records = []
    for (impl, device, key), r in g.groupby(["implementation", "device", "comparison"]):
        speed = speed_cells(v[(v.preset == preset) & (v.setting == setting_id(key))])
        notes = [f"only {len(r)} run(s)"] if len(r) < stats.MIN_RUNS and not one_seed else []
        notes += fairness
        row = {"_order": (impl_key(impl), device, settings[key]),
               "implementation": _key_label(impl, device, settings[key], many)}  # fmt: skip
        if one_seed:  # single runs: their numbers, no interval, no speed claim
            row |= {
                "test accuracy": fmt.percent(r.test_accuracy.mean()),
                "steady epoch": fmt.seconds(r.steady_epoch_s.median()),
                "steady samples/s": fmt.number(r.steady_samples_per_s.median()),
                "first epoch": fmt.seconds(r.first_epoch_s.median()),
                tt_name: time_text(*stats.censored_median(r.time_to_target_s)),
            }
        else:
            row |= {
                "speed": speed.get(impl, ""),
                "steady epoch [95% CI]": fmt.seconds(*stats.ratio_interval(r.steady_epoch_s)),
                "test accuracy [95% CI]": fmt.percent(*stats.accuracy_interval(r.test_accuracy)),
                "steady samples/s (median)": fmt.number(r.steady_samples_per_s.median()),
                "first epoch (median)": fmt.seconds(r.first_epoch_s.median()),
                tt_name: time_text(*stats.censored_median(r.time_to_target_s)),
                "runs": len(r),
            }
        variant = g.get("variant", pd.Series("", index=g.index))  # rows older than the tag
        if variant.ne("").any():  # the framework variant its runs trained with
            row["variant"] = "/".join(sorted(set(variant[r.index]) - {""})) or "not recorded"
        if notes:
            row["notes"] = "; ".join(notes)
        records.append(row)
    table = pd.DataFrame(records).fillna("").sort_values("_order")
    return table.drop(columns=["_order"]).reset_index(drop=True)


def box_lines(
    v: pd.DataFrame, preset_rows: pd.DataFrame, fairness: list[str], differs: dict | None = None
) -> list[str]:
    """The verdict box of one preset: per comparison (where the preset holds several, each
    named "setting k"), a sentence per pair for the steady epoch, the accuracy said once when
    every pair is equivalent, time to target only where it differs."""
    if preset_rows.seed.nunique() == 1 and len(v):
        return one_seed_lines(preset_rows, fairness, differs or {})
    numbers = dict(zip(preset_rows.comparison.map(setting_id), setting_numbers(preset_rows)))
    lines = []
    if len(numbers) > 1:
        lines.append(
            f"{len(numbers)} comparisons, never pooled: their runs differ in what must be equal "
            "(below); each verdict names its setting"
        )
    keys = dict(zip(preset_rows.comparison.map(setting_id), preset_rows.comparison))
    for setting in sorted(numbers, key=numbers.get):
        prefix = f"setting {numbers[setting]}: " if len(numbers) > 1 else ""
        if facets := (differs or {}).get(keys[setting]):
            lines.append(f"{prefix}{facets}")
        of = v[v.setting == setting]
        of_rows = preset_rows[preset_rows.comparison.map(setting_id) == setting]
        lines += [prefix + line for line in comparison_lines(of, of_rows)]
    if preset_rows.seed.nunique() < stats.MIN_RUNS:
        lines.append(
            f"only {preset_rows.seed.nunique()} seed(s): intervals are wide; "
            f"use >= {stats.MIN_RUNS} before publishing"
        )
    lines += [f"WARNING: {w}" for w in fairness]
    if len(v) == 0:
        lines.insert(0, "one implementation only: nothing to compare")
    return lines


CAPTION = (  # (params, words): what a key table's caption names where all its runs share it
    (("params.model.hidden", "params.model.activation"), "{} {}"),
    (("params.optimizer.name", "params.optimizer.lr"), "{} lr={}"),
    (("params.train.batch_size",), "batch {}"),
    (("params.train.epochs",), "{} epochs"),
    (("params.model.dtype",), "{}"),
    (("params.device.name",), "{}"),
)


def layer_sizes(hidden: str) -> str:
    """The layer sizes, 784-512-10 from the logged "[512]": the network is [784, *hidden, 10]."""
    return "-".join(["784", *re.findall(r"\d+", str(hidden)), "10"])


def shared_value(runs: pd.DataFrame, column: str) -> str | None:
    """The one value every run has in `column`, else None (absent, or it differs)."""
    values = runs[column].dropna().astype(str).unique() if column in runs else []
    if len(values) != 1:
        return None
    return layer_sizes(values[0]) if column == "params.model.hidden" else values[0]


def settings_text(runs: pd.DataFrame) -> str:
    """The settings a preset's runs share, in words: "784-512-10 relu, rmsprop lr=0.001,
    batch 128, 5 epochs, float32, cpu" (a setting its comparisons differ in is left to them)."""
    words = []
    for columns, form in CAPTION:
        values = [shared_value(runs, c) for c in columns]
        if None not in values:
            words.append(form.format(*values))
    return ", ".join(words)


def key_caption(preset: str, runs: pd.DataFrame, preset_rows: pd.DataFrame, differs: dict) -> str:
    """The key table's caption, "compare: key numbers (784-512-10 relu, ...)": the settings
    every row shares and, where the preset holds several comparisons, what each "(setting k)"
    row ran."""
    numbers = dict(zip(preset_rows.comparison, setting_numbers(preset_rows)))
    each = [f"setting {numbers[k]}: {differs[k]}" for k in sorted(differs, key=numbers.get)]
    words = "; ".join(filter(None, [settings_text(runs), *each]))
    return f"{preset}: key numbers" + (f" ({words})" if words else "")


def one_seed_lines(preset_rows: pd.DataFrame, fairness: list[str], differs: dict) -> list[str]:
    """A one-seed preset's box: one run per implementation gives no interval, so no verdict
    is tested; the key table holds the single runs' numbers."""
    seed = preset_rows.seed.iloc[0]
    numbers = dict(zip(preset_rows.comparison, setting_numbers(preset_rows)))
    lines = [
        f"1 seed (seed {seed}): {NOT_TESTED}, one run per implementation gives no interval; "
        "the numbers below are single runs. For verdicts, run 3 or more seeds "
        "(seed=0,1,2 or more)"
    ]
    lines += [f"setting {numbers[k]}: {differs[k]}" for k in sorted(differs, key=numbers.get)]
    return lines + [f"WARNING: {w}" for w in fairness]


def comparison_lines(v: pd.DataFrame, preset_rows: pd.DataFrame) -> list[str]:
    """The verdict lines of one comparison."""
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
    decided = ttt[ttt.verdict.isin(["faster", "slower"])]
    lines += [verdict_sentence(r) for r in decided.itertuples()]
    rest = ttt.drop(decided.index)
    if rest.empty:
        return lines
    if rest.estimate.isna().all() and preset_rows.time_to_target_s.isna().all():
        lines.append("time to target: no validation set")
    elif (
        (rest.verdict == NOT_TESTED).all()
        and rest.censored.all()
        and (rest.reached_a + rest.reached_b == 0).all()
    ):
        lines.append(f"time to target: {NOT_TESTED} for any pair (no run reached the target)")
    elif (rest.verdict == UNDECIDED).all():
        which = "the other pairs" if len(decided) else "any pair"
        lines.append(f"time to target: {UNDECIDED} for {which} (see Time to accuracy)")
    else:
        lines += [verdict_sentence(r) for r in rest.itertuples()]
    return lines


def preset_context(preset: str, g: pd.DataFrame, warnings, runs) -> tuple:
    """What a preset's verdict box needs besides its rows `g`: its fairness warnings, its runs
    (empty without `runs`) and what sets its comparisons apart."""
    fair = [w for of, w in warnings if of == preset]
    of = runs[runs.run_id.isin(g.run_id)] if runs is not None else pd.DataFrame()
    return fair, of, what_differs(of, of.comparison) if runs is not None else {}


def verdict_section(
    rows: pd.DataFrame, v: pd.DataFrame, warnings: list[tuple[str, str]], runs=None
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
        fair, of, differs = preset_context(preset, g, warnings, runs)
        s.blocks.append(Box(preset, box_lines(v[v.preset == preset], g, fair, differs)))
        table = key_table(rows, v, preset, fair)
        tables.append(Table(table, caption=key_caption(preset, of, g, differs)))
    s.blocks += tables
    return s


def reproduction_section(rows: pd.DataFrame) -> Section:
    """Published tutorial accuracy against ours (mean with its interval) and the verdict."""
    repro = reproduction(rows)
    if repro.empty:
        tutorials = sorted(set(rows.preset) & set(PUBLISHED))
        return (
            Section(
                "Reproduction of published results",
                [
                    f"{', '.join(tutorials)}: not judged, no run on the tutorial's own dataset "
                    f"({TUTORIAL_DATASET})."
                ],  # fmt: skip
            )
            if tutorials
            else None
        )  # no tutorial preset: no section
    numbers = dict(zip(rows.comparison, setting_numbers(rows)))
    several = rows.groupby("preset").comparison.nunique()
    ours, labels = [], []
    for r in repro.itertuples():
        g = rows[rows.comparison == r.comparison]
        g = g[(g.preset == r.preset) & (g.implementation == r.implementation)]
        ours.append(fmt.percent(*stats.accuracy_interval(g.test_accuracy)))
        many = several[r.preset] > 1
        labels.append(r.implementation + (f" (setting {numbers[r.comparison]})" if many else ""))
    repro = repro.assign(
        measured=ours, implementation=labels, _o=repro.implementation.map(impl_key)
    )
    repro = repro.sort_values(["preset", "_o"]).drop(columns=["_o", "comparison"])
    repro = repro.rename(columns={"measured": "ours [95% CI]"})
    text = [
        "Test accuracy of the tutorial presets against the number their tutorial published; "
        f"'reproduced' = our mean within ±{100 * TOLERANCE:.1f} points of it. Only runs on "
        f"the tutorial's own dataset ({TUTORIAL_DATASET}) are judged."
    ]
    return Section("Reproduction of published results", text, [repro.reset_index(drop=True)])
