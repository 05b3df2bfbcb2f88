"""The report on a real SQLite store filled by a small real sweep."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from bench.commands.report import main as report_main
from bench.report.numbers.rows import group_labels, setting_id
from bench.report.numbers.stats import SAME_SPEED, UNDECIDED, equivalence_margin
from bench.report.pages.plots import by_setting
from tests import expected
from tests.test_app import SMALL, mnist_bench, runs_of

_SWEEP: dict = {}


def tiny_sweep(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """One small real sweep (3 implementations x 2 seeds) per test session, shared by this
    module and the browser test: the store's directory and the sweep command's result."""
    if not _SWEEP:
        tmp = tmp_path_factory.mktemp("report")
        proc = mnist_bench(tmp, "-m", "implementation=numpy,tf_tape,keras", "seed=0,1", *SMALL)
        assert proc.returncode == 0, proc.stderr[-3000:]
        _SWEEP.update(dir=tmp, proc=proc)
    return _SWEEP["dir"], _SWEEP["proc"]


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    return tiny_sweep(tmp_path_factory)[0]


def sweep_parent(swept: Path):
    """The tiny sweep's parent (other tests add runs, and sweeps, to the same store)."""
    parents = [r for r in runs_of(swept) if r.data.tags.get("sweep_parent") == "true"]
    return min(parents, key=lambda r: r.info.start_time)


PAIRS = [("numpy", "tf_tape"), ("numpy", "keras"), ("tf_tape", "keras")]


def agrees_with_interval(r, margin: float) -> bool:
    """The verdict word follows from the interval alone (NaN bounds: not tested)."""
    low, high = r.ci_low, r.ci_high
    if np.isnan(low) or np.isnan(high):
        return r.verdict == "not tested"
    if r.quantity == "test_accuracy":
        expected = (
            "equivalent"
            if -margin <= low and high <= margin
            else "more accurate"
            if low > 0
            else "less accurate"
            if high < 0
            else UNDECIDED
        )
    else:
        same = 1 / 1.1 <= low and high <= 1.1
        expected = (
            SAME_SPEED if same else "faster" if low > 1 else "slower" if high < 1 else UNDECIDED
        )
    return r.verdict == expected


