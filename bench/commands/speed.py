"""`mnist-bench-speed`: the speed benchmark. One process measures the matrix-product peak,
every case of the matrix (implementations interleaved), the per-phase breakdown, the
harness overhead and the startup costs; it logs them to MLflow (experiment
`mnist-bench-speed`) and writes results/speed/speed.md.

    mnist-bench-speed                 # the full matrix, 5 repeats (about 10 minutes)
    mnist-bench-speed --quick         # one small case, 2 repeats: checks that it all works
    mnist-bench-speed --case keras_dense512:128 --repeats 9   # one case of the matrix
    mnist-bench-speed --scaling       # batch and width scaling only, writes scaling.md
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import pandas as pd

from bench.job.settings import CONF
from bench.speed.measure import CASES, Case
from implementations import registry


def parse_case(text: str) -> Case:
    """PRESET or PRESET:BATCH, the preset one of conf/experiment's."""
    preset, _, batch = text.partition(":")
    presets = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))
    if preset not in presets:
        raise argparse.ArgumentTypeError(f"unknown preset {preset!r}; one of {', '.join(presets)}")
    if batch and not (batch.isdigit() and int(batch) > 0):
        raise argparse.ArgumentTypeError(f"batch {batch!r} in {text!r} must be a positive integer")
    return Case(preset, int(batch) if batch else None)


def parse_batches(text: str) -> tuple[int, ...]:
    """--batches: comma-separated positive batch sizes."""
    words = text.split(",")
    if not all(w.isdigit() and int(w) > 0 for w in words):
        raise argparse.ArgumentTypeError(
            f"--batches {text!r} must be positive integers, e.g. 16,256"
        )
    return tuple(int(w) for w in words)


def parse_implementation(name: str) -> str:
    """An argparse type: a registered implementation's name."""
    if name not in registry():
        raise argparse.ArgumentTypeError(
            f"unknown implementation {name!r}; one of {', '.join(registry())}"
        )
    return name


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The benchmark's options, checked."""
    from bench.tracking.store import add_store_arguments

    parser = argparse.ArgumentParser(prog="mnist-bench-speed", description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--threads", type=int, default=2, help="the thread budget, as train.threads"
    )
    parser.add_argument("--quick", action="store_true", help="one small case, 2 repeats")
    parser.add_argument(
        "--scaling",
        action="store_true",
        help="only the batch and width scaling of keras_dense512 (scaling.md); "
        "with --quick, 2 points per axis on a few images",
    )
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
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu",
                        help="gpu: CuPy's, JAX's and PyTorch's CUDA, synchronized timings")  # fmt: skip
    parser.add_argument("--batches", type=parse_batches, metavar="B,B,...",
                        help="the batch axis of --scaling, e.g. 16,256,4096,16384")  # fmt: skip
    parser.add_argument("--out", default="results/speed")
    add_store_arguments(parser, experiment="mnist-bench-speed", sweeps=False)
    args = parser.parse_args(argv)
    if args.device == "gpu" and not args.scaling:
        parser.error(
            "--device gpu measures the --scaling axes only (the matrix's floor is a CPU's)"
        )
    if args.batches and not args.scaling:
        parser.error("--batches sets the batch axis of --scaling: give it with --scaling")
    if args.repeats < 1 or args.threads < 1:
        parser.error(f"--repeats={args.repeats} and --threads={args.threads} must be >= 1")
    return args


def measure_matrix(cases, repeats, implementations, n_train, threads, peak):
    """Every case, implementations interleaved: the epoch rows, the floors, the phases, and the
    first case's variants. The first case times each framework's declared variants in the same
    interleaved loop as its defaults, so the variant table's default rows are the epoch table's
    own measurements: one measurement of a configuration, never two that can disagree."""
    from bench.speed.floor import case_floor
    from bench.speed.measure import measure_case, variant_labels
    from bench.speed.tables import case_rows, floor_row, phase_rows

    epoch_tables, floors, phases, variants = [], [], [], {}
    for i, case in enumerate(cases):
        labels = variant_labels(implementations) if i == 0 else implementations
        job, n, timings = measure_case(case, repeats, labels, n_train, threads)
        if i == 0:
            variants = timings
            timings = {label: t for label, t in timings.items() if label in implementations}
        sizes, batch = job.model.sizes, job.batch_size
        floor = case_floor(sizes, batch, n, job.optimizer.name, threads)
        floors.append(floor_row(case, batch, floor))
        epoch_tables.append(case_rows(case, job, n, 10_000, timings, peak, floor))
        phases += phase_rows(case, timings)
        shown = epoch_tables[-1][["case", "implementation", "epoch s", "GFLOP/s"]]
        print(shown.to_string(index=False))
    return pd.concat(epoch_tables, ignore_index=True), floors, phases, variants


def main(argv: list[str] | None = None) -> int:
    """Measures the cases, writes speed.md and logs the benchmark to MLflow."""
    from bench.job.environment import cpu_model
    from bench.speed.flops import matmul_peak_gflops
    from bench.speed.log import log_to_mlflow
    from bench.speed.startup import measure_startup
    from bench.speed.tables import setup_lines, speed_tables, variants_table, write_report

    args = parse_args(argv)
    # MLflow's INFO lines ("Experiment ... does not exist. Creating") stay off the console,
    # which shows only the benchmark's own lines
    logging.getLogger("mlflow").setLevel(logging.WARNING)  # configured by its import above
    implementations = args.implementation or list(registry())
    if args.scaling:
        from bench.speed.scaling import run_scaling

        return run_scaling(args, implementations)
    cases, n_train, repeats = CASES, None, args.repeats
    if args.quick:
        cases, n_train, repeats = (Case("keras_dense512", 128),), 3000, 2
    cases = args.case or cases
    started = time.perf_counter()

    peak = matmul_peak_gflops(args.threads)
    print(f"float32 matrix-product peak ({args.threads} threads): {peak:.0f} GFLOP/s")
    results, floors, phases, timings = measure_matrix(
        cases, repeats, implementations, n_train, args.threads, peak
    )
    variants = variants_table(timings)
    print(variants.to_string(index=False))
    startup = measure_startup(implementations, repeats, n_train, args.quick)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = out / "speed.md"
    tables = speed_tables(results, floors, phases, variants, startup, cases[0])
    header = setup_lines(cpu_model(), args.threads, repeats, n_train, args.quick, peak, startup)
    write_report(tables, header, report)
    metrics = {
        "matmul_peak_gflops": peak,
        "harness_overhead": startup.overhead,
        "wall_s": time.perf_counter() - started,
    }
    metrics.update({f"import_s.{m.split()[0]}": s for m, s in startup.imports.items()})
    metrics.update({f"startup_s.{i}": s for i, s in startup.to_first_epoch.items()})
    params = {"repeats": repeats, "threads": args.threads, "quick": args.quick, "n_train": n_train}
    run_id = log_to_mlflow(args.tracking_uri, args.experiment, params, metrics, results, report)
    print(report.read_text())
    print(f"wrote {report}; MLflow run {run_id} in experiment {args.experiment}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
