"""Process-wide settings: thread budget, device visibility, seeds.

TensorFlow fixes its thread pools and visible devices at first use, so a later job in the
same process that asks for different values is refused instead of silently running with
the old ones.
"""

from __future__ import annotations

import os
import random
import sys

import numpy as np

from bench.settings import ConfigError, Job

_tensorflow_settings: dict = {}


def quiet_tensorflow() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def configure_tensorflow(job: Job) -> None:
    """Apply threads, device and op determinism once, before TensorFlow's first op."""
    import tensorflow as tf

    wanted = {"train.threads": job.threads, "device": job.device}
    if _tensorflow_settings:
        for key, value in wanted.items():
            if _tensorflow_settings[key] != value:
                raise ConfigError(
                    f"{key}={value} cannot change inside one process (TensorFlow started with "
                    f"{_tensorflow_settings[key]}); run it as its own command or with "
                    f"hydra/launcher=joblib"
                )
        return
    try:
        if job.device == "cpu":
            tf.config.set_visible_devices([], "GPU")
        if job.threads:
            tf.config.threading.set_intra_op_parallelism_threads(job.threads)
            tf.config.threading.set_inter_op_parallelism_threads(job.threads)
    except RuntimeError:
        raise ConfigError(
            "TensorFlow was initialised before the job could set device and threads; "
            "run the job in a fresh process"
        ) from None
    if job.device == "gpu" and not tf.config.list_physical_devices("GPU"):
        raise ConfigError(
            "device=gpu but TensorFlow sees no GPU; use device=cpu (a GPU machine needs "
            "pip install 'mnist-bench[gpu]')"
        )
    tf.config.experimental.enable_op_determinism()
    _tensorflow_settings.update(wanted)


def configure(job: Job) -> None:
    """Process-wide settings for the job's framework (its module's FRAMEWORK, once imported).
    The NumPy network picks its array module (NumPy or CuPy) itself."""
    framework = getattr(sys.modules.get(job.module), "FRAMEWORK", None)
    if framework == "tensorflow":
        configure_tensorflow(job)
    elif job.device == "gpu" and framework != "numpy":
        raise ConfigError(f"device=gpu is not available for implementation={job.implementation}")


def synchronize(device: str) -> None:
    """Wait for queued GPU work, so a clock read after it measures the work (a no-op on CPU)."""
    if device != "gpu":
        return
    if "cupy" in sys.modules:
        sys.modules["cupy"].cuda.Device().synchronize()
    if "tensorflow" in sys.modules:
        sys.modules["tensorflow"].test.experimental.sync_devices()


def gpu_peak_mb() -> float | None:
    """The GPU memory high-water mark of this process's frameworks, in MB."""
    peaks = []
    if "cupy" in sys.modules:  # the pool keeps what it allocated: its total is the peak
        peaks.append(sys.modules["cupy"].get_default_memory_pool().total_bytes())
    if "tensorflow" in sys.modules:
        tf = sys.modules["tensorflow"]
        if tf.config.list_logical_devices("GPU"):
            peaks.append(tf.config.experimental.get_memory_info("GPU:0")["peak"])
    return max(peaks) / 2**20 if peaks else None


def seed_everything(seed: int) -> None:
    """Seeds every generator; also drops Keras' global state left by an earlier job."""
    random.seed(seed)
    np.random.seed(seed)
    if "keras" in sys.modules:
        import keras

        keras.backend.clear_session()
        keras.utils.set_random_seed(seed)
