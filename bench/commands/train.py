"""`mnist-bench`: the Hydra app. One job trains one implementation and records one MLflow run;
with -m, a sweep of jobs under one parent run (bench.sweep)."""

from __future__ import annotations

import contextlib
import logging
import sys
import time

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from bench.job.redact import redact_logs, scrub_files
from bench.job.settings import CONF, ConfigError, Job, job_from_config
from bench.tracking.failures import failed, reports_failures, terminate

log = logging.getLogger("bench")


def run(cfg: DictConfig) -> dict[str, float] | None:
    """Run one job and return its final metrics (those of the earlier FINISHED run when it is
    skipped); None when it did not finish. Failures are one line, never raised, so a sweep
    goes on; Ctrl-C ends the run KILLED and stops (bench.tracking.failures)."""
    started = time.perf_counter()  # the run's overhead_s counts from here
    redact_logs()  # Hydra's handlers of this job (a worker's too) mask credentials
    try:
        job = job_from_config(cfg)
    except ConfigError as e:
        return failed(f"error: {e}")
    return train_and_record(job, started)


@reports_failures
def train_and_record(job: Job, started: float) -> dict[str, float]:
    """The checked job, trained and recorded: skipped when it already FINISHED in a sweep,
    else one run with its view, verified before it ends FINISHED."""
    from bench.job.harness import ConsoleProgress, run_job
    from bench.sweep.launchers import parallel_jobs, share_thread_budget, slurm_thread_budget

    parallel = parallel_jobs()
    job = slurm_thread_budget(share_thread_budget(job, parallel))
    if job.tracking.enabled and (done := finished_before(job)) is not None:
        return done
    observers = [ConsoleProgress(job)]
    if job.tracking.enabled:
        from bench.tracking.view import RunView

        tracker, import_s = start_run(job, parallel)
        view = RunView(job, tracker)
        observers += [tracker, view]
    result = run_job(job, observers)
    if job.tracking.enabled:
        view.finished(result)  # the MLflow UI's view of the run; never fails the run
        tracker.settle()  # the history written and verified: part of the overhead
        outside = time.perf_counter() - started - result.metrics["train_time_s"] - import_s
        # the features (evaluation, figures, model) are reported alone: what is left is the
        # harness's own cost
        features = result.metrics["overhead/eval_s"] + view.figures_s + view.model_s
        features += result.metrics["overhead/variant_s"]  # "auto" timing the variants
        result.metrics["overhead_s"] = outside - features
        result.metrics["framework_import_s"] = import_s
        variant = result.variant  # the framework variant that ran, and how it was chosen
        tracker.set_tags({"variant": variant.name, "variant_choice": variant.choice})
        tracker.finish(result.metrics, result.predictions, result.labels)
    m = result.metrics
    log.info("%s: test accuracy %.4f, train time %.2fs", job.run_name, m["test_accuracy"],
             m["train_time_s"])  # fmt: skip
    return m


def finished_before(job: Job) -> dict[str, float] | None:
    """With tracking.skip_completed, a config that already has a FINISHED run is not run again,
    so re-running an interrupted sweep only runs what is missing: that run's metrics."""
    from bench.sweep.launchers import in_multirun
    from bench.tracking.names import short_metrics
    from bench.tracking.store import ensure_experiment, finished_runs

    if not job.tracking.skips_completed(multirun=in_multirun()):
        return None
    done = finished_runs(ensure_experiment(job.tracking), job.config_hash)
    if not done:
        return None
    log.info(
        "%s: skipped, already FINISHED as run %s (tracking.skip_completed=false runs it again)",
        job.run_name,
        done[0].info.run_id,
    )
    return short_metrics(done[0].data.metrics)


def start_run(job: Job, parallel: int):
    """The job's run, and the seconds its framework's import took (where this job brought it:
    that import is reported as `framework_import_s`, outside the run's `overhead_s`)."""
    from bench.job.environment import environment_tags
    from bench.job.redact import redact
    from bench.job.setup import job_implementation
    from bench.sweep.launchers import job_overrides
    from bench.tracking.runs import MlflowRun
    from bench.tracking.ui import ordered_tags, run_label

    versions = {}
    imported = time.perf_counter()
    with contextlib.suppress(Exception):  # a failing import fails the run itself, next
        versions = job_implementation(job).versions()  # the framework's import, first job only
    import_s = time.perf_counter() - imported
    tags = {
        **environment_tags(job.device, job.threads, versions),
        "implementation": job.implementation,
        "preset": job.preset,
        "lockstep": str(job.lockstep).lower(),
    }
    overrides = job_overrides()
    if overrides is not None:
        tags["hydra_overrides"] = redact(" ".join(overrides))
    if parallel > 1:  # timings measured beside other jobs: the report flags them
        tags["parallel_jobs"] = str(parallel)
    return MlflowRun(job, run_label(job, overrides or []), ordered_tags(job, tags)), import_s


@hydra.main(version_base="1.3", config_path=str(CONF), config_name="config")
def hydra_main(cfg: DictConfig) -> float | None:
    """Returns the job's `optimized_metric` (set by a tuning preset): what a sweeper such as
    Optuna optimizes; NaN, a failed trial, when the job failed or did not log that metric."""
    metrics = run(cfg) or {}
    if HydraConfig.get().mode == RunMode.RUN:  # a single run's .hydra/ (a sweep scrubs its own)
        scrub_files(HydraConfig.get().runtime.output_dir)
    if cfg.get("optimized_metric"):
        return metrics.get(cfg.optimized_metric, float("nan"))
    return None


def abort_sweep(status: str, reason: str) -> None:
    """The sweep's parent and running jobs ended `status` (bench.sweep.callback); imported
    only then: it brings MLflow, which a job without tracking never imports."""
    from bench.sweep.callback import abort_sweep as end_the_sweep

    end_the_sweep(status, reason)


def main() -> None:
    """`mnist-bench`: the extras checked first, then Hydra; a sweep stopped by Ctrl-C,
    SIGTERM or an error ends its parent run, and a job that did not finish exits 1."""
    import signal

    from bench.job.extras import BadChoice, MissingExtra, check_choices, check_extras
    from bench.tracking.sweep_env import FAILURES

    try:
        check_extras(sys.argv[1:])
        check_choices(sys.argv[1:], CONF)
    except (MissingExtra, BadChoice) as e:
        sys.exit(f"error: {e}")
    signal.signal(signal.SIGTERM, terminate)
    try:
        hydra_main()
    except KeyboardInterrupt as e:
        reason = str(e) or "interrupted (SIGINT)"
        for sig in (signal.SIGINT, signal.SIGTERM):  # a second Ctrl-C waits: we are stopping
            signal.signal(sig, signal.SIG_IGN)
        abort_sweep("KILLED", reason)
        print(f"error: {reason}", file=sys.stderr)
        sys.exit(130)
    except SystemExit as e:  # Hydra reports an error and exits; a sweep left mid-way fails
        if e.code not in (None, 0):
            abort_sweep("FAILED", "the sweep stopped on an error")
        raise
    if FAILURES:
        sys.exit(1)


if __name__ == "__main__":
    main()
