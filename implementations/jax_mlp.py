"""The MLP in JAX: a pure function of a list of parameters, `jax.value_and_grad`, and optax
optimizers written to follow Keras' update rules (as the other implementations do).

The training step is jit-compiled, and a whole epoch is one compiled `lax.scan` over the
batches (plus one call for a last, shorter batch): Python runs once per epoch, and the loss
and correct counts are summed on the device and read once.
"""

from __future__ import annotations

import os
from functools import partial
from importlib import metadata

from implementations.base import EVAL_BATCH_SIZE
from implementations.native_logs import quiet_native_lines, quiet_native_logs
from implementations.spec import (
    CLASSES,
    ModelSpec,
    OptimizerSpec,
    SpecError,
    check_batch_size,
    started_with,
)

quiet_native_logs()  # before JAX's import, which would set 1 for TensorFlow too
with quiet_native_lines():
    import jax
    import jax.numpy as jnp
    import optax

import numpy as np  # noqa: E402

jax.config.update("jax_enable_x64", True)  # float64 models (dtypes stay explicit everywhere)

ACTIVATIONS = {"relu": jax.nn.relu, "sigmoid": jax.nn.sigmoid, "tanh": jnp.tanh}
INITIALIZERS = {
    "glorot_normal": jax.nn.initializers.glorot_normal,
    "glorot_uniform": jax.nn.initializers.glorot_uniform,
    "he_normal": jax.nn.initializers.he_normal,
}

# --- the framework verbs (implementations/__init__.py)

_settings: dict = {}  # what XLA's backend started with: it cannot change inside a process


def configure(threads: int | None, device: str) -> None:
    """Platform and CPU thread pool, before JAX's backend starts (its first computation)."""
    wanted = {"train.threads": threads, "device": device}
    if started_with("JAX", _settings, wanted):
        return
    if device == "cpu":
        jax.config.update("jax_platforms", "cpu")
        if threads and threads < (os.cpu_count() or threads):
            flags = f"--xla_cpu_multi_thread_eigen={str(threads > 1).lower()}"
            flags += f" intra_op_parallelism_threads={threads}"
            os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {flags}".strip()
    elif jax.default_backend() != "gpu":
        raise SpecError(
            "device=gpu but JAX sees no GPU; use device=cpu (a GPU machine needs jax[cuda12])"
        )
    _settings.update(wanted)


def synchronize() -> None:
    """A device runs its computations in order: once a new one is done, so is all before it."""
    (jnp.zeros(()) + 1).block_until_ready()


def device_peak_mb() -> float | None:
    stats = jax.devices()[0].memory_stats() or {}
    peak = stats.get("peak_bytes_in_use")
    return peak / 2**20 if peak is not None else None


def versions() -> dict[str, str]:
    return {name: metadata.version(name) for name in ("jax", "jaxlib", "optax")}


# --- optimizers: Keras' update rules as optax transformations


def scale_by_keras_adam(b1: float, b2: float, eps: float) -> optax.GradientTransformation:
    """Keras' Adam: m += (1 - b1)(g - m), v += (1 - b2)(g^2 - v), step m alpha / (sqrt(v) + eps)
    with alpha = sqrt(1 - b2^t) / (1 - b1^t). optax.adam puts eps inside the bias correction,
    which moves a run by more than the lockstep tolerance."""

    def init(params):
        m, v = (jax.tree.map(jnp.zeros_like, params) for _ in range(2))  # two buffers: donated
        return {"t": jnp.zeros((), jnp.int32), "m": m, "v": v}

    def update(grads, state, params=None):
        t = state["t"] + 1
        m = jax.tree.map(lambda m, g: m + (1 - b1) * (g - m), state["m"], grads)
        v = jax.tree.map(lambda v, g: v + (1 - b2) * (g * g - v), state["v"], grads)

        def step(m, v):
            tt = t.astype(m.dtype)
            return m * (jnp.sqrt(1 - b2**tt) / (1 - b1**tt)) / (jnp.sqrt(v) + eps)

        return jax.tree.map(step, m, v), {"t": t, "m": m, "v": v}

    return optax.GradientTransformation(init, update)


