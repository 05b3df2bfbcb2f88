"""Settings no implementation can run are refused before any training, with one clear line."""

from __future__ import annotations

import pytest

from implementations.spec import ModelSpec, OptimizerSpec, SpecError, check_batch_size
from tests.helpers import build

BAD_MODELS = [
    ({"hidden": []}, "model.hidden=[] is empty"),
    ({"hidden": [0]}, "model.hidden=0 must be a positive int"),
    ({"hidden": [64, -3]}, "model.hidden=-3 must be a positive int"),
    ({"hidden": [2.5]}, "model.hidden=2.5 must be a positive int"),
    ({"activation": "swish"}, "model.activation='swish' is not supported; allowed: relu"),
    ({"loss": "hinge"}, "model.loss='hinge' is not supported"),
    ({"output": "sigmoid"}, "model.output (with loss cross_entropy)='sigmoid'"),
    ({"dtype": "float16"}, "model.dtype='float16' is not supported"),
    ({"init": "zeros"}, "model.init='zeros' is not supported"),
    ({"reduction": "max"}, "model.reduction='max'"),
]
BAD_OPTIMIZERS = [
    ({"name": "adagrad"}, "optimizer.name='adagrad' is not supported; allowed: adam, momentum"),
    ({"lr": 0}, "optimizer.lr=0 must be a positive float"),
    ({"lr": -0.1}, "optimizer.lr=-0.1 must be a positive float"),
    ({"momentum": 1.0, "name": "momentum"}, "optimizer.momentum=1.0 must be in [0, 1)"),
    ({"name": "adam", "output_lr": 0.1}, "only exact for sgd and momentum"),
]


@pytest.mark.parametrize("kwargs,message", BAD_MODELS)
def test_bad_model_spec(kwargs, message):
    with pytest.raises(SpecError, match=None) as info:
        ModelSpec(**kwargs)
    assert message in str(info.value)


@pytest.mark.parametrize("kwargs,message", BAD_OPTIMIZERS)
def test_bad_optimizer_spec(kwargs, message):
    with pytest.raises(SpecError) as info:
        OptimizerSpec(**kwargs)
    assert message in str(info.value)


@pytest.mark.parametrize("batch_size", [0, -5, 1.5, True])
def test_bad_batch_size(batch_size):
    with pytest.raises(SpecError, match="train.batch_size"):
        check_batch_size(batch_size)


@pytest.mark.parametrize("name", ["numpy", "tf_tape", "keras"])
def test_bad_batch_size_refused_at_construction(name):
    with pytest.raises(SpecError, match="train.batch_size=0"):
        build(name, ModelSpec(), OptimizerSpec(), 0, None, 0)
