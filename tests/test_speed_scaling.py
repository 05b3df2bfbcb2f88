"""The speed benchmark's scaling mode: crossovers and slopes against hand-computed values, and
`mnist-bench-speed --scaling --quick` end to end (real MLflow store)."""

from __future__ import annotations

import mlflow
import pandas as pd
import pytest

from bench.report.numbers.scaling import crossovers, slope, slopes
from tests.docs import run_documented


def axis_table(times: dict[str, list[float]], sizes=(16, 64, 256), spread=0.01, axis="batch"):
    """An axis's rows as measure_point writes them: median, min and max per size."""
    return pd.DataFrame(
        [
            {"axis": axis, "size": size, "implementation": impl, "epoch s": t,
             "min s": t - spread, "max s": t + spread, "work flops": 1000}
            for impl, ts in times.items()
            for size, t in zip(sizes, ts)
        ]
    )  # fmt: skip


def test_a_crossover_names_the_size_below_the_change():
    table = axis_table({"numpy": [1.0, 1.0, 1.0], "jax": [2.0, 1.5, 0.5]})
    assert crossovers(table, "batch") == ["jax overtakes numpy above batch 64"]


def test_no_crossover_when_one_is_always_faster():
    table = axis_table({"numpy": [1.0, 2.0, 4.0], "jax": [0.5, 1.0, 3.9]})
    assert crossovers(table, "width") == []


def test_a_crossover_within_the_repeat_spread_is_marked():
    # at 64, 1.02 vs 1.0 with ranges 0.92..1.12 and 0.9..1.1: they overlap
    table = axis_table({"numpy": [1.0, 1.0, 1.0], "jax": [1.5, 1.02, 0.98]}, spread=0.1)
    assert crossovers(table, "batch") == [
        "jax overtakes numpy above batch 64 (within noise)"
    ]  # fmt: skip


def test_crossovers_in_both_directions_and_between_every_pair():
    table = axis_table({"a": [1.0, 3.0, 1.0], "b": [2.0, 2.0, 2.0], "c": [9.0, 9.0, 9.0]})
    assert crossovers(table, "batch") == [
        "b overtakes a above batch 16",
        "a overtakes b above batch 64",
    ]


def test_slope_of_a_power_law():
    assert slope([1, 2, 4, 8], [3, 6, 12, 24]) == pytest.approx(1.0)
    assert slope([1, 4, 16], [2, 4, 8]) == pytest.approx(0.5)
    assert slope([10, 100], [5, 5]) == pytest.approx(0.0, abs=1e-12)


def test_slopes_use_work_on_a_width_axis_and_the_batch_size_where_work_is_constant():
    batch = axis_table({"numpy": [4.0, 2.0, 1.0]}, sizes=(16, 64, 256))
    width = axis_table({"numpy": [1.0, 4.0]}, sizes=(64, 256), axis="width-1")
    width["work flops"] = [100, 1600]  # 16x the work, 4x the time: slope 0.5
    found = slopes(pd.concat([batch, width], ignore_index=True)).set_index("axis")
    assert found.loc["batch", "against"] == "batch size"
    assert found.loc["batch", "slope"] == pytest.approx(-0.5)  # 16x the batch, 1/4 the time
    assert found.loc["width-1", "against"] == "work (FLOPs)"
    assert found.loc["width-1", "slope"] == pytest.approx(0.5)


def test_speed_scaling_quick(tmp_path):
    store = f"sqlite:///{tmp_path}/m.db"
    out = tmp_path / "out"
    proc = run_documented("mnist-bench-speed --scaling --quick", "--implementation", "numpy",
                          "--implementation", "jax", "--out", str(out), "--tracking-uri", store,
                          cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = (out / "scaling.md").read_text()
    for title in ("batch", "width (1 hidden layer)", "width (2 hidden layers)", "Slopes"):
        assert f"## {title}" in report
    for axis in ("batch", "width-1", "width-2"):
        png = out / f"scaling-{axis}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({png.name})" in report
        assert f"| {axis} | 64 | numpy |" in report and f"| {axis} | 512 | jax |" in report
    assert "| tf_tape |" not in report and "Crossovers:" in report
    mlflow.set_tracking_uri(store)
    [run] = mlflow.search_runs(experiment_names=["mnist-bench-speed"], output_format="list")
    assert run.data.tags["kind"] == "scaling" and run.data.params["quick"] == "True"
    assert {"slope.batch.numpy", "slope.width-2.jax"} <= set(run.data.metrics)
    artifacts = mlflow.MlflowClient().list_artifacts
    names = {a.path for d in ("", "figures", "tables") for a in artifacts(run.info.run_id, d)}
    assert {"scaling.md", "figures/scaling-batch.png", "tables/scaling-width-1.csv"} <= names
