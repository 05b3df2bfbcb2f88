"""The sweep's Hydra callback, kept light: Hydra builds it for every command, a single job's
too, and the sweep's work (bench.sweep.callback) brings MLflow, ~1.7 s of import that a job
without tracking never needs. Each hook imports that work when a sweep calls it."""

from __future__ import annotations

from hydra.experimental.callback import Callback
from omegaconf import DictConfig


class MlflowSweepCallback(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        from bench.sweep.callback import on_multirun_start

        on_multirun_start(config)

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        from bench.sweep.callback import on_multirun_end

        on_multirun_end(config)
