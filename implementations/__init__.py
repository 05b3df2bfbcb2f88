"""One module per implementation, each with `build(model, optimizer, batch_size, weights, seed,
**options)`. The registry is conf/implementation/: each file names its module, so adding an
implementation means one module here and one config file there."""

from __future__ import annotations

import importlib

from implementations.base import Build


def load_build(module: str) -> Build:
    """The `build` function of an implementation module, imported only when used (a NumPy run
    never imports TensorFlow)."""
    return importlib.import_module(module).build
