"""`mnist-bench-audit`: what the latest sweep (or --sweep-id) is missing, and the one command
that runs only the holes (bench.sweep.audit)."""

from __future__ import annotations

import argparse
import sys

from mlflow.exceptions import MlflowException

from bench.sweep.audit import audit
from bench.tracking.store import (
    StoreError,
    TrackingError,
    add_store_arguments,
    check_sweep_id,
    one_line,
    open_experiment,
    reap_stale_runs,
)


def main(argv: list[str] | None = None) -> int:
    """Prints each hole of the sweep and the command that fills them; 0 when complete."""
    parser = argparse.ArgumentParser(prog="mnist-bench-audit", description=__doc__)
    add_store_arguments(parser)
    args = parser.parse_args(argv)
    try:
        check_sweep_id(args.sweep_id)
        experiment_id = open_experiment(args.tracking_uri, args.experiment)
        reap_stale_runs(experiment_id)  # a dead process's run is a hole, not RUNNING
        parent, jobs, command = audit(experiment_id, args.sweep_id)
    except (StoreError, TrackingError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except MlflowException as e:
        print(f"error: the store at {args.tracking_uri}: {one_line(e)}", file=sys.stderr)
        return 2
    counts = {s: sum(j.status == s for j in jobs) for s in dict.fromkeys(j.status for j in jobs)}
    summary = ", ".join(f"{n} {s}" for s, n in counts.items())
    print(f"sweep {parent.data.tags.get('sweep_id')}: {len(jobs)} jobs: {summary}")
    if stop := parent.data.tags.get("sweep_stop"):  # a sequential sweep's end (sweep.until_decided)
        print(f"sequential rule: {stop}")
    for job in jobs:
        if job.is_hole:
            reason = f"  ({job.reason})" if job.reason else ""
            print(f"  {job.status:<8} {' '.join(job.overrides)}{reason}")
    if not jobs:
        print("empty: the sweep's grid has no jobs")
        return 1
    if command is None:
        print("complete: every job of the grid has a FINISHED run")
        return 0
    print("run only the holes (configs already FINISHED are skipped):")
    print(f"  {command}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
