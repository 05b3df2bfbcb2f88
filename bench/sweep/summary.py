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

from bench.report.numbers.findings import Findings
from bench.report.numbers.rows import group_labels, setting_numbers
from bench.report.pages import fmt
from bench.report.pages.render import markdown_table, md_text
from bench.report.pages.sentences import (
    WORDS,
    estimate_text,
    time_text,
    verdict_sentence,
    verdict_text,
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
        for suffix, value in (("", r.estimate), ("_ci_low", r.ci_low), ("_ci_high", r.ci_high)):
            if value is not None and math.isfinite(value):
                out[name + suffix] = float(value)
    return out


def key_table(s: pd.DataFrame) -> pd.DataFrame:
    """The summary table in human formats, one row per preset and implementation."""
    return pd.DataFrame(
        {
            "preset": group_labels(s),
            "implementation": s.implementation,
            "device": s.device,
            "runs": s.runs,
            "test accuracy [95% CI]": [
                fmt.percent(r.test_accuracy_mean, r.test_accuracy_ci_low, r.test_accuracy_ci_high)
                for r in s.itertuples()
            ],
            "steady epoch [95% CI]": [
                fmt.seconds(
                    r.steady_epoch_s_geomean, r.steady_epoch_s_ci_low, r.steady_epoch_s_ci_high
                )
                for r in s.itertuples()
            ],
            "first epoch": s.first_epoch_s_median.map(fmt.seconds),
            "time to target": [
                time_text(r.time_to_target_s_median, r.time_to_target_reached, r.runs)
                if pd.notna(r.time_to_target_reached)
                else "no validation set"
                for r in s.itertuples()
            ],
        }
    )


def note(
    parent, rows: pd.DataFrame, v: pd.DataFrame, s: pd.DataFrame, notes: list[str] = ()
) -> str:
    """The parent's description (Markdown): its own outcome (the jobs' count, or why it was
    stopped), the verdicts, then the numbers behind them."""
    tags = parent.data.tags
    sweep_id, command = tags.get("sweep_id", "?"), tags.get("sweep_command", "")
    status = "" if parent.info.status == "FINISHED" else f" ({parent.info.status})"
    finished = rows[rows.status == "FINISHED"]
    presets = ", ".join(sorted(rows.preset.dropna().unique()))
    impls = ", ".join(sorted(rows.implementation.dropna().unique(), key=impl_key))
    lines = [f"### Sweep {sweep_id}{status}: {impls} ({presets})", ""]
    if outcome := tags.get("sweep_outcome"):  # the jobs' count, set when the sweep ended
        lines += [f"**Outcome:** {outcome}", ""]
    lines += [f"**Runs:** {n}." for n in notes] + ([""] if notes else [])
    lines += [
        f"**Verdicts** ({len(finished)} of {len(rows)} runs finished; 95% intervals over "
        "seeds, paired by seed):",
        "",
    ]
    if v.empty:
        lines.append("- no pair of implementations shares a seed: nothing to compare")
    groups = group_labels(v)
    several = groups.nunique() > 1
    lines += [
        f"- {group + ': ' if several else ''}{verdict_sentence(r)}"
        for group, r in zip(groups, v.itertuples())
    ]
    if not s.empty:
        lines += ["", "**Per implementation**", "", markdown_table(key_table(s))]
    if not v.empty:
        table = pd.DataFrame(
            {
                "preset": groups,
                "pair (a vs b)": v.a + " vs " + v.b,
                "quantity": v.quantity.map(lambda q: WORDS.get(q, "test accuracy")),
                "b/a time or a-b accuracy [95% CI]": [estimate_text(r) for r in v.itertuples()],
                "n": v.n.astype(str),
                "verdict": [verdict_text(r) for r in v.itertuples()],
            }
        )
        lines += ["", "**Verdict table**", "", markdown_table(table)]
    failed = rows[rows.status != "FINISHED"]
    if not failed.empty:
        names = ", ".join(f"{r.run_name} ({r.status})" for r in failed.itertuples())
        lines += ["", f"Not finished (left out of the statistics): {names}"]
    lines += [
        "",
        f"Full report: artifacts `{REPORT_DIR}/report.html` (its figures beside it); tables "
        "`summary_table.json`, `verdicts_table.json`; metrics `verdict/...`. Group the child "
        "runs by `implementation`.",
        "",
        f"Command: `{command}`" if command else "",
    ]
    return md_text("\n".join(lines).rstrip()) + "\n"  # names from MLflow shown, never as HTML


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
    text = note(parent, rows, v, s, findings.selection.notes)
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
