"""Harness pieces that every job relies on."""

from __future__ import annotations

import numpy as np

from bench.job.harness import epoch_order
from bench.job.host import peak_rss_mb, reset_peak_rss


def test_memory_peak_is_per_job_not_per_process():
    big = np.ones(300 * 2**20 // 8)  # an earlier job's 300 MiB
    before = peak_rss_mb()
    del big
    reset_peak_rss()
    assert peak_rss_mb() < before - 200


def test_batch_order_depends_on_seed_and_epoch_only():
    a, b = epoch_order(0, 1, 1000), epoch_order(0, 1, 1000)
    assert np.array_equal(a, b) and sorted(a) == list(range(1000))
    assert not np.array_equal(a, epoch_order(0, 2, 1000))
    assert not np.array_equal(a, epoch_order(1, 1, 1000))


def test_load_meter_sees_another_process_busy():
    """A child that spins one core while this process sleeps is `others`, not us."""
    import subprocess
    import sys
    import time

    from bench.job.host import LoadMeter

    child = subprocess.Popen(
        [sys.executable, "-c", "import time\nt = time.time()\nwhile time.time() - t < 3: pass"]
    )
    try:
        time.sleep(0.5)  # the child is up and spinning
        meter = LoadMeter()
        meter.start()
        time.sleep(1.5)
        load = meter.stop()
    finally:
        child.kill()
        child.wait()
    assert load.others >= 0.3 and load.steal >= 0 and load.contended


def test_a_sweeps_jobs_share_one_read_only_copy_of_their_data():
    """load_data once per process: a second job with the same data settings gets the same
    arrays, which nobody can write into; other settings load anew."""
    import dataclasses

    import pytest

    from bench.job.settings import job_from_config
    from bench.job.setup import load_data
    from tests.test_app import compose_cfg

    first = job_from_config(compose_cfg("implementation=numpy", "seed=0", "dataset.n_train=500"))
    second = dataclasses.replace(first, seed=1)
    data, splits = load_data(first)
    assert load_data(second)[1] is splits
    for a in (data.x_train, splits.x_train, splits.y_val, splits.x_test):
        with pytest.raises(ValueError, match="read-only"):
            a[0] = 0
    other = job_from_config(compose_cfg("implementation=numpy", "dataset.n_train=400"))
    assert len(load_data(other)[1].y_train) == 400
