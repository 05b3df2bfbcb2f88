"""JAX's process settings (its lockstep in the compare sweep beside the others:
tests/test_torch.py)."""

from __future__ import annotations

import pytest

from implementations import registry
from implementations.spec import SpecError


def test_jax_refuses_to_change_its_process_settings():
    jax = registry()["jax"]
    jax.configure(2, "cpu")  # what every test process uses
    with pytest.raises(SpecError, match=r"train.threads=1 cannot change inside one process"):
        jax.configure(1, "cpu")
