"""The training loop every implementation runs under: data once, seeds, thread budget, epochs,
timing. Timed regions hold only the implementation's own work; logging happens between them.
"""

from __future__ import annotations

import logging
import math
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Protocol

import numpy as np
from threadpoolctl import threadpool_limits

from bench.data import Dataset, Splits
from bench.job import variants
from bench.job.exact import exact_accuracies
from bench.job.host import CONTENDED, LoadMeter, peak_rss_mb, reset_peak_rss, rss_mb
from bench.job.settings import Job, usable_cores
from bench.job.setup import build_network, initial_weights, job_implementation, load_data
from bench.job.variants import Variant
from implementations import Implementation

log = logging.getLogger("bench")


class Diverged(RuntimeError):
    """The loss became NaN or infinite, or blew up (see train); training stops at that epoch."""


# training images that stand in for a validation set in the divergence rule: enough to see a
# loss 100x the untrained one, at a fifth of the cost of 5000 after every epoch
PROBE_SIZE = 1000


class Observer(Protocol):
    def data_loaded(self, dataset: Dataset) -> None: ...
    def epoch_done(self, epoch: int, metrics: dict[str, float]) -> None: ...


@dataclass
class Result:
    metrics: dict[str, float] = field(default_factory=dict)  # final, without a step
    history: list[dict[str, float]] = field(default_factory=list)  # one dict per epoch
    eval_s: float = 0.0  # seconds of every evaluation: untrained, per epoch, test, predictions
    predictions: np.ndarray | None = None  # predicted test label per image
    labels: np.ndarray | None = None
    network: object | None = None  # the trained network (bench.tracking.model logs it)
    variant: Variant | None = None  # the framework variant it ran (train.variant)


def epoch_order(seed: int, epoch: int, n: int, shuffle: bool = True) -> np.ndarray:
    """The batch order of one epoch: the same for every implementation given the seed; with
    shuffle=False the training set's own order, every epoch (as some tutorials train)."""
    if not shuffle:
        return np.arange(n)
    return np.random.default_rng([seed, epoch]).permutation(n)