def test_report_files_table_and_numbers(swept):
    runs = [r for r in runs_of(swept) if "sweep_parent" not in r.data.tags]
    victim = runs[0]
    MlflowClient().set_tag(victim.info.run_id, "mlflow.runName", "<script>alert(1)</script>")
    uri = f"sqlite:///{swept}/mlflow.db"
    try:
        assert report_main(["--tracking-uri", uri, "--name", "r", "--out", str(swept)]) == 0
    finally:  # the store is shared with the UI tests: the run gets its name back
        MlflowClient().set_tag(victim.info.run_id, "mlflow.runName", victim.info.run_name)
    out = swept / "r"
    for name in (
        "report.md",
        "report.html",
        "runs.csv",
        "verdicts.csv",
        "summary.csv",
        "learning_curves_custom.png",
        "epoch_times.png",
        "accuracy_vs_time.png",
    ):
        assert (out / name).stat().st_size > 0, name
    md = (out / "report.md").read_text()
    parent = sweep_parent(swept)
    assert parent.data.tags["sweep_id"] in md.split("## Verdicts")[0]
    assert runs[0].data.tags["git_commit"][:12] in md.split("## Verdicts")[0]
    assert "mnist-bench -m implementation=numpy,tf_tape,keras seed=0,1 dataset.n_train=2000" in md

    # the key table: one row per implementation in the canonical order, human formats
    verdicts_md = md.split("## Verdicts")[1].split("\n## ")[0]
    key = [line.split(" | ") for line in verdicts_md.splitlines() if line.startswith("| ")][1:]
    assert [row[0].strip("| ") for row in key] == ["numpy", "tf_tape", "keras"]
    for row in key:
        assert re.fullmatch(r"\d+\.\d\d% \[\d+\.\d\d, \d+\.\d\d\]", row[3]), row
        assert re.fullmatch(r"[\d,]+", row[4]), row  # steady samples/s
    header = [line for line in verdicts_md.splitlines() if line.startswith("| ")][0]
    assert header.startswith("| implementation | speed | steady epoch [95% CI] |"), header
    assert "steady samples/s (median) | first epoch (median)" in header
    # steady samples/s: the 2,000 training images over each run's steady epoch, median per row
    for row in key:
        steady = [expected.steady(r.info.run_id) for r in runs
                  if r.data.tags["implementation"] == row[0].strip("| ")]  # fmt: skip
        want = np.median(2000 / np.array(steady))
        assert float(row[4].replace(",", "")) == pytest.approx(want, rel=5e-3), row
    caption = "*custom: key numbers (784-512-10 relu, rmsprop lr=0.001, batch 128, 2 epochs, "
    assert caption + "float32, cpu)*" in verdicts_md
    assert "## Reproduction of published results" not in md  # no tutorial preset: no section
    assert "### Determinism" not in md  # no config ran twice
    # the speed column says what the paired verdicts say: a fastest only where one is faster
    # than every other implementation by its verdict
    speed = pd.read_csv(out / "verdicts.csv").query("quantity == 'epoch_time'")
    wins = {impl: 0 for impl in ("numpy", "tf_tape", "keras")}
    for r in speed.itertuples():
        if r.verdict in ("faster", "slower"):
            wins[r.a if r.verdict == "faster" else r.b] += 1
    best = [impl for impl, n in wins.items() if n == 2]
    for row in key:
        impl = row[0].strip("| ")
        if not best:
            assert row[1] == "no fastest (see the verdicts)", row
        elif impl == best[0]:
            assert row[1] == "fastest", row
        else:
            pair = speed[speed.a.isin([impl, best[0]]) & speed.b.isin([impl, best[0]])].iloc[0]
            ratio = pair.estimate if pair.a == best[0] else 1 / pair.estimate
            assert row[1] == f"{ratio:.2f}x slower (paired)", row
    assert not re.search(r"\d\.?\d*e[+-]\d", md), "scientific notation in the report"

    # verdicts.csv: every pair and quantity once, each word what its interval says
    v = pd.read_csv(out / "verdicts.csv")
    assert list(v.columns) == [
        "preset",
        "setting",
        "a",
        "b",
        "quantity",
        "estimate",
        "ci_low",
        "ci_high",
        "n",
        "verdict",
    ]
    assert sorted(zip(v.a, v.b, v.quantity)) == sorted(
        (a, b, q) for a, b in PAIRS for q in ("epoch_time", "time_to_target", "test_accuracy")
    )
    assert (v.preset == "custom").all() and (v.n == 2).all()
    accuracy = {r.data.tags["implementation"]: [] for r in runs}
    for r in runs:
        accuracy[r.data.tags["implementation"]].append(r.data.metrics["final/test_accuracy"])
    for r in v.itertuples():
        margin = equivalence_margin(float(np.mean(accuracy[r.a] + accuracy[r.b])))
        assert agrees_with_interval(r, margin), r

    # the verdict box: one steady-epoch sentence per pair, saying what the CSV says
    box = md.split("**custom**")[1].split("\n\n")[1].splitlines()
    for r in v[v.quantity == "epoch_time"].itertuples():
        said = {
            "faster": f"{r.a} {r.estimate:.2f}x faster than {r.b} ",
            "slower": f"{r.b} {1 / r.estimate:.2f}x faster than {r.a} ",
            UNDECIDED: f"{r.a} vs {r.b}: {UNDECIDED}",  # (interval)
            SAME_SPEED: f"{r.a} vs {r.b}: {SAME_SPEED} within 10%",  # (interval)
            "not tested": f"{r.a} vs {r.b}, steady epoch: not tested",  # (why none)
        }[r.verdict]
        assert sum(said in line and "steady epoch" in line for line in box) == 1, (said, box)
    summary = pd.read_csv(out / "summary.csv")
    assert list(summary.implementation) == ["numpy", "tf_tape", "keras"]
    assert (summary.runs == 2).all()
    overheads = [r.data.metrics["job/overhead_s"] for r in runs]  # each run's, the median per row
    assert summary.overhead_s_median.between(min(overheads), max(overheads)).all()

    # the checklist is computed, with what it found
    assert "[ ] Runs per row >= 3: custom/keras: 2; custom/numpy: 2; custom/tf_tape: 2" in md
    assert "[x] Seeds recorded: all 6 runs" in md

    html = (out / "report.html").read_text()
    assert "<script>alert" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    prose = re.sub(r"```.*?```", "", md, flags=re.S)  # a code block shows text as it is
    assert "<script>" not in prose  # Markdown viewers would run it
    appendix = html.split("<section id='appendix'>")[1]
    assert appendix.count("<details") == 4  # more numbers, lockstep, environment, commands
    lockstep = md.split("### Lockstep check")[1].split("###")[0]
    assert [
        line.split(" | ")[1] for line in lockstep.splitlines() if line.startswith("| custom")
    ] == [f"{a} vs {b}" for a, b in PAIRS]
    csv = pd.read_csv(out / "runs.csv").set_index("run_id")
    assert len(csv) == 6
    for r in runs:
        for k in ("test_accuracy", "train_time_s", "samples_per_s"):
            assert csv.loc[r.info.run_id, f"metrics.{k}"] == pytest.approx(
                r.data.metrics[f"final/{k}"], rel=1e-12
            )


