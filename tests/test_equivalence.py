"""Same initial weights, same batches: the three implementations follow one trajectory.

float64 with hyperparameters exactly representable in float32: Keras casts Python-float
hyperparameters (0.9, 0.999, 1e-3) through float32 before using them in float64, which alone
moves an Adam run by ~1e-5 after one epoch. With exact values the implementations agree to
~1e-14 (measured); the tolerance below is 1e-9. In float32 they agree to about 1e-4 after an
epoch (summation order), which the float32 test allows. Keras reports its loss through a
float32 metric even in a float64 model, so reported losses are compared to LOSS_RTOL.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from implementations.spec import ModelSpec, OptimizerSpec, init_weights
from tests.helpers import NAMES, build

EXACT = dict(lr=2**-7, momentum=0.875, rho=0.875, beta1=0.875, beta2=1 - 2**-10, epsilon=2**-23)
PAIRS = list(itertools.combinations(NAMES, 2))
CASES = {
    "sgd-sigmoid-ce": (ModelSpec(hidden=(32, 16), activation="sigmoid", init="normal"), "sgd"),
    "momentum-relu-ce-sum": (
        ModelSpec(hidden=(32,), activation="relu", reduction="sum"),
        "momentum",
    ),
    "rmsprop-tanh-ce": (ModelSpec(hidden=(32, 16), activation="tanh"), "rmsprop"),
    "adam-relu-mse": (
        ModelSpec(hidden=(24,), activation="relu", loss="mse", output="sigmoid"),
        "adam",
    ),
    # simple_network's objective: squared error summed over classes and batch, normal biases
    "sgd-sigmoid-squared_error-sum": (
        ModelSpec(
            hidden=(24, 16),
            activation="sigmoid",
            loss="squared_error",
            output="sigmoid",
            reduction="sum",
            init="normal",
            init_std=1.0,
            bias_init="normal",
        ),
        "sgd",
    ),
    "momentum-tanh-squared_error-linear": (
        ModelSpec(hidden=(24,), activation="tanh", loss="squared_error", output="linear"),
        "momentum",
    ),
}
BATCH = 50
LOSS_RTOL = 1e-6


def first_divergence(label: str, a: list, b: list, rtol: float, atol: float) -> str | None:
    """Names the first layer and parameter whose arrays differ beyond the tolerance."""
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        if not np.allclose(x, y, rtol=rtol, atol=atol):
            kind = "W" if i % 2 == 0 else "b"
            return (
                f"{label}: layer {i // 2 + 1} {kind} differs, max |diff| "
                f"{np.max(np.abs(x - y)):.3g} (rtol {rtol}, atol {atol})"
            )
    return None


def check_lockstep(pair, model, opt, data, dtype, rtol, atol, steps=3):
    x, y = data
    x = x.astype(dtype)
    model = ModelSpec(**{**model.__dict__, "dtype": dtype})
    weights = init_weights(model, seed=7)
    nets = [build(name, model, opt, BATCH, weights, 0) for name in pair]
    names = " vs ".join(pair)
    for step in range(steps):
        xb, yb = x[step * BATCH : (step + 1) * BATCH], y[step * BATCH : (step + 1) * BATCH]
        grads = [net.gradients(xb, yb) for net in nets]
        if msg := first_divergence(f"{names}, step {step} gradients", *grads, rtol, atol):
            return msg
        losses = [net.train_epoch(xb, yb)[0] for net in nets]
        if not np.isclose(*losses, rtol=max(rtol, LOSS_RTOL), atol=atol):
            return f"{names}, step {step} loss: {losses[0]!r} vs {losses[1]!r}"
        if msg := first_divergence(
            f"{names}, step {step} weights", *[n.get_weights() for n in nets], rtol, atol
        ):
            return msg
    epoch = [net.train_epoch(x, y) for net in nets]
    if not np.isclose(epoch[0][0], epoch[1][0], rtol=max(rtol, LOSS_RTOL), atol=atol):
        return f"{names}, epoch loss: {epoch[0][0]!r} vs {epoch[1][0]!r}"
    return first_divergence(
        f"{names}, after one epoch weights", *[n.get_weights() for n in nets], rtol, atol
    )


@pytest.fixture(scope="module")
def subset(mnist):
    from bench.data import prepare

    s = prepare(mnist, n_train=1000, dtype="float64")
    return s.x_train, s.y_train


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("pair", PAIRS, ids=["-".join(p) for p in PAIRS])
def test_lockstep_float64(pair, case, subset):
    model, opt_name = CASES[case]
    msg = check_lockstep(
        pair, model, OptimizerSpec(name=opt_name, **EXACT), subset, "float64", rtol=1e-9, atol=1e-12
    )
    assert msg is None, msg


@pytest.mark.parametrize("pair", PAIRS, ids=["-".join(p) for p in PAIRS])
def test_lockstep_float32_keras_defaults(pair, subset):
    model = ModelSpec(hidden=(64,), activation="relu")
    msg = check_lockstep(
        pair, model, OptimizerSpec(name="rmsprop"), subset, "float32", rtol=1e-3, atol=1e-4
    )
    assert msg is None, msg


@pytest.mark.parametrize("opt_name", ["sgd", "momentum"])
@pytest.mark.parametrize("pair", PAIRS, ids=["-".join(p) for p in PAIRS])
def test_lockstep_with_an_output_layer_rate(pair, opt_name, subset):
    """optimizer.output_lr (relu_mcp): the scratch network updates two flat parameter groups,
    each at its own rate; tf_tape and Keras' own train_step scale the output layer's
    gradients, jax gives it an optimizer of its own."""
    opt = OptimizerSpec(name=opt_name, **{**EXACT, "output_lr": 2**-4})
    model = ModelSpec(hidden=(32, 16), activation="relu")
    msg = check_lockstep(pair, model, opt, subset, "float64", rtol=1e-9, atol=1e-12)
    assert msg is None, msg


@pytest.mark.parametrize("name", NAMES)
def test_output_layer_rate_changes_the_step(name, subset):
    """The per-layer rate reaches the update: the output layer moves 8x as far as with one
    rate, the hidden layers exactly as far (plain SGD is linear in the rate)."""
    x, y = subset
    model = ModelSpec(hidden=(16,), activation="relu", dtype="float64")
    weights = init_weights(model, seed=7)
    moved = []
    for output_lr in (None, 2**-4):
        opt = OptimizerSpec(name="sgd", **{**EXACT, "output_lr": output_lr})
        net = build(name, model, opt, BATCH, weights, 0)
        net.train_epoch(x[:BATCH], y[:BATCH])
        moved.append([w - w0 for w, w0 in zip(net.get_weights(), weights)])
    (hidden_W, hidden_b, out_W, out_b), (hidden_W2, hidden_b2, out_W2, out_b2) = moved
    np.testing.assert_allclose(hidden_W2, hidden_W, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(out_W2, 8 * out_W, rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(out_b2, 8 * out_b, rtol=1e-9, atol=1e-15)


def test_check_detects_a_perturbed_implementation(subset):
    """The check itself can fail: nudge one weight of one network and it names that layer."""
    model, opt = ModelSpec(hidden=(16, 8)), OptimizerSpec(name="sgd", **EXACT)
    model = ModelSpec(**{**model.__dict__, "dtype": "float64"})
    weights = init_weights(model, seed=7)
    a = build("numpy", model, opt, BATCH, weights, 0)
    nudged = [w.copy() for w in weights]
    nudged[2][3, 4] += 1e-6
    b = build("numpy", model, opt, BATCH, nudged, 0)
    x, y = subset
    msg = first_divergence("numpy vs nudged", a.get_weights(), b.get_weights(), 1e-9, 1e-12)
    assert msg is not None and "layer 2 W" in msg
    a.train_epoch(x, y)
    b.train_epoch(x, y)
    assert first_divergence("after", a.get_weights(), b.get_weights(), 1e-9, 1e-12)
