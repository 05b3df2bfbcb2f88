"""A Hydra callback that groups a sweep's runs under one MLflow parent run.

The parent is created once, before any job starts (which also creates the store and the
experiment before parallel writers exist), and handed to the jobs through the environment,
which local, joblib and submitit workers all inherit.
"""

from __future__ import annotations

import os
import sys
import uuid
from datetime import datetime

from hydra.experimental.callback import Callback
from mlflow import MlflowClient
from omegaconf import DictConfig

from bench.tracking import (
    FAILURES,
    PARENT_RUN_ENV,
    SWEEP_ID_ENV,
    ensure_experiment,
    process_tags,
)


class MlflowSweepCallback(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        if not config.tracking.enabled:
            return
        experiment_id = ensure_experiment(config.tracking)
        sweep_id = f"{datetime.now():%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"
        run = MlflowClient().create_run(
            experiment_id,
            run_name=f"sweep-{config.preset}-{sweep_id}",
            tags={
                **process_tags(),
                "sweep_id": sweep_id,
                "sweep_parent": "true",
                "sweep_command": " ".join(["mnist-bench", *sys.argv[1:]]),
            },
        )
        os.environ[PARENT_RUN_ENV] = run.info.run_id
        os.environ[SWEEP_ID_ENV] = sweep_id

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        parent = os.environ.pop(PARENT_RUN_ENV, None)
        os.environ.pop(SWEEP_ID_ENV, None)
        if parent is None:
            return
        client = MlflowClient()
        run = client.get_run(parent)
        children = client.search_runs(
            [run.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent}'"
        )
        failed = [c.info.run_name for c in children if c.info.status != "FINISHED"]
        if failed:
            FAILURES.extend(failed)
        client.set_terminated(parent, "FAILED" if failed else "FINISHED")
