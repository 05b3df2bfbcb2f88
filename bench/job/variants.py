"""Which of its framework's variants a job runs (`train.variant`): the implementation's own
options ("default"), one of the variants its module declares (VARIANTS: tf_tape's graph and
eager steps, Keras' per-batch fit, JAX's per-step calls), or "auto", the fastest of them on
this host.

"auto" times the default and every variant once per host and setting, then keeps the answer
in the cache (`variants.json` beside the dataset cache), so a sweep's later jobs, and later
sweeps, only read it. The rule: each variant trains the same weights on the same first
AUTO_IMAGES training images, interleaved (A B C A B C ...), one warm-up epoch and
AUTO_REPEATS timed epochs each; a variant replaces the default only when its median epoch
is at least AUTO_MARGIN faster, so the choice does not flip with the host's noise.
"""

from __future__ import annotations

import json
import socket
import statistics
import time
from dataclasses import dataclass
from datetime import datetime, timezone

from filelock import FileLock

from implementations.spec import SpecError

AUTO_IMAGES = 8192
AUTO_REPEATS = 3
AUTO_MARGIN = 0.10  # a variant wins only below (1 - AUTO_MARGIN) x the default's median
CHOICES = ("default", "auto")


@dataclass(frozen=True)
class Variant:
    """The variant a job runs: its name, the options it sets, and how it was chosen."""

    name: str
    options: dict
    choice: str  # "train.variant=graph", or auto's medians and where they came from


def check_variant(wanted: str, implementation: str, variants: dict) -> None:
    """`train.variant` names "default", "auto", or a variant of this implementation."""
    if wanted not in (*CHOICES, *variants):
        allowed = ", ".join([*CHOICES, *variants])
        raise SpecError(
            f"train.variant={wanted!r} is not a variant of {implementation}; allowed: {allowed}"
        )


def resolve(job, impl, weights, splits) -> Variant:
    """The variant this job runs, with the options to build its network with."""
    variants = impl.variants()
    check_variant(job.variant, job.implementation, variants)
    if job.variant == "default":
        return Variant("default", dict(job.options), "train.variant=default")
    if job.variant == "auto" and not variants:
        return Variant("default", dict(job.options), "auto: the implementation has no variants")
    if job.variant != "auto":
        return Variant(job.variant, {**job.options, **variants[job.variant]},
                       f"train.variant={job.variant}")  # fmt: skip
    name, choice = fastest(job, impl, weights, splits)
    return Variant(name, {**job.options, **variants.get(name, {})}, choice)


def cache_key(job, impl, images: int) -> str:
    """What the choice depends on: the host and its CPU, the thread budget, the framework's
    versions, the shapes and optimizer of the setting, and how many images it was timed on
    (a choice timed on a 1,000-image subset does not stand for a full epoch's)."""
    from bench.job.environment import cpu_model

    versions = ",".join(f"{k}={v}" for k, v in sorted(impl.versions().items()))
    sizes = "-".join(map(str, job.model.sizes))
    return "|".join([
        socket.gethostname(), cpu_model(), f"threads={job.threads}", job.device,
        job.implementation, versions, sizes, job.model.activation, job.model.dtype,
        job.optimizer.name, f"batch={job.batch_size}", f"images={images}",
    ])  # fmt: skip


def fastest(job, impl, weights, splits) -> tuple[str, str]:
    """The cached choice for this setting on this host, else measured now and cached. Jobs
    side by side (joblib) wait on one lock: one measures, the others read."""
    from bench.data.loader import cache_root

    path = cache_root() / "variants.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    key = cache_key(job, impl, min(AUTO_IMAGES, len(splits.y_train)))
    with FileLock(f"{path}.lock"):
        cache = json.loads(path.read_text()) if path.exists() else {}
        if key not in cache:
            cache[key] = measure(job, impl, weights, splits)
            path.write_text(json.dumps(cache, indent=1, sort_keys=True))
    entry = cache[key]
    medians = ", ".join(f"{name} {s:.3g} s" for name, s in entry["medians"].items())
    choice = (f"auto: {entry['chosen']} (median epoch of {entry['images']} images: {medians}; "
              f"measured {entry['measured']}, cached in {path})")  # fmt: skip
    return entry["chosen"], choice


def measure(job, impl, weights, splits) -> dict:
    """Median epoch seconds of the default and of each variant, interleaved, and the choice."""
    n = min(AUTO_IMAGES, len(splits.y_train))
    x, y = splits.x_train[:n], splits.y_train[:n]
    labels = {"default": dict(job.options)}
    labels.update({name: {**job.options, **o} for name, o in impl.variants().items()})
    nets = {}
    for label, options in labels.items():
        impl.seed(job.seed)
        nets[label] = impl.build(job.model, job.optimizer, job.batch_size, weights, job.seed,
                                 **options)  # fmt: skip
        nets[label].train_epoch(x, y)  # warm-up: tracing and compilation
    times: dict[str, list[float]] = {label: [] for label in nets}
    for _ in range(AUTO_REPEATS):
        for label, net in nets.items():
            start = time.perf_counter()
            net.train_epoch(x, y)
            impl.synchronize(job.device)
            times[label].append(time.perf_counter() - start)
    medians = {label: statistics.median(t) for label, t in times.items()}
    best = min(medians, key=medians.get)
    chosen = best if medians[best] < (1 - AUTO_MARGIN) * medians["default"] else "default"
    return {
        "chosen": chosen,
        "medians": medians,
        "images": n,
        "measured": f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC",
    }
