"""The scratch network's backward pass against central finite differences, in float64."""

from __future__ import annotations

import numpy as np
import pytest

from implementations import numpy_scratch, spec
from implementations.spec import ModelSpec, OptimizerSpec, init_weights

OUTPUTS = [(loss, output) for loss, outputs in spec.OUTPUTS.items() for output in outputs]
COMBINATIONS = [
    (activation, loss, output, reduction)
    for activation in spec.ACTIVATIONS
    for loss, output in OUTPUTS
    for reduction in spec.REDUCTIONS
]


def objective(net, x, y) -> float:
    losses, _, _ = net.objective_gradients(x, y)
    return float(losses.sum() if net.model.reduction == "sum" else losses.mean())


@pytest.mark.parametrize("activation,loss,output,reduction", COMBINATIONS)
def test_backward_matches_finite_differences(activation, loss, output, reduction):
    model = ModelSpec(
        hidden=(7, 5),
        activation=activation,
        loss=loss,
        output=output,
        reduction=reduction,
        init="glorot_uniform",
        dtype="float64",
    )
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 1, (6, 784))
    y = rng.integers(0, 10, 6)
    weights = init_weights(model, seed=3)
    # relu's kink: keep pre-activations away from 0 so differences are smooth
    weights[1::2] = [b + 0.05 for b in weights[1::2]]
    net = numpy_scratch.build(model, OptimizerSpec(name="sgd"), 6, weights)
    analytic = net.gradients(x, y)
    eps = 1e-6
    for p, g in zip(net.params, analytic):
        probe = rng.choice(p.size, size=min(p.size, 20), replace=False)
        for i in probe:
            flat = p.reshape(-1)
            saved = flat[i]
            flat[i] = saved + eps
            plus = objective(net, x, y)
            flat[i] = saved - eps
            minus = objective(net, x, y)
            flat[i] = saved
            numeric = (plus - minus) / (2 * eps)
            assert abs(numeric - g.reshape(-1)[i]) <= 1e-6 * max(1.0, abs(numeric)), (
                f"param shape {p.shape} index {i}: numeric {numeric}, analytic {g.reshape(-1)[i]}"
            )
