"""`mnist-bench-speed`: the speed benchmark. One process measures the matrix-product peak,
every case of the matrix (implementations interleaved), the per-phase breakdown, the
harness overhead and the startup costs; it logs them to MLflow (experiment
`mnist-bench-speed`) and writes results/speed/speed.md.

    mnist-bench-speed                 # the full matrix, 5 repeats (about 10 minutes)
    mnist-bench-speed --quick         # one small case, 2 repeats: checks that it all works
    mnist-bench-speed --case keras_dense512:128 --repeats 9   # one case of the matrix
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from bench.report.render import Section, write_markdown
from bench.speed.floor import Floor, case_floor
from bench.speed.flops import forward_flops, matmul_peak_gflops, train_flops
from bench.speed.measure import CASES, Case, Timings, measure_case, variant_labels
from implementations import registry


def parse_case(text: str) -> Case:
    """PRESET or PRESET:BATCH, the preset one of conf/experiment's."""
    from bench.app import CONFIG_DIR

    preset, _, batch = text.partition(":")
    presets = sorted(p.stem for p in (Path(CONFIG_DIR) / "experiment").glob("*.yaml"))
    if preset not in presets:
        raise argparse.ArgumentTypeError(f"unknown preset {preset!r}; one of {', '.join(presets)}")
    if batch and not (batch.isdigit() and int(batch) > 0):
        raise argparse.ArgumentTypeError(f"batch {batch!r} in {text!r} must be a positive integer")
    return Case(preset, int(batch) if batch else None)


def parse_implementation(name: str) -> str:
    if name not in registry():
        raise argparse.ArgumentTypeError(
            f"unknown implementation {name!r}; one of {', '.join(registry())}"
        )
    return name


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


def measure_variants(case: Case, repeats: int, implementations, n_train, threads) -> pd.DataFrame:
    """Each implementation's default options beside its declared variants (VARIANTS in its
    module), interleaved like the matrix; the best of each implementation is marked."""
    labels = variant_labels(implementations)
    _, _, timings = measure_case(case, repeats, labels, n_train, threads)
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
                "first epoch s": t.first_epoch,
            }
            for label, t in timings.items()
        ]
    )
    best = table.groupby("implementation")["epoch s"].transform("min")
    table["best"] = (table["epoch s"] == best).map({True: "best", False: ""})
    return table


def floor_row(case: Case, batch: int, floor: Floor) -> dict:
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


def write_report(tables: dict[str, pd.DataFrame], header: list[str], path: Path) -> None:
    sections = [Section("Setup", header)]
    sections += [Section(title, tables=[table]) for title, table in tables.items()]
    write_markdown("mnist-bench speed benchmark", sections, path)


def log_to_mlflow(uri: str, experiment: str, params, metrics, results, report: Path) -> str:
    """One parent run for the benchmark, one child run per case and implementation."""
    import mlflow

    from bench.environment import environment_tags

    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(experiment)
    versions = {k: v for impl in registry().values() for k, v in impl.versions().items()}
    with mlflow.start_run(run_name=f"speed-{datetime.now():%Y%m%d-%H%M%S}") as parent:
        mlflow.set_tags(environment_tags("cpu", params["threads"], versions))
        mlflow.log_params(params)
        mlflow.log_metrics(metrics)
        mlflow.log_artifact(str(report))
        for row in results.to_dict("records"):
            name = f"{row['case']} {row['implementation']}"
            with mlflow.start_run(run_name=name, nested=True):
                mlflow.set_tags({"case": row["case"], "implementation": row["implementation"]})
                mlflow.log_metrics(
                    {k.replace("%", "pct").replace("/", "_per_").replace(" ", "_").replace("+", "_"): v
                     for k, v in row.items() if isinstance(v, float)}
                )  # fmt: skip
    return parent.info.run_id


