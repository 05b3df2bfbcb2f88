"""What the two TensorFlow implementations share: the framework verbs (process settings,
seeds, device synchronization and memory, versions), the loss from logits and the
initializers. One definition keeps tf_tape and keras computing exactly the same objective.

tf_tape and keras_fit take `tf` and `keras` from here, so TensorFlow's C++ logging level is set
before its first import.
"""

from __future__ import annotations

import logging

from implementations.native_logs import quiet_native_lines, quiet_native_logs

quiet_native_logs()  # before TensorFlow's first import
with quiet_native_lines():
    import keras
    import tensorflow as tf

import numpy as np  # noqa: E402

from implementations.spec import CLASSES, ModelSpec, SpecError, started_with  # noqa: E402


class FirstTracesAreNotRetracing(logging.Filter):
    """Drops TensorFlow's "N out of the last M calls to <f> triggered tf.function retracing".
    Its detector counts the traces of every tf.function made from one Python function's code
    (polymorphic_function.py keys it by `__code__`), so each new network's first and only trace
    sets it off: a sweep builds a network per job, the speed benchmark several side by side.
    tests/test_tracing.py checks instead that each compiled function of a network traces
    once, whatever sizes of data it is given."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()


tf.get_logger().addFilter(FirstTracesAreNotRetracing())
_settings: dict = {}  # the process settings TensorFlow started with: they cannot change later


def configure(threads: int | None, device: str) -> None:
    """Threads, visible devices and op determinism, once, before TensorFlow's first op. A later
    job in the same process that asks for other values is refused instead of silently running
    with the old ones."""
    wanted = {"train.threads": threads, "device": device}
    if started_with("TensorFlow", _settings, wanted):
        return
    try:
        with quiet_native_lines():
            if device == "cpu":
                tf.config.set_visible_devices([], "GPU")
            if threads:
                tf.config.threading.set_intra_op_parallelism_threads(threads)
                tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        raise SpecError(
            "TensorFlow was initialised before the job could set device and threads; "
            "run the job in a fresh process"
        ) from None
    with quiet_native_lines():
        gpus = tf.config.list_physical_devices("GPU") if device == "gpu" else None
    if device == "gpu" and not gpus:
        raise SpecError(
            "device=gpu but TensorFlow sees no GPU; use device=cpu (a GPU machine needs "
            "pip install 'mnist-bench[gpu]')"
        )
    tf.config.experimental.enable_op_determinism()
    _settings.update(wanted)


def set_seed(seed: int) -> None:
    """Seeds TensorFlow and Keras, and drops the global Keras state an earlier job left."""
    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)


def synchronize() -> None:
    tf.test.experimental.sync_devices()


def device_peak_mb() -> float | None:
    if not tf.config.list_logical_devices("GPU"):
        return None
    return tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20


def versions() -> dict[str, str]:
    """TensorFlow's and Keras' versions; on a GPU also the CUDA TensorFlow was built with."""
    build = tf.sysconfig.get_build_info()
    found = {"tensorflow": tf.__version__, "keras": keras.__version__}
    if build.get("cuda_version") and _settings.get("device") == "gpu":
        found["cuda"] = str(build["cuda_version"])
    return found


KERAS_INITIALIZERS = {
    "glorot_normal": keras.initializers.GlorotNormal,
    "glorot_uniform": keras.initializers.GlorotUniform,
    "he_normal": keras.initializers.HeNormal,
}


def per_sample_loss(model: ModelSpec):
    """loss(y, z) -> (B,): softmax cross-entropy, or the squared error of the output
    activation, summed over the classes (squared_error) or averaged (Keras' mse)."""
    if model.loss == "cross_entropy":

        def loss(y, z):
            labels = tf.cast(tf.reshape(y, [-1]), tf.int32)
            return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=z)

        return loss
    output = tf.sigmoid if model.output == "sigmoid" else tf.identity
    over_classes = tf.reduce_sum if model.loss == "squared_error" else tf.reduce_mean

    def loss(y, z):
        target = tf.one_hot(tf.cast(tf.reshape(y, [-1]), tf.int32), CLASSES, dtype=z.dtype)
        return over_classes(tf.square(output(z) - target), axis=1)

    return loss


