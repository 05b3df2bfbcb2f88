"""Everything a job needs before its first epoch, on one path for the training job and the speed
benchmark: the data and its splits, the initial weights, and the network with its framework's
process settings and seeds applied."""

from __future__ import annotations

import dataclasses
import random
from functools import lru_cache

import numpy as np

from bench.data import Dataset, Splits, load, prepare
from bench.job.settings import Job
from implementations import Implementation, implementation
from implementations.base import Network
from implementations.spec import init_weights


def load_data(job: Job) -> tuple[Dataset, Splits]:
    """The dataset (validated, from the one loader) and the job's splits in its dtype; the
    jobs of a sweep that share them share one read-only copy, loaded once per process."""
    d = job.data
    return _loaded(d.name, d.data_dir, d.download, d.val_size, d.n_train, d.split_seed,
                   job.model.dtype)  # fmt: skip


@lru_cache(maxsize=1)  # one dataset at a time: a sweep over datasets does not pile them up
def _loaded(name, data_dir, download, val_size, n_train, split_seed, dtype):
    dataset = load(name, data_dir, download=download)
    splits = prepare(dataset, val_size, n_train, split_seed, dtype=dtype)
    for holder in (dataset, splits):
        for f in dataclasses.fields(holder):
            if isinstance(array := getattr(holder, f.name), np.ndarray):
                array.flags.writeable = False  # the next job gets them as they were
    return dataset, splits


def initial_weights(job: Job) -> list[np.ndarray] | None:
    """In lockstep every implementation starts from the same NumPy-drawn weights; otherwise
    each framework draws its own."""
    return init_weights(job.model, job.seed) if job.lockstep else None


def job_implementation(job: Job) -> Implementation:
    """The job's registered implementation (its module imported on first use)."""
    return implementation(job.implementation, job.module)


def build_network(
    job: Job, weights: list[np.ndarray] | None, options: dict | None = None
) -> tuple[Implementation, Network]:
    """Imports the job's framework, applies its process settings, seeds every generator, and
    builds the network with the job's options (or a variant's: bench.job.variants)."""
    impl = job_implementation(job)
    impl.configure(job.threads, job.device)
    random.seed(job.seed)
    np.random.seed(job.seed)
    impl.seed(job.seed)
    options = job.options if options is None else options
    net = impl.build(job.model, job.optimizer, job.batch_size, weights, job.seed, **options)
    return impl, net
