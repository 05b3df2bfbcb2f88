"""`make ui`'s first line: the direct link to the runs page of a store's experiment (MLflow 3
would open the experiment on its GenAI overview), before `mlflow ui` starts."""

from __future__ import annotations

import argparse
import sys

from bench.tracking.store import add_store_arguments, open_experiment
from bench.tracking.ui import UI, runs_link


def main(argv: list[str] | None = None) -> int:
    """Prints the direct link to the runs page of the local store's experiment."""
    parser = argparse.ArgumentParser(prog="python -m bench.commands.ui", description=main.__doc__)
    add_store_arguments(parser, sweeps=False)
    parser.add_argument("--ui", default=UI)
    args = parser.parse_args(argv)
    try:
        experiment_id = open_experiment(args.tracking_uri, args.experiment)
    except Exception as e:  # noqa: BLE001 - no store yet: the UI still opens
        print(f"MLflow UI: {args.ui} (no experiment {args.experiment!r} yet: {e})")
        return 0
    print(f"MLflow runs: {runs_link(experiment_id, args.ui)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
