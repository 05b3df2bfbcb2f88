"""The speed benchmark: work counts, phase steps that leave the weights alone, and the
command end to end on a small case (real MLflow store)."""

from __future__ import annotations

import re
import subprocess
import sys
import time

import mlflow
import numpy as np
import pytest

from bench.data import prepare
from bench.speed.floor import case_floor, step_products
from bench.speed.flops import forward_flops, train_flops
from bench.speed.measure import CASES
from implementations.spec import ModelSpec, OptimizerSpec, init_weights
from tests.conftest import ROOT
from tests.docs import run_documented
from tests.helpers import NAMES, build
from tests.test_app import ENV


def test_flops_of_the_784_512_10_mlp():
    assert forward_flops([784, 512, 10]) == 2 * (784 * 512 + 512 * 10)
    # forward + weight gradients + the input gradient of the output layer only
    assert train_flops([784, 512, 10]) == 4 * (784 * 512 + 512 * 10) + 2 * 512 * 10
    assert 60_000 * train_flops([784, 512, 10]) / 1e9 == pytest.approx(98.2, abs=0.1)


def test_floor_counts_every_product_of_a_step_and_the_optimizer_traffic():
    shapes = step_products([784, 512, 10], 128)
    assert sum(2 * m * k * n for m, k, n in shapes) == 128 * train_flops([784, 512, 10])
    floor = case_floor([784, 64, 10], 100, 1050, "rmsprop", threads=1)
    assert floor.steps == 11 and floor.products_s > 0 and floor.update_s > 0
    assert floor.epoch_s == floor.products_s + floor.update_s
    sgd = case_floor([784, 64, 10], 100, 1050, "sgd", threads=1)
    # an SGD update streams 3 parameter-sized arrays, RMSprop 5: at equal bandwidth, 3/5 the time
    assert sgd.update_s * sgd.bandwidth_gbs == pytest.approx(
        floor.update_s * floor.bandwidth_gbs * 3 / 5
    )


