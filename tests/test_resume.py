"""Idempotent sweeps: finished configs are skipped, repeats are certified, the grid is audited,
and a tracking store that cannot be used is refused in seconds."""

from __future__ import annotations

import subprocess
import time

import pytest

from bench.commands.audit import main as audit_main
from bench.commands.train import run
from bench.tracking.runs import compare_repeat
from bench.tracking.sweep_env import FAILURES
from tests.servers import free_port
from tests.test_app import ENV, SMALL, command, compose_cfg, mnist_bench, runs_of

SWEEP = [
    "-m",
    "implementation=numpy,tf_tape,keras",
    "seed=0",
    "dataset.n_train=1000",
    "train.epochs=2",
]


def jobs_of(tmp_path):
    return [r for r in runs_of(tmp_path) if "sweep_parent" not in r.data.tags]


def test_rerun_skips_finished_configs_and_a_forced_repeat_is_certified_bitwise(tmp_path):
    first = mnist_bench(tmp_path, *SWEEP)
    assert first.returncode == 0, first.stderr[-3000:]
    assert len(jobs_of(tmp_path)) == 3

    again = mnist_bench(tmp_path, *SWEEP)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("skipped, already FINISHED") == 3
    assert len(jobs_of(tmp_path)) == 3  # nothing ran twice

    forced = mnist_bench(tmp_path, *SWEEP, "tracking.skip_completed=false")
    assert forced.returncode == 0, forced.stderr[-3000:]
    jobs = jobs_of(tmp_path)
    assert len(jobs) == 6
    # every implementation repeats its CPU losses bitwise; both runs of a pair say so
    assert {r.data.tags["determinism"] for r in jobs} == {"bitwise"}
    pairs = {r.info.run_id: r.data.tags["determinism_compared_to"] for r in jobs}
    assert all(pairs[pairs[a]] == a for a in pairs)


def test_single_run_repeats_by_default(tmp_path):
    for _ in range(2):
        assert mnist_bench(tmp_path, *SMALL).returncode == 0
    assert len(jobs_of(tmp_path)) == 2


def test_audit_names_holes_and_the_command_that_fills_them(tmp_path, capsys):
    # train.epochs=0 is refused before a run exists: a hole in the grid
    sweep = ["-m", "seed=0,1", "train.epochs=1,0", "dataset.n_train=500"]
    proc = mnist_bench(tmp_path, *sweep)
    assert proc.returncode == 1
    store = ["--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db"]
    assert audit_main(store) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].endswith("4 jobs: 2 FINISHED, 2 MISSING")
    assert out[-1].strip().startswith("mnist-bench -m seed=0,1 train.epochs=0 dataset.n_train=500")

    fixed = mnist_bench(tmp_path, "-m", "seed=0,1", "train.epochs=1,2", "dataset.n_train=500")
    assert fixed.returncode == 0
    assert "skipped" in fixed.stdout  # the epochs=1 jobs had finished
    assert audit_main(store) == 0
    assert "complete" in capsys.readouterr().out
    assert audit_main([*store, "--sweep-id", "nope"]) == 2
    assert "no sweep 'nope' found" in capsys.readouterr().err


def test_report_of_a_resumed_sweep_covers_the_whole_grid(tmp_path):
    args = ["-m", "seed=0,1", "implementation=numpy", "dataset.n_train=500", "train.epochs=1"]
    assert mnist_bench(tmp_path, *args[:1], "seed=0", *args[2:]).returncode == 0
    assert mnist_bench(tmp_path, *args).returncode == 0  # seed 0 skipped, seed 1 runs
    from bench.report.numbers.collect import select

    found = select(f"sqlite:///{tmp_path}/mlflow.db", "mnist-bench")
    parents = [r for r in runs_of(tmp_path) if r.data.tags.get("sweep_parent") == "true"]
    first = min(parents, key=lambda r: r.info.start_time).data.tags["sweep_id"]
    assert sorted(found.runs["params.seed"]) == ["0", "1"]
    assert found.sweep_id in found.label and found.notes == [
        f"1 runs from earlier sweep {first}: numpy-s0"
    ]


def test_compare_repeat_outcomes():
    assert compare_repeat([1.0, 0.5], [1.0, 0.5]) == ("bitwise", 0.0)
    outcome, diff = compare_repeat([1.0, 0.50001], [1.0, 0.5])
    assert outcome == "tolerance" and diff == pytest.approx(2e-5)
    assert compare_repeat([1.0, 0.6], [1.0, 0.5])[0] == "divergent"
    assert compare_repeat([1.0], [1.0, 0.5])[0] == "divergent"


@pytest.mark.parametrize(
    "override,message",
    [
        ("tracking.uri=http://127.0.0.1:{port}", "no MLflow server answers (ConnectionError)"),
        ("tracking.uri=foo://somewhere", "unsupported scheme 'foo'"),
        ("tracking.skip_completed=maybe", "tracking.skip_completed='maybe' must be true"),
    ],
)
def test_unusable_tracking_settings_fail_in_seconds(override, message, capsys, tmp_path):
    cfg = compose_cfg(override.format(port=free_port()), *SMALL)
    FAILURES.clear()
    start = time.monotonic()
    assert run(cfg) is None
    assert time.monotonic() - start < 10
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    FAILURES.clear()


def test_sweep_against_a_dead_server_stops_before_any_job(tmp_path):
    dead = f"tracking.uri=http://127.0.0.1:{free_port()}"
    args = [a for a in command(tmp_path, "-m", "seed=0,1") if not a.startswith("tracking.uri")]
    proc = subprocess.run([*args, dead], cwd=tmp_path, capture_output=True, text=True, env=ENV)
    assert proc.returncode == 1
    assert "no MLflow server answers" in proc.stderr.strip().splitlines()[-1]
    assert "epoch" not in proc.stdout
