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
        raise ConfigError("device=gpu but TensorFlow sees no GPU; use device=cpu")
    tf.config.experimental.enable_op_determinism()
    _tensorflow_settings.update(wanted)


def configure(job: Job) -> None:
    """Process-wide settings for the job's framework (its module's FRAMEWORK, once imported)."""
    framework = getattr(sys.modules.get(job.module), "FRAMEWORK", None)
    if framework == "tensorflow":
        configure_tensorflow(job)
    elif job.device == "gpu":
        raise ConfigError(f"device=gpu is not available for implementation={job.implementation}")


def seed_everything(seed: int) -> None:
    """Seeds every generator; also drops Keras' global state left by an earlier job."""
    random.seed(seed)
    np.random.seed(seed)
    if "keras" in sys.modules:
        import keras

        keras.backend.clear_session()
        keras.utils.set_random_seed(seed)
