"""The MLP from scratch in NumPy: forward, backward and optimizers written by hand.

Notation: B batch size, x (B, in) a layer's input, W (in, out), b (out,), z = x @ W + b the
pre-activation, a = f(z) the activation. Layers come from `sizes = [784, *hidden, 10]`.
The network outputs logits; the loss applies the output activation (softmax or sigmoid).
Every operation works on the whole batch: there is no Python loop over samples. The
optimizers, with what makes them fast, are in implementations/numpy_optimizers.py.

Read top-down: activations, losses, the network (forward, backward, the training step), its
framework verbs; last, the CuPy helpers. With device=gpu the same code runs on CuPy arrays:
NumPy's ufuncs (np.multiply(..., out=), np.tanh, ...) dispatch to CuPy for CuPy inputs, and the
few calls that create arrays take the array module `xp` (numpy on CPU: plain NumPy).
"""

from __future__ import annotations

import sys
import time

import numpy as np

from implementations.base import EVAL_BATCH_SIZE
from implementations.numpy_optimizers import OPTIMIZERS, lr_groups
from implementations.spec import (
    CLASSES,
    ModelSpec,
    OptimizerSpec,
    SpecError,
    check_batch_size,
    init_weights,
)

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


def softmax_cross_entropy(z, y):
    shifted = z - z.max(axis=1, keepdims=True)  # (B, 10) stable: exp never overflows
    dz = np.exp(shifted)
    total = dz.sum(axis=1, keepdims=True)  # (B, 1)
    rows = array_module(z).arange(len(y))
    losses = np.log(total[:, 0]) - shifted[rows, y]  # (B,)  -log softmax(z)[y]
    dz /= total  # (B, 10)  softmax(z), from the same exponentials
    dz[rows, y] -= 1  # softmax - onehot
    return losses, dz


def squared_error(z, y, output, over_classes="sum"):
    """sum_k (a_k - t_k)^2, the tutorials' L2 loss; over_classes="mean" is Keras' mse."""
    f, df = ACTIVATIONS[output]
    a = f(z)  # (B, 10)
    diff = a - array_module(a).eye(CLASSES, dtype=a.dtype)[y]  # (B, 10)  minus one-hot
    scale = 1 / a.shape[1] if over_classes == "mean" else 1
    losses = scale * (diff * diff).sum(axis=1)  # (B,)
    dz = (2 * scale) * diff * df(a)  # (B, 10)  d/da (a - t)^2 = 2 (a - t), then back through f
    return losses, dz


LOSSES = {
    "cross_entropy": lambda z, y, output: softmax_cross_entropy(z, y),
    "mse": lambda z, y, output: squared_error(z, y, output, over_classes="mean"),
    "squared_error": squared_error,
}

