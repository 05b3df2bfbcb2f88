"""The MLP from scratch in NumPy: forward, backward and optimizers written by hand.

Notation: B batch size, x (B, in) a layer's input, W (in, out), b (out,), z = x @ W + b the
pre-activation, a = f(z) the activation. Layers come from `sizes = [784, *hidden, 10]`.
The network outputs logits; the loss applies the output activation (softmax or sigmoid).
Every operation works on the whole batch: there is no Python loop over samples.

With device=gpu the same code runs on CuPy arrays: NumPy's ufuncs (np.multiply(..., out=),
np.tanh, ...) dispatch to CuPy for CuPy inputs, and the few calls that create arrays take
the array module `xp` (numpy on CPU, so the CPU path is plain NumPy).
"""

from __future__ import annotations

import math

import numpy as np

from implementations.base import EVAL_BATCH_SIZE
from implementations.spec import (
    CLASSES,
    ModelSpec,
    OptimizerSpec,
    SpecError,
    check_batch_size,
    init_weights,
)

FRAMEWORK = "numpy"  # which process-wide settings bench.runtime applies

# --- activations: f(z), and f'(z) written in terms of a = f(z) (what the forward pass kept)


def sigmoid(z, out=None):
    # = 1 / (1 + e^-z), without overflow for large |z|
    out = np.multiply(z, 0.5, out=out)
    np.tanh(out, out=out)
    out += 1.0
    out *= 0.5
    return out


ACTIVATIONS = {
    "sigmoid": (sigmoid, lambda a: a * (1 - a)),
    "tanh": (np.tanh, lambda a: 1 - a * a),
    "relu": (lambda z, out=None: np.maximum(z, 0, out=out), lambda a: a > 0),
    "linear": (lambda z, out=None: z, lambda a: 1),
}

# --- losses from logits: per-sample loss (B,) and its gradient dL_i/dz (B, 10)


def array_module(a):
    """numpy, or cupy for a CuPy array."""
    if type(a).__module__.startswith("cupy"):
        import cupy

        return cupy
    return np


def gpu_array_module():
    """CuPy, when it is installed and sees a GPU; else a one-line error."""
    try:
        import cupy
    except ImportError:
        raise SpecError(
            "device=gpu for implementation=numpy needs CuPy: pip install 'mnist-bench[gpu]'"
        ) from None
    try:
        if cupy.cuda.runtime.getDeviceCount() > 0:
            return cupy
    except cupy.cuda.runtime.CUDARuntimeError:
        pass
    raise SpecError("device=gpu but CuPy sees no GPU; use device=cpu")


def softmax_cross_entropy(z, y):
    shifted = z - z.max(axis=1, keepdims=True)  # (B, 10) stable: exp never overflows
    logsumexp = np.log(np.exp(shifted).sum(axis=1, keepdims=True))  # (B, 1)
    rows = array_module(z).arange(len(y))
    losses = logsumexp[:, 0] - shifted[rows, y]  # (B,)  -log softmax(z)[y]
    dz = np.exp(shifted - logsumexp)  # (B, 10)  softmax(z)
    dz[rows, y] -= 1  # softmax - onehot
    return losses, dz


def mean_squared_error(z, y, output):
    f, df = ACTIVATIONS[output]
    a = f(z)  # (B, 10)
    diff = a - array_module(a).eye(CLASSES, dtype=a.dtype)[y]  # (B, 10)  minus one-hot
    losses = (diff * diff).mean(axis=1)  # (B,)  Keras' mse: mean over classes
    dz = (2 / a.shape[1]) * diff * df(a)  # (B, 10)
    return losses, dz


# --- optimizers: Keras' update rules, so lockstep runs agree step for step. Updates run in
# place through one scratch buffer per parameter: no temporaries, ~3x faster than p -= f(g).


