"""The report's sections, assembled from one selection's `Findings` (bench.report.numbers),
with the figures of bench.report.pages.plots, written by bench.report.pages.render.
`build_report` writes report.{md,html}, runs.csv, verdicts.csv, summary.csv and the plots.

Order: the answer first (header, verdicts with key tables, reproductions), then the evidence
(speed, accuracy, time to accuracy, curves, predictions, fairness, checklist), then the
appendix (collapsed in the HTML)."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from mlflow import MlflowClient

from bench.figures import misclassified
from bench.report.numbers import stats, tables
from bench.report.numbers.checklist import checklist
from bench.report.numbers.collect import ReportError
from bench.report.numbers.findings import Findings
from bench.report.numbers.rows import THRESHOLDS
from bench.report.numbers.verdicts import VERDICT_COLUMNS
from bench.report.pages import appendix, fmt, front, plots
from bench.report.pages.render import Section, Table, write_html, write_markdown
from bench.report.pages.sentences import time_text, verdict_sentence
from implementations import impl_key


def safe_name(name: str) -> str:
    """A folder name that stays one folder: letters, digits, '.', '_', '-'; never '.' or '..'."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")[:100]
    return cleaned or "report"


def report_dir(out: str | Path, name: str) -> Path:
    """<out>/<name>, with the name sanitized: always inside --out."""
    root = Path(out).resolve()
    path = (root / safe_name(name)).resolve()
    if path.parent != root:  # cannot happen after safe_name; kept as the invariant
        raise ReportError(f"report folder {name!r} is not inside {out}")
    return path


def load_predictions(runs: pd.DataFrame, tmp: Path) -> dict[str, dict]:
    """Per (preset, implementation): the lowest seed's predicted labels."""
    client = MlflowClient()
    out: dict[str, dict] = {}
    finished = runs[runs.status == "FINISHED"].sort_values("params.seed")
    for (preset, impl), g in finished.groupby(["tags.preset", "tags.implementation"]):
        run_id = g.iloc[0].run_id
        try:
            path = client.download_artifacts(run_id, "predictions.npz", str(tmp / run_id))
        except Exception:  # an artifact store that is gone only costs this section
            continue
        with np.load(path, allow_pickle=False) as p:
            out.setdefault(preset, {})[impl] = (p["predicted"], p["labels"])
    return out


def write_tables(findings: Findings, out_dir: Path) -> None:
    """runs.csv (every run's metrics, params and tags, in sorted columns: MLflow's own order
    changes from process to process), verdicts.csv (exactly VERDICT_COLUMNS) and summary.csv."""
    runs = findings.runs
    columns = ["run_id", "run_name", "status"] + sorted(
        c for c in runs.columns if c.startswith(("metrics.", "params.", "tags."))
    )
    runs[columns].to_csv(out_dir / "runs.csv", index=False)
    findings.verdicts[VERDICT_COLUMNS].to_csv(out_dir / "verdicts.csv", index=False)
    findings.summary.to_csv(out_dir / "summary.csv", index=False)


def build_report(findings: Findings, out_dir: Path) -> Path:
    """report.md, report.html, the CSVs and the figures of one selection in out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    runs, hist, rows = findings.runs, findings.hist, findings.rows
    finished, v, warnings = findings.finished, findings.verdicts, findings.warnings
    write_tables(findings, out_dir)
    verdict = front.verdict_section(finished, v, warnings)
    verdict.notes.append(
        "Machine-readable: verdicts.csv (one row per preset, pair and quantity) and "
        "summary.csv (one row per preset and implementation) beside this report."
    )
    failed = rows[rows.status != "FINISHED"]
    if not failed.empty:
        verdict.text.append(
            "Not finished (left out of the statistics): "
            + ", ".join(f"{r.run_name} ({r.status})" for r in failed.itertuples())
        )
    sections = [
        front.header_section(runs, findings.label),
        verdict,
        front.reproduction_section(finished),
        speed_section(finished, hist, v, out_dir),
        accuracy_section(finished, v, out_dir),
        time_to_accuracy_section(finished, out_dir),
        Section(
            "Learning curves",
            ["Median over seeds; band = min-max over seeds."],
            images=[
                plots.learning_curves(g, hist, preset, out_dir / f"learning_curves_{preset}.png")
                for preset, g in finished.groupby("preset")
            ],
        ),
        predictions_section(runs, out_dir),
        Section(
            "Fairness check",
            [f"WARNING {preset}: {w}" for preset, w in warnings]
            or ["All compared runs share every setting except implementation and seed."],
        ),
        checklist_section(runs, finished),
        appendix.more_numbers(findings.summary),
        appendix.lockstep_section(runs, hist),
        appendix.determinism_section(runs),
        appendix.environment_section(runs),
        appendix.commands_section(runs),
    ]
    title = f"mnist-bench report: {findings.label}"
    write_markdown(title, sections, out_dir / "report.md")
    write_html(title, sections, out_dir / "report.html")
    return out_dir / "report.html"


def _sentences(v: pd.DataFrame, quantity: str) -> list[str]:
    return [f"{r.preset}: {verdict_sentence(r)}" for r in v[v.quantity == quantity].itertuples()]


def speed_section(rows: pd.DataFrame, hist: pd.DataFrame, v: pd.DataFrame, out: Path) -> Section:
    """The steady-epoch and time-to-target sentences, and the epoch-time figure."""
    text = _sentences(v, "epoch_time") + _sentences(v, "time_to_target")
    return Section(
        "Speed, paired by seed",
        text or ["Needs two implementations sharing seeds."],
        images=[plots.epoch_times(rows, hist, out / "epoch_times.png")] if len(rows) else [],
    )


def accuracy_section(rows: pd.DataFrame, v: pd.DataFrame, out: Path) -> Section:
    """Each group's accuracy with its 95% interval beside the test set's own 95% noise
    half-width (1.96 binomial s.e. on 10,000 images): the same level everywhere."""
    text = []
    for (preset, impl), g in sorted(
        rows.groupby(["preset", "implementation"]),
        key=lambda x: (x[0][0], impl_key(x[0][1])),
    ):
        acc = stats.t_interval(g.test_accuracy)
        half = 100 * stats.Z * stats.noise_floor(acc[0])
        text.append(
            f"{preset} / {impl}: test accuracy {fmt.percent(*acc)} over {len(g)} run(s); "
            f"the test set's own 95% noise at this accuracy: ±{half:.2f} points"
        )
    text += _sentences(v, "test_accuracy")
    images = [plots.accuracy_vs_time(rows, out / "accuracy_vs_time.png")] if len(rows) else []
    return Section("Accuracy and its noise floor", text, images=images)


def time_to_accuracy_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Per implementation and preset, each threshold's median time over runs with "k/n
    reached". Censored runs count as +inf, so a higher threshold never shows a shorter
    median (the median is monotone in each run's time, which is monotone in the threshold)."""
    records = []
    for (impl, preset, _sig), g in rows.groupby(["implementation", "preset", "signature"]):
        record = {"implementation": impl, "preset": preset}
        for threshold in THRESHOLDS:
            col = f"to_{threshold:.3g}"
            record[col] = time_text(*stats.censored_median(g[col]))
        records.append(record)
    return pd.DataFrame(records)


