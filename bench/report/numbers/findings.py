"""What one selection of runs says, computed once and handed on: the sweep's closing table,
the sweep parent's summary in MLflow and the report all read the same `Findings`."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from bench.report.numbers.checklist import fairness_warnings
from bench.report.numbers.collect import Selection, comparison_keys, histories
from bench.report.numbers.rows import group_names, per_run
from bench.report.numbers.tables import summary_table
from bench.report.numbers.verdicts import verdicts


@dataclass
class Findings:
    selection: Selection  # the runs as MLflow returned them, each with its `comparison` key
    hist: pd.DataFrame  # run_id, key, step, value: the per-epoch metrics the report reads
    rows: pd.DataFrame  # one row per run (bench.report.numbers.rows), any status
    verdicts: pd.DataFrame  # of the finished runs (bench.report.numbers.verdicts)
    summary: pd.DataFrame  # of the finished runs: summary.csv
    warnings: list[tuple[str, str]]  # (preset, setting that differs between compared runs)

    @property
    def runs(self) -> pd.DataFrame:
        return self.selection.runs

    @property
    def label(self) -> str:
        return self.selection.label

    @property
    def finished(self) -> pd.DataFrame:
        return self.rows[self.rows.status == "FINISHED"]


def analyse(selection: Selection) -> Findings:
    """Histories, per-run rows, verdicts and the summary of one selection, once."""
    runs = selection.runs.assign(comparison=comparison_keys(selection.runs))
    runs = runs.assign(group=group_names(runs))
    selection = replace(selection, runs=runs)
    hist = histories(runs) if selection.hist is None else selection.hist  # several stores: read
    rows = per_run(runs, hist)
    target = runs.get("params.train.target_accuracy", pd.Series(np.nan, index=runs.index))
    rows["target"] = pd.to_numeric(target, errors="coerce").to_numpy()
    finished = rows[rows.status == "FINISHED"]
    return Findings(
        selection=selection,
        hist=hist,
        rows=rows,
        verdicts=verdicts(finished),
        summary=summary_table(finished),
        warnings=fairness_warnings(runs[runs.status == "FINISHED"]),  # what was compared
    )
