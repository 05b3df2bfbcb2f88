"""One stored name per metric, prefixed by what it is: MLflow 3 gives each prefix its own
section in the chart view and groups the run page's metric table by it, so a reviewer finds
the epoch curves under `epoch/`, the run's result under `final/`, the host's load during
each epoch under `host/`, what the job cost besides its epochs (setup, imports, memory)
under `job/`, and what writing its view cost under `overhead/`.

The code keeps the short names the harness computes (`train_loss`, `test_accuracy`,
`host_other_cores`); these functions turn them into stored names and back. Stores written
before the prefixes hold the short names (with `final/` and `epoch/` copies of a few):
every reader goes through `short_columns` and `history`, so it reads either kind."""

from __future__ import annotations

import pandas as pd

PER_EPOCH, FINAL, HOST, JOB = "epoch/", "final/", "host/", "job/"
SHORT_HOST = "host_"  # the harness's per-epoch load keys: host_other_cores, host_steal_cores
JOB_KEYS = frozenset({  # a run's final numbers about the job, not the training's result
    "setup_s", "startup_s", "data_load_time_s", "framework_import_s", "overhead_s",
    "total_time_s", "test_eval_time_s", "peak_rss_mb", "job_memory_mb", "gpu_peak_mb",
    "contended_epochs",
})  # fmt: skip


def stored(key: str, per_epoch: bool) -> str:
    """The name a metric the harness computes is stored under ("train_loss" per epoch ->
    "epoch/train_loss", "test_accuracy" -> "final/test_accuracy"); a name that has its
    prefix (overhead/..., verdict/...) stays as it is."""
    if "/" in key:
        return key
    if key.startswith(SHORT_HOST):
        return HOST + key.removeprefix(SHORT_HOST)
    if key in JOB_KEYS and not per_epoch:
        return JOB + key
    return (PER_EPOCH if per_epoch else FINAL) + key


def short(name: str) -> str:
    """The harness's name of a stored metric ("epoch/train_loss" -> "train_loss")."""
    if name.startswith(HOST):
        return SHORT_HOST + name.removeprefix(HOST)
    for prefix in (PER_EPOCH, FINAL, JOB):
        if name.startswith(prefix):
            return name.removeprefix(prefix)
    return name


def short_metrics(metrics: dict[str, float]) -> dict[str, float]:
    """A run's metrics (run.data.metrics) by their short names, whichever kind of store."""
    out = {short(k): v for k, v in metrics.items() if "/" in k}
    return {**out, **{k: v for k, v in metrics.items() if "/" not in k}}


def short_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """mlflow.search_runs' frame with `metrics.<short name>` columns, one per metric: a run
    written before the prefixes holds the short name (and a prefixed copy of a few), a newer
    one the prefixed name, and a frame of both kinds merges them row by row."""
    out = frame.copy()
    for col in [c for c in frame.columns if c.startswith("metrics.") and "/" in c]:
        name = "metrics." + short(col.removeprefix("metrics."))
        if name != col:
            out[name] = out[name].fillna(out[col]) if name in out else out[col]
            out = out.drop(columns=col)
    return out


def history(client, run_id: str, key: str) -> list:
    """A run's per-epoch history of a metric by its short name: the stored name, else (a
    store written before the prefixes) the short one."""
    found = client.get_metric_history(run_id, stored(key, per_epoch=True))
    return found or client.get_metric_history(run_id, key)