def transformation(spec: OptimizerSpec, lr: float) -> optax.GradientTransformation:
    if spec.name == "sgd":
        return optax.sgd(lr)
    if spec.name == "momentum":  # optax's trace t = g + mu t is Keras' velocity / -lr
        return optax.sgd(lr, momentum=spec.momentum)
    if spec.name == "rmsprop":  # s = rho s + (1 - rho) g^2; g / sqrt(s + eps): Keras' rule
        return optax.rmsprop(lr, decay=spec.rho, eps=spec.epsilon, eps_in_sqrt=True)
    return optax.chain(scale_by_keras_adam(spec.beta1, spec.beta2, spec.epsilon), optax.scale(-lr))


def optimizer_for(spec: OptimizerSpec, n_layers: int) -> optax.GradientTransformation:
    """One transformation, or one per learning rate when the output layer has its own."""
    if spec.output_lr is None:
        return transformation(spec, spec.lr)
    labels = ["hidden"] * (2 * n_layers - 2) + ["output"] * 2  # W and b of each layer
    return optax.multi_transform(
        {"hidden": transformation(spec, spec.lr), "output": transformation(spec, spec.output_lr)},
        labels,
    )


# --- the network


def per_sample_loss(model: ModelSpec):
    """loss(z, y) -> (B,): softmax cross-entropy from logits, or the squared error of the
    output, summed over the classes (squared_error) or averaged (Keras' mse)."""
    if model.loss == "cross_entropy":
        return optax.softmax_cross_entropy_with_integer_labels
    output = jax.nn.sigmoid if model.output == "sigmoid" else (lambda z: z)
    over_classes = jnp.sum if model.loss == "squared_error" else jnp.mean

    def squared_error(z, y):
        target = jax.nn.one_hot(y, CLASSES, dtype=z.dtype)
        return over_classes(jnp.square(output(z) - target), axis=1)

    return squared_error


def framework_weights(model: ModelSpec, seed: int) -> list[np.ndarray]:
    """Initial weights drawn by JAX's own initializers (used outside lockstep)."""
    weights = []
    root = jax.random.key(seed)
    keys = jax.random.split(root, len(model.sizes) - 1)
    bias_keys = jax.random.split(jax.random.fold_in(root, 1), len(model.sizes) - 1)
    for key, key_b, fan_in, fan_out in zip(keys, bias_keys, model.sizes[:-1], model.sizes[1:]):
        if model.init == "normal":
            init = jax.nn.initializers.normal(model.init_std)
        else:
            init = INITIALIZERS[model.init]()
        if model.bias_init == "normal":
            bias_init = jax.nn.initializers.normal(model.init_std)
        else:
            bias_init = jax.nn.initializers.zeros
        weights += [
            np.asarray(init(key, (fan_in, fan_out), model.dtype)),
            np.asarray(bias_init(key_b, (fan_out,), model.dtype)),
        ]
    return weights


