"""A Hydra callback that groups a sweep's runs under one MLflow parent run.

The parent is created once, before any job starts (which also creates the store and the
experiment before parallel writers exist), and handed to the jobs through the environment,
which local, joblib and submitit workers all inherit. It also records the grid the sweep was
asked to run (`sweep_grid.json`), so `mnist-bench-audit` can name what is missing.
"""

from __future__ import annotations

import os
import sys
import uuid
from datetime import datetime
from pathlib import Path

from hydra import compose
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from mlflow import MlflowClient
from omegaconf import DictConfig

from bench.app import SWEEP_JOBS_ENV
from bench.mlflow_ui import SWEEP_VARYING_ENV, set_sweep_varying
from bench.settings import ConfigError
from bench.store import (
    GRID_ARTIFACT,
    MISSING,
    ensure_experiment,
    grid_status,
    load_grid,
    one_line,
    reap_stale_runs,
    retrying,
    tracking_uri,
)
from bench.tracking import (
    FAILURES,
    FAILURES_FILE_ENV,
    PARENT_RUN_ENV,
    SWEEP_ID_ENV,
    config_hash,
    process_tags,
)


def sweep_grid(config: DictConfig) -> list[dict] | None:
    """The jobs Hydra's basic sweeper will launch (expanded the way it does), each with the
    config hash its run will carry; None for other sweepers (Optuna picks as it goes)."""
    sweeper = config.hydra.sweeper
    if not str(sweeper.get("_target_", "")).endswith("BasicSweeper"):
        return None
    params = [f"{k}={v}" for k, v in (sweeper.get("params") or {}).items()]
    parsed = OverridesParser.create().parse_overrides(params + list(config.hydra.overrides.task))
    jobs = BasicSweeper.split_arguments(parsed, None)[0]
    return [
        {"overrides": job, "config_hash": config_hash(compose(config.hydra.job.config_name, job))}
        for job in jobs
    ]


class MlflowSweepCallback(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        """Hydra turns a callback's exception into a warning and runs the sweep anyway,
        without its parent run: any error here stops the sweep in one line instead."""
        try:
            self._start(config)
        except SystemExit:
            raise
        except Exception as e:
            sys.exit(f"error: could not start the sweep's parent run: {one_line(e)}")

    def _start(self, config: DictConfig) -> None:
        if not config.tracking.enabled:
            return
        grid = sweep_grid(config)
        if grid == []:
            sys.exit("error: the sweep has no jobs (a swept key with no values?)")
        try:
            experiment_id = ensure_experiment(config.tracking)
        except ConfigError as e:  # nothing can be recorded: stop before any job starts
            sys.exit(f"error: {e}")
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
        set_sweep_varying(grid)  # child run names show what differs between the jobs
        if grid is not None:
            launcher = list(config.hydra.overrides.hydra)
            MlflowClient().log_dict(
                run.info.run_id, {"jobs": grid, "hydra_overrides": launcher}, GRID_ARTIFACT
            )
            MlflowClient().set_tag(run.info.run_id, "sweep_jobs", str(len(grid)))
            os.environ[SWEEP_JOBS_ENV] = str(len(grid))
        os.environ[PARENT_RUN_ENV] = run.info.run_id
        os.environ[SWEEP_ID_ENV] = sweep_id
        # the jobs' processes (joblib, submitit workers) report what did not finish here
        folder = Path(str(config.hydra.sweep.dir))
        folder.mkdir(parents=True, exist_ok=True)
        failures = folder / f".failures-{sweep_id}"
        failures.write_text("")
        os.environ[FAILURES_FILE_ENV] = str(failures.resolve())

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        parent = os.environ.pop(PARENT_RUN_ENV, None)
        sweep_id = os.environ.pop(SWEEP_ID_ENV, None)
        os.environ.pop(SWEEP_JOBS_ENV, None)
        os.environ.pop(SWEEP_VARYING_ENV, None)
        failures_file = os.environ.pop(FAILURES_FILE_ENV, None)
        if parent is None:
            return
        close_parent(parent, failures_file)
        print_verdicts(config, sweep_id)
        at_sweep_end(config, sweep_id)  # the parent run's summary; never changes a status


def close_parent(parent: str, failures_file: str | None) -> tuple[int, int]:
    """Ends the sweep's parent run FINISHED only when every job finished, else FAILED, with
    the count as its description (`mlflow.note.content`); what did not finish is added to
    FAILURES, so the command exits 1 whichever launcher ran the jobs. Counted from the store
    (the grid's holes, children not FINISHED) and from the failure lines the jobs' processes
    wrote, which also count jobs refused before they had a run. Returns (not finished, jobs)."""
    reported = []
    if failures_file and Path(failures_file).exists():
        reported = [ln for ln in Path(failures_file).read_text().splitlines() if ln.strip()]
        Path(failures_file).unlink()
    try:
        client = MlflowClient()
        run = client.get_run(parent)
        experiment_id = run.info.experiment_id
        reap_stale_runs(experiment_id)  # a worker killed mid-job: its run is not RUNNING
        children = client.search_runs(
            [experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent}'"
        )
        unfinished = [c for c in children if c.info.status != "FINISHED"]
        grid = load_grid(run)
        holes, total = [], len(children)
        if grid is not None:
            holes = [j for j in grid_status(experiment_id, run, grid) if j.is_hole]
            total = len(grid["jobs"])
        else:  # Optuna: jobs refused before a run are only in the failure lines
            total = len(children) + sum(
                not any(c.info.run_name in line for c in children) for line in reported
            )
        bad = max(len(holes), len(unfinished), len(reported))
        missing = sum(j.status == MISSING for j in holes)
        note = f"{total - bad} of {total} jobs finished"
        if bad:
            note += f"; {bad} did not" + (f" ({missing} never started a run)" if missing else "")
            FAILURES.extend(reported or [f"{bad} of {total} jobs did not finish"])
        retrying(client.set_tag, parent, "mlflow.note.content", note)
        retrying(client.set_tag, parent, "sweep_outcome", note)  # kept by the summary
        if bad:
            retrying(client.set_tag, parent, "failure_reason", note)
        retrying(client.set_terminated, parent, "FAILED" if bad else "FINISHED")
        print(f"sweep: {note}", file=sys.stderr if bad else sys.stdout)
        return bad, total
    except Exception as e:  # the store went away mid-sweep
        message = f"error: could not close the sweep's parent run {parent}: {one_line(e)}"
        print(message, file=sys.stderr)
        FAILURES.append(message)
        return -1, -1


def at_sweep_end(config: DictConfig, sweep_id: str | None) -> None:
    """The parent run's summary (bench.sweep_summary); a failure costs one line."""
    try:
        from bench.sweep_summary import at_sweep_end as publish
    except Exception as e:  # noqa: BLE001
        print(f"(no MLflow summary for sweep {sweep_id}: {type(e).__name__}: {e})", flush=True)
        return
    publish(config, sweep_id)


def print_verdicts(config: DictConfig, sweep_id: str | None) -> None:
    """The sweep's verdict table and where to look next. A summary only: whatever goes wrong
    here costs one line, never the sweep or the exit status its jobs decided."""
    try:
        from bench.report.terminal import sweep_summary

        uri = tracking_uri(config.tracking)
        lines = sweep_summary(uri, config.tracking.experiment, sweep_id)
    except Exception as e:  # noqa: BLE001
        reason = str(e).splitlines()[0] if str(e) else ""
        lines = [f"(no verdict table for sweep {sweep_id}: {type(e).__name__}: {reason})"]
    print("\n".join(lines), flush=True)