class SGD:
    def __init__(self, spec: OptimizerSpec, params, lrs):
        self.spec, self.lrs = spec, lrs
        self.scratch = [np.empty_like(p) for p in params]

    def step(self, params, grads):
        for p, g, tmp, lr in zip(params, grads, self.scratch, self.lrs):
            np.multiply(g, lr, out=tmp)
            p -= tmp  # p -= lr * g


class Momentum(SGD):
    def __init__(self, spec, params, lrs):
        super().__init__(spec, params, lrs)
        self.velocity = [np.zeros_like(p) for p in params]

    def step(self, params, grads):
        for p, g, v, tmp, lr in zip(params, grads, self.velocity, self.scratch, self.lrs):
            np.multiply(g, lr, out=tmp)
            v *= self.spec.momentum
            v -= tmp  # v = momentum * v - lr * g
            p += v


class RMSprop(SGD):
    def __init__(self, spec, params, lrs):
        super().__init__(spec, params, lrs)
        self.mean_square = [np.zeros_like(p) for p in params]

    def step(self, params, grads):
        rho, eps = self.spec.rho, self.spec.epsilon
        for p, g, s, tmp, lr in zip(params, grads, self.mean_square, self.scratch, self.lrs):
            np.square(g, out=tmp)
            tmp *= 1 - rho
            s *= rho
            s += tmp  # s = rho * s + (1 - rho) * g^2
            np.add(s, eps, out=tmp)
            np.sqrt(tmp, out=tmp)
            np.divide(g, tmp, out=tmp)
            tmp *= lr
            p -= tmp  # p -= lr * g / sqrt(s + eps)


class Adam(SGD):
    def __init__(self, spec, params, lrs):
        super().__init__(spec, params, lrs)
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]
        self.t = 0

    def step(self, params, grads):
        b1, b2, eps = self.spec.beta1, self.spec.beta2, self.spec.epsilon
        self.t += 1
        for p, g, m, v, tmp, lr in zip(params, grads, self.m, self.v, self.scratch, self.lrs):
            np.subtract(g, m, out=tmp)
            tmp *= 1 - b1
            m += tmp  # m += (1 - b1) (g - m)
            np.square(g, out=tmp)
            tmp -= v
            tmp *= 1 - b2
            v += tmp  # v += (1 - b2) (g^2 - v)
            alpha = lr * math.sqrt(1 - b2**self.t) / (1 - b1**self.t)  # a float keeps p's dtype
            np.sqrt(v, out=tmp)
            tmp += eps
            np.divide(m, tmp, out=tmp)
            tmp *= alpha
            p -= tmp  # p -= alpha m / (sqrt(v) + eps)


OPTIMIZERS = {"sgd": SGD, "momentum": Momentum, "rmsprop": RMSprop, "adam": Adam}


