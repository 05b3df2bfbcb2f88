"""Several hosts and devices in one report: runs are compared within a platform (host with its
CPU or GPU) only, never paired by seed across platforms; `mnist-bench-report` reads several
stores at once, names every platform, and sets them side by side with an unpaired interval.
Two real stores stand in for two hosts: one written here, one under another hostname
(`unshare -u`, a UTS namespace of its own)."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from bench.report.numbers.stats import unpaired_ratio_interval
from tests.docs import run_documented
from tests.test_app import ENV, command

SWEEP = ["-m", "implementation=numpy,jax", "seed=0,1,2", "dataset.n_train=1000", "train.epochs=2"]


def test_unpaired_ratio_matches_welchs_formula():
    """Reference: the Welch-Satterthwaite interval written out (not scipy's ttest_ind)."""
    a = np.array([1.00, 1.10, 0.90, 1.05, 0.95])
    b = np.array([2.00, 2.30, 1.80, 2.10, 2.20, 2.05])
    la, lb = np.log(a), np.log(b)
    va, vb = la.var(ddof=1) / len(la), lb.var(ddof=1) / len(lb)
    df = (va + vb) ** 2 / (va**2 / (len(la) - 1) + vb**2 / (len(lb) - 1))
    half = scipy_stats.t.ppf(0.975, df) * np.sqrt(va + vb)
    diff = lb.mean() - la.mean()
    ratio, low, high = unpaired_ratio_interval(a, b)
    assert ratio == pytest.approx(np.exp(diff))
    assert (low, high) == pytest.approx((np.exp(diff - half), np.exp(diff + half)))
    assert ratio == pytest.approx(2.0741, abs=1e-4)  # geometric means: 2.0689 / 0.9975
    assert np.isnan(unpaired_ratio_interval([1.0], [2.0, 2.1])[1])  # one run: no interval


def test_unpaired_ratio_interval_covers_95_percent():
    """Log-normal times, unequal noise on the two platforms, 5 runs each: the interval holds
    the true ratio in 95% of 4000 simulated comparisons (within the simulation's own noise)."""
    rng = np.random.default_rng(0)
    hits = 0
    for _ in range(4000):
        a = np.exp(rng.normal(0.0, 0.05, 5))
        b = 3.0 * np.exp(rng.normal(0.0, 0.25, 5))
        _, low, high = unpaired_ratio_interval(a, b)
        hits += low <= 3.0 <= high
    assert 0.94 <= hits / 4000 <= 0.96


def sweep_as(host: str | None, tmp_path, store: str) -> None:
    """The small sweep into `store`, on this host or under another hostname."""
    args = command(tmp_path, *SWEEP)
    args += [f"tracking.uri=sqlite:///{store}", f"tracking.artifact_root={store}-artifacts"]
    if host:
        args = ["unshare", "-u", "sh", "-c", f'hostname {host} && exec "$@"', "sh", *args]
    proc = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, env=ENV, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.skipif(shutil.which("unshare") is None, reason="no unshare")
def test_two_hosts_in_one_report_are_never_paired(tmp_path):
    here, there = tmp_path / "here.db", tmp_path / "there.db"
    sweep_as(None, tmp_path, here)
    sweep_as("other-host", tmp_path, there)
    proc = run_documented(
        "mnist-bench-report --tracking-uri sqlite:///results/mlflow.db "
        "--tracking-uri sqlite:///results/gpu/mlflow.db",
        "--out", str(tmp_path / "out"), cwd=tmp_path,
        replace={"results/mlflow.db": str(here), "results/gpu/mlflow.db": str(there)},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    [folder] = (tmp_path / "out").iterdir()
    page = (folder / "report.md").read_text()
    assert "Platforms (never paired by seed): other-host (cpu: " in page and "; vm (cpu: " in page
    section = page.split("## Across hosts and devices")[1].split("\n## ")[0]
    for impl in ("numpy", "jax"):
        assert f"{impl}, batch 128: steady epoch on vm (cpu: " in section
    assert "host differs: other-host, vm (compared apart, never pooled)" in page
    verdicts = pd.read_csv(folder / "verdicts.csv")
    assert set(verdicts.n.dropna()) <= {3}  # seeds paired within one host: 3, never 6
    assert verdicts.setting.nunique() == 2  # one comparison per host
    runs = pd.read_csv(folder / "runs.csv")
    assert set(runs.store) == {"store 1", "store 2"} and "sqlite" not in runs.store.str.cat()
    assert len(runs) == 12


def test_the_same_store_twice_is_refused(tmp_path):
    uri = f"sqlite:///{tmp_path}/m.db"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.commands.report", "--tracking-uri", uri, "--tracking-uri", uri],
        capture_output=True, text=True, env=ENV,
    )  # fmt: skip
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: a store is given twice: give each --tracking-uri once"
    )
