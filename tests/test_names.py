"""One stored name per metric, and readers that read stores written before the prefixes: the
same numbers come back by their short names from either kind of run, in a real SQLite store."""

from __future__ import annotations

import mlflow
import pytest
from mlflow import MlflowClient

from bench.tracking import names, store


@pytest.mark.parametrize(
    ("short", "per_epoch", "name"),
    [
        ("train_loss", True, "epoch/train_loss"),
        ("host_other_cores", True, "host/other_cores"),
        ("test_accuracy", False, "final/test_accuracy"),
        ("setup_s", False, "job/setup_s"),
        ("overhead/model_s", False, "overhead/model_s"),
    ],
)
def test_each_metric_has_one_prefixed_name_and_its_short_name_back(short, per_epoch, name):
    assert names.stored(short, per_epoch) == name
    assert names.short(name) == short


def test_readers_give_the_same_numbers_from_an_old_store_and_a_new_one(tmp_path):
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    client = MlflowClient()
    experiment = client.create_experiment("names")
    old, new = (client.create_run(experiment, run_name=n).info.run_id for n in ("old", "new"))
    for step, loss in enumerate([0.9, 0.5], 1):
        client.log_metric(old, "train_loss", loss, step=step)  # before the prefixes
        client.log_metric(old, "epoch/train_loss", loss, step=step)  # and the view's copy
        client.log_metric(new, "epoch/train_loss", loss, step=step)
    for key, value in (("test_accuracy", 0.97), ("setup_s", 1.5)):
        client.log_metric(old, key, value)
        client.log_metric(new, names.stored(key, per_epoch=False), value)
    client.log_metric(old, "final/test_accuracy", 0.97)  # the old view's copy

    frame = store.runs_frame(experiment).set_index("tags.mlflow.runName")
    metrics = sorted(c for c in frame.columns if c.startswith("metrics."))
    assert metrics == ["metrics.setup_s", "metrics.test_accuracy", "metrics.train_loss"]
    assert frame.loc["old", metrics].tolist() == frame.loc["new", metrics].tolist()
    history = store.histories([old, new], ["train_loss"])
    by_run = history.groupby("run_id").value.apply(list)
    assert by_run[old] == by_run[new] == [0.9, 0.5]
    stored_old = client.get_run(old).data.metrics
    assert names.short_metrics(stored_old) == names.short_metrics(client.get_run(new).data.metrics)


def test_a_final_duration_is_stored_in_four_significant_digits():
    from bench.tracking.runs import shown

    assert shown("steady_epoch_time_s", 3.2311305891) == 3.231
    assert shown("test_accuracy", 0.97812345) == 0.97812345  # exact fractions stay exact
    assert shown("samples_per_s", 26091.123456) == 26091.123456  # a rate, not a duration
