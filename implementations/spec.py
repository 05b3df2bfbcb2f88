"""The model and optimizer every implementation builds, validated once before any training.

Names and formulas follow Keras (its optimizers' update rules, its `mse` = mean over
classes), so the scratch network can match the frameworks step for step.

The losses, per sample, on the output activation a = output(z) and the one-hot target t:
    cross_entropy   -log softmax(z)[y]
    mse             mean_k (a_k - t_k)^2    Keras' `mse`: a mean over the 10 classes
    squared_error   sum_k (a_k - t_k)^2     the tutorials' L2 loss ||a - t||^2, whose gradient
                                            is 2 (a - t): ten times mse's
`reduction` then takes the mean or the sum of the per-sample losses over a batch; the
tutorials' `np.sum(np.square(a - t))` with gradient `2 (a - t)` is squared_error, sum.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ACTIVATIONS = ("relu", "sigmoid", "tanh")
OUTPUTS = {
    "cross_entropy": ("softmax",),
    "mse": ("sigmoid", "linear"),
    "squared_error": ("sigmoid", "linear"),
}
REDUCTIONS = ("mean", "sum")
INITS = ("glorot_normal", "glorot_uniform", "he_normal", "normal")
BIAS_INITS = ("zeros", "normal")
DTYPES = ("float32", "float64")
OPTIMIZERS = ("adam", "momentum", "rmsprop", "sgd")
INPUTS, CLASSES = 784, 10


class SpecError(ValueError):
    """A setting no implementation (or not this one) can run; the message is one line."""


def started_with(framework: str, started: dict, wanted: dict) -> bool:
    """True when the framework's process settings were already applied (`started`, empty
    before); a SpecError when `wanted` differs, since they cannot change inside one process."""
    for key, value in wanted.items():
        if started and started[key] != value:
            raise SpecError(
                f"{key}={value} cannot change inside one process ({framework} started with "
                f"{started[key]}); run it as its own command or with hydra/launcher=joblib"
            )
    return bool(started)


def _choice(key: str, value, allowed) -> None:
    if value not in allowed:
        raise SpecError(f"{key}={value!r} is not supported; allowed: {', '.join(allowed)}")


def _positive(key: str, value, kind=float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise SpecError(f"{key}={value!r} must be a positive {kind.__name__}")
    if kind is int and int(value) != value:
        raise SpecError(f"{key}={value!r} must be a positive int")


@dataclass(frozen=True)
class ModelSpec:
    """An MLP [784, *hidden, 10] that outputs logits; the loss applies the output activation."""

    hidden: tuple[int, ...] = (512,)
    activation: str = "relu"
    output: str = "softmax"
    loss: str = "cross_entropy"
    reduction: str = "mean"  # of the per-sample losses over a batch: the training objective
    init: str = "glorot_uniform"
    init_std: float = 0.05  # the standard deviation of init="normal" and bias_init="normal"
    bias_init: str = "zeros"  # or "normal": N(0, init_std), as the tutorials draw biases
    dtype: str = "float32"

    def __post_init__(self):
        object.__setattr__(self, "hidden", tuple(self.hidden))
        if not self.hidden:
            raise SpecError("model.hidden=[] is empty; give at least one hidden layer size")
        for size in self.hidden:
            _positive("model.hidden", size, int)
        _choice("model.activation", self.activation, ACTIVATIONS)
        _choice("model.loss", self.loss, tuple(OUTPUTS))
        _choice(f"model.output (with loss {self.loss})", self.output, OUTPUTS[self.loss])
        _choice("model.reduction", self.reduction, REDUCTIONS)
        _choice("model.init", self.init, INITS)
        _positive("model.init_std", self.init_std)
        _choice("model.bias_init", self.bias_init, BIAS_INITS)
        _choice("model.dtype", self.dtype, DTYPES)

    @property
    def sizes(self) -> list[int]:
        return [INPUTS, *self.hidden, CLASSES]


@dataclass(frozen=True)
class OptimizerSpec:
    """Keras' optimizers and defaults; `output_lr` gives the output layer its own rate."""

    name: str = "rmsprop"
    lr: float = 1e-3
    output_lr: float | None = None
    momentum: float = 0.9  # only for name="momentum"
    rho: float = 0.9
    beta1: float = 0.9
    beta2: float = 0.999
    epsilon: float = 1e-7

    def __post_init__(self):
        _choice("optimizer.name", self.name, OPTIMIZERS)
        _positive("optimizer.lr", self.lr)
        if self.output_lr is not None:
            _positive("optimizer.output_lr", self.output_lr)
            if self.name not in ("sgd", "momentum"):
                raise SpecError(
                    f"optimizer.output_lr is only exact for sgd and momentum, not {self.name!r}"
                )
        for key in ("momentum", "rho", "beta1", "beta2"):
            value = getattr(self, key)
            if not 0 <= value < 1:
                raise SpecError(f"optimizer.{key}={value!r} must be in [0, 1)")
        _positive("optimizer.epsilon", self.epsilon)

    def layer_lrs(self, n_layers: int) -> list[float]:
        """Learning rate per dense layer (the last one is the output layer)."""
        last = self.lr if self.output_lr is None else self.output_lr
        return [self.lr] * (n_layers - 1) + [last]


def check_batch_size(batch_size) -> int:
    _positive("train.batch_size", batch_size, int)
    return int(batch_size)


def init_weights(spec: ModelSpec, seed: int) -> list[np.ndarray]:
    """[W1, b1, W2, b2, ...] drawn in NumPy; in lockstep every implementation starts here.
    Each layer draws W, then (bias_init="normal") b, from one generator; zero biases draw
    nothing, so their weights are those of a spec without the option."""
    rng = np.random.default_rng(seed)
    weights = []
    for fan_in, fan_out in zip(spec.sizes[:-1], spec.sizes[1:]):
        if spec.init == "normal":
            W = rng.normal(0.0, spec.init_std, (fan_in, fan_out))
        elif spec.init == "glorot_normal":
            W = rng.normal(0.0, np.sqrt(2.0 / (fan_in + fan_out)), (fan_in, fan_out))
        elif spec.init == "glorot_uniform":
            limit = np.sqrt(6.0 / (fan_in + fan_out))
            W = rng.uniform(-limit, limit, (fan_in, fan_out))
        else:  # he_normal
            W = rng.normal(0.0, np.sqrt(2.0 / fan_in), (fan_in, fan_out))
        if spec.bias_init == "normal":
            b = rng.normal(0.0, spec.init_std, fan_out)
        else:
            b = np.zeros(fan_out)
        weights += [W.astype(spec.dtype), b.astype(spec.dtype)]
    return weights
