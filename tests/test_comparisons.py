"""A comparison states what it compares: runs that differ in what must be equal (host, dataset,
config) are never paired or pooled, a report says which runs came from which sweep, numbers
agree with the verdicts beside them, and every command the project prints can be pasted."""

from __future__ import annotations

import shlex
import shutil
import signal
import socket
import subprocess
import sys

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient

from tests.docs import argv
from tests.test_app import ENV, command, mnist_bench, runs_of
from tests.test_faults import finish, start, wait_for

TINY = ["seed=0,1", "dataset.n_train=1000", "train.epochs=2", "tracking.log_model=false"]


def report(tmp_path, *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.commands.report", "--tracking-uri",
         f"sqlite:///{tmp_path}/mlflow.db", "--out", str(tmp_path / "reports"), *args],
        cwd=tmp_path, capture_output=True, text=True, env=ENV, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def section(md: str, title: str) -> str:
    return md.split(f"## {title}")[1].split("\n## ")[0]


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare (util-linux)")
def test_runs_from_another_host_are_compared_apart(tmp_path):
    """The same sweep on this host and on 'other-host' (a UTS namespace of its own): the
    other host runs its own jobs (a run of another machine is never one a sweep skips to),
    two comparisons, never paired by seed across hosts, and the verdict box says how they
    differ."""
    sweep = ["-m", "implementation=numpy,jax", *TINY]
    assert mnist_bench(tmp_path, *sweep).returncode == 0
    elsewhere = ["unshare", "-u", "sh", "-c", 'hostname other-host && exec "$@"', "sh",
                 *command(tmp_path, *sweep)]  # fmt: skip
    proc = subprocess.run(elsewhere, cwd=tmp_path, capture_output=True, text=True, env=ENV,
                          timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "skipped, already FINISHED" not in proc.stdout + proc.stderr
    hosts = {r.data.tags["host"] for r in runs_of(tmp_path) if "sweep_parent" not in r.data.tags}
    assert hosts == {socket.gethostname(), "other-host"}
    report(tmp_path, "--all", "--name", "r")
    verdicts = pd.read_csv(tmp_path / "reports" / "r" / "verdicts.csv")
    assert verdicts.setting.nunique() == 2  # one comparison per host
    assert (verdicts.n == 2).all()  # each pairs its own two seeds, never the other host's
    md = (tmp_path / "reports" / "r" / "report.md").read_text()
    box = section(md, "Verdicts")
    assert "2 comparisons, never pooled" in box
    assert f"host differs: {', '.join(sorted(hosts))} (compared apart, never pooled)" in box
    assert "setting 1: " in box and "setting 2: " in box
    assert "setting 1: host=other-host" in box or "setting 2: host=other-host" in box


def test_two_datasets_in_one_sweep_are_never_pooled_nor_judged_alike(tmp_path):
    sweep = ["-m", "+experiment=keras_dense512", "dataset=mnist,fashion_mnist",
             "implementation=numpy", "seed=0", "dataset.n_train=1000", "train.epochs=1"]  # fmt: skip
    assert mnist_bench(tmp_path, *sweep).returncode == 0
    report(tmp_path, "--name", "r")
    md = (tmp_path / "reports" / "r" / "report.md").read_text()
    header = md.split("## ")[1]
    assert "Dataset: fashion_mnist (sha256 " in header and "mnist (sha256 " in header
    reproduction = section(md, "Reproduction of published results")
    judged = [line for line in reproduction.splitlines() if line.startswith("| keras_dense512")]
    assert len(judged) == 1, judged  # the MNIST run only: the tutorial published MNIST
    # and not even that one: it trained 1 epoch on 1,000 images, not what the tutorial did
    assert (
        "not judged (not the tutorial's settings: dataset.n_train=1000, train.epochs=1)"
        in judged[0]
    )
    summary = pd.read_csv(tmp_path / "reports" / "r" / "summary.csv")
    assert summary.setting.nunique() == 2  # one row per dataset, never pooled


def test_one_epoch_runs_make_no_speed_claim(tmp_path):
    sweep = ["-m", "implementation=numpy,jax", "seed=0,1", "dataset.n_train=1000",
             "train.epochs=1", "tracking.log_model=false"]  # fmt: skip
    proc = mnist_bench(tmp_path, *sweep)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "one epoch per run: no steady epoch" in proc.stdout  # the sweep's own table
    runs = [r for r in runs_of(tmp_path) if "sweep_parent" not in r.data.tags]
    assert all("final/test_accuracy" in r.data.metrics for r in runs)  # finished, prefixed
    assert not any("final/steady_epoch_time_s" in r.data.metrics for r in runs)
    report(tmp_path, "--name", "r")
    verdicts = pd.read_csv(tmp_path / "reports" / "r" / "verdicts.csv")
    speed = verdicts[verdicts.quantity == "epoch_time"].iloc[0]
    assert pd.isna(speed.estimate) and speed.verdict == "not tested"
    key = section((tmp_path / "reports" / "r" / "report.md").read_text(), "Verdicts")
    assert "x slower" not in key and "| fastest |" not in key


def test_a_resumed_sweep_keeps_its_outcome_and_names_the_runs_of_the_other_sweep(tmp_path):
    """A sweep stopped by Ctrl-C after its first job, then its command run again: the first
    sweep's report names the run the second sweep made for it, and its parent keeps saying it
    was stopped."""
    sweep = ["-m", "seed=0,1", "implementation=numpy", "dataset.n_train=2000", "train.epochs=300"]
    proc = start(tmp_path, *sweep, group=True)
    wait_for(tmp_path, proc, r"custom-numpy-s0: test accuracy|numpy-s0: test accuracy")
    wait_for(tmp_path, proc, r"epoch 2/300")  # the second job trains
    proc.send_signal(signal.SIGINT)
    finish(tmp_path, proc)
    (first,) = [r for r in runs_of(tmp_path) if r.data.tags.get("sweep_parent") == "true"]
    assert first.info.status == "KILLED"
    again = mnist_bench(tmp_path, *sweep)  # seed 0 is skipped, seed 1 runs
    assert again.returncode == 0, again.stderr[-3000:]
    second = next(r for r in runs_of(tmp_path) if r.data.tags.get("sweep_parent") == "true"
                  and r.info.run_id != first.info.run_id)  # fmt: skip
    first_id, second_id = first.data.tags["sweep_id"], second.data.tags["sweep_id"]
    out = report(tmp_path, "--sweep-id", first_id, "--name", "first")
    md = (tmp_path / "reports" / "first" / "report.md").read_text()
    assert f"1 runs from later sweep {second_id}: numpy-s1" in md.splitlines()[0]
    note = MlflowClient().get_run(first.info.run_id).data.tags["mlflow.note.content"]
    assert note.startswith(f"**Sweep {first_id} (KILLED)**:")
    assert "**Outcome:** interrupted (SIGINT)" in note and f"later sweep {second_id}" in note
    assert "updated the summary" in out.stdout


def test_printed_commands_work_when_pasted(tmp_path):
    """A store path with a space and an experiment of its own: the sweep's "Report:" line and
    the report's "Reproduce" command, run as printed."""
    store = tmp_path / "a store"
    store.mkdir()
    cmd = [a for a in command(store, "-m", "implementation=numpy", *TINY)
           if not a.startswith("tracking.uri")]  # fmt: skip
    cmd += [f"tracking.uri=sqlite:///{store}/m.db", "tracking.experiment=my runs"]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, env=ENV, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (line,) = [ln for ln in proc.stdout.splitlines() if ln.startswith("Report: ")]
    pasted = argv(line.removeprefix("Report: ")) + ["--out", str(tmp_path / "reports")]
    got = subprocess.run(pasted, cwd=tmp_path, capture_output=True, text=True, env=ENV, timeout=600)
    assert got.returncode == 0, (line, got.stderr[-3000:])
    folder = next((tmp_path / "reports").iterdir())
    for published in ("report.md", "report.html", "runs.csv"):  # no local path, unless asked
        assert str(tmp_path) not in (folder / published).read_text(), published
    ok = subprocess.run([*pasted, "--with-paths", "--name", "here"], cwd=tmp_path, env=ENV,
                        capture_output=True, text=True, timeout=600)  # fmt: skip
    assert ok.returncode == 0, ok.stderr[-3000:]
    md = (tmp_path / "reports" / "here" / "report.md").read_text()
    reproduce = next(ln for ln in md.splitlines() if ln.startswith("mnist-bench -m "))
    again = subprocess.run(argv(reproduce), cwd=tmp_path, capture_output=True, text=True,
                           env=ENV, timeout=600)  # fmt: skip
    assert again.returncode == 0, (reproduce, again.stderr[-3000:])
    assert again.stdout.count("skipped, already FINISHED") == 2  # the same grid, all done
    mlflow.set_tracking_uri(f"sqlite:///{store}/m.db")
    runs = mlflow.search_runs(experiment_names=["my runs"])
    assert (runs["tags.sweep_parent"] != "true").sum() == 2  # no job run added


def test_a_preset_name_that_is_a_path_is_refused(tmp_path):
    proc = mnist_bench(tmp_path, "implementation=numpy", "preset=../../etc", *TINY[1:])
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "preset='../../etc' is not a name; allowed: up to 100 letters, digits" in proc.stderr
    assert shlex.split("a 'b c'") == ["a", "b c"]  # the quoting the printed commands rely on
