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
from pandas.api.types import is_numeric_dtype

from bench.figures import misclassified
from bench.job.redact import redact, without_paths
from bench.report.numbers import platforms, scaling, stats, tables
from bench.report.numbers.checklist import checklist
from bench.report.numbers.collect import ReportError
from bench.report.numbers.findings import Findings
from bench.report.numbers.rows import THRESHOLDS, group_labels
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
    if root.exists() and not root.is_dir():
        raise ReportError(f"--out {out} is a file, not a folder")
    path = (root / safe_name(name)).resolve()
    if path.parent != root:  # cannot happen after safe_name; kept as the invariant
        raise ReportError(f"report folder {name!r} is not inside {out}")
    return path


def slug(group: str) -> str:
    """A group's part of a file name: "compare (setting 2)" -> "compare_setting2",
    "custom (train.batch_size=64)" -> "custom_train.batch_size-64"."""
    name = group.replace(" (setting ", "_setting").replace(" (", "_").rstrip(")")
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "group"


EXPECTED = ("config.yaml", "predictions.npz", "figures/learning_curves.png",
            "figures/confusion_matrix.png")  # fmt: skip


def one_store(store_label: str | None = None) -> MlflowClient:
    """The client of the one open store (a selection over several gives its own `client`)."""
    return MlflowClient()


def missing_artifacts(rows: pd.DataFrame, client_for=one_store) -> list[str]:
    """Per finished run, the artifacts every finished run has that the store no longer lists
    (an artifact folder removed after the run ended): "numpy-s0 (predictions.npz)"."""
    found = []
    for r in rows[rows.status == "FINISHED"].sort_values("run_name").itertuples():
        client = client_for(getattr(r, "store", None))
        try:
            listed = {a.path for folder in (None, "figures")
                      for a in client.list_artifacts(r.run_id, folder)}  # fmt: skip
        except Exception:  # an artifact store that is gone: every artifact is missing
            listed = set()
        if lost := [path for path in EXPECTED if path not in listed]:
            found.append(f"{r.run_name} ({', '.join(lost)})")
    return found


def load_predictions(rows: pd.DataFrame, tmp: Path, client_for=one_store) -> dict[str, dict]:
    """Per group and seed (lowest first), each implementation's (predicted, labels)."""
    out: dict[str, dict] = {}
    finished = rows[rows.status == "FINISHED"].sort_values("seed", key=pd.to_numeric)
    for (group, impl, seed), g in finished.groupby(["group", "implementation", "seed"], sort=False):
        run_id = g.iloc[0].run_id
        client = client_for(g.iloc[0].get("store") or None)
        try:
            path = client.download_artifacts(run_id, "predictions.npz", str(tmp / run_id))
        except Exception:  # missing_artifacts names the run
            continue
        with np.load(path, allow_pickle=False) as p:
            out.setdefault(group, {}).setdefault(seed, {})[impl] = (p["predicted"], p["labels"])
    return {g: dict(sorted(s.items(), key=lambda kv: float(kv[0]))) for g, s in out.items()}


def reconciling_lines(agree: pd.DataFrame, v: pd.DataFrame) -> list[str]:
    """Where McNemar finds two implementations differ on which images they get right while
    their accuracies are called equivalent: why both hold."""
    lines = []
    for _, r in agree[agree["McNemar p"] < 0.05].iterrows():
        acc = v[(v.quantity == "test_accuracy") & (v.a == r.A) & (v.b == r.B)]
        if acc.empty or acc.verdict.iloc[0] != "equivalent":
            continue
        only_a, only_b = r["only A right"], r["only B right"]
        more = r.A if only_a > only_b else r.B
        p = fmt.p_value(r["McNemar p"])
        lines.append(
            f"{r.A} and {r.B} differ on which images they get right (McNemar "
            f"{'p ' + p if p.startswith('<') else 'p = ' + p} over {r.seeds} seeds: {more} "
            f"right on {abs(only_a - only_b):.1f} more images per seed) but by less than the "
            f"±{acc.margin.iloc[0]:.2f} points the {stats.TEST_SIZE:,} test images can resolve, "
            "so their accuracies are called equivalent"
        )
    return lines