# --- the network: forward and backward over the layers, one optimizer step per batch


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
        self.params, self.grads, flat = self._flat_views(weights or init_weights(model, seed))
        n_layers = len(self.params) // 2
        lrs = [lr for lr in optimizer.layer_lrs(n_layers) for _ in range(2)]  # W and b
        self.optimizer = OPTIMIZERS[optimizer.name](optimizer, lr_groups(*flat, self.params, lrs))

    def _flat_views(self, weights):
        """Parameters and gradients as views into one flat array each: the backward pass
        writes into the gradient views, and the optimizer updates everything in a few
        whole-array passes instead of a few per parameter."""
        xp = self.xp
        flat = xp.empty(sum(w.size for w in weights), self.dtype)
        flat_grads = xp.empty_like(flat)
        params, grads, start = [], [], 0
        for w in weights:
            end = start + w.size
            params.append(flat[start:end].reshape(w.shape))
            grads.append(flat_grads[start:end].reshape(w.shape))
            params[-1][...] = xp.asarray(w, dtype=self.dtype)
            start = end
        return params, grads, (flat, flat_grads)

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
        return LOSSES[self.model.loss](z, y, self.model.output)

    def backward(self, inputs, dz):
        """Gradients [dW1, db1, ...] from dz = d(objective)/d(logits), written into
        self.grads (the next step overwrites them)."""
        for i in reversed(range(len(inputs))):
            W, dW, db = self.params[2 * i], self.grads[2 * i], self.grads[2 * i + 1]
            x = inputs[i]  # (B, in)
            self.xp.matmul(x.T, dz, out=dW)  # (in, out)
            dz.sum(axis=0, out=db)  # (out,)
            if i > 0:
                dz = dz @ W.T  # (B, in)
                dz *= self.df(x)  # back through the previous activation
        return self.grads

    def forward_loss(self, x, y):
        """Per-sample losses, logits, every layer's input and dz = d(objective)/d(logits)."""
        z, inputs = self.forward(x)
        losses, dz = self.loss(z, y)
        if self.model.reduction == "mean":
            dz /= len(y)
        return losses, z, inputs, dz

    def objective_gradients(self, x, y):
        """Per-sample losses, logits and the gradients of the batch's training objective."""
        losses, z, inputs, dz = self.forward_loss(x, y)
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
        losses, z, _ = self.objective_gradients(xb, yb)
        self.optimizer.step()
        return losses, z

    def _forward_step(self, xb, yb):
        z, _ = self.forward(xb)
        return self.loss(z, yb)[0], z

    def _gradient_step(self, xb, yb):
        return self.objective_gradients(xb, yb)[:2]

    def train_epoch(self, x, y):
        return self._sum_over_batches(self._train_step, x, y, self.batch_size)

    def timed_train_epoch(self, x, y):
        """train_epoch, plus the seconds its steps spent in each phase, read inside the real
        steps (on a GPU each boundary waits for the device): the speed benchmark's breakdown,
        whose parts add up to no more than the epoch."""
        phases = dict.fromkeys(("forward", "backward", "update"), 0.0)
        sync = self.xp.cuda.Device().synchronize if self.xp is not np else (lambda: None)

        def step(xb, yb):
            t0 = time.perf_counter()
            losses, z, inputs, dz = self.forward_loss(xb, yb)
            sync()
            t1 = time.perf_counter()
            self.backward(inputs, dz)
            sync()
            t2 = time.perf_counter()
            self.optimizer.step()
            sync()
            t3 = time.perf_counter()
            phases["forward"] += t1 - t0
            phases["backward"] += t2 - t1
            phases["update"] += t3 - t2
            return losses, z

        return (*self._sum_over_batches(step, x, y, self.batch_size), phases)

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
            to_numpy(g.copy())
            for g in self.objective_gradients(self.xp.asarray(x), self.xp.asarray(y))[2]
        ]

    def get_weights(self):
        return [to_numpy(p.copy()) for p in self.params]

    def set_weights(self, weights):
        for p, w in zip(self.params, weights, strict=True):
            p[...] = self.xp.asarray(w)


# --- the framework verbs (implementations/__init__.py): NumPy needs none on a CPU, where the
# harness's BLAS thread limit is the budget; on a GPU they talk to CuPy


def configure(threads: int | None, device: str) -> None:
    if device == "gpu":
        gpu_array_module()  # a one-line error now, not after the data is loaded


def synchronize() -> None:
    import cupy

    cupy.cuda.Device().synchronize()


def device_peak_mb() -> float:
    import cupy

    return cupy.get_default_memory_pool().total_bytes() / 2**20  # the pool keeps its peak


def versions() -> dict[str, str]:
    found = {"numpy": np.__version__}
    if cupy := sys.modules.get("cupy"):
        found["cupy"] = cupy.__version__
        version = cupy.cuda.runtime.runtimeGetVersion()  # e.g. 12080
        found["cuda"] = f"{version // 1000}.{version % 1000 // 10}"
    return found


build = ScratchMLP  # the module's entry point: build(model, optimizer, batch_size, weights, seed)


# --- CuPy: the same code on a GPU (ufuncs dispatch to CuPy for CuPy arrays; array creation asks
# the array module)


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


def to_numpy(a) -> np.ndarray:
    return a if array_module(a) is np else a.get()
