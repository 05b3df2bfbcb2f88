"""The MLP in Keras: a Sequential of Dense layers, compile, and fit one epoch at a time.

Written the way Keras' guides write it; the harness drives the epochs and hands the
batches in order. Keras cannot give the output layer its own learning
rate through `fit`, so such a spec is refused at construction.
"""

from __future__ import annotations

import numpy as np

from implementations.base import EVAL_BATCH_SIZE
from implementations.spec import ModelSpec, OptimizerSpec, SpecError, check_batch_size
from implementations.tf_common import (  # the framework verbs: shared with tf_tape
    batches,  # fit's array adapter would cast float64 to float32
    configure,  # noqa: F401
    device_peak_mb,  # noqa: F401
    framework_weights,
    keras,
    keras_optimizer,
    per_sample_loss,
    phase_functions,
    set_seed,  # noqa: F401
    synchronize,  # noqa: F401
    tf,
    versions,  # noqa: F401
)


class SampleLoss(keras.losses.Loss):
    """The shared per-sample loss, reduced over the batch as the spec says."""

    def __init__(self, model: ModelSpec, reduction: str):
        super().__init__(name="sample_loss", reduction=reduction, dtype=model.dtype)
        self.fn = per_sample_loss(model)

    def call(self, y_true, y_pred):
        return self.fn(y_true, y_pred)


class KerasMLP:
    def __init__(
        self,
        model: ModelSpec,
        optimizer: OptimizerSpec,
        batch_size: int,
        weights: list[np.ndarray] | None = None,
        seed: int = 0,
    ):
        if optimizer.output_lr is not None:
            raise SpecError(
                "implementation=keras cannot use optimizer.output_lr "
                "(fit has one learning rate); use numpy or tf_tape"
            )
        self.batch_size = check_batch_size(batch_size)
        dtype = model.dtype
        self.model = keras.Sequential(
            [keras.Input((model.sizes[0],), dtype=dtype)]
            + [
                keras.layers.Dense(h, activation=model.activation, dtype=dtype)
                for h in model.hidden
            ]
            + [keras.layers.Dense(model.sizes[-1], dtype=dtype)]  # logits
        )
        self.model.set_weights(weights or framework_weights(model, seed))
        reduction = "sum" if model.reduction == "sum" else "sum_over_batch_size"
        metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
        # with a summed objective, fit's "loss" is a mean of batch sums: track the sample mean
        self.loss_key = "loss" if model.reduction == "mean" else "mean_sample_loss"
        if model.reduction == "sum":
            metrics.append(
                keras.metrics.MeanMetricWrapper(
                    per_sample_loss(model), name="mean_sample_loss", dtype=dtype
                )
            )
        self.model.compile(
            optimizer=keras_optimizer(optimizer, dtype),
            loss=SampleLoss(model, reduction),
            metrics=metrics,
        )
        # fit hides its phases: the benchmark times the same model's forward and backward
        # passes in steps of its own, and attributes the rest of fit's step to the update
        self.phases = phase_functions(
            lambda x: self.model(x, training=True), self.model.trainable_variables, model
        )

    def train_epoch(self, x, y):
        history = self.model.fit(batches(x, y, self.batch_size), epochs=1, shuffle=False, verbose=0)
        return history.history[self.loss_key][-1], history.history["accuracy"][-1]

    def evaluate(self, x, y):
        result = self.model.evaluate(batches(x, y, EVAL_BATCH_SIZE), verbose=0, return_dict=True)
        return result[self.loss_key], result["accuracy"]

    def predict(self, x):
        return self.model.predict(x, batch_size=EVAL_BATCH_SIZE, verbose=0)

    def gradients(self, x, y):
        with tf.GradientTape() as tape:
            z = self.model(x, training=True)
            objective = self.model.loss(y, z)
        return [g.numpy() for g in tape.gradient(objective, self.model.trainable_variables)]

    def phase_epoch(self, phase, x, y):
        float(self.phases[phase](batches(x, y, self.batch_size))[0])

    def get_weights(self):
        return self.model.get_weights()

    def set_weights(self, weights):
        self.model.set_weights(weights)


build = KerasMLP  # the module's entry point: build(model, optimizer, batch_size, weights, seed)


def export(net: KerasMLP) -> keras.Model:
    """The trained model for inference (bench.models logs it with mlflow.keras): an uncompiled
    copy with the trained weights, so loading it needs no class of this module (the compiled
    model's loss is SampleLoss)."""
    model = type(net.model).from_config(net.model.get_config())
    model.set_weights(net.model.get_weights())
    return model
