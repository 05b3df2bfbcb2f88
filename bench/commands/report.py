"""`mnist-bench-report`: select runs from MLflow and write results/<name>/report.{md,html},
runs.csv, verdicts.csv, summary.csv and the plots; a sweep's report also refreshes the
sweep's parent run in MLflow."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.report.numbers.collect import ReportError, select_stores
from bench.report.numbers.findings import Findings, analyse
from bench.tracking.store import TrackingError, add_store_arguments


def main(argv: list[str] | None = None) -> int:
    """Writes the report of one selection; 1 with one line when there is nothing to report."""
    parser = argparse.ArgumentParser(prog="mnist-bench-report", description=__doc__)
    add_store_arguments(parser, several=True)
    parser.add_argument(
        "--filter", help="an MLflow filter string, e.g. \"tags.preset = 'compare'\""
    )
    parser.add_argument("--all", action="store_true", help="every run of the experiment")
    parser.add_argument(
        "--name", help="folder under --out (sanitized); default: the sweep id, filter-HASH, all"
    )
    parser.add_argument("--out", default="results")
    parser.add_argument(
        "--with-paths",
        action="store_true",
        help="keep absolute local paths (store, data, home folders) in the report",
    )
    args = parser.parse_args(argv)
    args.tracking_uri = args.tracking_uri or args.several_default
    if args.all and (args.sweep_id or args.filter):
        parser.error("--all selects every run of the experiment: give it without --sweep-id "
                     "or --filter")  # fmt: skip
    try:
        selection = select_stores(args.tracking_uri, args.experiment, args.sweep_id, args.filter,
                                  args.all)  # fmt: skip
        findings = analyse(selection)
        from bench.report.pages.assemble import build_report, report_dir  # plotting: only now

        folder = report_dir(args.out, args.name or selection.name)
        path = build_report(findings, folder, with_paths=args.with_paths)
    except (ReportError, TrackingError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {path}")
    if selection.sweep_id and len(args.tracking_uri) == 1:  # its parent run shows it too
        refresh_parent(args, findings, path.parent)
    return 0


def refresh_parent(args, findings: Findings, report_dir: Path) -> None:
    """The reported sweep's parent run gets this report and its summary; a failure costs a
    warning, the report is written."""
    from bench.sweep.summary import publish
    from bench.tracking.ui import run_link, ui_of

    sweep_id = findings.selection.sweep_id
    try:
        experiment_id, parent = publish(findings, args.tracking_uri[0], args.experiment, report_dir)
    except Exception as e:  # noqa: BLE001
        reason = str(e).splitlines()[0] if str(e) else ""
        print(f"warning: sweep {sweep_id}'s parent run not updated: {type(e).__name__}: {reason}",
              file=sys.stderr)  # fmt: skip
        return
    link = run_link(experiment_id, parent, ui_of(args.tracking_uri[0]))
    print(f"updated the summary of sweep {sweep_id}: {link}")


if __name__ == "__main__":
    sys.exit(main())
