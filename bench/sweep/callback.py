"""A Hydra callback that groups a sweep's runs under one MLflow parent run.

The parent is created once, before any job starts (which also creates the store and the
experiment before parallel writers exist), and handed to the jobs through the environment
(bench.tracking.sweep_env), which local, joblib and submitit workers all inherit. It also
records the grid the sweep was asked to run (`sweep_grid.json`), so `mnist-bench-audit` can name
what is missing. When the sweep ends, the parent ends FINISHED or FAILED with the jobs' count,
and the sweep's findings are computed once for the terminal table and the parent's summary.
"""

from __future__ import annotations

import shlex
import sys
import uuid
from datetime import datetime
from pathlib import Path

from hydra import compose
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from mlflow import MlflowClient
from omegaconf import DictConfig

from bench.job.redact import redact, redact_logs, redacted, scrub_files
from bench.job.settings import (
    ConfigError,
    TrackingSettings,
    check_preset,
    config_hash,
    job_config,
)
from bench.job.settings import tracking_settings as checked_tracking
from bench.tracking import sweep_env
from bench.tracking.runs import process_tags
from bench.tracking.store import (
    GRID_ARTIFACT,
    MISSING,
    deferred_signals,
    end_orphans,
    end_run,
    ensure_experiment,
    grid_status,
    load_grid,
    one_line,
    reap_stale_runs,
    retrying,
    tracking_uri,
)
from bench.tracking.sweep_env import FAILURES, SweepEnv
from bench.tracking.ui import describe_experiment, run_link, sweep_varying, ui_of


def sweep_grid(config: DictConfig) -> list[dict] | None:
    """The jobs Hydra's basic sweeper will launch (expanded the way it does), each with the
    config hash its run will carry; None for other sweepers (Optuna picks as it goes)."""
    sweeper = config.hydra.sweeper
    if not str(sweeper.get("_target_", "")).endswith(("BasicSweeper", "SequentialSweeper")):
        return None
    params = [f"{k}={v}" for k, v in (sweeper.get("params") or {}).items()]
    parsed = OverridesParser.create().parse_overrides(params + list(config.hydra.overrides.task))
    jobs = BasicSweeper.split_arguments(parsed, None)[0]
    return grid_entries(jobs, config.hydra.job.config_name)


def grid_entries(jobs: list[list[str]], name: str) -> list[dict]:
    """Each job's overrides with the config hash its run will carry (composed as Hydra will)."""
    grid = []
    for job in jobs:
        resolved = job_config(compose(name, job))
        check_preset(resolved.get("preset"))  # it names the parent run: refused before it
        grid.append({"overrides": job, "config_hash": config_hash(resolved)})
    return grid


def on_multirun_start(config: DictConfig) -> None:
    """Hydra turns a callback's exception into a warning and runs the sweep anyway, without
    its parent run: any error here stops the sweep in one line instead."""
    try:
        start_sweep(config)
    except SystemExit:
        raise
    except Exception as e:
        sys.exit(f"error: could not start the sweep's parent run: {one_line(e)}")


def on_multirun_end(config: DictConfig) -> None:
    """The parent run ends with the jobs' count, then the sweep's findings are printed and
    written onto it."""
    scrub_files(str(config.hydra.sweep.dir))  # multirun.yaml and each job's .hydra/
    ended = sweep_env.clear()
    if ended.parent_run_id is None:
        return
    close_parent(ended.parent_run_id, ended.failures_file)
    sweep_end(checked_tracking(config.tracking), ended.sweep_id)


def start_sweep(config: DictConfig) -> None:
    """The parent run, the grid it records, and the environment the jobs inherit."""
    redact_logs()  # the launcher prints each job's overrides: a password there is masked
    try:
        tracking = checked_tracking(config.tracking)
    except ConfigError as e:  # nothing can be recorded: stop before any job starts
        sys.exit(f"error: {e}")
    target = str(config.hydra.sweeper.get("_target_", ""))
    if config.sweep.until_decided and not target.endswith("SequentialSweeper"):
        sys.exit("error: sweep.until_decided=true needs the sequential sweeper: add "
                 "hydra/sweeper=sequential (the compare preset has it)")  # fmt: skip
    if not tracking.enabled:
        if config.sweep.until_decided:
            sys.exit("error: sweep.until_decided=true reads the sweep's verdicts from its runs: "
                     "it needs tracking.enabled=true")  # fmt: skip
        return
    try:
        grid = sweep_grid(config)
    except ConfigError as e:
        sys.exit(f"error: {e}")
    if grid == []:
        sys.exit("error: the sweep has no jobs (a swept key with no values?)")
    try:
        experiment_id = ensure_experiment(tracking)
    except ConfigError as e:
        sys.exit(f"error: {e}")
    describe_experiment(experiment_id)  # once, before jobs side by side would race on it
    sweep_id = f"{datetime.now():%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"
    client = MlflowClient()
    run = client.create_run(
        experiment_id,
        run_name=f"sweep-{config.preset}-{sweep_id}",
        tags={
            **process_tags(),
            "sweep_id": sweep_id,
            "sweep_parent": "true",
            "sweep_command": redact(shlex.join(["mnist-bench", *sys.argv[1:]])),
        },
    )
    if grid is not None:
        launcher = redacted(list(config.hydra.overrides.hydra))
        recorded = [{**job, "overrides": redacted(job["overrides"])} for job in grid]
        client.log_dict(run.info.run_id, {"jobs": recorded, "hydra_overrides": launcher},
                        GRID_ARTIFACT)  # fmt: skip
        client.set_tag(run.info.run_id, "sweep_jobs", str(len(grid)))
    # the jobs' processes (joblib, submitit workers) report what did not finish here
    folder = Path(str(config.hydra.sweep.dir))
    folder.mkdir(parents=True, exist_ok=True)
    failures = folder / f".failures-{sweep_id}"
    failures.write_text("")
    SweepEnv(
        parent_run_id=run.info.run_id,
        sweep_id=sweep_id,
        failures_file=str(failures.resolve()),
        jobs=None if grid is None else len(grid),
        varying=sweep_varying(grid),  # child run names show what differs between the jobs
    ).export()


