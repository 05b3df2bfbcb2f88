"""The scratch network's fused optimizers against their textbook forms (`reference`), and
their state kept clear of subnormal floats."""

from __future__ import annotations

import numpy as np
import pytest

from implementations import numpy_scratch
from implementations.spec import OptimizerSpec

SPEC = dict(momentum=0.875, rho=0.875, beta1=0.875, beta2=1 - 2**-10, epsilon=2**-23)


def two_groups(rng, dtype, sizes=(50, 7)):
    """Flat (parameters, gradients, lr) groups, the second with its own rate (an output layer)."""
    p, g = rng.normal(0, 1, sum(sizes)).astype(dtype), np.empty(sum(sizes), dtype)
    return [
        (p[: sizes[0]], g[: sizes[0]], 2**-7),
        (p[sizes[0] :], g[sizes[0] :], 2**-4),
    ], g


@pytest.mark.parametrize("name", sorted(numpy_scratch.OPTIMIZERS))
def test_fused_step_follows_the_textbook_form(name):
    rng = np.random.default_rng(0)
    spec = OptimizerSpec(name=name, **SPEC)
    groups, flat_g = two_groups(rng, np.float64)
    opt = numpy_scratch.OPTIMIZERS[name](spec, groups)
    expected = [
        (p.copy(), *(a.copy() for a in state)) for (p, _, _), state in zip(groups, opt.state())
    ]
    for t in range(1, 6):
        flat_g[...] = rng.normal(0, 1, flat_g.size) * (rng.random(flat_g.size) < 0.8)
        opt.step()
        for i, ((p, g, lr), state) in enumerate(zip(groups, opt.state())):
            expected[i] = opt.reference(spec, lr, t, expected[i][0], g, *expected[i][1:])
            for got, want in zip((p, *state), expected[i]):
                np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name", ["momentum", "rmsprop", "adam"])
def test_state_of_a_zero_gradient_never_turns_subnormal(name):
    """Entries whose gradient stays exactly 0 (never-lit pixels) decay: 3000 float32 steps."""
    rng = np.random.default_rng(0)
    groups, flat_g = two_groups(rng, np.float32)
    opt = numpy_scratch.OPTIMIZERS[name](OptimizerSpec(name=name, beta2=0.9), groups)
    tiny = np.finfo(np.float32).tiny
    for t in range(3000):
        flat_g[...] = rng.normal(0, 1, flat_g.size) if t < 5 else 0
        opt.step()
        for state in opt.state():
            for a in state:
                assert not np.any((np.abs(a) < tiny) & (a != 0)), f"step {t}"
