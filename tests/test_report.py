"""The report on a real SQLite store filled by a small real sweep."""

from __future__ import annotations

import pandas as pd
import pytest
from mlflow import MlflowClient

from bench.report.cli import main as report_main
from bench.report.plots import by_setting
from tests.test_app import SMALL, mnist_bench, runs_of


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    proc = mnist_bench(tmp, "-m", "implementation=numpy,tf_tape,keras", "seed=0,1", *SMALL)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp


def test_report_files_table_and_numbers(swept):
    runs = [r for r in runs_of(swept) if "sweep_parent" not in r.data.tags]
    victim = runs[0]
    MlflowClient().set_tag(victim.info.run_id, "mlflow.runName", "<script>alert(1)</script>")
    uri = f"sqlite:///{swept}/mlflow.db"
    assert report_main(["--tracking-uri", uri, "--name", "r", "--out", str(swept)]) == 0
    out = swept / "r"
    for name in (
        "report.md",
        "report.html",
        "runs.csv",
        "learning_curves_custom.png",
        "epoch_times.png",
        "accuracy_vs_time.png",
        "time_to_accuracy.png",
    ):
        assert (out / name).stat().st_size > 0, name
    md = (out / "report.md").read_text()
    for impl in ("numpy", "tf_tape", "keras"):
        row = next(line for line in md.splitlines() if line.startswith(f"| {impl} | cpu |"))
        assert row.split("|")[4].strip() == "2", row  # runs per implementation
    assert "faster than" in md and "Reproducibility checklist" in md
    html = (out / "report.html").read_text()
    assert "<script>alert" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    csv = pd.read_csv(out / "runs.csv").set_index("run_id")
    assert len(csv) == 6
    for r in runs:
        for key in ("test_accuracy", "train_time_s", "samples_per_s"):
            assert csv.loc[r.info.run_id, f"metrics.{key}"] == pytest.approx(
                r.data.metrics[key], rel=1e-12
            )


def test_empty_experiment_or_filter_is_a_clear_error(swept, tmp_path, capsys):
    uri = f"sqlite:///{swept}/mlflow.db"
    assert report_main(["--tracking-uri", uri, "--experiment", "nope"]) == 1
    assert "experiment 'nope' not found" in capsys.readouterr().err
    assert report_main(["--tracking-uri", uri, "--filter", "tags.preset = 'none'"]) == 1
    assert "has no runs matching" in capsys.readouterr().err
    MlflowClient(uri).create_experiment("empty")
    assert report_main(["--tracking-uri", uri, "--experiment", "empty"]) == 1
    assert "experiment 'empty' has no runs" in capsys.readouterr().err


def filtered_report(swept, filter_string: str, name: str) -> str:
    """Run the report CLI on a filtered selection of the swept store; its report.md text."""
    uri = f"sqlite:///{swept}/mlflow.db"
    args = ["--tracking-uri", uri, "--filter", filter_string, "--name", name, "--out", str(swept)]
    assert report_main(args) == 0
    return (swept / name / "report.md").read_text()


def test_plot_groups_never_pool_presets():
    rows = pd.DataFrame(
        {"preset": ["a", "b", "a"], "implementation": ["numpy"] * 3, "run_id": ["1", "2", "3"]}
    )
    groups = {label: list(g.run_id) for label, g in by_setting(rows)}
    assert groups == {"a / numpy": ["1", "3"], "b / numpy": ["2"]}


def test_mixed_selection_with_a_failed_run(swept):
    """Presets with other params, and a run that failed, in one report."""
    proc = mnist_bench(
        swept, "+experiment=relu_mcp", "implementation=keras", "optimizer.lr=1e6", *SMALL
    )
    assert proc.returncode == 1 and "diverged" in proc.stderr, proc.stderr[-2000:]
    md = filtered_report(swept, "tags.preset != 'none'", "mixed")
    assert "Not finished (left out of the statistics): relu_mcp-keras-s0 (FAILED)" in md
    assert "WARNING" not in md.split("## Fairness check")[1].split("##")[0]


def test_a_differing_setting_is_flagged_next_to_its_rows(swept):
    proc = mnist_bench(swept, "implementation=numpy", "seed=5", "train.batch_size=64", *SMALL)
    assert proc.returncode == 0, proc.stderr[-2000:]
    md = filtered_report(swept, "tags.preset = 'custom'", "unfair")
    assert "WARNING custom: train.batch_size differs: 128, 64" in md
    numpy_rows = [line for line in md.splitlines() if line.startswith("| numpy | cpu | custom")]
    assert numpy_rows and all("train.batch_size differs" in row for row in numpy_rows)