def main(argv: list[str] | None = None) -> int:
    from bench.store import add_store_arguments

    parser = argparse.ArgumentParser(prog="mnist-bench-speed", description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--threads", type=int, default=2, help="the thread budget, as train.threads"
    )
    parser.add_argument("--quick", action="store_true", help="one small case, 2 repeats")
    parser.add_argument(
        "--case",
        type=parse_case,
        action="append",
        metavar="PRESET[:BATCH]",
        help="measure this case instead of the whole matrix (repeatable)",
    )
    parser.add_argument(
        "--implementation",
        type=parse_implementation,
        action="append",
        metavar="NAME",
        help="measure this implementation (repeatable); default: every registered one",
    )
    parser.add_argument("--out", default="results/speed")
    add_store_arguments(parser, experiment="mnist-bench-speed", sweeps=False)
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.threads < 1:
        parser.error(f"--repeats={args.repeats} and --threads={args.threads} must be >= 1")
    implementations = args.implementation or list(registry())
    cases, n_train, repeats = CASES, None, args.repeats
    if args.quick:
        cases, n_train, repeats = (Case("keras_dense512", 128),), 3000, 2
    cases = args.case or cases
    started = time.perf_counter()

    peak = matmul_peak_gflops(args.threads)
    print(f"float32 matrix-product peak ({args.threads} threads): {peak:.0f} GFLOP/s")
    epoch_tables, floors, phases = [], [], []
    for case in cases:
        job, n, timings = measure_case(case, repeats, implementations, n_train, args.threads)
        sizes, batch = job.model.sizes, job.batch_size
        floor = case_floor(sizes, batch, n, job.optimizer.name, args.threads)
        floors.append(floor_row(case, batch, floor))
        epoch_tables.append(case_rows(case, job, n, 10_000, timings, peak, floor))
        phases += phase_rows(case, timings)
        print(
            epoch_tables[-1][["case", "implementation", "epoch s", "GFLOP/s"]].to_string(
                index=False
            )
        )
    results = pd.concat(epoch_tables, ignore_index=True)
    variants = measure_variants(cases[0], repeats, implementations, n_train, args.threads)
    print(variants.to_string(index=False))

    from bench.speed.overhead import harness_overhead
    from bench.speed.startup import SHARED_MODULES, first_epoch_seconds, import_seconds

    small = min(repeats, 1 if args.quick else 3)  # each of these takes whole processes
    with_harness, bare, overhead = harness_overhead(
        repeats=1 if args.quick else max(repeats, 5), n_train=n_train
    )
    modules = {
        f"{i} ({registry()[i].module_name})": registry()[i].module_name for i in implementations
    }
    modules.update({m: m for m in SHARED_MODULES})
    imports = {label: import_seconds(m, repeats=small) for label, m in modules.items()}
    to_first_epoch = first_epoch_seconds(implementations, repeats=small)

    speed_cols = [
        "case",
        "batch",
        "implementation",
        "epoch s",
        "vs fastest",
        "GFLOP/s",
        "% of peak",
        "% of floor",
        "eval s",
        "eval GFLOP/s",
    ]
    first_cols = ["case", "implementation", "eval s", "first-epoch extra s"]
    tables = {
        "Floor (same run)": pd.DataFrame(floors),
        "Epoch time": results[speed_cols],
        f"Variants ({cases[0].name}): each framework's documented settings": variants,
        "Where the time goes (per epoch)": pd.DataFrame(phases),
        "Evaluation and first epoch": results[first_cols],
        "Startup": pd.DataFrame(
            [{"implementation": i, "command to first epoch s": s} for i, s in to_first_epoch.items()]
        ),
        "Import cost (fresh interpreter)": pd.DataFrame(
            [{"module": m, "import s": s} for m, s in imports.items()]
        ),
    }  # fmt: skip
    from bench.environment import cpu_model

    header = [
        f"Measured {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC on {cpu_model()}, "
        f"{args.threads} threads, {repeats} repeats (medians), "
        f"{n_train or 'all'} training images{' (--quick)' if args.quick else ''}.",
        "Floor: per case, the epoch's matrix products timed on the case's own shapes plus the "
        "optimizer's minimum memory traffic (parameters, gradients and state read, parameters "
        "and state written once per step) at the bandwidth measured on arrays of the "
        "parameters' size (the better of one thread and the thread budget); % of floor = "
        "floor / epoch time (100% = this machine's limit).",
        f"Float32 matrix-product peak (2048 x 2048, same run): **{peak:.0f} GFLOP/s**. "
        "GFLOP/s counts the matrix products of a training epoch (forward, weight gradients, "
        "input gradients past the first layer) over the median epoch time.",
        f"Harness overhead (5-epoch NumPy `compare` run, MLflow + progress + timing vs the bare "
        f"loop; medians {with_harness:.2f} s vs {bare:.2f} s; median of the paired, alternating "
        f"runs): **{100 * overhead:+.1f}%**.",
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
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = out / "speed.md"
    write_report(tables, header, report)
    metrics = {
        "matmul_peak_gflops": peak,
        "harness_overhead": overhead,
        "wall_s": time.perf_counter() - started,
    }
    metrics.update({f"import_s.{m.split()[0]}": s for m, s in imports.items()})
    metrics.update({f"startup_s.{i}": s for i, s in to_first_epoch.items()})
    params = {"repeats": repeats, "threads": args.threads, "quick": args.quick, "n_train": n_train}
    run_id = log_to_mlflow(args.tracking_uri, args.experiment, params, metrics, results, report)
    print(report.read_text())
    print(f"wrote {report}; MLflow run {run_id} in experiment {args.experiment}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
