"""The MLP in low-level TensorFlow 2: tf.Variable weights, a GradientTape step, tf.data input.

The step is compiled with XLA (`jit_compile`, as Keras' fit does on its own), and the whole
epoch is one tf.function: a graph loop over the tf.data batches calls the step, sums loss and
correct counts on the device and returns them once, so no step waits for Python or the host.
`eager=True` runs step by step uncompiled, as the classic tutorial does.
"""

from __future__ import annotations

import numpy as np

from implementations.base import EVAL_BATCH_SIZE
from implementations.spec import ModelSpec, OptimizerSpec, check_batch_size
from implementations.tf_common import (  # the framework verbs: shared with keras_fit
    batch_totals,
    batches,
    configure,  # noqa: F401
    device_peak_mb,  # noqa: F401
    framework_weights,
    graph_epoch,
    keras_optimizer,
    per_sample_loss,
    phase_functions,
    set_seed,  # noqa: F401
    synchronize,  # noqa: F401
    tf,
    versions,  # noqa: F401
)

ACTIVATIONS = {"relu": tf.nn.relu, "sigmoid": tf.sigmoid, "tanh": tf.tanh}


class TapeMLP(tf.Module):
    def __init__(
        self,
        model: ModelSpec,
        optimizer: OptimizerSpec,
        batch_size: int,
        weights: list[np.ndarray] | None = None,
        seed: int = 0,
        eager: bool = False,
        jit_compile: bool = True,
    ):
        super().__init__(name="tape_mlp")
        self.batch_size = check_batch_size(batch_size)
        self.dtype = tf.as_dtype(model.dtype)
        self.reduction = model.reduction
        self.f = ACTIVATIONS[model.activation]
        self.loss_fn = per_sample_loss(model)
        weights = weights or framework_weights(model, seed)
        self.params = [tf.Variable(np.asarray(w, dtype=model.dtype)) for w in weights]
        n_layers = len(self.params) // 2
        lrs = [lr for lr in optimizer.layer_lrs(n_layers) for _ in range(2)]
        # plain and momentum SGD scale linearly with the gradient: a per-layer rate is exact
        self.grad_scales = [lr / optimizer.lr for lr in lrs]
        self.optimizer = keras_optimizer(optimizer, model.dtype)
        # its state variables now: built inside the first step, they would make tf.function
        # trace the step twice (once creating them, once using them)
        self.optimizer.build(self.params)
        signature = [
            tf.TensorSpec([None, model.sizes[0]], self.dtype),
            tf.TensorSpec([None], tf.int32),
        ]
        self.eager = eager
        self.step = tf.function(self._step, input_signature=signature, jit_compile=jit_compile)
        self.epoch = graph_epoch(self.step, self.dtype)
        self.grad_step = tf.function(self._gradients, input_signature=signature)
        self.eval_step = tf.function(self._eval, input_signature=signature)
        self.phases = phase_functions(self.logits, self.params, model)

    def logits(self, x):
        for W, b in zip(self.params[0:-2:2], self.params[1:-2:2]):
            x = self.f(x @ W + b)  # (B, out)
        return x @ self.params[-2] + self.params[-1]  # (B, 10)

    def _objective(self, x, y):
        z = self.logits(x)
        losses = self.loss_fn(y, z)  # (B,)
        objective = tf.reduce_sum(losses) if self.reduction == "sum" else tf.reduce_mean(losses)
        return objective, losses, z

    def _gradients(self, x, y):
        with tf.GradientTape() as tape:
            objective, losses, z = self._objective(x, y)
        return tape.gradient(objective, self.params), losses, z

    def _step(self, x, y):
        grads, losses, z = self._gradients(x, y)
        grads = [g * s if s != 1 else g for g, s in zip(grads, self.grad_scales)]  # layer rates
        self.optimizer.apply_gradients(zip(grads, self.params))
        return batch_totals(losses, z, y)

    def _eval(self, x, y):
        z = self.logits(x)
        return batch_totals(self.loss_fn(y, z), z, y)

    def _run(self, fn, x, y, batch_size):
        """Step by step from Python (eager training, evaluation), summing on the device."""
        total_loss, correct = tf.zeros((), self.dtype), tf.zeros((), tf.int32)
        for xb, yb in batches(x, y, batch_size):
            loss, hits = fn(xb, yb)
            total_loss += loss
            correct += hits
        return float(total_loss) / len(x), int(correct) / len(x)  # the pass's one host sync

    def train_epoch(self, x, y):
        if self.eager:
            return self._run(self._step, x, y, self.batch_size)
        total_loss, correct = self.epoch(batches(x, y, self.batch_size))
        return float(total_loss) / len(x), int(correct) / len(x)  # the epoch's one host sync

    def evaluate(self, x, y):
        return self._run(self.eval_step, x, y, EVAL_BATCH_SIZE)

    def phase_epoch(self, phase, x, y):
        float(self.phases[phase](batches(x, y, self.batch_size))[0])

    def predict(self, x):
        return np.concatenate(
            [
                self.logits(tf.constant(x[i : i + EVAL_BATCH_SIZE])).numpy()
                for i in range(0, len(x), EVAL_BATCH_SIZE)
            ]
        )

    def gradients(self, x, y):
        return [g.numpy() for g in self.grad_step(tf.constant(x), tf.constant(y, tf.int32))[0]]

    def get_weights(self):
        return [p.numpy() for p in self.params]

    def set_weights(self, weights):
        for p, w in zip(self.params, weights, strict=True):
            p.assign(w)


# the speed benchmark's other settings: the step as a plain graph, and step by step uncompiled
VARIANTS = {"graph": {"jit_compile": False}, "eager": {"eager": True}}

build = TapeMLP  # the module's entry point: build(model, optimizer, batch_size, weights, seed)
