"""The figures of one run, drawn the same way in its MLflow view and in the report: one colour
per implementation everywhere (a reader learns it once), learning curves, the confusion matrix,
and the misclassified digits as one mosaic."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from implementations import IMPL_ORDER  # noqa: E402

PALETTE = plt.get_cmap("tab10").colors


def colour(impl: str, known=None) -> tuple:
    """The implementation's colour: the canonical ones first, then the others in order."""
    names = list(IMPL_ORDER) + sorted(set(() if known is None else known) - set(IMPL_ORDER))
    index = names.index(impl) if impl in names else len(names)
    return PALETTE[index % len(PALETTE)]


def learning_curves(job, history: list[dict[str, float]]):
    """One run's train (and validation) loss and its validation accuracy per epoch."""
    epochs = np.arange(1, len(history) + 1)
    has_val = any("val_accuracy" in h for h in history)
    fig, axes = plt.subplots(1, 2 if has_val else 1, figsize=(8 if has_val else 4.2, 3.2))
    axes = np.atleast_1d(axes)
    c = colour(job.implementation)
    axes[0].plot(epochs, [h["train_loss"] for h in history], "o-", color=c, label="train")
    if any("val_loss" in h for h in history):
        val = [h.get("val_loss", np.nan) for h in history]
        axes[0].plot(epochs, val, "s--", color=c, alpha=0.7, label="validation")
    axes[0].set(xlabel="epoch", ylabel="loss", title="loss")
    axes[0].legend(fontsize=8)
    if has_val:
        accuracy = [100 * h.get("val_accuracy", np.nan) for h in history]
        axes[1].plot(epochs, accuracy, "o-", color=c)
        axes[1].set(xlabel="epoch", ylabel="validation accuracy (%)", title="validation accuracy")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    fig.suptitle(f"{job.implementation}, seed {job.seed}", fontsize=10)
    fig.tight_layout()
    return fig


def confusion_matrix(job, predicted: np.ndarray, labels: np.ndarray, names=None):
    """Counts of true against predicted labels (named where `names` are not the digits);
    the errors coloured, not the diagonal."""
    k = int(max(labels.max(), predicted.max())) + 1
    counts = np.zeros((k, k), dtype=int)
    np.add.at(counts, (labels.astype(int), predicted.astype(int)), 1)
    fig, ax = plt.subplots(figsize=(5, 4.4))
    shown = np.where(np.eye(k, dtype=bool), 0, counts)
    ax.imshow(shown, cmap="Reds")
    for (i, j), n in np.ndenumerate(counts):
        if n:
            ax.text(j, i, str(n), ha="center", va="center", fontsize=7,
                    color="black" if i != j else "#2b7a3d", weight="bold" if i == j else None)  # fmt: skip
    ax.set(xticks=range(k), yticks=range(k), xlabel="predicted", ylabel="true")
    if names is not None and list(names[:k]) != [str(d) for d in range(k)]:
        ax.set_xticklabels(names[:k], rotation=45, ha="right", fontsize=7)
        ax.set_yticklabels(names[:k], fontsize=7)
    accuracy = np.trace(counts) / counts.sum()
    dataset = job.data.name
    ax.set_title(f"{job.implementation}, seed {job.seed}, {dataset}: {100 * accuracy:.2f}% "
                 "correct", fontsize=10)  # fmt: skip
    fig.tight_layout()
    return fig


def misclassified(
    images: np.ndarray,
    labels: np.ndarray,
    predicted: np.ndarray,
    title: str,
    out: Path,
    count: int = 16,
    names: tuple[str, ...] | None = None,
) -> Path:
    """The first misclassified test images, each titled true→predicted in a size that reads
    at 100% zoom: one mosaic image with its labels (one axes draws ~8x faster than 16). With
    `names` other than the digits (Fashion-MNIST's classes), the labels name the classes."""
    wrong = np.flatnonzero(predicted != labels)[:count]
    words = names is not None and list(names) != [str(d) for d in range(len(names))]
    cols, pad = 8, 16 if words else 10  # room above each image for its label, in its pixels
    rows = max(1, -(-len(wrong) // cols))
    h, w = images.shape[1:3]
    mosaic = np.zeros((rows * (h + pad), cols * w), dtype=images.dtype)
    for n, i in enumerate(wrong):
        r, c = divmod(n, cols)
        mosaic[r * (h + pad) + pad : (r + 1) * (h + pad), c * w : (c + 1) * w] = images[i]
    fig, ax = plt.subplots(figsize=(cols * 1.0, rows * 1.25 + 0.5))
    ax.imshow(mosaic, cmap="gray_r", interpolation="nearest")
    for n, i in enumerate(wrong):
        r, c = divmod(n, cols)
        text = (
            f"{names[labels[i]]}\n→{names[predicted[i]]}"
            if words
            else f"{labels[i]}→{predicted[i]}"
        )
        ax.text((c + 0.5) * w - 0.5, r * (h + pad) + pad / 2, text, ha="center", va="center",
                fontsize=8 if words else 13, color="firebrick")  # fmt: skip
    ax.axis("off")
    fig.suptitle(title, fontsize=12)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.88 if rows > 1 else 0.8)
    fig.savefig(out, dpi=72)
    plt.close(fig)
    return out
