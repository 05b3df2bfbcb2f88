"""A finished job's run as a reviewer opens it in the MLflow UI: a one-line description, the key
final numbers under `final/` and the per-epoch curves under `epoch/` (MLflow 3 gives every
prefix its own chart section; the unprefixed per-epoch keys the report and the audit read stay
as they are), figures (learning curves, confusion matrix, misclassified digits), per-class
accuracy as a table, and the trained model (bench.models, when tracking.log_model).

Everything here runs after training, outside the timed regions, and costs at most a warning:
a failure never changes the run's status. What it cost is logged as `overhead/...` metrics.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd

from bench.mlflow_ui import describe_experiment

log = logging.getLogger("bench")

FINAL = (  # the key final metrics, also under final/ (first in the chart view's sections)
    "test_accuracy",
    "steady_epoch_time_s",
    "first_epoch_time_s",
    "time_to_target_s",
    "train_time_s",
    "test_loss",
    "final_val_accuracy",
    "samples_per_s",
)
CURVES = ("train_loss", "val_loss", "train_accuracy", "val_accuracy", "epoch_time_s")


def description(job, metrics: dict[str, float], n_train: int | None) -> str:
    """One line: implementation, seed, preset, test accuracy, steady (and first) epoch."""
    acc, steady = metrics.get("test_accuracy"), metrics.get("steady_epoch_time_s")
    first = metrics.get("first_epoch_time_s")
    parts = [f"**{job.implementation}**, seed {job.seed}, preset `{job.preset}`"]
    if acc is not None:
        parts.append(f"test accuracy **{100 * acc:.2f}%**")
    if steady is not None:
        epoch = f"steady epoch **{steady:.3g} s**"
        parts.append(epoch + (f" (first {first:.3g} s)" if first is not None else ""))
    size = f" on {n_train:,} images" if n_train else ""
    parts.append(f"{job.epochs} epochs{size}, {job.device}")
    return ", ".join(parts)


def per_class_table(predicted: np.ndarray, labels: np.ndarray) -> pd.DataFrame:
    rows = []
    for digit in range(int(max(labels.max(), predicted.max())) + 1):
        of = labels == digit
        correct = int((predicted[of] == digit).sum())
        n = int(of.sum())
        wrong = predicted[of & (predicted != digit)]
        confused = np.bincount(wrong, minlength=10).argmax() if len(wrong) else None
        rows.append(
            {
                "digit": digit,
                "images": n,
                "correct": correct,
                "accuracy": correct / n if n else float("nan"),
                "most_confused_with": None if confused is None else int(confused),
            }
        )
    return pd.DataFrame(rows)


# --- figures


def learning_curves(job, history: list[dict[str, float]]):
    import matplotlib.pyplot as plt

    from bench.report.plots import colour

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


def confusion_matrix(job, predicted: np.ndarray, labels: np.ndarray):
    import matplotlib.pyplot as plt

    k = int(max(labels.max(), predicted.max())) + 1
    counts = np.zeros((k, k), dtype=int)
    np.add.at(counts, (labels.astype(int), predicted.astype(int)), 1)
    fig, ax = plt.subplots(figsize=(5, 4.4))
    shown = np.where(np.eye(k, dtype=bool), 0, counts)  # colour the errors, not the diagonal
    ax.imshow(shown, cmap="Reds")
    for (i, j), n in np.ndenumerate(counts):
        if n:
            ax.text(j, i, str(n), ha="center", va="center", fontsize=7,
                    color="black" if i != j else "#2b7a3d", weight="bold" if i == j else None)  # fmt: skip
    ax.set(xticks=range(k), yticks=range(k), xlabel="predicted", ylabel="true")
    accuracy = np.trace(counts) / counts.sum()
    ax.set_title(f"{job.implementation}, seed {job.seed}: {100 * accuracy:.2f}% correct",
                 fontsize=10)  # fmt: skip
    fig.tight_layout()
    return fig


def misclassified(job, images: np.ndarray, labels, predicted, out):
    from bench.report.plots import misclassified as plot

    title = f"{job.implementation}, seed {job.seed}: misclassified (true→predicted)"
    return plot(images, labels, predicted, title, out)


# --- the observer


class RunView:
    """An observer of the job (it keeps the test images for the figures); `finished(result)`
    writes the run's view, before the tracker ends the run."""

    def __init__(self, job, tracker, log_model: bool = True):
        self.job, self.tracker, self.log_model = job, tracker, log_model
        self.images: np.ndarray | None = None
        self.n_train: int | None = None
        self.model_s = 0.0  # logging the model: outside the run's overhead_s, reported alone

    def data_loaded(self, dataset) -> None:
        from bench.mlflow_ui import split_sizes

        self.images = dataset.x_test
        self.n_train = split_sizes(len(dataset.y_train), len(dataset.y_test), self.job.data)[
            "train"
        ]

    def epoch_done(self, epoch: int, metrics: dict[str, float]) -> None:
        pass

    def finished(self, result) -> None:
        """Never raises: what fails costs a warning and a `run_view_error` tag."""
        try:
            self._write(result)
        except Exception as e:  # noqa: BLE001
            reason = f"{type(e).__name__}: {e}".splitlines()[0][:500]
            log.warning("%s: the run's MLflow view is incomplete: %s", self.job.run_name, reason)
            try:
                self.tracker.client.set_tag(self.tracker.run_id, "run_view_error", reason)
            except Exception:  # noqa: BLE001
                pass

    def _write(self, result) -> None:
        import tempfile
        from pathlib import Path

        import matplotlib.pyplot as plt
        from mlflow.entities import Metric

        start = time.perf_counter()
        job, m = self.job, result.metrics
        client, run_id = self.tracker.client, self.tracker.run_id  # the job's run, by id
        describe_experiment(self.tracker.experiment_id)
        client.set_tag(run_id, "mlflow.note.content", description(job, m, self.n_train))
        now = int(time.time() * 1000)
        metrics = [
            Metric(f"final/{k}", float(m[k]), now, 0) for k in FINAL if k in m and np.isfinite(m[k])
        ]
        metrics += [
            Metric(f"epoch/{k}", float(h[k]), now, step)
            for step, h in enumerate(result.history, 1)
            for k in CURVES
            if k in h and np.isfinite(h[k])
        ]
        for i in range(0, len(metrics), 1000):  # MLflow's batch limit
            client.log_batch(run_id, metrics=metrics[i : i + 1000])
        costs = {"overhead/metrics_s": time.perf_counter() - start}

        start = time.perf_counter()
        predicted, labels = result.predictions, result.labels
        client.log_table(
            run_id, per_class_table(predicted, labels), "tables/per_class_accuracy.json"
        )
        figures = {
            "figures/learning_curves.png": learning_curves(job, result.history),
            "figures/confusion_matrix.png": confusion_matrix(job, predicted, labels),
        }
        for path, fig in figures.items():
            client.log_figure(run_id, fig, path)
            plt.close(fig)
        if self.images is not None and (predicted != labels).any():
            with tempfile.TemporaryDirectory() as tmp:
                png = misclassified(job, self.images, labels, predicted, Path(tmp) / "m.png")
                png = png.rename(png.with_name("misclassified.png"))
                client.log_artifact(run_id, str(png), "figures")
        costs["overhead/figures_s"] = time.perf_counter() - start

        network = getattr(result, "network", None)
        if self.log_model and network is not None:
            from bench.models import log_model

            start = time.perf_counter()
            model_id = log_model(job, network, run_id, self.tracker.experiment_id)
            costs["overhead/model_s"] = self.model_s = time.perf_counter() - start
            client.set_tag(run_id, "model_id", model_id)
        client.log_batch(run_id, metrics=[Metric(k, v, now, 0) for k, v in costs.items()])
