"""The verbs the harness drives. Each implementation module provides `build(...) -> Network`
(and, optionally, its framework's verbs: see implementations/__init__.py).

The harness owns data order, timing, seeding and logging; a network only computes. Batches
are taken in the order given: the harness has already shuffled `x` and `y` (into buffers it
reuses next epoch, so a network must not keep them after train_epoch returns).

Some verbs are optional, for the callers that need them:
- `gradients(x, y)`: the training objective's gradients on one batch, in get_weights() order
  (the equivalence tests);
- `timed_train_epoch(x, y)`: train_epoch, plus {"forward", "backward", "update"} seconds summed
  over its steps, where the phases can be clocked inside the real step; else
- `phase_epoch(phase, x, y)`: a train_epoch whose steps stop after "forward" (loss and accuracy
  included) or after "gradients", without updating (the speed benchmark's per-phase breakdown).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from implementations.spec import ModelSpec, OptimizerSpec

EVAL_BATCH_SIZE = 5000  # the same for every implementation, large enough to keep BLAS busy


class Network(Protocol):
    def train_epoch(self, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        """One pass over (x, y) in order, one update per batch; mean per-sample loss, accuracy."""

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        """Mean per-sample loss and accuracy, no update."""

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Logits (N, 10)."""

    def get_weights(self) -> list[np.ndarray]:
        """[W1, b1, W2, b2, ...] as NumPy arrays, W of shape (in, out)."""

    def set_weights(self, weights: list[np.ndarray]) -> None: ...


class Build(Protocol):
    def __call__(
        self,
        model: ModelSpec,
        optimizer: OptimizerSpec,
        batch_size: int,
        weights: list[np.ndarray] | None,
        seed: int,
        **options,
    ) -> Network: ...
