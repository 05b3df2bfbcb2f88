"""The report's figures (matplotlib, written as PNG).

One colour per implementation in every figure (a reader learns it once) and one line style
per preset; panels per preset where one long preset would squash the others; no panel for
data that cannot exist (a validation curve without a validation set)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator  # noqa: E402

from bench.figures import colour  # noqa: E402
from bench.report.numbers.stats import censored_median  # noqa: E402
from implementations import impl_key  # noqa: E402

STYLES = ("-", "--", ":", "-.")


def plain_log_axis(axis) -> None:
    """A log axis (set to log by its caller) labelled in plain numbers: 0.2, 0.5, 1, 2, 5,
    never "2x10^-1" or "6x10^0"."""
    plain = FuncFormatter(lambda x, _: f"{x:g}")
    axis.set_major_formatter(plain)
    axis.set_minor_locator(LogLocator(subs=(2, 5)))
    axis.set_minor_formatter(plain)


def _save(fig, path: Path, dpi: int = 90) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def _impls(rows: pd.DataFrame) -> list[str]:
    return sorted(rows.implementation.unique(), key=impl_key)


def learning_curves(rows: pd.DataFrame, hist: pd.DataFrame, preset: str, out: Path) -> Path:
    """Val accuracy (when the preset held a validation set out) and train loss against
    epoch and training seconds; median over seeds, min-max shaded."""
    merged = hist.merge(rows[["run_id", "implementation"]], on="run_id")
    keys = [k for k in ("val_accuracy", "train_loss") if (merged.key == k).any()]
    fig, axes = plt.subplots(max(len(keys), 1), 2, figsize=(11, 3.4 * max(len(keys), 1) + 0.4))
    axes = np.atleast_2d(axes)
    for impl in _impls(rows):
        g = merged[merged.implementation == impl]
        times = (
            g[g.key == "epoch_time_s"]
            .pivot_table(index="step", columns="run_id", values="value")
            .cumsum()
        )
        for row, key in enumerate(keys):
            curves = g[g.key == key].pivot_table(index="step", columns="run_id", values="value")
            if curves.empty:
                continue
            lo, mid, hi = curves.min(axis=1), curves.median(axis=1), curves.max(axis=1)
            style = dict(color=colour(impl, rows.implementation), label=impl)
            style["marker"] = "o" if len(curves) <= 50 else None
            axes[row, 0].plot(curves.index, mid, **style)
            axes[row, 0].fill_between(curves.index, lo, hi, alpha=0.2, color=style["color"])
            t = times.median(axis=1).reindex(curves.index)
            axes[row, 1].plot(t, mid, **style)
            axes[row, 1].fill_between(t, lo, hi, alpha=0.2, color=style["color"])
            axes[row, 0].set_ylabel(key.replace("_", " "))
    for ax in axes[:, 0]:
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in axes[:, 1]:
        ax.set_xlabel("training seconds")
    for ax in axes.flat:
        ax.grid(alpha=0.3)
    axes[0, 0].legend()
    note = "" if "val_accuracy" in keys else " (no validation set: train loss only)"
    fig.suptitle(f"{preset}: learning curves{note}")
    return _save(fig, out, dpi=72)  # one figure per preset, all embedded in the HTML


def by_setting(rows: pd.DataFrame):
    """(label, runs) per group (a preset's comparison) and implementation: runs of different
    presets or comparisons never pool."""
    for (group, impl), g in rows.groupby(["group", "implementation"]):
        yield f"{group} / {impl}", g


def epoch_times(rows: pd.DataFrame, hist: pd.DataFrame, out: Path) -> Path:
    """Steady epochs (2+) per preset and implementation, log axis (presets differ by 10x)."""
    steady = hist[(hist.key == "epoch_time_s") & (hist.step >= 2)]
    groups = sorted(
        by_setting(rows),
        key=lambda x: (x[0].split(" / ")[0], impl_key(x[1].implementation.iloc[0])),
    )
    groups.reverse()  # boxplot draws bottom-up: the first group on top
    fig, ax = plt.subplots(figsize=(8, 1.5 + 0.4 * len(groups)))
    box = ax.boxplot(
        [steady[steady.run_id.isin(g.run_id)].value for _, g in groups],
        tick_labels=[label for label, _ in groups],
        orientation="horizontal",
        patch_artist=True,
    )
    for patch, (_, g) in zip(box["boxes"], groups):
        patch.set_facecolor(colour(g.implementation.iloc[0], rows.implementation))
        patch.set_alpha(0.6)
    ax.set_xscale("log")
    plain_log_axis(ax.xaxis)
    ax.set_xlabel("steady-state epoch time (s, epochs 2+, log scale)")
    ax.grid(alpha=0.3, which="both")
    return _save(fig, out)


def _panels(n: int, width: float = 4.2, height: float = 3.4):
    cols = min(n, 3)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, axes.flat


def accuracy_vs_time(rows: pd.DataFrame, out: Path) -> Path:
    """Test accuracy against total job time, one panel per preset (own axes: a 500-epoch
    preset never squashes a 5-epoch one)."""
    presets = sorted(rows.group.unique())
    fig, axes = _panels(max(len(presets), 1))
    for ax, preset in zip(axes, presets):
        g = rows[rows.group == preset]
        for impl in _impls(g):
            r = g[g.implementation == impl]
            ax.scatter(
                r.total_time_s,
                100 * r.test_accuracy,
                label=impl,
                s=30,
                color=colour(impl, rows.implementation),
            )
        ax.set_title(preset)
        ax.set_xlabel("total job time (s)")
        ax.set_ylabel("test accuracy (%)")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    return _save(fig, out)


def time_to_thresholds(rows: pd.DataFrame, thresholds, out: Path) -> Path | None:
    """Median training seconds to each validation threshold (unreached runs as +inf, so a
    median that never got there is not drawn); colour = implementation, style = preset."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    presets = sorted(rows.group.unique())
    for (preset, impl), g in rows.groupby(["group", "implementation"]):
        seconds = np.array([censored_median(g[f"to_{t:.3g}"])[0] for t in thresholds])
        seconds[~np.isfinite(seconds)] = np.nan
        if not np.isnan(seconds).all():  # presets without a validation set have no curve
            ax.plot(
                [t * 100 for t in thresholds],
                seconds,
                marker="o",
                label=f"{preset} / {impl}",
                color=colour(impl, rows.implementation),
                linestyle=STYLES[presets.index(preset) % len(STYLES)],
            )
    ax.set_xlabel("validation accuracy threshold (%)")
    ax.set_ylabel("median training seconds to reach it")
    if ax.lines:
        ax.legend(fontsize=8)
        ax.set_yscale("log")
        plain_log_axis(ax.yaxis)
    else:
        ax.text(
            0.5, 0.5, "no validation set in this selection", ha="center", transform=ax.transAxes
        )
    ax.grid(alpha=0.3, which="both")
    return _save(fig, out)


def scaling_figure(table: pd.DataFrame, xlabel: str, title: str, path: Path,
                   floor: pd.Series | None = None) -> Path:  # fmt: skip
    """Log-log seconds per image (`epoch s`, with its min..max as a band) against the size,
    one line per implementation in its colour; the machine's floor dashed where given."""
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    names = _impls(table)
    for name in names:
        rows = table[table.implementation == name].sort_values("size")
        ax.plot(rows["size"], rows["epoch s"], "o-", color=colour(name, names), label=name)
        if {"min s", "max s"} <= set(rows):
            ax.fill_between(rows["size"], rows["min s"], rows["max s"], alpha=0.15,
                            color=colour(name, names))  # fmt: skip
    sizes = sorted(table["size"].unique())
    if floor is not None:
        points = pd.DataFrame({"size": table["size"], "floor": floor}).drop_duplicates("size")
        points = points.sort_values("size")
        ax.plot(points["size"], points["floor"], "k--", label="floor")
    ax.set(xscale="log", yscale="log", xlabel=xlabel, ylabel="seconds per image", title=title)
    ax.set_xticks(sizes, [str(v) for v in sizes], minor=False)
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    plain_log_axis(ax.yaxis)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return _save(fig, path, dpi=110)
