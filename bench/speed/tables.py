"""The speed benchmark's tables and its report: rows per case and implementation (epoch time,
GFLOP/s, share of the peak and of the floor), the phases, the floors, the variants, and
speed.md's setup lines."""

from __future__ import annotations

import statistics
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from bench.report.pages.render import Section, write_markdown
from bench.speed.floor import Floor
from bench.speed.flops import forward_flops, train_flops
from bench.speed.measure import Case, Timings
from implementations import registry

SPEED_COLUMNS = ["case", "batch", "implementation", "epoch s", "spread s", "vs fastest",
                 "GFLOP/s", "% of peak", "% of floor", "eval s", "eval GFLOP/s"]  # fmt: skip
FIRST_COLUMNS = ["case", "implementation", "eval s", "first-epoch extra s"]
METHOD = [
    "Floor: per case, the epoch's matrix products timed on the case's own shapes plus the "
    "optimizer's minimum memory traffic (parameters, gradients and state read, parameters "
    "and state written once per step) at the bandwidth measured on arrays of the "
    "parameters' size (the better of one thread and the thread budget); % of floor = "
    "floor / epoch time (100% = this machine's limit).",
    "Phases: where the network offers it (`timed_train_epoch`: NumPy), each repeat runs "
    "one more epoch of the real training steps with a clock read at each step's phase "
    "boundaries (a device sync first on a GPU): forward (loss included), backward, update "
    "and the rest of the epoch, all positive and adding up to it. A compiled step (XLA, "
    "tf.function, Keras' fit, jax.jit) hides its phases: there, epochs of steps stopped "
    "after the forward pass and after the backward pass give forward, backward = their "
    "difference and update+rest = epoch - both (Keras' fit machinery lands in update+rest); "
    "the host's noise can push a difference of separate epochs below zero, shown as "
    "'~0 (below the noise)'. The spread is the smallest and largest value over repeats. "
    "First-epoch extra = first epoch - median epoch (tracing and compilation). Import cost: "
    "an implementation's module with its framework, and the modules every run imports.",
]


def case_rows(case: Case, job, n_train: int, n_test: int, timings: dict[str, Timings], peak, floor):
    """One row per implementation: medians, GFLOP/s, share of the peak and of the case's
    floor, time relative to the fastest implementation of the case, and the phases
    (backward = gradients - forward; update = epoch - gradients)."""
    rows = []
    sizes = job.model.sizes
    for impl, t in timings.items():
        epoch = t.median("epoch")
        gflops = n_train * train_flops(sizes) / epoch / 1e9
        rows.append(
            {
                "case": case.name,
                "batch": job.batch_size,
                "implementation": impl,
                "epoch s": epoch,
                "spread s": t.spread("epoch"),
                "eval s": t.median("evaluation"),
                "GFLOP/s": gflops,
                "% of peak": 100 * gflops / peak,
                "% of floor": 100 * floor.epoch_s / epoch,
                "eval GFLOP/s": n_test * forward_flops(sizes) / t.median("evaluation") / 1e9,
                "first-epoch extra s": t.first_epoch - epoch,
            }
        )
    table = pd.DataFrame(rows)
    table["vs fastest"] = table["epoch s"] / table["epoch s"].min()
    return table


def phase_rows(case: Case, timings: dict[str, Timings]) -> list[dict]:
    """Per implementation and phase: median seconds per epoch and the spread over repeats. A
    median below zero (possible only for differences of separate epochs) is shown as such a
    component being below the noise, never as a negative time."""
    rows = []
    for impl, t in timings.items():
        method, parts = t.phases()
        for phase, values in parts.items():
            median = statistics.median(values)
            rows.append(
                {
                    "case": case.name,
                    "implementation": impl,
                    "phase": phase,
                    "median s": f"{median:.3f}" if median > 0 else "~0 (below the noise)",
                    "spread over repeats": f"{min(values):.3f} to {max(values):.3f}",
                    "measured by": method,
                }
            )
    return rows


def variants_table(timings: dict) -> pd.DataFrame:
    """Each implementation's default options beside its declared variants (VARIANTS in its
    module), timed in one interleaved loop (the epoch table's first case: its default rows
    are the same measurements); the best of each implementation is marked."""
    table = pd.DataFrame(
        [
            {
                "implementation": label.split(":")[0],
                "variant": label.partition(":")[2] or "default",
                "options": ", ".join(
                    f"{k}={v}"
                    for k, v in registry()[label.split(":")[0]]
                    .variants()
                    .get(label.partition(":")[2], {})
                    .items()
                ),
                "epoch s": t.median("epoch"),
                "spread s": t.spread("epoch"),
                "first epoch s": t.first_epoch,
            }
            for label, t in timings.items()
        ]
    )
    best = table.groupby("implementation")["epoch s"].transform("min")
    table["best"] = (table["epoch s"] == best).map({True: "best", False: ""})
    return table


def floor_row(case: Case, batch: int, floor: Floor) -> dict:
    """One row of the floor table."""
    return {
        "case": case.name,
        "batch": batch,
        "steps": floor.steps,
        "products s": floor.products_s,
        "update s": floor.update_s,
        "floor s": floor.epoch_s,
        "GFLOP/s at the case's shapes": floor.gflops_at_shapes,
        "GB/s at the parameters' size": floor.bandwidth_gbs,
        "GB/s out of cache": floor.large_bandwidth_gbs,
    }


def speed_tables(results, floors, phases, variants, startup, first_case: Case) -> dict:
    """speed.md's tables, in order, by title."""
    return {
        "Floor (same run)": pd.DataFrame(floors),
        "Epoch time": results[SPEED_COLUMNS],
        f"Variants ({first_case.name}): each framework's documented settings": variants,
        "Where the time goes (per epoch)": pd.DataFrame(phases),
        "Evaluation and first epoch": results[FIRST_COLUMNS],
        "Startup": pd.DataFrame(
            [{"implementation": i, "command to first epoch s": s}
             for i, s in startup.to_first_epoch.items()]
        ),
        "Import cost (fresh interpreter)": pd.DataFrame(
            [{"module": m, "import s": s} for m, s in startup.imports.items()]
        ),
    }  # fmt: skip


def setup_lines(cpu: str, threads: int, repeats: int, n_train, quick: bool, peak: float,
                startup) -> list[str]:  # fmt: skip
    """speed.md's first section: where, how and what was measured."""
    return [
        f"Measured {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC on {cpu}, "
        f"{threads} threads, {repeats} repeats (medians), "
        f"{n_train or 'all'} training images{' (--quick)' if quick else ''}.",
        METHOD[0],
        f"Float32 matrix-product peak (2048 x 2048, same run): **{peak:.0f} GFLOP/s**. "
        "GFLOP/s counts the matrix products of a training epoch (forward, weight gradients, "
        "input gradients past the first layer) over the median epoch time.",
        f"Harness overhead (5-epoch NumPy `compare` run, MLflow + progress + timing vs the bare "
        f"loop; medians {startup.with_harness:.2f} s vs {startup.bare:.2f} s; median of the "
        f"paired, alternating runs): **{100 * startup.overhead:+.1f}%**.",
        METHOD[1],
    ]


def write_report(tables: dict[str, pd.DataFrame], header: list[str], path: Path) -> None:
    """speed.md: the setup lines, then one section per table."""
    sections = [Section("Setup", header)]
    sections += [Section(title, tables=[table]) for title, table in tables.items()]
    write_markdown("mnist-bench speed benchmark", sections, path)