def evaluation_images(runs: pd.DataFrame):
    """The test images the runs were evaluated on, with their class names: from the folder
    the runs read (their dataset_source tag), else wherever the loader finds the dataset;
    None (and why) unless the digest is the runs' own."""
    from bench.data import DATASETS, DataError, load

    name = str(runs["params.dataset.name"].iloc[0])
    digest = runs.get("tags.dataset_digest", pd.Series(dtype=str)).dropna()
    sources = runs.get("tags.dataset_source", pd.Series(dtype=str)).dropna().unique()
    for source in [*(s for s in sources if Path(s).is_dir()), None]:
        try:
            dataset = load(name, source, download=False)
        except DataError as e:
            why = str(e)
            continue
        if len(digest) and dataset.digest not in set(digest):
            why = f"{name} at {dataset.source} is not the data the runs used (digest differs)"
            continue
        return dataset.x_test, DATASETS[name].class_names, ""
    return None, None, why


def write_tables(findings: Findings, runs: pd.DataFrame, out_dir: Path) -> None:
    """runs.csv (every run's metrics, params and tags as the report shows them, in sorted
    columns: MLflow's own order changes from process to process), verdicts.csv (exactly
    VERDICT_COLUMNS) and summary.csv."""
    columns = ["run_id", "run_name", "status"] + sorted(
        c for c in runs.columns if c.startswith(("metrics.", "params.", "tags."))
    )
    if "store" in runs:  # several stores: which one each run came from ("store 1", never a URI)
        columns.insert(3, "store")
    runs[columns].to_csv(out_dir / "runs.csv", index=False)
    findings.verdicts[VERDICT_COLUMNS].to_csv(out_dir / "verdicts.csv", index=False)
    findings.summary.to_csv(out_dir / "summary.csv", index=False)


def published(with_paths: bool):
    """What a text a report shows becomes: credentials masked always, absolute local paths
    (home folders, store and data locations) shortened unless --with-paths."""
    return redact if with_paths else (lambda text: without_paths(redact(text)))


def publishable(runs: pd.DataFrame, clean) -> pd.DataFrame:
    """The runs' params and tags as a report may show them."""
    shown = runs.copy()
    for column in shown.columns:
        if column.startswith(("params.", "tags.")) and not is_numeric_dtype(shown[column]):
            shown[column] = shown[column].map(clean)
    return shown


def build_report(findings: Findings, out_dir: Path, with_paths: bool = False) -> Path:
    """report.md, report.html, the CSVs and the figures of one selection in out_dir."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ReportError(f"cannot create the report folder {out_dir} ({e.strerror})") from None
    clean = published(with_paths)
    runs, hist, rows = publishable(findings.runs, clean), findings.hist, findings.rows
    finished, v, warnings = findings.finished, findings.verdicts, findings.warnings
    write_tables(findings, runs, out_dir)
    verdict = front.verdict_section(finished, v, warnings, findings.runs)
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
        front.header_section(runs, findings.label, with_paths),
        verdict,
        front.reproduction_section(finished),
        speed_section(finished, hist, v, out_dir),
        scaling_section(finished, findings.runs, out_dir),
        platforms_section(finished, findings.runs),
        accuracy_section(finished, v, out_dir),
        time_to_accuracy_section(finished, out_dir),
        Section(
            "Learning curves",
            ["Median over seeds; band = min-max over seeds."],
            images=[
                plots.learning_curves(
                    g, hist, group, out_dir / f"learning_curves_{slug(group)}.png"
                )
                for group, g in finished.groupby("group")
            ],
        ),
        predictions_section(findings.runs, finished, out_dir, v, findings.selection.client),
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
        appendix.commands_section(runs, clean, with_places=with_paths),
    ]
    sections = [s for s in sections if s is not None and not empty(s)]
    title = f"mnist-bench report: {findings.label}"
    write_markdown(title, sections, out_dir / "report.md")
    write_html(title, sections, out_dir / "report.html")
    return out_dir / "report.html"


def empty(section: Section) -> bool:
    """A section with nothing to show (no text, table row, figure or block) is left out."""
    rows = [t.df if isinstance(t, Table) else t for t in section.tables]
    return not any([section.text, section.images, section.blocks, *(len(t) for t in rows)])


def _sentences(v: pd.DataFrame, quantity: str) -> list[str]:
    v = v[v.quantity == quantity]
    return [f"{group}: {verdict_sentence(r)}" for group, r in zip(group_labels(v), v.itertuples())]


def speed_section(rows: pd.DataFrame, hist: pd.DataFrame, v: pd.DataFrame, out: Path) -> Section:
    """The steady-epoch and time-to-target sentences, and the epoch-time figure."""
    text = _sentences(v, "epoch_time") + _sentences(v, "time_to_target")
    return Section(
        "Speed, paired by seed",
        text,  # no pair: the figure alone (the verdict box says there is nothing to compare)
        images=[plots.epoch_times(rows, hist, out / "epoch_times.png")] if len(rows) else [],
    )


def scaling_section(rows: pd.DataFrame, runs: pd.DataFrame, out: Path) -> Section:
    """Each preset whose comparisons differ only in the batch size or only in the width (a
    scaling sweep, such as +experiment=scaling): the steady epoch's seconds per image against
    that size, where the fastest implementation changes, and how each one's cost grows."""
    section = Section("Scaling")
    params = runs.set_index("run_id")
    for preset, g in rows.groupby("preset"):
        swept = params.reindex(g.run_id).assign(comparison=g.comparison.to_numpy())
        param = scaling.sweep_axis(swept)
        if param is None:
            continue
        table = scaling.sweep_table(g, runs, param)
        axis = scaling.SWEPT_AXES[param]
        label = scaling.SIZE_NAMES[axis]
        png = out / f"scaling_{slug(preset)}.png"
        section.images.append(plots.scaling_figure(table, label, preset, png))
        found = scaling.crossovers(table, scaling.noun(axis))
        section.text += [
            f"{preset}: the steady epoch's seconds per training image against the {label}, "
            "median over seeds (band: min-max over seeds).",
            *(f"{preset}: {c}." for c in found or ["no crossover: one order at every size"]),
        ]
        shown = table.assign(**{"s per image": table["epoch s"].map(lambda v: f"{v:.3g}")})
        section.tables += [
            Table(shown[["implementation", "size", "s per image"]], f"{preset}, per {label}"),
            Table(
                scaling.slopes(table).round(3),
                f"{preset}: log-log slope of seconds per image against the {label}",
            ),  # fmt: skip
        ]
    return section


