"""The sequential rule (sweep.until_decided): its per-look level keeps the stated error rate over
repeated looks (simulated, as the fixed-n intervals' coverage is), and a real sweep adds seeds
only where a verdict is still undecided, records why it stopped, and resumes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from mlflow import MlflowClient

from bench.report.numbers.sequential import level_per_look, schedule, simulate
from bench.report.numbers.stats import LEVEL
from tests.docs import run_documented
from tests.test_app import mnist_bench, runs_of, store_overrides

LOOKS = schedule(5, 2, 12)  # the defaults: 5 seeds, then 2 at a time, up to 12


def test_the_default_schedule_and_its_level():
    assert LOOKS == (5, 7, 9, 11, 12)
    assert schedule(3, 5, 5) == (3, 5) and schedule(5, 2, 5) == (5,)
    level = level_per_look(LOOKS)
    assert 0.97 < level < 0.995  # wider than 95% at every look
    assert level_per_look((5,)) == LEVEL  # one look: the plain 95% interval
    assert level_per_look(LOOKS) == level  # deterministic


def test_every_look_at_a_plain_95_percent_interval_loses_coverage():
    """Why the rule exists: pairs that no margin settles take every look, and the plain 95%
    interval at each of 5 looks holds the truth at the end only ~90% of the time."""
    naive = simulate(0.0, 1.0, LOOKS, 0.10, 20_000, np.random.default_rng(1), level=LEVEL)
    assert naive["coverage"] < 0.93


@pytest.mark.parametrize("mu", [0.0, 0.05])
def test_the_rule_keeps_95_percent_where_pairs_take_every_look(mu):
    """Noise far above the margin and (almost) no difference: no pair can be called the same
    speed and few are called faster, so pairs take every look and the rule's error rate is
    all of its looks' together, which its level holds at 95%. (A real difference stops some
    pairs early, covered more often: the next test.)"""
    found = simulate(mu, 1.0, LOOKS, 0.10, 40_000, np.random.default_rng(2))
    assert 0.94 <= found["coverage"] <= 0.96, found


@pytest.mark.parametrize("mu", [0.0, np.log(1.05), np.log(1.1), np.log(1.2), np.log(1.5)])
def test_the_rule_holds_at_least_95_percent_at_the_noise_this_host_has(mu):
    """Per-seed log ratios with the spread the compare sweep shows (sd 0.12): at least 95%
    whatever the true ratio, more where pairs are decided at an early look."""
    found = simulate(mu, 0.12, LOOKS, 0.10, 20_000, np.random.default_rng(3))
    assert found["coverage"] >= 0.945, found
    assert LOOKS[0] <= found["mean_seeds"] <= LOOKS[-1]


def test_a_small_sequential_sweep_adds_seeds_only_where_undecided(tmp_path):
    extra = ["implementation=numpy,jax", "seed=0,1,2", "sweep.max_seeds=5", "sweep.seed_batch=2",
             "dataset.n_train=1000", "train.epochs=2", *store_overrides(tmp_path)]  # fmt: skip
    proc = run_documented("mnist-bench -m +experiment=compare sweep.until_decided=true", *extra,
                          cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = runs_of(tmp_path)
    [parent] = [r for r in runs if r.data.tags.get("sweep_parent") == "true"]
    stop = parent.data.tags["sweep_stop"]
    assert stop.startswith(("every verdict decided", "sweep.max_seeds=5 reached"))
    assert "of the planned 3,5; every interval at 9" in stop  # each look: a wider interval
    client = MlflowClient()
    summary = json.loads(open(client.download_artifacts(parent.info.run_id, "sequential.json",
                                                        str(tmp_path))).read())  # fmt: skip
    children = [r for r in runs if r is not parent]
    seeds = sorted({int(r.data.params["seed"]) for r in children})
    assert summary["looks"][0] == 3 and seeds[:3] == [0, 1, 2]
    if summary["undecided"] or len(summary["looks"]) > 1:  # it looked again: seeds 3 and 4
        assert seeds == [0, 1, 2, 3, 4] and summary["looks"] == [3, 5]
    grid = json.loads(open(client.download_artifacts(parent.info.run_id, "sweep_grid.json",
                                                     str(tmp_path / "g"))).read())  # fmt: skip
    assert len(grid["jobs"]) == len(children)  # the added jobs joined the recorded grid
    assert all(r.data.params["sweep.first_seeds"] == "3" for r in children)
    assert "sequential rule: " in proc.stdout  # the verdict table's note says how it ended
    assert "so that all looks together hold 95%" in proc.stdout  # each look: a wider interval
    again = run_documented("mnist-bench -m +experiment=compare sweep.until_decided=true", *extra,
                           cwd=tmp_path)  # fmt: skip
    assert again.returncode == 0, again.stderr[-3000:]
    assert len([r for r in runs_of(tmp_path) if "sweep_parent" not in r.data.tags]) == len(children)


def test_until_decided_needs_the_sequential_sweeper(tmp_path):
    proc = mnist_bench(tmp_path, "-m", "implementation=numpy", "seed=0,1",
                       "sweep.until_decided=true", "dataset.n_train=500", "train.epochs=1")  # fmt: skip
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: sweep.until_decided=true needs the sequential sweeper: add "
        "hydra/sweeper=sequential (the compare preset has it)"
    )
    assert not runs_of(tmp_path) or all(
        "sweep_parent" not in r.data.tags for r in runs_of(tmp_path)
    )
