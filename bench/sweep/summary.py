"""The sweep's parent run as its summary in the MLflow UI: a Markdown description with the
verdicts and the key table, the report (report.html and its figures) under `report/`, the
summary and the verdicts as MLflow tables, `verdict/...` metrics (speed ratios and accuracy
differences with their 95% bounds), and the params every job shared.

Written when a sweep ends (bench.sweep.callback, after the parent's status is set) and
refreshed by `mnist-bench-report` for the sweep it reports, from the same `Findings` as the
report and the terminal table."""

from __future__ import annotations

import math
import sys
import tempfile
from pathlib import Path

import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import Metric, Param
from mlflow.utils.time import get_current_time_millis
from mlflow.utils.validation import MAX_TAG_VAL_LENGTH

from bench.report.numbers.findings import Findings
from bench.report.numbers.rows import group_labels, setting_numbers
from bench.report.pages import fmt
from bench.report.pages.render import md_text
from bench.report.pages.sentences import (
    time_text,
)
from bench.tracking.store import open_experiment, sweep_parent
from bench.tracking.ui import describe_experiment
from implementations import impl_key

REPORT_DIR = "report"  # the parent's artifact folder holding report.html and its figures
METRIC = {  # verdict quantity -> the name of its estimate under verdict/<pair>/
    "epoch_time": "epoch_time_ratio",  # b's steady epoch / a's: > 1 = a faster
    "time_to_target": "time_to_target_ratio",
    "test_accuracy": "accuracy_diff_pts",  # a's minus b's, points
}
SHARED_EXCLUDE = ("implementation.", "seed", "tracking.")


def verdict_metrics(v: pd.DataFrame) -> dict[str, float]:
    """verdict/[<preset>/][setting<k>/]<a>_vs_<b>/<quantity> with _ci_low and _ci_high: finite
    values only (the preset only where the sweep spans presets, the setting only where a preset
    holds several comparisons)."""
    several = v.preset.nunique() > 1
    settings = v.groupby("preset").setting.transform("nunique") > 1 if len(v) else []
    numbers = setting_numbers(v) if len(v) else []
    out = {}
    for r, many, k in zip(v.itertuples(), settings, numbers):
        base = "verdict/" + (f"{r.preset}/" if several else "") + (f"setting{k}/" if many else "")
        base += f"{r.a}_vs_{r.b}/"
        name = base + METRIC[r.quantity]
        digits = supported_digits(r.ci_low, r.ci_high, r.estimate)
        scale = 10.0**digits  # bounds rounded outward: a rounded interval never claims more
        for suffix, value, rounding in (
            ("", r.estimate, round),
            ("_ci_low", r.ci_low, math.floor),
            ("_ci_high", r.ci_high, math.ceil),
        ):
            if value is not None and math.isfinite(value):
                out[name + suffix] = rounding(float(value) * scale) / scale
    return out


def supported_digits(low: float, high: float, estimate: float) -> int:
    """Decimals an estimate is worth: two significant digits of its interval's width (2.31
    [2.02, 2.65]: 2; -0.012 [-0.05, +0.02] points: 3), three of the estimate without one."""
    width = high - low if math.isfinite(low) and math.isfinite(high) else math.nan
    size = width if width > 0 else abs(estimate) if math.isfinite(estimate) else math.nan
    if not size > 0:
        return 3
    return max(0, (1 if width > 0 else 2) - math.floor(math.log10(size)))


def implementation_lines(s: pd.DataFrame) -> list[str]:
    """The summary per implementation as Markdown bullets (MLflow's description renders no
    tables): test accuracy and steady epoch with their intervals, first epoch, time to target."""
    several = s.preset.nunique() > 1 if len(s) else False
    lines = []
    for label, r in zip(group_labels(s), s.itertuples()):
        accuracy = fmt.percent(
            r.test_accuracy_mean, r.test_accuracy_ci_low, r.test_accuracy_ci_high
        )
        steady = fmt.seconds(
            r.steady_epoch_s_geomean, r.steady_epoch_s_ci_low, r.steady_epoch_s_ci_high
        )
        target = (
            time_text(r.time_to_target_s_median, r.time_to_target_reached, r.runs)
            if pd.notna(r.time_to_target_reached)
            else "no validation set"
        )
        lines.append(
            f"- {label + ' / ' if several else ''}**{r.implementation}** ({r.device}, {r.runs} runs): "
            f"test accuracy {accuracy}, steady epoch {steady}, first epoch "
            f"{fmt.seconds(r.first_epoch_s_median)}, time to target {target}"
        )
    return lines


def verdict_lines(findings: Findings) -> list[str]:
    """The verdicts as the report's verdict boxes say them (bench.report.pages.front), per
    preset: speed per pair, accuracy once where every pair is equivalent, time to target
    where it differs."""
    from bench.report.pages.front import box_lines, preset_context

    rows, v = findings.finished, findings.verdicts
    several = rows.preset.nunique() > 1
    lines = []
    for preset, g in rows.groupby("preset", sort=True):
        fair, _, differs = preset_context(preset, g, findings.warnings, findings.runs)
        box = box_lines(v[v.preset == preset], g, fair, differs)
        lines += [f"- {preset + ': ' if several else ''}{line}" for line in box]
    return lines or ["- no finished run: nothing to compare"]


