"""What a sweep's runs support, computed here from the raw MLflow metrics with scipy, not with
the report's own functions: the exact steady-epoch sentence the UI and the report must show."""

from __future__ import annotations

import numpy as np
from mlflow import MlflowClient
from scipy import stats

from bench.tracking.names import stored

CONTENDED = 0.25  # other processes' cores during an epoch that make it contended


def _steady(client: MlflowClient, run_id: str) -> tuple[float, bool]:
    """A run's steady epoch (median of its calm epochs 2+, else of all of them) and whether
    every epoch 2+ was contended."""

    def series(key):
        return {m.step: m.value for m in client.get_metric_history(run_id, stored(key, True))}

    times, others, steal = (
        series("epoch_time_s"),
        series("host_other_cores"),
        series("host_steal_cores"),
    )
    later = [s for s in sorted(times) if s >= 2]
    busy = {s: others.get(s, 0) + steal.get(s, 0) > CONTENDED for s in later}
    calm = [times[s] for s in later if not busy[s]]
    return float(np.median(calm or [times[s] for s in later])), all(busy.values())


def steady(run_id: str) -> float:
    """A run's steady epoch in seconds, from its raw per-epoch metrics."""
    return _steady(MlflowClient(), run_id)[0]


def speed_sentence(parent_run_id: str, a: str, b: str) -> str:
    """The steady-epoch verdict of a against b over the sweep's seeds, in the report's words."""
    client = MlflowClient()
    parent = client.get_run(parent_run_id)
    children = client.search_runs(
        [parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent_run_id}'"
    )
    steady = {}
    for run in children:
        impl, seed = run.data.tags["implementation"], int(run.data.params["seed"])
        steady[impl, seed] = _steady(client, run.info.run_id)
    seeds = sorted(s for (i, s) in steady if i == a and (b, s) in steady)
    contended = [s for s in seeds if steady[a, s][1] or steady[b, s][1]]
    n = len(seeds)
    logs = np.log([steady[b, s][0] / steady[a, s][0] for s in seeds])
    est = float(np.exp(logs.mean()))
    if contended and n - len(contended) < 3:
        return f"{a} vs {b}, steady epoch: not tested (host contended in {len(contended)} of {n} seeds; {est:.2f}x)"
    half = stats.t.ppf(0.975, n - 1) * logs.std(ddof=1) / np.sqrt(n)
    low, high = np.exp(logs.mean() - half), np.exp(logs.mean() + half)
    what = f"steady epoch, {n} seeds"
    if 1 / 1.1 <= low and high <= 1.1:  # within the default speed margin
        return f"{a} vs {b}: same speed within 10% ({est:.2f}x [{low:.2f}, {high:.2f}]; {what})"
    if low > 1:
        return f"{a} {est:.2f}x faster than {b} [{low:.2f}, {high:.2f}] ({what})"
    if high < 1:
        return f"{b} {1 / est:.2f}x faster than {a} [{1 / high:.2f}, {1 / low:.2f}] ({what})"
    return f"{a} vs {b}: undecided ({est:.2f}x [{low:.2f}, {high:.2f}]; {what})"