class Shuffler:
    """Each epoch's shuffled copy of the training set, gathered into the same two buffers:
    a fresh 170 MB array per epoch would cost page faults and zeroing every time. The buffers
    outlive the job (`shuffle_buffers`): one Shuffler at a time per process, and a network
    must not keep x or y after train_epoch returns. With shuffle=False every epoch is the
    training set itself, in its own order (epoch_order's identity), without a copy."""

    def __init__(self, x: np.ndarray, y: np.ndarray, seed: int, shuffle: bool = True,
                 threads: int = 1):  # fmt: skip
        self.x, self.y, self.seed, self.shuffle = x, y, seed, shuffle
        self.threads = threads
        if shuffle:
            self.bx, self.by = shuffle_buffers(x.shape, x.dtype.str, y.shape, y.dtype.str)

    def epoch(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        if not self.shuffle:
            return self.x, self.y
        order = epoch_order(self.seed, epoch, len(self.y))
        # mode="clip": an unbuffered gather into out= (3x faster than "raise"); a permutation
        # never clips. The rows go in `threads` parts at once (np.take releases the GIL): the
        # copy is memory-bound, and two cores move it in 0.6x the time of one
        bounds = np.linspace(0, len(order), self.threads + 1).astype(int)
        parts = [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]

        def gather(part: slice) -> None:
            np.take(self.x, order[part], axis=0, out=self.bx[part], mode="clip")

        with ThreadPoolExecutor(len(parts)) as pool:
            list(pool.map(gather, parts))
        return self.bx, np.take(self.y, order, out=self.by, mode="clip")


@lru_cache(maxsize=1)
def shuffle_buffers(x_shape, x_dtype, y_shape, y_dtype) -> tuple[np.ndarray, np.ndarray]:
    """The shuffled epoch's buffers, kept for the next job of the process (a sweep's jobs run
    one after another): fresh ones would cost each job's first epoch ~0.1 s of page faults."""
    return np.empty(x_shape, x_dtype), np.empty(y_shape, y_dtype)


_first_job_of_process = True


def seconds_since_process_start() -> float | None:
    """For the first job of a process only: how long the command took to reach training
    (interpreter, imports, config, data, building the network)."""
    global _first_job_of_process
    if not _first_job_of_process:
        return None
    _first_job_of_process = False
    import psutil

    return time.time() - psutil.Process().create_time()


def choose_variant(job: Job, weights, splits) -> Variant:
    """The variant the job's network is built as, after its framework's process settings (an
    "auto" choice builds and times each variant)."""
    impl = job_implementation(job)
    impl.configure(job.threads, job.device)
    return variants.resolve(job, impl, weights, splits)


def run_job(job: Job, observers: list[Observer]) -> Result:
    """The job from data to metrics: setup outside the timed regions, the epochs, the test
    evaluation and predictions; what every run logs as its final metrics."""
    start = time.perf_counter()
    reset_peak_rss()
    rss_at_start = rss_mb()
    with threadpool_limits(limits=job.threads):
        t = time.perf_counter()
        dataset, splits = load_data(job)
        data_load_time = time.perf_counter() - t
        for o in observers:
            o.data_loaded(dataset)
        weights = initial_weights(job)
        t = time.perf_counter()
        variant = choose_variant(job, weights, splits)  # "auto": measured once per host
        variant_s = time.perf_counter() - t
        if job.variant != "default":
            log.info("%s: variant %s (%s)", job.run_name, variant.name, variant.choice)
        impl, net = build_network(job, weights, variant.options)
        setup = time.perf_counter() - start
        startup = seconds_since_process_start()
        result = train(job, net, splits, observers, impl)
        result.variant = variant
        t = time.perf_counter()
        test_loss, test_acc = net.evaluate(splits.x_test, splits.y_test)
        impl.synchronize(job.device)
        final_eval_time = time.perf_counter() - t
        result.predictions = net.predict(splits.x_test).argmax(axis=1).astype(np.uint8)
        evaluation_s = time.perf_counter() - t  # the test set's evaluation and predictions
        result.labels = splits.y_test.astype(np.uint8)
        result.network = net
    epochs = [h["epoch_time_s"] for h in result.history]
    train_time = sum(epochs)
    result.metrics.update(
        test_loss=test_loss,
        test_accuracy=test_acc,
        # the last epoch's, over its batches as they trained (what Keras reports): evaluating
        # the whole training set again would cost more than the rest of a job's overhead
        final_train_accuracy=result.history[-1]["train_accuracy"],
        train_time_s=train_time,
        test_eval_time_s=final_eval_time,
        # evaluation is a feature, timed on its own: the untrained network's loss, the
        # validation after every epoch (or the divergence probe), the test set's evaluation and
        # predictions (the harness's overhead_s leaves it out)
        **{"overhead/eval_s": result.eval_s + evaluation_s, "overhead/variant_s": variant_s},
        data_load_time_s=data_load_time,
        samples_per_s=len(splits.y_train) * job.epochs / train_time,
        first_epoch_time_s=epochs[0],
        contended_epochs=sum(
            h["host_other_cores"] + h["host_steal_cores"] > CONTENDED for h in result.history
        ),
        setup_s=setup,
        peak_rss_mb=peak_rss_mb(),
        job_memory_mb=peak_rss_mb() - rss_at_start,
        total_time_s=time.perf_counter() - start,
    )
    if len(epochs) > 1:  # the first epoch carries tracing: a one-epoch run has no steady state
        result.metrics["steady_epoch_time_s"] = statistics.median(epochs[1:])
    counts = dict(train=len(splits.y_train), val=len(splits.y_val), test=len(splits.y_test))
    exact_accuracies(result.metrics, **counts)  # float64 k / n, not float32's 0.97740000486
    if startup is not None:
        result.metrics["startup_s"] = startup
    if (peak := impl.device_peak_mb(job.device)) is not None:
        result.metrics["gpu_peak_mb"] = peak
    return result


def train(job: Job, net, s: Splits, observers: list[Observer], impl: Implementation) -> Result:
    """Divergence: after each epoch, the loss of the network as it stands (on the validation
    set, else on the first PROBE_SIZE training images) is compared with the same loss of the
    untrained network; NaN, inf, or more than `train.diverge_factor` times the untrained loss
    stops the run "diverged". The end-of-epoch loss, not the epoch's mean training loss, so a
    large first step the network recovers from within the epoch is not divergence."""
    result = Result()
    has_val = len(s.y_val) > 0
    factor = job.diverge_factor
    probe = (s.x_val, s.y_val) if has_val else (s.x_train[:PROBE_SIZE], s.y_train[:PROBE_SIZE])

    def evaluate(x, y) -> tuple[float, float]:
        """net.evaluate, its seconds added to the job's evaluation time."""
        t = time.perf_counter()
        loss_acc = net.evaluate(x, y)
        impl.synchronize(job.device)
        result.eval_s += time.perf_counter() - t
        return loss_acc

    untrained = None
    if has_val:
        loss, acc = evaluate(s.x_val, s.y_val)
        result.metrics.update(initial_val_loss=loss, initial_val_accuracy=acc)
        untrained = loss
    elif factor is not None:
        untrained = evaluate(*probe)[0]
    elapsed = 0.0
    shuffler = Shuffler(s.x_train, s.y_train, job.seed, job.shuffle, job.threads or usable_cores())
    meter = LoadMeter()
    for epoch in range(1, job.epochs + 1):
        x, y = shuffler.epoch(epoch)  # shuffled (train.shuffle) outside the timed region
        meter.start()
        t = time.perf_counter()
        train_loss, train_acc = net.train_epoch(x, y)
        impl.synchronize(job.device)
        epoch_time = time.perf_counter() - t
        load = meter.stop()
        elapsed += epoch_time
        m = {
            "train_loss": train_loss,
            "train_accuracy": train_acc,
            "epoch_time_s": epoch_time,
            "host_other_cores": load.others,  # other processes' CPU during the epoch
            "host_steal_cores": load.steal,
        }
        if math.isfinite(train_loss) and has_val:
            before = result.eval_s
            m["val_loss"], m["val_accuracy"] = evaluate(s.x_val, s.y_val)
            m["eval_time_s"] = result.eval_s - before
            if (
                m["val_accuracy"] >= job.target_accuracy
                and "time_to_target_s" not in result.metrics
            ):
                result.metrics["time_to_target_s"] = elapsed
        exact_accuracies(m, train=len(y), val=len(s.y_val))
        result.history.append(m)
        for o in observers:
            o.epoch_done(epoch, m)
        if not math.isfinite(train_loss):
            raise Diverged(f"diverged at epoch {epoch}: train_loss={train_loss}")
        if factor is not None and untrained is not None and math.isfinite(untrained):
            key = "val_loss" if has_val else "loss on the first training images"
            now = m["val_loss"] if has_val else evaluate(*probe)[0]
            if not math.isfinite(now) or now > factor * untrained:
                raise Diverged(
                    f"diverged at epoch {epoch}: {key} {now:.4g} > {factor:g} x the untrained "
                    f"{untrained:.4g} (train.diverge_factor)"
                )
    if has_val:  # the objective a tuning sweep maximizes (never the test set)
        result.metrics["final_val_accuracy"] = result.history[-1]["val_accuracy"]
    return result


class ConsoleProgress:
    """One line per epoch: implementation, epoch, loss, val accuracy, seconds."""

    def __init__(self, job: Job):
        self.job = job

    def data_loaded(self, dataset: Dataset) -> None:
        log.info("%s: %s from %s", self.job.run_name, dataset.name, dataset.source)

    def epoch_done(self, epoch: int, m: dict[str, float]) -> None:
        val = f" val_acc {m['val_accuracy']:.4f}" if "val_accuracy" in m else ""
        log.info(
            "[%s] epoch %d/%d loss %.4f acc %.4f%s %.2fs",
            self.job.implementation,
            epoch,
            self.job.epochs,
            m["train_loss"],
            m["train_accuracy"],
            val,
            m["epoch_time_s"],
        )