class JaxMLP:
    """params = [W1, b1, W2, b2, ...], a list of jax arrays; the last pair makes the logits."""

    def __init__(
        self,
        model: ModelSpec,
        optimizer: OptimizerSpec,
        batch_size: int,
        weights: list[np.ndarray] | None = None,
        seed: int = 0,
        scan: bool = True,
    ):
        self.batch_size = check_batch_size(batch_size)
        self.scan_epochs = scan  # False: one compiled call per step, driven from Python
        self.dtype = jnp.dtype(model.dtype)
        self.model = model
        self.f = ACTIVATIONS[model.activation]
        self.loss_fn = per_sample_loss(model)
        weights = weights if weights is not None else framework_weights(model, seed)
        self.params = [jnp.asarray(w, self.dtype) for w in weights]
        self.tx = optimizer_for(optimizer, len(self.params) // 2)
        self.opt_state = self.tx.init(self.params)

    def logits(self, params, x):
        for W, b in zip(params[0:-2:2], params[1:-2:2]):
            x = self.f(x @ W + b)  # (B, out)
        return x @ params[-2] + params[-1]  # (B, 10)

    def objective(self, params, x, y):
        z = self.logits(params, x)
        losses = self.loss_fn(z, y)  # (B,)
        total = losses.sum() if self.model.reduction == "sum" else losses.mean()
        return total, (losses, z)

    @staticmethod
    def totals(losses, z, y):
        """The batch's summed loss and its count of correct predictions."""
        return losses.sum(), (z.argmax(axis=1) == y).sum()

    def train_step(self, carry, batch):
        params, opt_state = carry
        x, y = batch
        grads, (losses, z) = jax.grad(self.objective, has_aux=True)(params, x, y)
        updates, opt_state = self.tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), self.totals(losses, z, y)

    def forward_step(self, carry, batch):
        z = self.logits(carry[0], batch[0])
        return carry, self.totals(self.loss_fn(z, batch[1]), z, batch[1])

    def gradient_step(self, carry, batch):
        grads, (losses, z) = jax.grad(self.objective, has_aux=True)(carry[0], *batch)
        loss, correct = self.totals(losses, z, batch[1])
        checksum = sum(g.sum() for g in grads)  # keeps the backward pass in the compiled step
        return carry, (loss + 1e-30 * checksum, correct)

    @partial(jax.jit, static_argnums=(0, 1), donate_argnums=(2, 3))
    def scan(self, step, params, opt_state, xs, ys):
        """Runs `step` over the batches xs (n, B, 784), ys (n, B) in one compiled loop."""
        (params, opt_state), (loss, correct) = jax.lax.scan(step, (params, opt_state), (xs, ys))
        return params, opt_state, loss.sum(), correct.sum()

    def _epoch(self, step, x, y, batch_size):
        """In-order batches: full ones in one scan, then the shorter last one (or, without
        scan, each batch its own call)."""
        full = len(x) // batch_size * batch_size
        total_loss, correct = 0.0, 0
        if self.scan_epochs:
            chunks = [
                (x[:full].reshape(-1, batch_size, x.shape[1]), y[:full].reshape(-1, batch_size)),
                (x[full:][None], y[full:][None]),
            ]
        else:
            starts = range(0, len(x), batch_size)
            chunks = [(x[i : i + batch_size][None], y[i : i + batch_size][None]) for i in starts]
        for xs, ys in chunks:
            if ys.size:
                self.params, self.opt_state, loss, hits = self.scan(
                    step, self.params, self.opt_state, xs, ys.astype(np.int32)
                )
                total_loss, correct = total_loss + loss, correct + hits
        return float(total_loss) / len(x), int(correct) / len(x)  # the epoch's one host sync

    def __hash__(self):  # jit's static self: one compiled function per network
        return id(self)

    def __eq__(self, other):
        return self is other

    def train_epoch(self, x, y):
        return self._epoch(self.train_step, x, y, self.batch_size)

    def evaluate(self, x, y):
        return self._epoch(self.forward_step, x, y, EVAL_BATCH_SIZE)

    def phase_epoch(self, phase, x, y):
        """An epoch of steps stopped after the forward or the backward pass (speed benchmark)."""
        step = self.forward_step if phase == "forward" else self.gradient_step
        self._epoch(step, x, y, self.batch_size)

    def predict(self, x):
        logits = jax.jit(self.logits)
        return np.concatenate(
            [
                np.asarray(logits(self.params, x[i : i + EVAL_BATCH_SIZE]))
                for i in range(0, len(x), EVAL_BATCH_SIZE)
            ]
        )

    def gradients(self, x, y):
        grads, _ = jax.grad(self.objective, has_aux=True)(self.params, x, y.astype(np.int32))
        return [np.asarray(g) for g in grads]

    def get_weights(self):
        return [np.asarray(p) for p in self.params]

    def set_weights(self, weights):
        self.params = [jnp.asarray(w, self.dtype) for w in weights]


# the speed benchmark's other settings: a compiled step called once per batch from Python
VARIANTS = {"per_step": {"scan": False}}

build = JaxMLP  # the module's entry point: build(model, optimizer, batch_size, weights, seed)
