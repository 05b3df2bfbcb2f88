"""Hydra finds sweepers only in the hydra_plugins namespace: this names bench.sweep.sequential's
sweeper there (conf/hydra/sweeper/sequential.yaml selects it). The rule itself lives in
bench/sweep/sequential.py."""

from bench.sweep.sequential import SequentialSweeper as _SequentialSweeper


class SequentialSweeper(_SequentialSweeper):
    """Hydra's basic sweeper, with the sequential rule of sweep.until_decided."""