def test_numpy_phases_are_clocked_inside_the_real_steps(mnist):
    """The timed epoch is the training epoch (the same losses and weights), and its phases are
    positive and add up to less than the epoch's wall time."""
    s = prepare(mnist, 0, 600, 0)
    x, y = s.x_train, s.y_train
    model, opt = ModelSpec(hidden=(32,)), OptimizerSpec()
    plain, timed = (build("numpy", model, opt, 50, init_weights(model, 0), 0) for _ in range(2))
    for _ in range(2):
        expected = plain.train_epoch(x, y)
        start = time.perf_counter()
        loss, acc, parts = timed.timed_train_epoch(x, y)
        wall = time.perf_counter() - start
        assert (loss, acc) == expected
    assert sorted(parts) == ["backward", "forward", "update"] and min(parts.values()) > 0
    assert sum(parts.values()) < wall
    for a, b in zip(plain.get_weights(), timed.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", NAMES)
def test_phase_epochs_run_without_updating(name, mnist):
    net = build(name, ModelSpec(hidden=(32,)), OptimizerSpec(), 50, None, 0)
    s = prepare(mnist, 0, 200, 0)
    x, y = s.x_train, s.y_train
    before = net.get_weights()
    for phase in ("forward", "gradients"):
        net.phase_epoch(phase, x, y)
    for a, b in zip(before, net.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_speed_command_quick(tmp_path):
    store = f"sqlite:///{tmp_path}/m.db"
    proc = run_documented("mnist-bench-speed --quick", "--case", "keras_dense512:64", "--out",
                          str(tmp_path / "out"), "--tracking-uri", store, cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = (tmp_path / "out" / "speed.md").read_text()
    for title in (
        "Floor (same run)",
        "Epoch time",
        "Where the time goes",
        "Startup",
        "Import cost",
    ):
        assert f"## {title}" in report
    assert "| keras_dense512 b64 | 64 | numpy |" in report  # the case asked for
    variants = report.split("## Variants (keras_dense512 b64)")[1].split("##")[0]
    for row in (
        "| tf_tape | graph | jit_compile=False |",
        "| tf_tape | eager | eager=True |",
        "| jax | per_step | scan=False |",
        "| numpy | default |",
    ):
        assert row in variants, row
    assert variants.count("| best |") >= len(NAMES)  # one best per implementation (ties: more)
    # the variant table's defaults are the epoch table's own measurements, not a second one
    epochs = report.split("## Epoch time")[1].split("##")[0]
    for name in NAMES:
        [row] = [r for r in epochs.splitlines() if f"| {name} |" in r]
        [default] = [r for r in variants.splitlines() if f"| {name} | default |" in r]
        assert row.split("|")[4:6] == default.split("|")[4:6]  # epoch s, spread s
    assert not framework_lines(proc.stdout + proc.stderr)
    mlflow.set_tracking_uri(store)
    runs = mlflow.search_runs(experiment_names=["mnist-bench-speed"], output_format="list")
    parent = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if r not in parent]
    assert len(parent) == 1 and parent[0].data.metrics["matmul_peak_gflops"] > 1
    assert sorted(r.data.tags["implementation"] for r in children) == sorted(NAMES)
    for r in children:
        assert r.data.metrics["epoch_s"] > 0 and 0 < r.data.metrics["pct_of_peak"] < 100
        assert 0 < r.data.metrics["pct_of_floor"] < 150  # above 100 only by timing noise
    phases = report.split("## Where the time goes (per epoch)")[1].split("##")[0]
    numpy_rows = [line for line in phases.splitlines() if "| numpy |" in line]
    assert [row.split("|")[3].strip() for row in numpy_rows] == [
        "forward", "backward", "update", "rest"
    ]  # fmt: skip
    assert all("in-step clocks" in row and "~0" not in row for row in numpy_rows)
    assert "| tf_tape | update+rest |" in phases and "truncated-step epochs" in phases


FRAMEWORK_LINE = re.compile(
    r"^(WARNING|INFO|ERROR)[: ]|^[IWEF]\d{4} |\d{4}/\d\d/\d\d .* (INFO|WARNING) |retracing|"
    r"oneDNN|cudart|absl|cuInit"
)


def framework_lines(console: str) -> list[str]:
    """The lines of a console that frameworks (TensorFlow, absl, XLA, MLflow) wrote."""
    return [line for line in console.splitlines() if FRAMEWORK_LINE.search(line)]


def test_framework_lines_are_recognised():
    console = (
        "WARNING:tensorflow:5 out of the last 5 calls to <function f> triggered tf.function "
        "retracing.\nI0000 00:00:1733 cudart_stub.cc:28] Could not find cuda drivers\n"
        "2026/12/06 23:50:04 INFO mlflow.tracking.fluent: Experiment with name 'x' does not "
        "exist.\n| keras_dense512 b64 | 64 | numpy | 0.07 |\nA compiled step (XLA, tf.function)"
    )
    assert len(framework_lines(console)) == 3


@pytest.mark.parametrize(
    "args,message",
    [
        (["--repeats", "0"], "--repeats=0"),
        (["--case", "keras_dense"], "unknown preset 'keras_dense'; one of compare, keras_dense512"),
        (["--case", "tape_sigmoid:0"], "batch '0' in 'tape_sigmoid:0' must be a positive integer"),
    ],
)
def test_speed_command_refuses_bad_arguments(args, message):
    proc = subprocess.run(
        [sys.executable, "-m", "bench.commands.speed", *args],
        capture_output=True,
        text=True,
        env=ENV,
    )
    assert proc.returncode == 2 and message in proc.stderr.strip().splitlines()[-1]


def speed_report(proc, tmp_path) -> str:
    assert proc.returncode == 0, proc.stderr[-3000:]
    return (tmp_path / "speed.md").read_text()


def one_repeat(tmp_path) -> list[str]:
    return [
        "--repeats",
        "1",
        "--out",
        str(tmp_path),
        "--tracking-uri",
        f"sqlite:///{tmp_path}/m.db",
    ]


@pytest.mark.slow
def test_the_whole_matrix_as_the_docs_show_it(tmp_path):
    """docs/speed.md's bare command, at one repeat and for NumPy alone: every case, the floors,
    the variants and the startup costs."""
    proc = run_documented("mnist-bench-speed", *one_repeat(tmp_path), "--implementation", "numpy",
                          cwd=tmp_path)  # fmt: skip
    report = speed_report(proc, tmp_path)
    for case in CASES:
        assert f"| {case.name} |" in report


@pytest.mark.slow
def test_one_case_for_two_implementations_as_the_docs_show_it(tmp_path):
    proc = run_documented(
        "mnist-bench-speed --case keras_dense512:128 --implementation numpy --implementation jax",
        *one_repeat(tmp_path), cwd=tmp_path,
    )  # fmt: skip
    report = speed_report(proc, tmp_path)
    assert "| keras_dense512 b128 | 128 | jax |" in report and "| tf_tape |" not in report


def test_the_blas_threads_benchmark_runs_as_documented(tmp_path):
    """docs/speed.md's evidence for the second core, as a user runs it (its figures are the
    host's: only their presence is checked here)."""
    proc = run_documented("python -m tests.benchmarks.blas_threads", cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert (
        lines[0].startswith("OpenBLAS's default timeout: epoch ")
        and "OpenBLAS's worker" in lines[0]
    )
    assert lines[1].startswith("OPENBLAS_THREAD_TIMEOUT=4: epoch ")
    assert (
        sum("blocked, one thread" in line and "halves, two threads" in line for line in lines) == 3
    )
    assert lines[-1].startswith("handing a task to a waiting thread and back: ")