def platforms_section(rows: pd.DataFrame, runs: pd.DataFrame) -> Section:
    """Where runs of one setting ran on several platforms (hosts, CPU or GPU): each
    implementation's steady epoch on one over the other, as two independent samples (seeds
    are paired only within a platform), its time to target on each, and where along the batch
    size one platform overtakes the other."""
    section = Section("Across hosts and devices")
    if platforms.platform_names(runs).nunique() < 2:
        return section
    table = platforms.across(rows, runs)
    section.text.append(f"Platforms: {platforms.hosts_line(runs)}. Runs on different "
                        "platforms are never paired by seed: each ratio below compares two "
                        "independent samples (Welch's 95% interval on the log times).")  # fmt: skip
    for _, r in table.iterrows():
        ratio = f"{r['steady epoch b/a']:.2f}x"
        if np.isfinite(r["ci low"]):
            ratio += f" [{r['ci low']:.2f}, {r['ci high']:.2f}]"
        target = ""
        if np.isfinite([r["time to target a"], r["time to target b"]]).any():
            target = (f"; time to target {fmt.seconds(r['time to target b'])} against "
                      f"{fmt.seconds(r['time to target a'])}")  # fmt: skip
        section.text.append(
            f"{r.preset}, {r.implementation}, batch {r.batch}: steady epoch on {r['platform b']} "
            f"over {r['platform a']}: {ratio}, {r.verdict} ({r['runs b']} and {r['runs a']} "
            f"runs){target}."
        )
    section.text += platforms.overtakes(platforms.per_platform(rows, runs))
    if not table.empty:
        shown = table.copy()
        for column in ("steady epoch b/a", "ci low", "ci high"):
            shown[column] = shown[column].map(lambda v: f"{v:.3g}")
        section.tables.append(Table(shown, "b over a: the second platform against the first"))
    return section


def accuracy_section(rows: pd.DataFrame, v: pd.DataFrame, out: Path) -> Section:
    """Each group's accuracy with its 95% interval beside the test set's own 95% noise
    half-width (1.96 binomial s.e. on 10,000 images): the same level everywhere."""
    text = []
    for (preset, impl), g in sorted(
        rows.groupby(["group", "implementation"]),
        key=lambda x: (x[0][0], impl_key(x[0][1])),
    ):
        acc = stats.accuracy_interval(g.test_accuracy)
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
    for (impl, preset), g in rows.groupby(["implementation", "group"]):
        record = {"implementation": impl, "preset": preset}
        for threshold in THRESHOLDS:
            col = f"to_{threshold:.3g}"
            record[col] = time_text(*stats.censored_median(g[col]))
        records.append(record)
    return pd.DataFrame(records)


