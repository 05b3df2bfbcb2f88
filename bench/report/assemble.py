"""The report's sections, assembled from the selected runs: the numbers come from
bench.report.analysis and bench.report.verdicts, the figures from bench.report.plots, the
writing from bench.report.render. `build_report` writes report.{md,html}, runs.csv,
verdicts.csv, summary.csv and the plots.

Order: the answer first (header, verdicts with key tables, reproductions), then the evidence
(speed, accuracy, time to accuracy, curves, predictions, fairness, checklist), then the
appendix (collapsed in the HTML)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from mlflow import MlflowClient

from bench.report import analysis, appendix, fmt, front, plots, verdicts
from bench.report.collect import histories, setting_signature
from bench.report.render import Section, Table, write_html, write_markdown


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


def build_report(runs: pd.DataFrame, label: str, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    runs = runs.copy()
    runs["signature"] = setting_signature(runs)
    hist = histories(runs)
    rows = analysis.per_run(runs, hist)
    target = runs.get("params.train.target_accuracy", pd.Series(np.nan, index=runs.index))
    rows["target"] = pd.to_numeric(target, errors="coerce").to_numpy()
    finished = rows[rows.status == "FINISHED"]
    table = analysis.summary(finished)
    warnings = analysis.fairness_warnings(runs)
    metric_cols = ["run_id", "run_name", "status"] + [
        c for c in runs.columns if c.startswith(("metrics.", "params.", "tags."))
    ]
    runs[metric_cols].to_csv(out_dir / "runs.csv", index=False)
    verdicts.write_verdict_tables(finished, out_dir)
    v = verdicts.verdicts(finished)

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
        front.header_section(runs, label),
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
            [f"WARNING {w}" for w in warnings]
            or ["All compared runs share every setting except implementation and seed."],
        ),
        checklist_section(runs, finished),
        appendix.more_numbers(table),
        appendix.lockstep_section(runs, hist),
        appendix.determinism_section(runs),
        appendix.environment_section(runs),
        appendix.commands_section(runs),
    ]
    title = f"mnist-bench report: {label}"
    write_markdown(title, sections, out_dir / "report.md")
    write_html(title, sections, out_dir / "report.html")
    return out_dir / "report.html"


def _sentences(v: pd.DataFrame, quantity: str) -> list[str]:
    return [
        f"{r.preset}: {verdicts.verdict_sentence(r)}"
        for r in v[v.quantity == quantity].itertuples()
    ]


def speed_section(rows: pd.DataFrame, hist: pd.DataFrame, v: pd.DataFrame, out: Path) -> Section:
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
        key=lambda x: (x[0][0], verdicts.impl_key(x[0][1])),
    ):
        acc = analysis.t_interval(g.test_accuracy)
        half = 100 * analysis.Z * analysis.noise_floor(acc[0])
        text.append(
            f"{preset} / {impl}: test accuracy {fmt.percent(*acc)} over {len(g)} run(s); "
            f"the test set's own 95% noise at this accuracy: ±{half:.2f} points"
        )
    text += _sentences(v, "test_accuracy")
    images = [plots.accuracy_vs_time(rows, out / "accuracy_vs_time.png")] if len(rows) else []
    return Section("Accuracy and its noise floor", text, images=images)


def time_to_accuracy_section(rows: pd.DataFrame, out: Path) -> Section:
    """Censored medians per threshold ("k/n reached"); presets without a validation set get
    one sentence, not a row of blanks."""
    ttable = analysis.time_to_accuracy_table(rows) if len(rows) else pd.DataFrame()
    text = [
        "Training seconds until the validation accuracy first reached each threshold (97% is "
        "AlgoPerf's MNIST target): median over runs, a run that never reached it counted as "
        "+inf, so the median says 'not reached' once half the runs did not."
    ]
    if not ttable.empty:
        cols = [f"to_{t:.3g}" for t in analysis.THRESHOLDS]
        none = (ttable[cols] == "no validation set").all(axis=1)
        for preset in sorted(ttable[none].preset.unique()):
            text.append(f"{preset}: no validation set (val_size=0), so no time to accuracy.")
        ttable = ttable[~none].rename(
            columns={c: f"{100 * t:g}%" for c, t in zip(cols, analysis.THRESHOLDS)}
        )
        ttable = ttable[
            ["preset", "implementation", *ttable.columns.drop(["preset", "implementation"])]
        ]
        ttable = appendix._canonical(ttable, "preset") if not ttable.empty else ttable
    image = plots.time_to_thresholds(rows, analysis.THRESHOLDS, out / "time_to_accuracy.png")
    return Section("Time to accuracy", text, [ttable], [image] if image else [])


def predictions_section(runs: pd.DataFrame, out_dir: Path) -> Section:
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
        names = sorted(by_impl, key=verdicts.impl_key)
        for impl in names if images is not None else []:
            predicted, labels = by_impl[impl]
            section.images.append(
                plots.misclassified(
                    images,
                    labels,
                    predicted,
                    f"{preset} / {impl}: misclassified (true→predicted)",
                    out_dir / f"misclassified_{preset}_{impl}.png",
                )
            )
        labels = by_impl[names[0]][1]
        agree = analysis.agreement({k: by_impl[k][0] for k in names}, labels)
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
        for item, ok, detail in verdicts.checklist(runs, rows)
    ]
    return Section("Reproducibility checklist", lines)
