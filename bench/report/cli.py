"""`mnist-bench-report`: select runs from MLflow and write results/<name>/report.{md,html},
runs.csv and the plots."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

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
    if found.label.startswith("sweep "):  # the sweep's parent run shows this report too
        refresh_parent(args, found.label.split()[1], path.parent)
    return 0


def refresh_parent(args, sweep_id: str, report_dir: Path) -> None:
    """The reported sweep's parent run gets this report and its summary; a failure costs a
    warning, the report is written."""
    from bench.mlflow_ui import run_link
    from bench.sweep_summary import publish

    try:
        experiment_id, parent = publish(args.tracking_uri, args.experiment, sweep_id, report_dir)
    except Exception as e:  # noqa: BLE001
        reason = str(e).splitlines()[0] if str(e) else ""
        print(f"warning: sweep {sweep_id}'s parent run not updated: {type(e).__name__}: {reason}",
              file=sys.stderr)  # fmt: skip
        return
    print(f"updated the summary of sweep {sweep_id}: {run_link(experiment_id, parent)}")


if __name__ == "__main__":
    sys.exit(main())
