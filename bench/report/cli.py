"""`mnist-bench-report`: select runs from MLflow and write results/<name>/report.{md,html},
runs.csv and the plots."""

from __future__ import annotations

import argparse
import os
import sys

from bench.report.collect import ReportError, report_dir, select
from bench.store import TrackingError, add_store_arguments


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mnist-bench-report", description=__doc__)
    add_store_arguments(parser)
    parser.add_argument(
        "--filter", help="an MLflow filter string, e.g. \"tags.preset = 'compare'\""
    )
    parser.add_argument("--all", action="store_true", help="every run of the experiment")
    parser.add_argument(
        "--name", help="folder under --out (sanitized); default: the sweep id, filter-HASH, all"
    )
    parser.add_argument("--out", default="results")
    args = parser.parse_args(argv)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    try:
        found = select(args.tracking_uri, args.experiment, args.sweep_id, args.filter, args.all)
        from bench.report.assemble import build_report  # plotting: only once there is a report

        path = build_report(found.runs, found.label, report_dir(args.out, args.name or found.name))
    except (ReportError, TrackingError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
