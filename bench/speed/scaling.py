"""`mnist-bench-speed --scaling`: how each implementation's steady epoch grows along two axes
of the keras_dense512 preset, the batch size (at width 512) and the hidden width (one and two
hidden layers, at batch 128), beside the machine's floor at every point. It reuses the
matrix's measurement (`measure_case`: implementations interleaved, medians over repeats) and
floor (`case_floor`), so a point here reads like a case of speed.md; and it names where the
fastest implementation changes (crossovers) and how fast each one's cost grows (slopes)."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from bench.job.settings import Job, compose_config, job_from_config
from bench.report.numbers.scaling import crossovers, noun, slopes
from bench.speed.measure import Case

PRESET = "keras_dense512"
BATCHES = (16, 64, 256, 1024, 4096)
WIDTHS = (64, 256, 1024, 4096)
FULL = {"n_train": 4096, "repeats": 3, "batches": BATCHES, "widths": WIDTHS}
QUICK = {"n_train": 512, "repeats": 2, "batches": (64, 512), "widths": (64, 512)}
AXES = {"batch": "batch", "width-1": "width (1 hidden layer)", "width-2": "width (2 hidden layers)"}
COLUMNS = ["axis", "size", "implementation", "epoch s", "spread s", "s per sample",
           "floor s per sample", "% of floor"]  # fmt: skip


@dataclass(frozen=True)
class ScalingPoint(Case):
    """A Case with the hidden layers overridden too: `measure_case` only calls `job`."""

    axis: str = "batch"
    size: int = 0
    hidden: tuple[int, ...] = (512,)

    def job(self, label: str, n_train: int | None, threads: int | None) -> Job:
        """The preset's job at this point's batch and hidden layers (no variants here)."""
        overrides = [
            f"+experiment={self.preset}",
            f"implementation={label.partition(':')[0]}",
            f"train.batch_size={self.batch_size}",
            f"model.hidden=[{','.join(map(str, self.hidden))}]",
            f"dataset.n_train={n_train or 'null'}",
            f"train.threads={threads}",
            f"device={self.device}",
        ]
        return job_from_config(compose_config(overrides))


def points(batches, widths, device: str = "cpu") -> list[ScalingPoint]:
    """The batch axis at width 512, then the width axes (1 and 2 layers) at batch 128."""
    out = [ScalingPoint(PRESET, b, device, "batch", b) for b in batches]
    for depth in (1, 2):
        out += [ScalingPoint(PRESET, 128, device, f"width-{depth}", w, (w,) * depth)
                for w in widths]  # fmt: skip
    return out


def measure_point(point: ScalingPoint, repeats, implementations, n_train, threads) -> list[dict]:
    """One row per implementation at this point: median epoch, spread, per-sample times and
    the floor measured on the point's own shapes."""
    from bench.speed.floor import case_floor
    from bench.speed.flops import train_flops
    from bench.speed.measure import measure_case

    job, n, timings = measure_case(point, repeats, implementations, n_train, threads)
    sizes = job.model.sizes
    floor_s = float("nan")  # the floor is the CPU's: a GPU point has none
    if point.device == "cpu":
        floor_s = case_floor(sizes, job.batch_size, n, job.optimizer.name, threads).epoch_s
    rows = []
    for impl, t in timings.items():
        epoch = statistics.median(t.epoch)
        rows.append({
            "axis": point.axis, "size": point.size, "implementation": impl,
            "epoch s": epoch, "min s": min(t.epoch), "max s": max(t.epoch),
            "spread s": t.spread("epoch"), "first epoch extra s": t.first_epoch - epoch,
            "s per sample": epoch / n, "floor s per sample": floor_s / n,
            "% of floor": 100 * floor_s / epoch, "work flops": n * train_flops(sizes),
        })  # fmt: skip
    return rows


def measure_scaling(settings: dict, implementations, threads, device="cpu") -> pd.DataFrame:
    """Every point of every axis, one after the other (implementations interleaved inside)."""
    rows = []
    for point in points(settings["batches"], settings["widths"], device):
        rows += measure_point(point, settings["repeats"], implementations,
                              settings["n_train"], threads)  # fmt: skip
        print(f"{point.axis} {point.size}: " + ", ".join(
            f"{r['implementation']} {r['epoch s']:.3f} s" for r in rows[-len(implementations):]
        ))  # fmt: skip
    return pd.DataFrame(rows)


def figure(table: pd.DataFrame, axis: str, path: Path) -> Path:
    """Log-log seconds per sample against size, one line per implementation, the floor
    dashed (the report's scaling figure, with the floor this benchmark measured)."""
    from bench.report.pages.plots import scaling_figure

    per_image = table["s per sample"] / table["epoch s"]
    shown = table.assign(**{"epoch s": table["s per sample"], "min s": table["min s"] * per_image,
                            "max s": table["max s"] * per_image})  # fmt: skip
    return scaling_figure(shown, AXES[axis], f"{PRESET}: {AXES[axis]}", path,
                          floor=table["floor s per sample"])  # fmt: skip