def close_parent(parent: str, failures_file: str | None, why: str | None = None) -> tuple[int, int]:
    """Ends the sweep's parent run FINISHED only when every job finished, else FAILED, with
    the count as its description (`mlflow.note.content`); what did not finish is added to
    FAILURES, so the command exits 1 whichever launcher ran the jobs. Counted from the store
    (the grid's holes, children not FINISHED) and from the failure lines the jobs' processes
    wrote, which also count jobs refused before they had a run. `why`: the sweep stopped on an
    error (a launcher's failed job): FAILED whatever the count, which the note gives with it.
    Returns (not finished, jobs)."""
    reported = []
    if failures_file and Path(failures_file).exists():
        reported = [ln for ln in Path(failures_file).read_text().splitlines() if ln.strip()]
        Path(failures_file).unlink()
    try:
        client = MlflowClient()
        run = retrying(client.get_run, parent, what="read")
        experiment_id = run.info.experiment_id
        reap_stale_runs(experiment_id)  # a worker killed mid-job: its run is not RUNNING
        where = f"tags.mlflow.parentRunId = '{parent}'"
        children = retrying(client.search_runs, [experiment_id], filter_string=where, what="read")
        # an attempt stopped and run again (a SLURM requeue): the config's FINISHED run stands
        done = {c.data.tags.get("config_hash") for c in children if c.info.status == "FINISHED"}
        unfinished = [c for c in children
                      if c.info.status != "FINISHED" and c.data.tags.get("config_hash") not in done]  # fmt: skip
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
        note += f" ({why})" if why else ""
        tags = {"mlflow.note.content": note, "sweep_outcome": note}  # the summary keeps it
        if bad or why:
            tags["failure_reason"] = note
        end_run(client, parent, "FAILED" if bad or why else "FINISHED", **tags)
        print(f"sweep: {note}", file=sys.stderr if bad else sys.stdout)
        return bad, total
    except Exception as e:  # the store went away mid-sweep
        message = f"error: could not close the sweep's parent run {parent}: {one_line(e)}"
        print(message, file=sys.stderr)
        FAILURES.append(message)
        return -1, -1


def sweep_end(tracking: TrackingSettings, sweep_id: str | None) -> None:
    """The sweep's verdict table and where to look next, then the parent run's summary, from
    one computation of the sweep's findings. A summary only: whatever goes wrong here costs one
    line, never the sweep or the exit status its jobs decided."""
    uri = tracking_uri(tracking)
    try:
        from bench.report.numbers.collect import select
        from bench.report.numbers.findings import analyse
        from bench.report.pages.terminal import sweep_lines

        findings = analyse(select(uri, tracking.experiment, sweep_id=sweep_id))
        lines = sweep_lines(findings, uri, sweep_id, tracking.experiment)
    except Exception as e:  # noqa: BLE001
        print(f"(no verdict table for sweep {sweep_id}: {_why(e)})", flush=True)
        return
    print("\n".join(lines), flush=True)
    try:
        from bench.sweep.summary import publish

        experiment_id, parent_id = publish(findings, uri, tracking.experiment)
        link = run_link(experiment_id, parent_id, ui_of(uri))
        print(f"MLflow sweep summary: {link}", flush=True)
    except Exception as e:  # noqa: BLE001
        print(f"(no MLflow summary for sweep {sweep_id}: {_why(e)})", flush=True)


def _why(e: Exception) -> str:
    reason = str(e).splitlines()[0] if str(e) else ""
    return f"{type(e).__name__}: {reason}"


def abort_sweep(status: str, reason: str) -> None:
    """The sweep stops early (Ctrl-C, SIGTERM, Hydra's error exit): its jobs still RUNNING (in
    worker processes) and its parent end `status`, with the reason as the parent's
    description; a second signal waits."""
    parent = SweepEnv.current().parent_run_id
    if parent is None:
        return
    with deferred_signals():
        try:
            ended = end_orphans(parent, status, reason)
            if status == "FAILED":  # a job failed under the launcher: the parent says the count
                close_parent(parent, SweepEnv.current().failures_file, why=reason)
                return
            note = f"{reason}; {len(ended)} running jobs ended {status}" if ended else reason
            tags = {"mlflow.note.content": note, "failure_reason": reason, "sweep_outcome": note}
            end_run(MlflowClient(), parent, status, **tags)  # the summary keeps its outcome
        except Exception as e:  # the store is gone: the parent is reaped as stale later
            print(f"error: could not end the sweep's parent run: {one_line(e)}", file=sys.stderr)
