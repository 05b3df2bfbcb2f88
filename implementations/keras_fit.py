"""The MLP in Keras: a Sequential of Dense layers, compile, and fit one epoch at a time.

Written the way Keras' guides write it; the harness drives the epochs and hands the
batches in order. One Keras optimizer has one learning rate; an output layer with its own
(optimizer.output_lr) goes through the guides' other documented path, a `train_step` of
our own ("Customizing what happens in fit()"), which scales each layer's gradient by its
rate over the optimizer's: exact for plain and momentum SGD, whose step is linear in the
gradient (the spec allows output_lr for those only), as tf_tape does.

`compile()`'s `steps_per_execution` is an option (conf/implementation/keras.yaml): that many
batches per call into fit's compiled step, the same arithmetic without Python's dispatch
per batch. `jit_compile` is not: Keras turns XLA off while TensorFlow's op determinism is
on (tf_common.configure), and forcing it did not speed this model up on a CPU.
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


class LayerRateSequential(keras.Sequential):
    """A Sequential whose training step gives each layer its own learning rate: fit's step
    (forward, loss, gradients, update, metrics), with each gradient multiplied by its
    variable's rate over the optimizer's before the update."""

    def __init__(self, layers, grad_scales: list[float]):
        super().__init__(layers)
        self.grad_scales = grad_scales  # one per trainable variable, in their order

    def train_step(self, data):
        x, y = data
        with tf.GradientTape() as tape:
            y_pred = self(x, training=True)
            loss = self.compute_loss(x=x, y=y, y_pred=y_pred, training=True)
        grads = tape.gradient(loss, self.trainable_variables)
        grads = [g * s if s != 1 else g for g, s in zip(grads, self.grad_scales)]
        self.optimizer.apply_gradients(zip(grads, self.trainable_variables))
        for metric in self.metrics:  # fit's loss tracker, weighted by batch size as fit's
            if metric.name == "loss":
                metric.update_state(loss, sample_weight=tf.shape(x)[0])
        return self.compute_metrics(x, y, y_pred)


def steps_option(value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SpecError(
            f"implementation.options.steps_per_execution={value!r} must be a positive int"
        )
    return value


class KerasMLP:
    def __init__(
        self,
        model: ModelSpec,
        optimizer: OptimizerSpec,
        batch_size: int,
        weights: list[np.ndarray] | None = None,
        seed: int = 0,
        steps_per_execution: int = 1,
    ):
        self.batch_size = check_batch_size(batch_size)
        dtype = model.dtype
        layers = (
            [keras.Input((model.sizes[0],), dtype=dtype)]
            + [
                keras.layers.Dense(h, activation=model.activation, dtype=dtype)
                for h in model.hidden
            ]
            + [keras.layers.Dense(model.sizes[-1], dtype=dtype)]  # logits
        )
        if optimizer.output_lr is None:
            self.model = keras.Sequential(layers)
        else:
            lrs = optimizer.layer_lrs(len(model.sizes) - 1)
            self.model = LayerRateSequential(
                layers, [lr / optimizer.lr for lr in lrs for _ in "Wb"]
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
            steps_per_execution=steps_option(steps_per_execution),
        )
        # fit hides its phases: the benchmark times the same model's forward and backward
        # passes in steps of its own, and attributes the rest of fit's step to the update
        self.phases = phase_functions(
            lambda x: self.model(x, training=True), self.model.trainable_variables, model
        )
        # predict's logits from one compiled function for every size of input: Keras'
        # `predict` traces its step again for each new count and shape of batches per call
        signature = [tf.TensorSpec([None, model.sizes[0]], tf.as_dtype(dtype))]
        self.logits = tf.function(
            lambda x: self.model(x, training=False), input_signature=signature
        )

    def train_epoch(self, x, y):
        history = self.model.fit(batches(x, y, self.batch_size), epochs=1, shuffle=False, verbose=0)
        return history.history[self.loss_key][-1], history.history["accuracy"][-1]

    def evaluate(self, x, y):
        result = self.model.evaluate(batches(x, y, EVAL_BATCH_SIZE), verbose=0, return_dict=True)
        return result[self.loss_key], result["accuracy"]

    def predict(self, x):
        return np.concatenate(
            [
                self.logits(x[i : i + EVAL_BATCH_SIZE]).numpy()
                for i in range(0, len(x), EVAL_BATCH_SIZE)
            ]
        )

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


# the speed benchmark's other settings: fit's default of one batch per compiled call
VARIANTS = {"per_step": {"steps_per_execution": 1}}

build = KerasMLP  # the module's entry point: build(model, optimizer, batch_size, weights, seed)


def export(net: KerasMLP) -> keras.Model:
    """The trained model for inference (bench.tracking.model logs it with mlflow.keras): an uncompiled
    plain Sequential with the trained weights, so loading it needs no class of this module (the
    compiled model's loss is SampleLoss; LayerRateSequential only changes training)."""
    model = keras.Sequential.from_config(net.model.get_config())
    model.set_weights(net.model.get_weights())
    return model
