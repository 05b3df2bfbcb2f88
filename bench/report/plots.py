"""The report's figures (matplotlib, written as PNG)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def _save(fig, path: Path, dpi: int = 90) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def learning_curves(rows: pd.DataFrame, hist: pd.DataFrame, preset: str, out: Path) -> Path:
    """Val accuracy and train loss against epoch and wall time; seed spread shaded."""
    fig, axes = plt.subplots(2, 2, figsize=(11, 7))
    merged = hist.merge(rows[["run_id", "implementation"]], on="run_id")
    for impl, g in merged.groupby("implementation"):
        for row, key in enumerate(("val_accuracy", "train_loss")):
            curves = g[g.key == key].pivot_table(index="step", columns="run_id", values="value")
            times = (
                g[g.key == "epoch_time_s"]
                .pivot_table(index="step", columns="run_id", values="value")
                .cumsum()
            )
            if curves.empty:
                continue
            lo, mid, hi = curves.min(axis=1), curves.median(axis=1), curves.max(axis=1)
            marker = "o" if len(curves) <= 50 else None
            axes[row, 0].plot(curves.index, mid, marker=marker, label=impl)
            axes[row, 0].fill_between(curves.index, lo, hi, alpha=0.2)
            t = times.median(axis=1).reindex(curves.index)
            axes[row, 1].plot(t, mid, marker=marker, label=impl)
            axes[row, 1].fill_between(t, lo, hi, alpha=0.2)
            axes[row, 0].set_ylabel(key)
    for ax, xlabel in zip(axes.flat, ("epoch", "training seconds") * 2):
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    axes[1, 0].legend()
    for ax in axes[0]:
        if not ax.lines:
            ax.text(0.5, 0.5, "no validation set (val_size=0)", ha="center", transform=ax.transAxes)
    fig.suptitle(f"{preset}: learning curves")
    return _save(fig, out, dpi=72)  # one figure per preset, all embedded in the HTML


def by_setting(rows: pd.DataFrame):
    """(label, runs) per preset and implementation: runs of different presets never pool."""
    for (preset, impl), g in rows.groupby(["preset", "implementation"]):
        yield f"{preset} / {impl}", g


def epoch_times(rows: pd.DataFrame, hist: pd.DataFrame, out: Path) -> Path:
    steady = hist[(hist.key == "epoch_time_s") & (hist.step >= 2)]
    groups = list(by_setting(rows))
    fig, ax = plt.subplots(figsize=(7, 1.5 + 0.35 * len(groups)))
    ax.boxplot(
        [steady[steady.run_id.isin(g.run_id)].value for _, g in groups],
        tick_labels=[label for label, _ in groups],
        orientation="horizontal",
    )
    ax.set_xlabel("steady-state epoch time (s, epochs 2+)")
    ax.grid(alpha=0.3)
    return _save(fig, out)


def accuracy_vs_time(rows: pd.DataFrame, out: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, g in by_setting(rows):
        ax.scatter(g.total_time_s, g.test_accuracy, label=label)
    ax.set_xlabel("total job time (s)")
    ax.set_ylabel("test accuracy")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return _save(fig, out)


def time_to_thresholds(rows: pd.DataFrame, thresholds, out: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, g in by_setting(rows):
        seconds = [g[f"to_{t:.3g}"].mean() for t in thresholds]
        if not np.isnan(seconds).all():  # presets without a validation set have no curve
            ax.plot([t * 100 for t in thresholds], seconds, marker="o", label=label)
    ax.set_xlabel("validation accuracy threshold (%)")
    ax.set_ylabel("training seconds to reach it")
    if ax.lines:
        ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return _save(fig, out)


def misclassified(
    images: np.ndarray,
    labels: np.ndarray,
    predicted: np.ndarray,
    title: str,
    out: Path,
    count: int = 16,
) -> Path:
    wrong = np.flatnonzero(predicted != labels)[:count]
    cols = 8
    rows = max(1, -(-len(wrong) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.1, rows * 1.3 + 0.4), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, wrong):
        ax.imshow(images[i], cmap="gray_r")
        ax.set_title(f"{labels[i]}→{predicted[i]}", fontsize=8, color="firebrick")
    fig.suptitle(title)
    return _save(fig, out, dpi=50)  # small: the HTML report embeds one grid per run group
