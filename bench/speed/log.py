"""The speed benchmark in MLflow (experiment `mnist-bench-speed`): one parent run with the
environment, the settings, the headline metrics and speed.md; one child run per case and
implementation."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pandas as pd

from implementations import registry


def log_to_mlflow(
    uri: str, experiment: str, params, metrics, results: pd.DataFrame, report: Path
) -> str:
    """One parent run for the benchmark, one child run per case and implementation."""
    import mlflow

    from bench.job.environment import environment_tags

    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(experiment)
    versions = {k: v for impl in registry().values() for k, v in impl.versions().items()}
    with mlflow.start_run(run_name=f"speed-{datetime.now():%Y%m%d-%H%M%S}") as parent:
        mlflow.set_tags(environment_tags("cpu", params["threads"], versions))
        mlflow.log_params(params)
        mlflow.log_metrics(metrics)
        mlflow.log_artifact(str(report))
        for row in results.to_dict("records"):
            name = f"{row['case']} {row['implementation']}"
            with mlflow.start_run(run_name=name, nested=True):
                mlflow.set_tags({"case": row["case"], "implementation": row["implementation"]})
                mlflow.log_metrics(
                    {k.replace("%", "pct").replace("/", "_per_").replace(" ", "_").replace("+", "_"): v
                     for k, v in row.items() if isinstance(v, float)}
                )  # fmt: skip
    return parent.info.run_id