class ScratchMLP:
    """params = [W1, b1, W2, b2, ...]; the last pair is the output layer (logits)."""

    def __init__(
        self,
        model: ModelSpec,
        optimizer: OptimizerSpec,
        batch_size: int,
        weights: list[np.ndarray] | None = None,
        seed: int = 0,
        device: str = "cpu",
    ):
        self.xp = gpu_array_module() if device == "gpu" else np
        self.model = model
        self.batch_size = check_batch_size(batch_size)
        self.dtype = np.dtype(model.dtype)
        self.f, self.df = ACTIVATIONS[model.activation]
        self.params = [
            self.xp.array(w, dtype=self.dtype) for w in (weights or init_weights(model, seed))
        ]
        n_layers = len(self.params) // 2
        lrs = [lr for lr in optimizer.layer_lrs(n_layers) for _ in range(2)]  # W and b
        self.optimizer = OPTIMIZERS[optimizer.name](optimizer, self.params, lrs)

    @property
    def layers(self):
        return list(zip(self.params[0::2], self.params[1::2]))

    def forward(self, x):
        """Logits (B, 10) and every layer's input, which the backward pass needs."""
        inputs = [x]
        for W, b in self.layers[:-1]:
            z = inputs[-1] @ W  # (B, out)
            z += b  # in place: one (B, out) array per layer, not three
            inputs.append(self.f(z, out=z))
        W, b = self.layers[-1]
        z = inputs[-1] @ W
        z += b
        return z, inputs

    def loss(self, z, y):
        if self.model.loss == "cross_entropy":
            return softmax_cross_entropy(z, y)
        return mean_squared_error(z, y, self.model.output)

    def backward(self, inputs, dz):
        """Gradients [dW1, db1, ...] from dz = d(objective)/d(logits)."""
        grads = []
        for i in reversed(range(len(inputs))):
            W, _ = self.layers[i]
            x = inputs[i]  # (B, in)
            grads += [x.T @ dz, dz.sum(axis=0)]  # dW (in, out), db (out,)
            if i > 0:
                dz = (dz @ W.T) * self.df(x)  # (B, in)  back through the previous activation
        return [g for pair in zip(grads[-2::-2], grads[-1::-2]) for g in pair]  # dW1, db1, ...

    def objective_gradients(self, x, y):
        """Per-sample losses, logits and the gradients of the batch's training objective."""
        z, inputs = self.forward(x)
        losses, dz = self.loss(z, y)
        if self.model.reduction == "mean":
            dz /= len(y)
        return losses, z, self.backward(inputs, dz)

    def _sum_over_batches(self, step, x, y, batch_size):
        """Run step(xb, yb) -> (losses, logits) over in-order batches. Loss and correct count
        are summed where the arrays live and read once, so on a GPU no step waits for the
        host; returns the mean per-sample loss and the accuracy."""
        xp = self.xp
        x, y = xp.asarray(x), xp.asarray(y)  # NumPy on CPU: no copy; one transfer on a GPU
        total_loss, correct = xp.zeros((), np.float64), xp.zeros((), np.int64)
        for start in range(0, len(x), batch_size):
            xb, yb = x[start : start + batch_size], y[start : start + batch_size]
            losses, z = step(xb, yb)
            total_loss += losses.sum()
            correct += (z.argmax(axis=1) == yb).sum()
        return float(total_loss) / len(x), int(correct) / len(x)

    def _train_step(self, xb, yb):
        losses, z, grads = self.objective_gradients(xb, yb)
        self.optimizer.step(self.params, grads)
        return losses, z

    def _forward_step(self, xb, yb):
        z, _ = self.forward(xb)
        return self.loss(z, yb)[0], z

    def _gradient_step(self, xb, yb):
        return self.objective_gradients(xb, yb)[:2]

    def train_epoch(self, x, y):
        return self._sum_over_batches(self._train_step, x, y, self.batch_size)

    def phase_epoch(self, phase, x, y):
        """An epoch that stops each step after the forward pass ("forward") or after the
        backward pass ("gradients"), for the speed benchmark's breakdown."""
        step = self._forward_step if phase == "forward" else self._gradient_step
        self._sum_over_batches(step, x, y, self.batch_size)

    def evaluate(self, x, y):
        return self._sum_over_batches(self._forward_step, x, y, EVAL_BATCH_SIZE)

    def predict(self, x):
        x = self.xp.asarray(x)
        logits = [
            self.forward(x[i : i + EVAL_BATCH_SIZE])[0] for i in range(0, len(x), EVAL_BATCH_SIZE)
        ]
        return to_numpy(self.xp.concatenate(logits))

    def gradients(self, x, y):
        return [
            to_numpy(g) for g in self.objective_gradients(self.xp.asarray(x), self.xp.asarray(y))[2]
        ]

    def get_weights(self):
        return [to_numpy(p.copy()) for p in self.params]

    def set_weights(self, weights):
        for p, w in zip(self.params, weights, strict=True):
            p[...] = self.xp.asarray(w)


def to_numpy(a) -> np.ndarray:
    return a if array_module(a) is np else a.get()


build = ScratchMLP  # the module's entry point: build(model, optimizer, batch_size, weights, seed)