def framework_weights(model: ModelSpec, seed: int) -> list[np.ndarray]:
    """Initial weights drawn by Keras' own initializers (used outside lockstep)."""
    weights = []
    for i, (fan_in, fan_out) in enumerate(zip(model.sizes[:-1], model.sizes[1:])):
        if model.init == "normal":
            init = keras.initializers.RandomNormal(stddev=model.init_std, seed=seed + i)
        else:
            init = KERAS_INITIALIZERS[model.init](seed=seed + i)
        if model.bias_init == "normal":
            seed_b = seed + len(model.sizes) + i  # a stream of its own, not W's
            bias_init = keras.initializers.RandomNormal(stddev=model.init_std, seed=seed_b)
        else:
            bias_init = keras.initializers.Zeros()
        weights += [
            np.asarray(init((fan_in, fan_out), dtype=model.dtype)),
            np.asarray(bias_init((fan_out,), dtype=model.dtype)),
        ]
    return weights


def keras_optimizer(spec, dtype: str):
    """The Keras optimizer for a spec; per-layer rates are applied by scaling gradients."""
    if spec.name in ("sgd", "momentum"):
        momentum = spec.momentum if spec.name == "momentum" else 0.0
        return keras.optimizers.SGD(learning_rate=spec.lr, momentum=momentum)
    if spec.name == "rmsprop":
        return keras.optimizers.RMSprop(learning_rate=spec.lr, rho=spec.rho, epsilon=spec.epsilon)
    return keras.optimizers.Adam(
        learning_rate=spec.lr, beta_1=spec.beta1, beta_2=spec.beta2, epsilon=spec.epsilon
    )


def batches(x, y, batch_size: int) -> tf.data.Dataset:
    """In-order batches, the same input pipeline for both TensorFlow implementations."""
    return tf.data.Dataset.from_tensor_slices((x, y.astype(np.int32))).batch(batch_size)


def batch_totals(losses, z, y):
    """The batch's summed loss and its count of correct predictions."""
    correct = tf.reduce_sum(
        tf.cast(tf.equal(tf.argmax(z, axis=1, output_type=tf.int32), y), tf.int32)
    )
    return tf.reduce_sum(losses), correct


def phase_functions(logits, variables, model: ModelSpec) -> dict:
    """Epoch functions whose steps stop after the forward pass, or after the backward pass,
    for the speed benchmark's breakdown. Like tf_tape's training epoch they are graph loops
    over the batches around an XLA-compiled step, so they time the computation, not Python's
    dispatch. Each step ends like a training step (loss, correct count); the gradients are
    summed into the output so graph pruning cannot drop the backward pass."""
    loss_fn = per_sample_loss(model)
    dtype = tf.as_dtype(model.dtype)
    signature = [tf.TensorSpec([None, model.sizes[0]], dtype), tf.TensorSpec([None], tf.int32)]

    @tf.function(input_signature=signature, jit_compile=True)
    def forward(x, y):
        z = logits(x)
        return batch_totals(loss_fn(y, z), z, y)

    @tf.function(input_signature=signature, jit_compile=True)
    def gradients(x, y):
        with tf.GradientTape() as tape:
            z = logits(x)
            losses = loss_fn(y, z)
            objective = (
                tf.reduce_sum(losses) if model.reduction == "sum" else tf.reduce_mean(losses)
            )
        grads = tape.gradient(objective, variables)
        total, correct = batch_totals(losses, z, y)
        checksum = tf.cast(tf.add_n([tf.reduce_sum(g) for g in grads]), dtype)
        return total + 1e-30 * checksum, correct  # a tiny weight, not 0: 0 * x could fold

    return {"forward": graph_epoch(forward, dtype), "gradients": graph_epoch(gradients, dtype)}


def graph_epoch(step, dtype):
    """An epoch as one tf.function: a graph loop over the batches calls `step` and sums its
    (loss, correct) on the device, so Python runs once per epoch, not once per step."""

    @tf.function
    def epoch(data):
        total_loss, correct = tf.zeros((), dtype), tf.zeros((), tf.int32)
        for xb, yb in data:
            loss, hits = step(xb, yb)
            total_loss += loss
            correct += hits
        return total_loss, correct

    return epoch
