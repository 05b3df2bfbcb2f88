"""Accuracies as float64 from their counts, for every metric the harness logs (the harness
imports this, so it stays free of MLflow and the frameworks)."""

from __future__ import annotations

import math

ACCURACY_COUNTS = {"train_accuracy": "train", "val_accuracy": "val", "test_accuracy": "test"}


def exact_accuracies(metrics: dict[str, float], **counts: int) -> dict[str, float]:
    """Accuracies as float64 from their counts (k / n, so 0.9774 reads 0.9774, not the
    float32 0.97740000486...): each key ending in train_/val_/test_accuracy is snapped to the
    nearest k / n of its count, in place; returns `metrics`."""
    for key, value in metrics.items():
        kind = next((c for s, c in ACCURACY_COUNTS.items() if key.endswith(s)), None)
        n = counts.get(kind or "", 0)
        if n and value is not None and math.isfinite(value):
            metrics[key] = float(round(float(value) * n)) / n
    return metrics