def time_to_accuracy_section(rows: pd.DataFrame, out: Path) -> Section | None:
    """Censored medians per threshold ("k/n reached"); presets without a validation set get
    one sentence, not a row of blanks, and a selection without any gets no section (its
    verdict boxes say "no validation set")."""
    if not rows.has_val.any():
        return None
    ttable = time_to_accuracy_table(rows)
    text = [
        "Training seconds until the validation accuracy first reached each threshold (97% is "
        "AlgoPerf's MNIST target): median over runs, a run that never reached it counted as "
        "+inf, so the median says 'not reached' once half the runs did not."
    ]
    cols = [f"to_{t:.3g}" for t in THRESHOLDS]
    none = (ttable[cols] == "no validation set").all(axis=1)
    for preset in sorted(ttable[none].preset.unique()):
        text.append(f"{preset}: no validation set (val_size=0), so no time to accuracy.")
    ttable = ttable[~none].rename(columns={c: f"{100 * t:g}%" for c, t in zip(cols, THRESHOLDS)})
    ttable = ttable[
        ["preset", "implementation", *ttable.columns.drop(["preset", "implementation"])]
    ]
    ttable = appendix.canonical(ttable, "preset")
    image = plots.time_to_thresholds(rows, THRESHOLDS, out / "time_to_accuracy.png")
    return Section("Time to accuracy", text, [ttable], [image] if image else [])


def predictions_section(
    runs: pd.DataFrame, rows: pd.DataFrame, out_dir: Path, verdicts: pd.DataFrame,
    client_for=one_store,
) -> Section | None:  # fmt: skip
    """Prediction agreement and McNemar per group over every seed, and the misclassified test
    images of the lowest seed; None where no run's predictions (nor their loss) is there."""
    section = Section("Predictions to look at")
    with tempfile.TemporaryDirectory() as tmp:
        preds = load_predictions(rows, Path(tmp), client_for)
    lost = missing_artifacts(rows, client_for)
    if not preds and not lost:
        return None  # nothing to show: no section
    section.text.append(
        "Agreement: share of the 10,000 test images on which two implementations predict the "
        "same label; McNemar's exact p (discordant images summed over the seeds) tests whether "
        "one gets more images right than the other; the mean per seed of images only one got "
        "right beside it."
    )
    if lost:
        section.text.append(f"Artifacts missing from the store: {'; '.join(lost)}")
    for group, by_seed in sorted(preds.items()):
        by_impl = next(iter(by_seed.values()))  # the lowest seed: the figures' run
        names = sorted(by_impl, key=impl_key)
        of_group = runs[runs.run_id.isin(rows.run_id[rows.group == group])]
        images, classes, why = evaluation_images(of_group)
        if images is None:  # the agreement table needs no images; the pictures do
            section.text.append(f"{group}: no misclassified-image plots: {why}")
        for impl in names if images is not None else []:
            predicted, labels = by_impl[impl]
            section.images.append(
                misclassified(
                    images,
                    labels,
                    predicted,
                    f"{group} / {impl}: misclassified (true→predicted)",
                    out_dir / f"misclassified_{slug(group)}_{impl}.png",
                    names=classes,
                )
            )
        agree = tables.agreement_over_seeds(by_seed)
        if agree.empty:
            continue
        section.text += reconciling_lines(agree, verdicts[verdicts.group == group]
                                          if "group" in verdicts else verdicts)  # fmt: skip
        agree["agree"] = agree["agree"].map(fmt.percent)
        agree["McNemar p"] = agree["McNemar p"].map(fmt.p_value)
        for col in ("only A right", "only B right"):
            agree[col] = agree[col].map(lambda x: f"{x:.1f}")
        caption = f"{group}: prediction agreement over every seed (the figures: lowest seed)"
        section.tables.append(Table(agree, caption=caption))
    return section


def checklist_section(runs: pd.DataFrame, rows: pd.DataFrame) -> Section:
    """Each item computed from the runs, with what it found."""
    lines = [
        f"[{'x' if ok else ' '}] {item}" + (f": {detail}" if detail else "")
        for item, ok, detail in checklist(runs, rows)
    ]
    return Section("Reproducibility checklist", lines)
