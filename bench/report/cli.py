"""`mnist-bench-report`: select runs from MLflow and write results/<name>/report.{md,html},
runs.csv and the plots."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from bench.report.assemble import build_report
from bench.report.collect import ReportError, select_runs
from bench.store import add_store_arguments


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mnist-bench-report", description=__doc__)
    add_store_arguments(parser)
    parser.add_argument(
        "--filter", help="an MLflow filter string, e.g. \"tags.preset = 'compare'\""
    )
    parser.add_argument("--all", action="store_true", help="every run of the experiment")
    parser.add_argument("--name", help="folder under --out; default: the sweep id")
    parser.add_argument("--out", default="results")
    args = parser.parse_args(argv)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    try:
        runs, label = select_runs(
            args.tracking_uri, args.experiment, args.sweep_id, args.filter, args.all
        )
        name = args.name or label.split()[-1].strip("'").replace(" ", "_")
        path = build_report(runs, label, Path(args.out) / name)
    except ReportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
