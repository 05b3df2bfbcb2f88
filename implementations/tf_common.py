"""What the two TensorFlow implementations share: the loss from logits and the initializers.

One definition keeps tf_tape and keras computing exactly the same objective.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from implementations.spec import CLASSES, ModelSpec

KERAS_INITIALIZERS = {
    "glorot_normal": keras.initializers.GlorotNormal,
    "glorot_uniform": keras.initializers.GlorotUniform,
    "he_normal": keras.initializers.HeNormal,
}


def per_sample_loss(model: ModelSpec):
    """loss(y, z) -> (B,): softmax cross-entropy, or Keras' mse of the output activation."""
    if model.loss == "cross_entropy":

        def loss(y, z):
            labels = tf.cast(tf.reshape(y, [-1]), tf.int32)
            return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=z)

        return loss
    output = tf.sigmoid if model.output == "sigmoid" else tf.identity

    def loss(y, z):
        target = tf.one_hot(tf.cast(tf.reshape(y, [-1]), tf.int32), CLASSES, dtype=z.dtype)
        return tf.reduce_mean(tf.square(output(z) - target), axis=1)

    return loss


def framework_weights(model: ModelSpec, seed: int) -> list[np.ndarray]:
    """Initial weights drawn by Keras' own initializers (used outside lockstep)."""
    weights = []
    for i, (fan_in, fan_out) in enumerate(zip(model.sizes[:-1], model.sizes[1:])):
        if model.init == "normal":
            init = keras.initializers.RandomNormal(stddev=model.init_std, seed=seed + i)
        else:
            init = KERAS_INITIALIZERS[model.init](seed=seed + i)
        weights += [
            np.asarray(init((fan_in, fan_out), dtype=model.dtype)),
            np.zeros(fan_out, dtype=model.dtype),
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
