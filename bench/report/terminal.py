"""The verdicts of one sweep as a compact terminal table, printed when a `-m` sweep ends, so
the command that ran the benchmark also says what it found (the same functions as the
report: select_runs, per_run, verdicts) and where to look next."""

from __future__ import annotations

import os

import pandas as pd

from bench.report import analysis
from bench.report.collect import histories, select_runs, setting_signature
from bench.report.verdicts import NO_DIFFERENCE, verdicts
from bench.store import DEFAULT_URI

UI = "http://127.0.0.1:5000"  # the `make ui` address
QUANTITY = {"epoch_time": "steady epoch", "time_to_target": "time to target"}


def estimate_text(r) -> str:
    """ "1.64x [1.36, 1.99]" for times (b's / a's), "+0.05 [-0.10, +0.20] pts" for accuracy."""
    if r.quantity == "test_accuracy":
        interval = f" [{r.ci_low:+.2f}, {r.ci_high:+.2f}]" if pd.notna(r.ci_low) else ""
        return f"{r.estimate:+.2f}{interval} pts"
    note = str(r.note) if isinstance(r.note, str) else ""
    if pd.notna(r.ci_low):
        aside = f" ({note})" if "set aside" in note else ""
        return f"{r.estimate:.2f}x [{r.ci_low:.2f}, {r.ci_high:.2f}]{aside}"
    if "reached" in note:  # a censored time to target
        return "not reached by every run: no interval"
    if "no claim" in note and pd.notna(r.estimate):
        return f"{r.estimate:.2f}x, {note}"
    return note or "no interval"


def verdict_text(r) -> str:
    """The verdict said of a ("numpy faster"), so no line reads the wrong way round."""
    return r.verdict if r.verdict in ("equivalent", NO_DIFFERENCE) else f"{r.a} {r.verdict}"


def verdict_table(v: pd.DataFrame) -> str:
    """One line per preset, pair and quantity, left-aligned columns."""
    header = ("preset", "pair (a vs b)", "quantity", "b/a time or a-b accuracy [95% CI]", "n")
    rows = [header + ("verdict",)]
    for r in v.itertuples():
        quantity = QUANTITY.get(r.quantity, "test accuracy")
        pair = f"{r.a} vs {r.b}"
        rows.append((r.preset, pair, quantity, estimate_text(r), str(r.n), verdict_text(r)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[-1] for row in rows
    )


def sweep_summary(uri: str, experiment: str, sweep_id: str) -> list[str]:
    """The lines printed at the end of sweep `sweep_id`: its verdicts, then the commands and
    links that show more."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    runs, _label = select_runs(uri, experiment, sweep_id=sweep_id)
    runs = runs.assign(signature=setting_signature(runs))
    rows = analysis.per_run(runs, histories(runs))
    finished = rows[rows.status == "FINISHED"]
    v = verdicts(finished)
    lines = [f"Verdicts of sweep {sweep_id} ({len(finished)} of {len(rows)} runs finished; "]
    lines[0] += "95% intervals over seeds, paired by seed):"
    if v.empty:
        lines.append("  no pair of implementations shares a seed: nothing to compare")
    else:
        lines += ["  " + line for line in verdict_table(v).splitlines()]
    store = "" if uri == DEFAULT_URI else f" --tracking-uri {uri}"
    experiment_id = runs.experiment_id.iloc[0]
    lines += [
        f"Report: mnist-bench-report --sweep-id {sweep_id}{store}",
        f"MLflow runs: {UI}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"
        + (" (make ui)" if not store else f" (mlflow ui --backend-store-uri {uri} --port 5000)"),
    ]
    return lines
