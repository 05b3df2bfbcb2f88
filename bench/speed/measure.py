"""Epoch, evaluation and per-phase times of every implementation on one config, interleaved.

All implementations of a case are built from the same weights and train on the same batch
order. After a warm-up epoch (which carries TensorFlow's tracing), each repeat times, for
each implementation in turn (A B C A B C ...): one training epoch, one evaluation of the
test set, and one epoch of steps stopped after the forward pass and after the backward pass.
A burst of noise on a shared machine then lands on every implementation, not on one.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field

from threadpoolctl import threadpool_limits

from bench.job.harness import Shuffler
from bench.job.settings import Job, compose_config, job_from_config
from bench.job.setup import build_network, initial_weights, load_data
from implementations import registry

PHASES = ("forward", "gradients")


@dataclass(frozen=True)
class Case:
    preset: str
    batch_size: int | None = None  # None: the preset's
    device: str = "cpu"  # device=gpu: CuPy, JAX's and PyTorch's CUDA (synchronized timings)

    @property
    def name(self) -> str:
        return self.preset + (f" b{self.batch_size}" if self.batch_size else "")

    def job(self, label: str, n_train: int | None, threads: int | None) -> Job:
        """The job of an implementation, or of one of its variants ("tf_tape:eager")."""
        implementation, _, variant = label.partition(":")
        overrides = [f"+experiment={self.preset}", f"implementation={implementation}"]
        if self.batch_size:
            overrides.append(f"train.batch_size={self.batch_size}")
        overrides += [f"dataset.n_train={n_train or 'null'}", f"train.threads={threads}",
                      f"device={self.device}"]  # fmt: skip
        if variant:
            options = registry()[implementation].variants()[variant]
            overrides += [f"++implementation.options.{k}={v}" for k, v in options.items()]
        return job_from_config(compose_config(overrides))


def variant_labels(implementations) -> list[str]:
    """Each implementation's default and its declared variants, as "name:variant" labels."""
    return [
        label
        for name in implementations
        for label in (name, *(f"{name}:{v}" for v in registry()[name].variants()))
    ]


CASES = (
    Case("keras_dense512", 32),
    Case("keras_dense512", 128),
    Case("keras_dense512", 512),
    Case("tape_sigmoid"),
)


@dataclass
class Timings:
    """Seconds per repeat for one implementation on one case."""

    implementation: str
    first_epoch: float = 0.0
    epoch: list[float] = field(default_factory=list)
    evaluation: list[float] = field(default_factory=list)
    forward: list[float] = field(default_factory=list)  # epochs of truncated steps
    gradients: list[float] = field(default_factory=list)
    in_step: list[dict] = field(default_factory=list)  # phases read inside the real steps

    def median(self, name: str) -> float:
        """The median over repeats; NaN for a phase the implementation cannot stop at."""
        values = getattr(self, name)
        return statistics.median(values) if values else float("nan")

    def spread(self, name: str) -> str:
        """The smallest and largest value over repeats, "min..max": where two medians of one
        configuration differ, whether its repeats do too (Keras' epoch is bimodal on the
        project's 2-core hosts: docs/speed.md)."""
        values = getattr(self, name)
        return f"{min(values):.3g}..{max(values):.3g}" if values else ""

    def phases(self) -> tuple[str, dict[str, list[float]]]:
        """How the phases were measured, and per phase its seconds in each repeat. Inside the
        real step the parts are read by clocks at the step's own boundaries, so they are
        positive and add up to the epoch; where a compiled step hides them, from epochs of
        steps stopped after the forward and after the backward pass (differences of separate
        epochs, which the host's noise can push below zero)."""
        if self.in_step:
            parts = {k: [p[k] for p in self.in_step] for k in ("forward", "backward", "update")}
            parts["rest"] = [
                p["wall"] - p["forward"] - p["backward"] - p["update"] for p in self.in_step
            ]
            return "in-step clocks", parts
        if not self.forward:
            return "not measured", {}
        return "truncated-step epochs", {
            "forward": self.forward,
            "backward": [g - f for g, f in zip(self.gradients, self.forward)],
            "update+rest": [e - g for e, g in zip(self.epoch, self.gradients)],
        }


def measure_case(
    case: Case,
    repeats: int,
    implementations: list[str],
    n_train: int | None = None,
    threads: int | None = 2,
) -> tuple[Job, int, dict[str, Timings]]:
    """The case's job (first implementation's), training samples, and timings per
    implementation. A network's phases come from its optional `timed_train_epoch` verb (clocks
    inside the real step), else from `phase_epoch` (truncated steps), else are not measured."""
    jobs = {impl: case.job(impl, n_train, threads) for impl in implementations}
    job = jobs[implementations[0]]
    with threadpool_limits(limits=threads):
        _, s = load_data(job)
        weights = initial_weights(job)
        nets = {name: build_network(j, weights) for name, j in jobs.items()}

        def timed(name, fn, *args) -> float:
            start = time.perf_counter()
            fn(*args)
            nets[name][0].synchronize(jobs[name].device)
            return time.perf_counter() - start

        timings = {name: Timings(name) for name in implementations}
        shuffler = Shuffler(s.x_train, s.y_train, job.seed)
        x, y = shuffler.epoch(1)  # the warm-up epoch
        for name, (_, net) in nets.items():
            timings[name].first_epoch = timed(name, net.train_epoch, x, y)
            if hasattr(net, "phase_epoch"):
                for phase in PHASES:  # traces the phase steps
                    net.phase_epoch(phase, x[: 4 * job.batch_size], y[: 4 * job.batch_size])
            net.evaluate(s.x_test, s.y_test)
        for r in range(repeats):
            x, y = shuffler.epoch(r + 2)
            for name, (_, net) in nets.items():
                t = timings[name]
                t.epoch.append(timed(name, net.train_epoch, x, y))
                t.evaluation.append(timed(name, net.evaluate, s.x_test, s.y_test))
                if hasattr(net, "timed_train_epoch"):  # the same steps, clocked inside
                    start = time.perf_counter()
                    *_, phases = net.timed_train_epoch(x, y)
                    t.in_step.append({**phases, "wall": time.perf_counter() - start})
                elif hasattr(net, "phase_epoch"):
                    t.forward.append(timed(name, net.phase_epoch, "forward", x, y))
                    t.gradients.append(timed(name, net.phase_epoch, "gradients", x, y))
    return job, len(s.y_train), timings