def time_to_accuracy_section(rows: pd.DataFrame, out: Path) -> Section:
    """Censored medians per threshold ("k/n reached"); presets without a validation set get
    one sentence, not a row of blanks."""
    ttable = time_to_accuracy_table(rows) if len(rows) else pd.DataFrame()
    text = [
        "Training seconds until the validation accuracy first reached each threshold (97% is "
        "AlgoPerf's MNIST target): median over runs, a run that never reached it counted as "
        "+inf, so the median says 'not reached' once half the runs did not."
    ]
    if not ttable.empty:
        cols = [f"to_{t:.3g}" for t in THRESHOLDS]
        none = (ttable[cols] == "no validation set").all(axis=1)
        for preset in sorted(ttable[none].preset.unique()):
            text.append(f"{preset}: no validation set (val_size=0), so no time to accuracy.")
        ttable = ttable[~none].rename(
            columns={c: f"{100 * t:g}%" for c, t in zip(cols, THRESHOLDS)}
        )
        ttable = ttable[
            ["preset", "implementation", *ttable.columns.drop(["preset", "implementation"])]
        ]
        ttable = appendix.canonical(ttable, "preset") if not ttable.empty else ttable
    image = plots.time_to_thresholds(rows, THRESHOLDS, out / "time_to_accuracy.png")
    return Section("Time to accuracy", text, [ttable], [image] if image else [])


def predictions_section(runs: pd.DataFrame, out_dir: Path) -> Section:
    """Prediction agreement and McNemar per preset, and the misclassified digits."""
    from bench.data import DataError, load

    section = Section("Predictions to look at")
    with tempfile.TemporaryDirectory() as tmp:
        preds = load_predictions(runs, Path(tmp))
    images = None
    if preds:
        try:
            images = load(runs["params.dataset.name"].iloc[0], download=False).x_test
        except DataError as e:  # the agreement table needs no images; the pictures do
            section.text.append(f"No misclassified-image plots: {e}")
    section.text.insert(
        0,
        "Agreement: share of the 10,000 test images on which two implementations predict the "
        "same label; McNemar's exact p tests whether one gets more images right than the other.",
    )
    for preset, by_impl in sorted(preds.items()):
        names = sorted(by_impl, key=impl_key)
        for impl in names if images is not None else []:
            predicted, labels = by_impl[impl]
            section.images.append(
                misclassified(
                    images,
                    labels,
                    predicted,
                    f"{preset} / {impl}: misclassified (true→predicted)",
                    out_dir / f"misclassified_{preset}_{impl}.png",
                )
            )
        labels = by_impl[names[0]][1]
        agree = tables.agreement({k: by_impl[k][0] for k in names}, labels)
        if agree.empty:
            continue
        agree["agree"] = agree["agree"].map(fmt.percent)
        agree["McNemar p"] = agree["McNemar p"].map(fmt.p_value)
        section.tables.append(Table(agree, caption=f"{preset}: prediction agreement (lowest seed)"))
    return section


def checklist_section(runs: pd.DataFrame, rows: pd.DataFrame) -> Section:
    """Each item computed from the runs, with what it found."""
    lines = [
        f"[{'x' if ok else ' '}] {item}" + (f": {detail}" if detail else "")
        for item, ok, detail in checklist(runs, rows)
    ]
    return Section("Reproducibility checklist", lines)
