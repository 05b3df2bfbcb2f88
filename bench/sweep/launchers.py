"""The launcher's view from inside a job: whether it runs in a sweep (-m), and how many jobs of
the sweep share this machine, so side-by-side jobs split the thread budget instead of
oversubscribing the cores."""

from __future__ import annotations

import dataclasses
import logging
import os
import sys

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode

from bench.job.settings import Job
from bench.tracking.sweep_env import SweepEnv

log = logging.getLogger("bench")


def in_multirun() -> bool:
    """Whether this job runs in a sweep (-m)."""
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def job_overrides() -> list[str] | None:
    """The job's overrides as Hydra gave them; None outside a Hydra app (a test's run(cfg))."""
    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else None


def parallel_jobs() -> int:
    """How many jobs of this sweep run at once on this machine: joblib's n_jobs, every job for
    submitit_local (it starts them all), capped by the sweep's size and by the sweeper's
    max_batch_size; 1 when serial or on SLURM (each job has its own allocation)."""
    if not HydraConfig.initialized():
        return 1
    hydra_cfg = HydraConfig.get()
    launcher = str(hydra_cfg.launcher.get("_target_", ""))
    size = SweepEnv.current().jobs or sys.maxsize
    if "joblib" in launcher:
        n_jobs = hydra_cfg.launcher.get("n_jobs") or 1
        width = (os.cpu_count() or 1) if n_jobs < 0 else n_jobs  # joblib: -1 = one per core
    elif launcher.endswith("submitit_launcher.LocalLauncher"):
        width = size
    else:
        return 1
    batch = hydra_cfg.sweeper.get("max_batch_size") or sys.maxsize
    return max(1, min(width, size, batch))


def share_thread_budget(job: Job, parallel: int) -> Job:
    """Jobs side by side split the thread budget. The params keep the configured budget (the
    run's identity); the `threads` tag records what the job really had."""
    if parallel <= 1 or not job.threads:
        return job
    threads = max(1, job.threads // parallel)
    log.info("%d jobs in parallel: train.threads %d -> %d per job", parallel, job.threads, threads)
    return dataclasses.replace(job, threads=threads)


def slurm_thread_budget(job: Job) -> Job:
    """Inside a SLURM job, train.threads and the allocation's CPUs (SLURM_CPUS_PER_TASK, which
    `hydra.launcher.cpus_per_task` sets) agree: train.threads=null takes the allocation's, and
    more threads than the allocation has is refused in one line. Outside SLURM: the job."""
    from bench.job.settings import ConfigError

    if "SLURM_JOB_ID" not in os.environ:
        return job
    cpus = int(os.environ.get("SLURM_CPUS_PER_TASK") or 1)  # SLURM's default: 1 CPU a task
    if job.threads is None:
        log.info("SLURM allocation of %d CPUs: train.threads=null -> %d", cpus, cpus)
        return dataclasses.replace(job, threads=cpus)
    if job.threads > cpus:
        raise ConfigError(
            f"train.threads={job.threads} but this SLURM job has {cpus} CPU(s): set "
            f"hydra.launcher.cpus_per_task={job.threads}, or train.threads={cpus} (or null)"
        )
    return job
