"""The tutorials the presets reproduce, in every implementation: their objective, batch order
and initialization as options, each preset running everywhere, and the scratch network
learning XOR (the first Kaggle notebook's warm-up) through the same code path as MNIST."""

from __future__ import annotations

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from bench.job.harness import Shuffler, epoch_order, run_job
from bench.job.settings import ConfigError, job_from_config
from bench.job.setup import load_data
from bench.report.numbers.tables import PUBLISHED
from bench.tracking.model import framework_model
from implementations import registry
from implementations.spec import ModelSpec, OptimizerSpec, SpecError, init_weights
from tests.conftest import ROOT
from tests.helpers import NAMES, build

PRESETS = sorted(p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml"))
TUTORIALS = sorted(PUBLISHED)


def compose_cfg(*overrides: str):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("config", overrides=list(overrides))


# --- the tutorial's own SimpleNetwork step (Packt), transcribed: a reference to match


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def tutorial_step(weights, x, y, lr):
    """One batch of the tutorial's training loop: sigmoid layers, loss_L2 =
    sum((pred - target)^2) / batch, its derivative 2 (pred - target) (no division), and
    W -= lr dL/dW per layer. Returns the new weights and the reported loss."""
    Ws, bs = weights[0::2], weights[1::2]
    xs, a = [], x
    for W, b in zip(Ws, bs):
        xs.append(a)
        a = sigmoid(a @ W + b)
    target = np.eye(10)[y]
    loss = np.sum(np.square(a - target)) / a.shape[0]
    dL_dy = 2 * (a - target)
    new = []
    for W, b, x_in, y_out in reversed(list(zip(Ws, bs, xs, [*xs[1:], a]))):
        dL_dz = dL_dy * y_out * (1 - y_out)
        dL_dy = dL_dz @ W.T
        new = [W - lr * x_in.T @ dL_dz, b - lr * np.ones(len(x_in)) @ dL_dz, *new]
    return new, loss


SIMPLE = ModelSpec(
    hidden=(16, 8),
    activation="sigmoid",
    output="sigmoid",
    loss="squared_error",
    reduction="sum",
    init="normal",
    init_std=1.0,
    bias_init="normal",
    dtype="float64",
)


@pytest.fixture(scope="module")
def subset(mnist):
    from bench.data import prepare

    s = prepare(mnist, n_train=300, val_size=0, dtype="float64")
    return s.x_train, s.y_train


def test_scratch_network_takes_the_tutorials_steps(subset):
    """squared_error + reduction=sum + bias_init=normal is the tutorial's update, step for
    step; Keras' mse would take a tenth of each step."""
    x, y = subset
    weights = init_weights(SIMPLE, seed=0)
    lr = 1e-3
    net = build("numpy", SIMPLE, OptimizerSpec(name="sgd", lr=lr), 30, weights, 0)
    mse = ModelSpec(**{**SIMPLE.__dict__, "loss": "mse"})
    tenth = build("numpy", mse, OptimizerSpec(name="sgd", lr=lr), 30, weights, 0)
    for g, g_mse in zip(net.gradients(x[:30], y[:30]), tenth.gradients(x[:30], y[:30])):
        np.testing.assert_allclose(g, 10 * g_mse, rtol=1e-12, atol=1e-15)
    ref = weights
    for start in range(0, 90, 30):
        xb, yb = x[start : start + 30], y[start : start + 30]
        ref, ref_loss = tutorial_step(ref, xb, yb, lr)
        loss, _ = net.train_epoch(xb, yb)
        assert np.isclose(loss, ref_loss, rtol=1e-12)  # mean per-sample loss = loss_L2
        for ours, theirs in zip(net.get_weights(), ref, strict=True):
            np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-13)


# --- bias_init


@pytest.mark.parametrize("init", ["normal", "glorot_uniform"])
def test_normal_biases_are_drawn_like_the_weights_and_leave_the_weights_alone(init):
    zeros = ModelSpec(hidden=(512, 256), init=init, init_std=0.5)
    normal = ModelSpec(hidden=(512, 256), init=init, init_std=0.5, bias_init="normal")
    a, b = init_weights(zeros, seed=3), init_weights(normal, seed=3)
    np.testing.assert_array_equal(a[0], b[0])  # W1 before any bias is drawn
    assert all(not bias.any() for bias in a[1::2])
    assert np.std(b[1]) == pytest.approx(0.5, rel=0.1) and abs(np.mean(b[1])) < 0.1
    assert b[1].dtype == np.float32 and not np.array_equal(b[1][:256], b[3])


@pytest.mark.parametrize("name", NAMES)
def test_each_framework_draws_normal_biases_with_its_own_initializer(name):
    """Outside lockstep (weights=None) every framework draws the biases itself."""
    spec = ModelSpec(hidden=(400,), init="normal", init_std=2.0, bias_init="normal")
    net = build(name, spec, OptimizerSpec(name="sgd"), 32, None, 0)
    b1 = net.get_weights()[1]
    assert b1.shape == (400,) and np.std(b1) == pytest.approx(2.0, rel=0.15)
    plain = build(name, ModelSpec(hidden=(400,)), OptimizerSpec(name="sgd"), 32, None, 0)
    assert not plain.get_weights()[1].any()