def report_sections(table: pd.DataFrame, out: Path, header: list[str]) -> tuple[list, list[Path]]:
    """scaling.md's sections (setup, then per axis its table, crossovers and figure, then the
    slopes) and the PNGs written beside it."""
    from bench.report.pages.render import Section

    sections, pngs = [Section("Setup", header)], []
    for axis, group in table.groupby("axis", sort=False):
        png = figure(group, axis, out / f"scaling-{axis}.png")
        pngs.append(png)
        shown = group[COLUMNS].copy()
        for column in ("s per sample", "floor s per sample"):
            shown[column] = shown[column].map(lambda v: f"{v:.3g}")
        lines = [f"- {c}" for c in crossovers(group, noun(axis))] or ["No crossover."]
        sections.append(Section(AXES[axis], ["Crossovers:", *lines], tables=[shown], images=[png]))
    sections.append(Section("Slopes (log-log, epoch s against work)", SLOPE_NOTE,
                            tables=[slopes(table)]))  # fmt: skip
    return sections, pngs


SLOPE_NOTE = [
    "Slope: np.polyfit of log epoch seconds on log work (train_flops x training samples) "
    "along a width axis, on log batch size along the batch axis (whose work is constant). "
    "1 means the cost grows as the work does; below 1, fixed per-step costs still dominate."
]


def setup_lines(cpu: str, threads: int, settings: dict, quick: bool) -> list[str]:
    """scaling.md's first lines: where and how it was measured."""
    return [
        f"{PRESET} on {cpu}, {threads} threads, {settings['n_train']} training images, "
        f"{settings['repeats']} repeats (medians; spread = min..max){' (--quick)' if quick else ''}.",
        "Batch axis at hidden width 512; width axes at batch 128. Floor: the point's matrix "
        "products on its own shapes plus the optimizer's memory traffic (bench/speed/floor.py); "
        "% of floor = floor / epoch. A crossover is 'within noise' when, at either adjacent "
        "size, the two implementations' repeat ranges (min..max) overlap.",
    ]


def device_label(device: str) -> str:
    """What the benchmark ran on, for its first line: the CPU's model, or the GPU's name."""
    from bench.job.environment import cpu_model

    if device == "cpu":
        return cpu_model()
    import subprocess

    found = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                           capture_output=True, text=True)  # fmt: skip
    return (found.stdout.strip().splitlines() or ["a GPU"])[0]


def log_scaling(uri, experiment, params: dict, wall_s: float, table, report: Path, pngs) -> str:
    """One MLflow run in the benchmark's experiment: the settings, the slopes as metrics,
    scaling.md, the figures and the tables (CSV)."""
    import mlflow

    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(experiment)
    with mlflow.start_run(run_name="speed-scaling") as run:
        mlflow.set_tags({"kind": "scaling", "preset": PRESET})
        mlflow.log_params(params)
        mlflow.log_metric("wall_s", wall_s)
        for row in slopes(table).to_dict("records"):
            if np.isfinite(row["slope"]):
                mlflow.log_metric(f"slope.{row['axis']}.{row['implementation']}", row["slope"])
        mlflow.log_artifact(str(report))
        for png in pngs:
            mlflow.log_artifact(str(png), artifact_path="figures")
        for axis, group in table.groupby("axis", sort=False):
            mlflow.log_text(group.to_csv(index=False), f"tables/scaling-{axis}.csv")
        mlflow.log_text(slopes(table).to_csv(index=False), "tables/slopes.csv")
    return run.info.run_id


def run_scaling(args, implementations) -> int:
    """The --scaling mode of the command: measure, write scaling.md and the PNGs, log."""
    import time

    from bench.report.pages.render import write_markdown

    started = time.perf_counter()
    settings = dict(QUICK if args.quick else FULL)
    if args.batches:  # every batch a whole one: the training images at least the largest
        settings.update(batches=args.batches, n_train=max(settings["n_train"], *args.batches))
    table = measure_scaling(settings, implementations, args.threads, args.device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    header = setup_lines(device_label(args.device), args.threads, settings, args.quick)
    sections, pngs = report_sections(table, out, header)
    report = out / "scaling.md"
    write_markdown("mnist-bench speed scaling", sections, report)
    params = {"threads": args.threads, "quick": args.quick, "n_train": settings["n_train"],
              "repeats": settings["repeats"], "implementations": ",".join(implementations),
              "device": args.device}  # fmt: skip
    wall = time.perf_counter() - started
    run_id = log_scaling(args.tracking_uri, args.experiment, params, wall, table, report, pngs)
    print(report.read_text())
    print(f"wrote {report}; MLflow run {run_id} in experiment {args.experiment}")
    return 0
