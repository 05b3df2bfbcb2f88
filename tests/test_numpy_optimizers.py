"""The scratch network's fused optimizers against their textbook forms (`reference`), and
their state kept clear of subnormal floats."""

from __future__ import annotations

import numpy as np
import pytest

from implementations import numpy_optimizers
from implementations.spec import OptimizerSpec

SPEC = dict(momentum=0.875, rho=0.875, beta1=0.875, beta2=1 - 2**-10, epsilon=2**-23)


SIZES = (50, 7)


def two_groups(rng, dtype, sizes=SIZES):
    """Flat (parameters, gradients, lr) groups, the second with its own rate (an output layer)."""
    p, g = rng.normal(0, 1, sum(sizes)).astype(dtype), np.empty(sum(sizes), dtype)
    return [
        (p[: sizes[0]], g[: sizes[0]], 2**-7),
        (p[sizes[0] :], g[sizes[0] :], 2**-4),
    ], g


def group_states(opt, sizes=SIZES):
    """Per group, the textbook state, whether or not the optimizer cut it into blocks."""
    blocks = opt.state()
    flat = [np.concatenate([b[k] for b in blocks]) for k in range(len(blocks[0]))]
    return [tuple(a[: sizes[0]] for a in flat), tuple(a[sizes[0] :] for a in flat)]


@pytest.mark.parametrize("block", [numpy_optimizers.BLOCK, 16])
@pytest.mark.parametrize("name", sorted(numpy_optimizers.OPTIMIZERS))
def test_fused_step_follows_the_textbook_form(name, block, monkeypatch):
    """Whole groups, and groups cut into cache blocks (16 elements: 50 = 16 + 16 + 16 + 2)."""
    monkeypatch.setattr(numpy_optimizers, "BLOCK", block)
    rng = np.random.default_rng(0)
    spec = OptimizerSpec(name=name, **SPEC)
    groups, flat_g = two_groups(rng, np.float64)
    opt = numpy_optimizers.OPTIMIZERS[name](spec, groups)
    assert len(opt.groups) == (5 if block == 16 else 2)
    expected = [(p.copy(), *state) for (p, _, _), state in zip(groups, group_states(opt))]
    for t in range(1, 6):
        flat_g[...] = rng.normal(0, 1, flat_g.size) * (rng.random(flat_g.size) < 0.8)
        opt.step()
        for i, ((p, g, lr), state) in enumerate(zip(groups, group_states(opt))):
            expected[i] = opt.reference(spec, lr, t, expected[i][0], g, *expected[i][1:])
            for got, want in zip((p, *state), expected[i]):
                np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name", ["momentum", "rmsprop", "adam"])
def test_state_of_a_zero_gradient_never_turns_subnormal(name):
    """Entries whose gradient stays exactly 0 (never-lit pixels) decay: 3000 float32 steps."""
    rng = np.random.default_rng(0)
    groups, flat_g = two_groups(rng, np.float32)
    opt = numpy_optimizers.OPTIMIZERS[name](OptimizerSpec(name=name, beta2=0.9), groups)
    tiny = np.finfo(np.float32).tiny
    for t in range(3000):
        flat_g[...] = rng.normal(0, 1, flat_g.size) if t < 5 else 0
        opt.step()
        for state in group_states(opt):
            for a in state:
                assert not np.any((np.abs(a) < tiny) & (a != 0)), f"step {t}"
