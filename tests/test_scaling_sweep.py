"""The `scaling` preset as docs/speed.md shows it, made small: a sweep over the batch size (and
one over the width), then the report's scaling section from the store (real MLflow, real
Hydra): the figure, the per-size table, the crossovers and the slopes."""

from __future__ import annotations

import pandas as pd
import pytest

from bench.report.numbers.scaling import sweep_axis, sweep_table, width
from tests.docs import run_documented

SMALL = ["dataset.n_train=640", "train.epochs=2", "implementation=numpy,jax", "seed=0,1"]


def store(tmp_path) -> list[str]:
    return [f"tracking.uri=sqlite:///{tmp_path}/m.db", f"tracking.artifact_root={tmp_path}/a",
            f"hydra.sweep.dir={tmp_path}/multirun"]  # fmt: skip


def report(tmp_path) -> str:
    proc = run_documented("mnist-bench-report", "--tracking-uri", f"sqlite:///{tmp_path}/m.db",
                          "--out", str(tmp_path / "out"), cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    [page] = (tmp_path / "out").glob("*/report.md")
    return page.read_text()


def check_section(tmp_path, proc, axis: str, sizes: tuple[str, str]) -> None:
    """The sweep finished, and the report's Scaling section has its figure and numbers."""
    assert proc.returncode == 0, proc.stderr[-3000:]
    page = report(tmp_path)
    section = page.split("## Scaling")[1].split("\n## ")[0]
    assert "](scaling_scaling.png)" in section
    assert f"steady epoch's seconds per training image against the {axis}" in section
    assert "overtakes" in section or "no crossover" in section
    for impl in ("numpy", "jax"):
        for size in sizes:
            assert f"| {impl} | {size} |" in section
    assert f"| {'batch' if axis == 'batch size' else 'width'} | numpy | {axis} |" in section


def test_a_batch_scaling_sweep_gets_its_figure_and_numbers_in_the_report(tmp_path):
    proc = run_documented("mnist-bench -m +experiment=scaling", *SMALL, *store(tmp_path),
                          "train.batch_size=32,128", cwd=tmp_path)  # fmt: skip
    check_section(tmp_path, proc, "batch size", ("32", "128"))


def test_a_width_scaling_sweep_gets_its_figure_and_numbers_in_the_report(tmp_path):
    proc = run_documented(
        "mnist-bench -m +experiment=scaling train.batch_size=128 "
        "'model.hidden=[64],[256],[1024],[4096]'",
        *SMALL, *store(tmp_path), cwd=tmp_path,
        replace={"[64],[256],[1024],[4096]": "[16],[32]"},
    )  # fmt: skip
    check_section(tmp_path, proc, "hidden width", ("16", "32"))


def test_a_preset_is_a_scaling_sweep_only_when_one_size_alone_sets_it_apart():
    runs = pd.DataFrame({
        "params.train.batch_size": ["32", "32", "128", "128"],
        "params.model.hidden": ["[512]"] * 4,
        "comparison": ["a", "a", "b", "b"],
    })  # fmt: skip
    assert sweep_axis(runs) == "params.train.batch_size"
    assert sweep_axis(runs.assign(comparison=["a", "c", "b", "b"])) is None  # something else too
    both = runs.assign(**{"params.model.hidden": ["[512]", "[512]", "[64]", "[64]"]})
    assert sweep_axis(both) is None
    uneven = runs.assign(**{"params.train.batch_size": ["32"] * 4,
                            "params.model.hidden": ["[64, 32]"] * 2 + ["[512]"] * 2})  # fmt: skip
    assert sweep_axis(uneven) is None and width("[256, 256]") == 256


def test_the_sweep_table_takes_medians_and_ranges_over_seeds_per_image():
    runs = pd.DataFrame(
        {"run_id": list("abcd"), "params.train.batch_size": ["32", "32", "64", "64"]}
    )
    rows = pd.DataFrame({"run_id": list("abcd"), "implementation": ["numpy"] * 4,
                         "steady_samples_per_s": [1000.0, 500.0, 2000.0, 4000.0]})  # fmt: skip
    table = sweep_table(rows, runs, "params.train.batch_size").set_index("size")
    assert table.loc[32, "epoch s"] == pytest.approx(0.0015)  # median of 1/1000 and 1/500
    assert (table.loc[64, "min s"], table.loc[64, "max s"]) == (1 / 4000, 1 / 2000)
    assert set(table.axis) == {"batch"}
