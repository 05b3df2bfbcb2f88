"""A finished job's run as a reviewer opens it in the MLflow UI: a one-line description (its
metrics, one name each, are the run writer's: bench.tracking.names), figures (learning curves, confusion matrix, misclassified digits), per-class
accuracy as a table, and the trained model (bench.tracking.model, when tracking.log_model).
The figures are drawn by bench.figures, as the report draws them.

Everything here runs after training, outside the timed regions, through the same retries as
the run's history (a restarting server is waited for); what cannot be stored fails the run,
and the run writer checks every artifact is there before it ends FINISHED. What it cost is
logged as `overhead/...` metrics.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from bench.data import DATASETS
from bench.tracking import store
from bench.tracking.runs import HistoryLost
from bench.tracking.store import retrying
from bench.tracking.ui import RUN_COLOUR, describe_experiment, split_sizes


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
    elif first is not None:  # one epoch: it carries tracing, so no steady epoch
        parts.append(f"one epoch **{first:.3g} s** (no steady epoch)")
    size = f" on {n_train:,} images" if n_train else ""
    parts.append(f"{job.epochs} epochs{size}, {job.device}")
    return ", ".join(parts)


def per_class_table(predicted: np.ndarray, labels: np.ndarray, names=None) -> pd.DataFrame:
    """Per class (its label, and its name: "3", or Fashion-MNIST's "Dress"): images, correct,
    accuracy, and the class it is most confused with."""
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
                "class": names[digit] if names is not None and digit < len(names) else str(digit),
                "images": n,
                "correct": correct,
                "accuracy": correct / n if n else float("nan"),
                "most_confused_with": None if confused is None else int(confused),
            }
        )
    return pd.DataFrame(rows)


# --- the observer


class RunView:
    """An observer of the job (it keeps the test images for the figures); `finished(result)`
    writes the run's view, before the tracker ends the run."""

    def __init__(self, job, tracker):
        self.job, self.tracker, self.log_model = job, tracker, job.tracking.log_model
        self.images: np.ndarray | None = None
        self.n_train: int | None = None
        # the view's features, each timed on its own and left out of the run's overhead_s
        self.figures_s = self.model_s = 0.0

    def data_loaded(self, dataset) -> None:
        self.images = dataset.x_test
        self.n_train = split_sizes(len(dataset.y_train), len(dataset.y_test), self.job.data)[
            "train"
        ]

    def epoch_done(self, epoch: int, metrics: dict[str, float]) -> None:
        pass

    def finished(self, result) -> None:
        """Writes the view; what cannot be stored fails the run (HistoryLost): a FINISHED run
        has every artifact it shows."""
        try:
            self._write(result)
        except Exception as e:
            reason = f"{type(e).__name__}: {store.one_line(e)}"
            raise HistoryLost(f"the run's figures, tables or model not stored: {reason}") from e

    def _write(self, result) -> None:
        start = time.perf_counter()  # the figures' imports (the first job's) count in figures_s
        import tempfile
        from pathlib import Path

        import matplotlib.pyplot as plt
        from matplotlib.colors import to_hex
        from mlflow.entities import LoggedModelOutput, Metric, RunTag

        from bench import figures

        job, m, run = self.job, result.metrics, self.tracker
        client, run_id = run.client, run.run_id  # the job's run, by id
        describe_experiment(run.experiment_id)
        # the run drawn in its implementation's colour, as in the report (MLflow's own pick
        # from the run id can give two implementations two reds); set here, after training,
        # as matplotlib is imported for the figures anyway
        tags = {"mlflow.note.content": description(job, m, self.n_train),
                RUN_COLOUR: to_hex(figures.colour(job.implementation))}  # fmt: skip
        batch = [RunTag(k, v) for k, v in tags.items()]
        retrying(client.log_batch, run_id, tags=batch, what="description")
        now, costs = int(time.time() * 1000), {}
        predicted, labels = result.predictions, result.labels
        table = "tables/per_class_accuracy.json"
        names = DATASETS[job.data.name].class_names
        per_class = per_class_table(predicted, labels, names)
        retrying(client.log_table, run_id, per_class, table, what="table")
        run.expect(table)
        drawn = {
            "figures/learning_curves.png": figures.learning_curves(job, result.history),
            "figures/confusion_matrix.png": figures.confusion_matrix(job, predicted, labels, names),
        }
        for path, fig in drawn.items():
            retrying(client.log_figure, run_id, fig, path, what="figure")
            plt.close(fig)
            run.expect(path)
        if self.images is not None and (predicted != labels).any():
            with tempfile.TemporaryDirectory() as tmp:
                title = (f"{job.implementation}, seed {job.seed}, {job.data.name}: "
                         "misclassified (true→predicted)")  # fmt: skip
                png = Path(tmp) / "misclassified.png"
                figures.misclassified(self.images, labels, predicted, title, png, names=names)
                retrying(client.log_artifact, run_id, str(png), "figures", what="figure")
                run.expect("figures/misclassified.png")
        costs["overhead/figures_s"] = self.figures_s = time.perf_counter() - start

        network = getattr(result, "network", None)
        if self.log_model and network is not None:
            from bench.tracking.model import log_model

            start = time.perf_counter()
            name = run.run.info.run_name
            model_id = retrying(
                log_model, job, network, run_id, run.experiment_id, name, self.images, what="model"
            )
            costs["overhead/model_s"] = self.model_s = time.perf_counter() - start
            retrying(client.set_tag, run_id, "model_id", model_id, what="model")
            output = [LoggedModelOutput(model_id, step=0)]  # the run page's "Logged models"
            retrying(client.log_outputs, run_id, output, what="model")
            run.model_id = model_id  # the run's final/ metrics are the model's too
        done = [Metric(k, v, now, 0) for k, v in costs.items()]
        retrying(client.log_batch, run_id, metrics=done, what="metrics")