def note(parent, findings: Findings) -> str:
    """The parent's description (Markdown, within MLflow's 8,000 characters, of which its run
    page shows the first 100 pixels before "Show more"): one line naming the sweep and its
    outcome, then the verdicts, then the numbers behind them and where the rest is."""
    rows, notes = findings.rows, findings.selection.notes
    tags = parent.data.tags
    sweep_id, command = tags.get("sweep_id", "?"), tags.get("sweep_command", "")
    status = "" if parent.info.status == "FINISHED" else f" ({parent.info.status})"
    finished = rows[rows.status == "FINISHED"]
    presets = ", ".join(sorted(rows.preset.dropna().unique()))
    impls = ", ".join(sorted(rows.implementation.dropna().unique(), key=impl_key))
    outcome = tags.get("sweep_outcome")  # the jobs' count, set when the sweep ended
    first = f"**Sweep {sweep_id}{status}**: {impls} ({presets})"
    first += f". **Outcome:** {outcome}" if outcome else ""
    lines = [
        first + f"; verdicts of {len(finished)} of {len(rows)} runs (95% intervals over seeds, "
        "paired by seed):",
        "",
        *verdict_lines(findings),
        "",
    ]
    lines += [f"**Runs:** {n}." for n in notes] + ([""] if notes else [])
    if not findings.summary.empty:
        lines += ["**Per implementation**", "", *implementation_lines(findings.summary), ""]
    failed = rows[rows.status != "FINISHED"]
    if not failed.empty:
        names = ", ".join(f"{r.run_name} ({r.status})" for r in failed.itertuples())
        lines += [f"Not finished (left out of the statistics): {names}", ""]
    tail = [
        f"The whole report: artifacts `{REPORT_DIR}/report.html` and `{REPORT_DIR}/report.md`; "
        "the summary and verdict tables: `summary_table.json`, `verdicts_table.json`; "
        "metrics `verdict/...`.",
        "",
        f"Command: `{command}`" if command else "",
    ]
    return within_limit(md_text("\n".join(lines).rstrip()), md_text("\n".join(tail).rstrip()))


def within_limit(body: str, tail: str, limit: int = MAX_TAG_VAL_LENGTH) -> str:
    """body and tail, whole lines of the body cut from its end where both exceed MLflow's
    tag limit (it would cut mid-line and say nothing), with a line saying so."""
    text = f"{body}\n\n{tail}\n"
    if len(text) <= limit:
        return text
    cut = f"\n\n(cut at MLflow's {limit:,}-character limit: see `{REPORT_DIR}/report.md`)"
    room = limit - len(tail) - len(cut) - 3
    kept = body[:room].rsplit("\n", 1)[0] if room > 0 else ""
    return f"{kept}{cut}\n\n{tail}\n"[:limit]


def shared_params(runs: pd.DataFrame) -> dict[str, str]:
    """The params every job of the sweep had with one value (not implementation or seed)."""
    out = {}
    for col in sorted(c for c in runs.columns if c.startswith("params.")):
        key = col.removeprefix("params.")
        values = runs[col].dropna().unique()
        if not key.startswith(SHARED_EXCLUDE) and len(values) == 1 and runs[col].notna().all():
            out[key] = str(values[0])
    return out


def publish(findings: Findings, uri: str, experiment: str, report_dir: Path | None = None):
    """Writes the summary of the sweep `findings` reports onto its parent run; `report_dir` is a
    report already built from them (else one is built here). Returns (experiment id, parent
    run id)."""
    from bench.report.pages.assemble import build_report

    sweep_id = findings.selection.sweep_id
    runs, rows, v, s = findings.runs, findings.rows, findings.verdicts, findings.summary
    experiment_id = open_experiment(uri, experiment)
    parent = sweep_parent(experiment_id, sweep_id)
    parent_id = parent.info.run_id
    client = MlflowClient()
    describe_experiment(experiment_id)
    text = note(parent, findings)
    client.set_tag(parent_id, "mlflow.note.content", text)
    now = get_current_time_millis()
    metrics = [Metric(k, val, now, 0) for k, val in verdict_metrics(v).items()]
    logged = parent.data.params
    params = [Param(k, val[:6000]) for k, val in shared_params(runs).items() if k not in logged]
    if not logged.get("sweep.implementations"):
        params += [
            Param(
                "sweep.implementations",
                ",".join(sorted(rows.implementation.unique(), key=impl_key)),
            ),
            Param("sweep.seeds", ",".join(sorted(rows.seed.astype(str).unique()))),
            Param("sweep.presets", ",".join(sorted(rows.preset.unique()))),
        ]
    for i in range(0, max(len(metrics), len(params)), 100):
        client.log_batch(parent_id, metrics=metrics[i : i + 100], params=params[i : i + 100])
    if not s.empty:
        replace_table(client, parent_id, s, "summary_table.json")
    if not v.empty:
        replace_table(client, parent_id, v, "verdicts_table.json")
    with tempfile.TemporaryDirectory() as tmp:
        if report_dir is None:
            report_dir = build_report(findings, Path(tmp) / REPORT_DIR).parent
        kept = {Path(a.path).name for a in client.list_artifacts(parent_id, REPORT_DIR)}
        if lacks := sorted(kept - {p.name for p in Path(report_dir).iterdir()}):
            print(f"kept sweep {sweep_id}'s report in MLflow: this one lacks {', '.join(lacks)}",
                  file=sys.stderr)  # fmt: skip
        else:
            client.log_artifacts(parent_id, str(report_dir), REPORT_DIR)
    return experiment_id, parent_id


def replace_table(client: MlflowClient, run_id: str, table: pd.DataFrame, path: str) -> None:
    """A table artifact written anew (MLflow's log_table appends to one that exists): the
    first write goes through log_table, so the UI shows it as a table; later ones replace
    the file in the same format."""
    if path not in {a.path for a in client.list_artifacts(run_id)}:
        client.log_table(run_id, table, path)
        return
    with tempfile.TemporaryDirectory() as tmp:
        file = Path(tmp) / path
        table.to_json(file, orient="split", index=False, date_format="iso")
        client.log_artifact(run_id, str(file))