def test_bad_bias_init_is_one_line():
    with pytest.raises(SpecError) as info:
        ModelSpec(bias_init="uniform")
    assert str(info.value) == ("model.bias_init='uniform' is not supported; allowed: zeros, normal")


# --- train.shuffle: the harness decides the order; implementations never see the option


def test_without_shuffle_every_epoch_is_the_training_sets_own_order():
    x, y = np.arange(20.0).reshape(10, 2), np.arange(10)
    assert np.array_equal(epoch_order(0, 1, 10, shuffle=False), np.arange(10))
    assert np.array_equal(epoch_order(0, 7, 10, shuffle=False), np.arange(10))
    fixed, shuffled = Shuffler(x, y, 0, shuffle=False), Shuffler(x, y, 0)
    for epoch in (1, 2):
        bx, by = fixed.epoch(epoch)
        np.testing.assert_array_equal(bx, x)
        np.testing.assert_array_equal(by, y)
    assert not np.array_equal(shuffled.epoch(1)[1], y)


def test_train_shuffle_reaches_the_job():
    assert job_from_config(compose_cfg()).shuffle is True
    assert job_from_config(compose_cfg("+experiment=simple_network")).shuffle is False
    with pytest.raises(ConfigError) as info:
        job_from_config(compose_cfg("train.shuffle=maybe"))
    assert str(info.value) == "train.shuffle='maybe' must be true or false"


# --- every preset in every implementation


def test_the_tutorial_presets_are_the_ones_with_published_accuracies():
    assert set(TUTORIALS) <= set(PRESETS)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("preset", TUTORIALS)
def test_every_tutorial_runs_in_every_implementation(preset, name):
    """The preset's own model, optimizer (per-layer rates included), batch size and batch
    order, through the job's path, for one epoch of a subset: nothing is refused."""
    cfg = compose_cfg(
        f"+experiment={preset}", f"implementation={name}", "dataset.n_train=600", "train.epochs=1"
    )
    job = job_from_config(cfg)
    result = run_job(job, [])
    assert len(result.history) == 1 and np.isfinite(result.metrics["test_loss"])
    # the framework's own model, as MLflow logs it (Keras: relu_mcp's per-layer-rate model)
    if (native := framework_model(job, result.network)) is not None:
        x = load_data(job)[1].x_test[:64]
        np.testing.assert_allclose(
            native.predict(x, verbose=0), result.network.predict(x), rtol=1e-5, atol=1e-6
        )


@pytest.mark.parametrize("value", [0, -3, 2.5, True])
def test_bad_keras_steps_per_execution_is_one_line(value):
    with pytest.raises(SpecError) as info:
        build("keras", ModelSpec(), OptimizerSpec(), 32, None, 0, steps_per_execution=value)
    assert str(info.value) == (
        f"implementation.options.steps_per_execution={value!r} must be a positive int"
    )


# --- XOR: the first Kaggle notebook's warm-up, through the MNIST interface


def xor_data(repeats: int = 8):
    """The four XOR cases as 784-vectors: the two bits in the first two inputs, the rest 0;
    the label (0 or 1) is one of the 10 classes, so the network is the MNIST one."""
    bits = np.array([[0, 0], [0, 1], [1, 0], [1, 1]] * repeats, dtype=np.float64)
    x = np.zeros((len(bits), 784))
    x[:, :2] = bits
    return x, (bits[:, 0] != bits[:, 1]).astype(np.int32)


def test_scratch_network_learns_xor_through_the_mnist_code_path():
    x, y = xor_data()
    model = ModelSpec(hidden=(8,), activation="tanh", init="glorot_uniform", dtype="float64")
    net = registry()["numpy"].build(model, OptimizerSpec(name="adam", lr=0.05), 4, None, 0)
    before = net.evaluate(x, y)[1]
    for _ in range(100):
        net.train_epoch(x, y)
    loss, accuracy = net.evaluate(x, y)
    assert before < 1.0  # it had to learn it
    assert accuracy == 1.0 and loss < 0.05, (loss, accuracy)
    assert set(net.predict(x).argmax(axis=1)) == {0, 1}


def test_keras_steps_per_execution_changes_the_speed_not_the_steps(subset):
    """Batches per call into fit's compiled step: the same updates, bitwise, with a last
    call shorter than the others (300 samples, batch 30: 10 steps, 4 per call)."""
    x, y = subset
    weights = init_weights(SIMPLE, seed=0)
    opt = OptimizerSpec(name="sgd", lr=1e-3, output_lr=2e-3)
    nets = [
        build("keras", SIMPLE, opt, 30, weights, 0, steps_per_execution=steps) for steps in (1, 4)
    ]
    losses = [net.train_epoch(x, y)[0] for net in nets]
    assert losses[0] == losses[1]
    for a, b in zip(*(net.get_weights() for net in nets), strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(nets[0].get_weights()[0], weights[0])
