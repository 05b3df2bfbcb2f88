"""The verdicts of one sweep as a compact terminal table, printed when a `-m` sweep ends, so
the command that ran the benchmark also says what it found and where to look next."""

from __future__ import annotations

import shlex
from pathlib import Path

from bench.job.redact import redact
from bench.job.settings import CONF, TrackingSettings
from bench.report.numbers.findings import Findings
from bench.report.numbers.rows import group_labels
from bench.report.pages.sentences import WORDS, estimate_text, verdict_text
from bench.tracking.store import DEFAULT_URI
from bench.tracking.ui import runs_link, ui_of

DEFAULT_EXPERIMENT = TrackingSettings.experiment
HEADER = ("preset", "pair (a vs b)", "quantity", "b/a time or a-b accuracy [95% CI]", "n")


def verdict_rows(v) -> list[tuple[str, ...]]:
    """One tuple per preset (and setting, where it holds several), pair and quantity:
    HEADER's cells and the verdict."""
    return [
        (
            group,
            f"{r.a} vs {r.b}",
            WORDS.get(r.quantity, "test accuracy"),
            estimate_text(r),
            str(r.n),
            verdict_text(r),
        )
        for group, r in zip(group_labels(v), v.itertuples())
    ]


def verdict_table(v) -> str:
    """One line per preset, pair and quantity, left-aligned columns."""
    rows = [(*HEADER, "verdict"), *verdict_rows(v)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[-1] for row in rows
    )


def serve_hint(uri: str) -> str:
    """How to serve the UI the links point at: nothing for a tracking server (it serves its
    own), `make ui` for the default store in the project's own folder, else `mlflow ui`."""
    if uri.startswith(("http://", "https://")):
        return ""
    if uri == DEFAULT_URI and Path.cwd().resolve() == CONF.parent:  # the Makefile's folder
        return " (make ui)"
    return f" ({shlex.join(['mlflow', 'ui', '--backend-store-uri', uri, '--port', '5000'])})"


def sweep_lines(
    findings: Findings, uri: str, sweep_id: str, experiment: str = DEFAULT_EXPERIMENT
) -> list[str]:
    """The lines printed at the end of sweep `sweep_id`: its verdicts, then the commands (each
    pasteable: shell-quoted, the store and experiment named where they are not the defaults,
    credentials masked) and links that show more."""
    finished, v = findings.finished, findings.verdicts
    lines = [
        f"Verdicts of sweep {sweep_id} ({len(finished)} of {len(findings.rows)} runs finished; "
    ]
    lines[0] += "95% intervals over seeds, paired by seed):"
    lines += [f"  ({note})" for note in findings.selection.notes]  # runs of another sweep
    if v.empty:
        lines.append("  no pair of implementations shares a seed: nothing to compare")
    else:
        lines += ["  " + line for line in verdict_table(v).splitlines()]
    report = ["mnist-bench-report", "--sweep-id", sweep_id]
    if uri != DEFAULT_URI:
        report += ["--tracking-uri", uri]
    if experiment != DEFAULT_EXPERIMENT:
        report += ["--experiment", experiment]
    experiment_id = findings.runs.experiment_id.iloc[0]
    lines += [
        f"Report: {shlex.join(report)}",
        f"MLflow runs: {runs_link(experiment_id, ui_of(uri))}" + serve_hint(uri),
    ]
    return [redact(line) for line in lines]
