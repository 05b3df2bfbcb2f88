"""The report's sections, assembled from the selected runs: the numbers come from
bench.report.analysis, the figures from bench.report.plots, the writing from
bench.report.render. `build_report` writes report.{md,html}, runs.csv and the plots."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from mlflow import MlflowClient

from bench.report import analysis, plots
from bench.report.collect import histories, setting_signature
from bench.report.render import Section, write_html, write_markdown
from bench.tracking import REPEAT_TOLERANCE

ENV_TAGS = ("cpu_model", "device_name", "blas", "threads")
ENV_TAGS_LAST = ("git_commit", "git_dirty", "dataset_digest", "host")


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
    finished = rows[rows.status == "FINISHED"]
    table = analysis.summary(finished)
    warnings = analysis.fairness_warnings(runs)
    if not table.empty:  # the warning stands next to the rows it concerns
        table["fairness"] = table.preset.map(
            lambda p: "; ".join(w.split(": ", 1)[1] for w in warnings if w.startswith(f"{p}: "))
        )
    metric_cols = ["run_id", "run_name", "status"] + [
        c for c in runs.columns if c.startswith(("metrics.", "params.", "tags."))
    ]
    runs[metric_cols].to_csv(out_dir / "runs.csv", index=False)

    sections = []
    s = Section(
        "Summary",
        [
            f"Selection: {label}; {len(runs)} runs, {len(finished)} finished. "
            "Means over seeds; 95% CIs are Student-t over seeds. Steady epoch = "
            "median of epochs 2+ (the first epoch carries tracing and warm-up)."
        ],
    )
    if not table.empty:
        s.tables.append(table.drop(columns=["signature"]))
        for preset, g in table.groupby("preset"):
            if g["steady epoch s"].isna().all():
                continue
            best = g.loc[g["steady epoch s"].idxmin()]
            s.text.append(
                f"Fastest for {preset} on this machine: {best.implementation} "
                f"({best['steady epoch s']:.3f} s per steady-state epoch)."
            )
    failed = rows[rows.status != "FINISHED"]
    if not failed.empty:
        s.text.append(
            "Not finished (left out of the statistics): "
            + ", ".join(f"{r.run_name} ({r.status})" for r in failed.itertuples())
        )
    sections.append(s)

    speed = analysis.paired_speedups(finished)
    sections.append(
        Section(
            "Speed, paired by seed",
            list(speed.statement)
            if not speed.empty
            else ["Needs two implementations sharing seeds."],
            images=[plots.epoch_times(finished, hist, out_dir / "epoch_times.png")],
        )
    )

    acc_text = []
    for _, r in table.iterrows():
        acc = r["test acc"]
        acc_text.append(
            f"{r.implementation} ({r.preset}): test accuracy {acc:.4f}, noise floor "
            f"±{analysis.noise_floor(acc):.4f} (binomial s.e. on 10,000 images)"
        )
    sections.append(
        Section(
            "Accuracy and its noise floor",
            acc_text,
            images=[plots.accuracy_vs_time(finished, out_dir / "accuracy_vs_time.png")],
        )
    )

    tt_cols = [f"to_{t:.3g}" for t in analysis.THRESHOLDS]
    ttable = finished.groupby(["implementation", "preset"])[tt_cols].mean().reset_index()
    sections.append(
        Section(
            "Time to accuracy",
            [
                "Training seconds until validation accuracy first reached each threshold (97% is "
                "AlgoPerf's MNIST target); blank: never reached."
            ],
            [ttable],
            [
                plots.time_to_thresholds(
                    finished, analysis.THRESHOLDS, out_dir / "time_to_accuracy.png"
                )
            ],
        )
    )

    sections.append(
        Section(
            "Fairness check",
            [f"WARNING {w}" for w in warnings]
            or ["All compared runs share every setting except implementation and seed."],
        )
    )
    sections.append(
        Section(
            "Learning curves",
            ["Median over seeds; band = min-max."],
            images=[
                plots.learning_curves(g, hist, preset, out_dir / f"learning_curves_{preset}.png")
                for preset, g in finished.groupby("preset")
            ],
        )
    )
    repro = analysis.reproduction(finished)
    sections.append(
        Section(
            "Reproduction of published results",
            [] if not repro.empty else ["No tutorial preset in this selection."],
            [repro],
        )
    )
    if not table.empty:
        sections.append(
            Section(
                "Overfitting",
                ["Train accuracy on the full training set."],
                [table[["implementation", "preset", "train acc", "test acc", "gap (train-test)"]]],
            )
        )
    sections.append(predictions_section(runs, out_dir))
    sections.append(
        Section(
            "Lockstep check",
            ["Largest train-loss difference between implementations at each epoch (same seed)."],
            [analysis.lockstep_gaps(runs, hist)],
        )
    )
    sections.append(determinism_section(runs))
    sections.append(environment_section(runs))
    sections.append(checklist_section(runs, table))

    title = f"mnist-bench report: {label}"
    write_markdown(title, sections, out_dir / "report.md")
    write_html(title, sections, out_dir / "report.html")
    return out_dir / "report.html"


def determinism_section(runs: pd.DataFrame) -> Section:
    table = analysis.determinism(runs)
    if table.empty:
        return Section(
            "Determinism",
            [
                "No repeated config in this selection (run one again with "
                "tracking.skip_completed=false to certify it)."
            ],
        )
    shaky = table[table.bitwise < table[["bitwise", "tolerance", "divergent"]].sum(axis=1)]
    text = [
        "Runs whose config and seed ran before, compared epoch by epoch on the train loss: "
        f"bitwise = identical, tolerance = within {REPEAT_TOLERANCE:g} relative."
    ]
    text += [
        f"{r.implementation} is not bitwise reproducible here: largest relative loss "
        f"difference {r['max rel. loss diff']:.3g}."
        for _, r in shaky.iterrows()
    ] or ["Every repeated run reproduced its losses bitwise."]
    return Section("Determinism", text, [table])


def predictions_section(runs: pd.DataFrame, out_dir: Path) -> Section:
    from bench.data import DataError, load

    section = Section("Predictions to look at")
    with tempfile.TemporaryDirectory() as tmp:
        preds = load_predictions(runs, Path(tmp))
    for preset, by_impl in preds.items():
        name = runs["params.dataset.name"].iloc[0]
        try:
            images = load(name, download=False).x_test
        except DataError as e:  # the agreement table needs no images; the pictures do
            images = None
            section.text = [f"No misclassified-image plots: {e}"]
        for impl, (predicted, labels) in sorted(by_impl.items()):
            if images is None:
                continue
            section.images.append(
                plots.misclassified(
                    images,
                    labels,
                    predicted,
                    f"{preset} / {impl}: misclassified (true→predicted)",
                    out_dir / f"misclassified_{preset}_{impl}.png",
                )
            )
        labels = next(iter(by_impl.values()))[1]
        section.tables.append(analysis.agreement({k: v[0] for k, v in by_impl.items()}, labels))
    return section


def environment_section(runs: pd.DataFrame) -> Section:
    """The machine, every package version any selected run recorded (each implementation
    records its framework's), and the code and data."""
    versions = sorted(
        c.removeprefix("tags.") for c in runs.columns if c.startswith("tags.version.")
    )
    env = pd.DataFrame(
        [
            {"item": t, "value": ", ".join(runs[f"tags.{t}"].dropna().astype(str).unique())}
            for t in (*ENV_TAGS, *versions, *ENV_TAGS_LAST)
            if f"tags.{t}" in runs
        ]
    )
    commands = pd.DataFrame(
        {
            "run": runs.run_name,
            "command": ["mnist-bench " + str(o) for o in runs.get("tags.hydra_overrides", "")],
        }
    )
    return Section("Environment and how to reproduce each run", [], [env, commands])


def checklist_section(runs: pd.DataFrame, table: pd.DataFrame) -> Section:
    has = lambda col: col in runs and runs[col].notna().all()  # noqa: E731
    items = [
        ("Compute described (CPU/GPU, threads)", has("tags.device_name") and has("tags.threads")),
        ("Number of runs per row stated, >= 3", not table.empty and (table.runs >= 3).all()),
        ("Seeds recorded", has("params.seed")),
        ("All hyperparameters recorded", has("params.optimizer.lr") and has("params.model.hidden")),
        ("Hyperparameters chosen from published tutorials (presets), not tuned on test", True),
        ("Data splits stated (val_size, split_seed)", has("params.dataset.val_size")),
        ("Mean with 95% CI reported", not table.empty),
        ("Runtime reported", has("metrics.train_time_s")),
        ("Exact command per run", has("tags.hydra_overrides")),
        ("Data digest recorded", has("tags.dataset_digest")),
        (
            "Code version recorded, tree clean",
            has("tags.git_commit") and (runs.get("tags.git_dirty") == "false").all(),
        ),
    ]
    return Section(
        "Reproducibility checklist", [f"[{'x' if ok else ' '}] {item}" for item, ok in items]
    )