def test_sweep_ends_with_its_verdicts_and_links(swept, tmp_path_factory):
    """The `-m` command prints the same verdicts as the report's verdicts.csv, then how to
    write the report and the MLflow runs page."""
    stdout = tiny_sweep(tmp_path_factory)[1].stdout
    parent = sweep_parent(swept)
    sweep_id = parent.data.tags["sweep_id"]
    uri = f"sqlite:///{swept}/mlflow.db"
    assert f"Verdicts of sweep {sweep_id} (6 of 6 runs finished;" in stdout
    assert f"Report: mnist-bench-report --sweep-id {sweep_id} --tracking-uri {uri}" in stdout
    link = (
        f"MLflow runs: http://127.0.0.1:5000/#/experiments/{parent.info.experiment_id}"
        "/runs?viewStateShareKey=key-numbers&workflowType=machine_learning"
    )
    assert link in stdout
    name = "terminal"
    args = ["--tracking-uri", uri, "--sweep-id", sweep_id, "--name", name, "--out", str(swept)]
    assert report_main(args) == 0
    words = {"epoch_time": "steady epoch", "time_to_target": "time to target"}
    for r in pd.read_csv(swept / name / "verdicts.csv").itertuples():
        quantity = words.get(r.quantity, "test accuracy")
        lines = [
            line
            for line in stdout.splitlines()
            if re.match(rf"\s+custom\s+{r.a} vs {r.b}\s+{quantity}\s", line)
        ]
        assert len(lines) == 1, (r, stdout[-3000:])
        plain = ("equivalent", SAME_SPEED, "not tested")
        word = r.verdict if r.verdict in plain else f"{r.a} {r.verdict}"
        if r.verdict == UNDECIDED:
            word = f"{UNDECIDED} ({r.n} seed{'s' if r.n != 1 else ''})"
        assert lines[0].rstrip().endswith(f"  {word}"), lines[0]


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
        {"preset": ["a", "b", "a", "a"], "implementation": ["numpy"] * 4,
         "run_id": ["1", "2", "3", "4"], "comparison": ["x", "y", "x", "z"]}
    )  # fmt: skip
    rows["group"] = group_labels(rows)  # preset a holds two comparisons: named apart
    groups = {label: list(g.run_id) for label, g in by_setting(rows)}
    setting = {
        "x": 1 + (setting_id("x") > setting_id("z")),
        "z": 1 + (setting_id("z") > setting_id("x")),
    }
    assert groups == {
        f"a (setting {setting['x']}) / numpy": ["1", "3"],
        f"a (setting {setting['z']}) / numpy": ["4"],
        "b / numpy": ["2"],
    }


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
    numpy_rows = [line for line in md.splitlines() if line.startswith("| numpy (setting ")]
    assert len(numpy_rows) == 2 and all("train.batch_size differs" in r for r in numpy_rows)
    box = md.split("**custom**")[1].split("\n\n")[1]
    assert "WARNING: train.batch_size differs: 128, 64" in box


def test_markdown_shows_names_from_mlflow_as_text_never_as_html(tmp_path):
    """A name holding HTML (a preset, a run name, a param) in report.md's text, boxes, tables
    and captions is escaped; a code block keeps it as it is; our own "p < 0.001" stays."""
    from bench.report.pages.render import Box, Code, Section, Table, write_markdown

    evil = "<img src=x onerror=alert(1)>"
    table = pd.DataFrame({"implementation": [evil], "p": ["< 0.001"]})
    section = Section(evil, [f"run {evil} failed"], [Table(table, caption=evil)],
                      blocks=[Box(evil, [f"{evil} faster"]), Code([f"mnist-bench # {evil}"])])  # fmt: skip
    write_markdown(f"report of {evil}", [section], tmp_path / "r.md")
    md = (tmp_path / "r.md").read_text()
    prose = re.sub(r"```.*?```", "", md, flags=re.S)
    assert "<img" not in prose and prose.count("&lt;img") == 7
    assert f"mnist-bench # {evil}" in md and "| < 0.001 |" in md


def test_time_to_accuracy_axis_reads_plain_seconds(tmp_path):
    """A log axis labelled 1, 2, 5, 10, never "6x10^0"."""
    import pandas as pd

    from bench.report.numbers.rows import THRESHOLDS
    from bench.report.pages import plots

    rows = pd.DataFrame(
        [{"group": "compare", "implementation": impl, **{f"to_{t:.3g}": (i + 1) * 3.0 * (k + 1)
          for k, t in enumerate(THRESHOLDS)}} for i, impl in enumerate(["numpy", "keras"])]
    )  # fmt: skip
    captured = {}
    original = plots._save

    def keep_figure(fig, path, dpi=90):
        fig.canvas.draw()
        ax = fig.axes[0]
        captured["labels"] = [t.get_text() for t in ax.get_yticklabels(minor=True)
                              + ax.get_yticklabels()]  # fmt: skip
        return original(fig, path, dpi)

    plots._save = keep_figure
    try:
        plots.time_to_thresholds(rows, THRESHOLDS, tmp_path / "t.png")
    finally:
        plots._save = original
    labels = [t for t in captured["labels"] if t]
    assert labels and not any("10^" in t or "times" in t or "$" in t for t in labels), labels
