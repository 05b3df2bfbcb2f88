"""The TensorFlow networks compile each function once: a job's epochs, its validation and test
evaluations (two sizes of data) and its predictions reuse what the first call traced, and a
second network in the same process (the next job of a sweep) leaves the first one's alone.
TensorFlow's own retracing warning cannot say this: it counts a new network's first trace as
a retrace (implementations.tf_common.FirstTracesAreNotRetracing), so the counts are read here."""

from __future__ import annotations

import logging

import pytest

from bench.data import prepare
from implementations.spec import ModelSpec, OptimizerSpec, init_weights
from tests.helpers import build


def compiled_functions(net) -> dict[str, object]:
    """The network's tf.functions by name: its own attributes, and for Keras the functions
    `fit`, `evaluate` and `predict` made (Keras keeps the traced ones in a closure)."""
    from implementations.tf_common import tf

    found = {}
    holders = [("", vars(net))]
    if hasattr(net, "model"):  # Keras: make_*_function's results
        for name in ("train_function", "test_function", "predict_function"):
            fn = getattr(net.model, name)
            if fn is None:  # not made: the network never called it
                continue
            cells = {"": fn} if isinstance(fn, tf.types.experimental.PolymorphicFunction) else {
                c.cell_contents.__name__: c.cell_contents for c in fn.__closure__ or ()
                if isinstance(c.cell_contents, tf.types.experimental.PolymorphicFunction)
            }  # fmt: skip
            holders.append((name, cells))
    for prefix, attributes in holders:
        for key, value in attributes.items():
            if isinstance(value, tf.types.experimental.PolymorphicFunction):
                found[f"{prefix}.{key}".strip(".")] = value
    return found


@pytest.mark.parametrize("name", ["tf_tape", "keras"])
def test_each_compiled_function_traces_once_per_network(name, mnist, caplog):
    s = prepare(mnist, 500, 1000, 0)  # a validation set and a test set of other sizes
    model, opt = ModelSpec(hidden=(32,)), OptimizerSpec()
    weights = init_weights(model, 0)
    with caplog.at_level(logging.WARNING, logger="tensorflow"):
        first = build(name, model, opt, 64, weights, 0)
        for net in (first, build(name, model, opt, 64, weights, 1)):
            for _ in range(3):
                net.train_epoch(s.x_train, s.y_train)  # a last batch of another size
                net.evaluate(s.x_val, s.y_val)
            net.evaluate(s.x_test[:3000], s.y_test[:3000])
            net.predict(s.x_test[:3000])
            net.predict(s.x_test[:700])
        counts = {
            k: f.experimental_get_tracing_count() for k, f in compiled_functions(first).items()
        }
    used = {k: n for k, n in counts.items() if n}
    expected = {"tf_tape": {"step", "epoch"}, "keras": {"train_function.multi_step_on_iterator",
                "test_function.multi_step_on_iterator", "logits"}}[name]  # fmt: skip
    assert expected <= set(used), counts
    assert set(used.values()) == {1}, counts
    assert "retracing" not in caplog.text
