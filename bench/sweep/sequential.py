"""The sweeper every `-m` sweep runs: Hydra's basic sweeper, and with `sweep.until_decided=true`
the sequential rule (bench.report.numbers.sequential) on top of it.

The first look is the grid as the basic sweeper runs it. After each look, the sweep's verdicts
are computed from the store as the report computes them; for each comparison whose pairs are
still undecided, the next `sweep.seed_batch` seeds are added for the implementations of those
pairs, as ordinary jobs of the grid (any launcher runs them; a resumed sweep finds them
FINISHED and skips them). It stops when every verdict is decided or the pairs have
`sweep.max_seeds` seeds, and records on the parent run what it did: the looks, the seeds each
pair took, and why it stopped (`sequential.json`, and the parent's `sweep_stop` tag)."""

from __future__ import annotations

import logging
import re

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser

log = logging.getLogger("bench")
SEED = re.compile(r"^seed=(\d+)$")


class SequentialSweeper(BasicSweeper):
    def __init__(self, max_batch_size=None, params=None):
        super().__init__(max_batch_size=max_batch_size, params=params)

    def sweep(self, arguments):
        sweep = self.config.sweep
        if not sweep.until_decided:
            return super().sweep(arguments)
        first = first_seeds([*self._parse_config(), *arguments], self.hydra_context)
        tag = f"sweep.first_seeds={first}"
        returns = super().sweep([*arguments, tag])
        jobs = [job for batch in self.overrides for job in batch]
        looks, index = [first], len(jobs)
        while True:
            state = self.undecided()
            seeds = max(int(SEED.match(o).group(1)) for job in jobs for o in job if SEED.match(o))
            if not state["undecided"]:
                stop = "every verdict decided"
                break
            if looks[-1] >= sweep.max_seeds:
                stop = f"sweep.max_seeds={sweep.max_seeds} reached"
                break
            more = min(sweep.seed_batch, sweep.max_seeds - looks[-1])
            batch = added_jobs(jobs, state["undecided"], state["templates"],
                               range(seeds + 1, seeds + 1 + more))  # fmt: skip
            looks.append(looks[-1] + more)
            log.info("sequential: look %d at %d seeds, %d jobs for %s", len(looks), looks[-1],
                     len(batch), ", ".join(sorted(state["undecided_pairs"])))  # fmt: skip
            self.validate_batch_is_legal(batch)
            returns.append(self.launcher.launch(batch, initial_job_idx=index))
            index += len(batch)
            jobs += batch
            record_added(batch, self.config.hydra.job.config_name)
        record_stop(looks, stop, state, sweep)
        return returns

    def undecided(self) -> dict:
        """The sweep's verdicts so far, as the report computes them: the pairs still
        undecided, by comparison (its `setting`), and each comparison's job template."""
        from bench.job.settings import tracking_settings
        from bench.report.numbers.collect import select
        from bench.report.numbers.findings import analyse
        from bench.tracking.store import tracking_uri
        from bench.tracking.sweep_env import SweepEnv

        tracking = tracking_settings(self.config.tracking)
        sweep_id = SweepEnv.current().sweep_id
        findings = analyse(select(tracking_uri(tracking), tracking.experiment, sweep_id))
        v, rows = findings.verdicts, findings.rows
        open_ = v[v.verdict == "undecided"]  # "not tested" (a censored time) more seeds may not fix
        undecided = {}
        for r in open_.itertuples():
            undecided.setdefault(r.setting, set()).update({r.a, r.b})
        runs = findings.runs.set_index("run_id")
        templates = {}
        for r in rows[rows.status == "FINISHED"].itertuples():
            words = str(runs.at[r.run_id, "tags.hydra_overrides"]).split()
            templates.setdefault(template(words), r.setting)
        seeds = {f"{r.a} vs {r.b} ({r.setting})": r.n for r in v.itertuples()
                 if r.quantity == "epoch_time"}  # fmt: skip
        pairs = {f"{r.a} vs {r.b}" for r in open_.itertuples()}
        return {"undecided": undecided, "templates": templates, "seeds": seeds,
                "undecided_pairs": pairs}  # fmt: skip


def first_seeds(overrides: list[str], hydra_context) -> int:
    """How many seeds the grid runs: the values of its `seed` sweep (1 without one)."""
    parser = OverridesParser.create(config_loader=hydra_context.config_loader)
    found = 1
    for override in parser.parse_overrides(overrides):  # the command's own comes last: it wins
        if override.get_key_element() == "seed":
            found = (
                len(list(override.sweep_string_iterator())) if override.is_sweep_override() else 1
            )
    return found


def template(words) -> str:
    """A job's overrides without its seed and sweep bookkeeping: the job of any seed."""
    return " ".join(sorted(w for w in words if not SEED.match(w) and not w.startswith("sweep.")))


def added_jobs(jobs, undecided: dict, templates: dict, seeds) -> list[list[str]]:
    """For each new seed, the grid's jobs of comparisons still undecided, for the
    implementations of their undecided pairs."""
    batch, seen = [], set()
    for job in jobs:
        key = template(job)
        setting = templates.get(key)
        impl = next((w.split("=", 1)[1] for w in job if w.startswith("implementation=")), None)
        if setting not in undecided or impl not in undecided[setting] or key in seen:
            continue
        seen.add(key)
        for seed in seeds:
            batch.append([f"seed={seed}" if SEED.match(w) else w for w in job])
    return batch


def record_added(batch, config_name: str) -> None:
    """The added jobs join the sweep's recorded grid, so its audit and resume know them."""
    from bench.sweep.callback import grid_entries
    from bench.tracking.store import append_grid
    from bench.tracking.sweep_env import SweepEnv

    append_grid(SweepEnv.current().parent_run_id, grid_entries(batch, config_name))


def record_stop(looks, stop: str, state: dict, sweep) -> None:
    """The parent run says how the rule ended: its looks, the planned ones and the level they
    set for every interval, each pair's seeds, why it stopped."""
    from bench.report.numbers.sequential import level_per_look, schedule
    from bench.report.numbers.stats import LEVEL
    from bench.tracking.store import record_sequential
    from bench.tracking.sweep_env import SweepEnv

    planned = schedule(looks[0], sweep.seed_batch, sweep.max_seeds)
    summary = {"looks": looks, "planned": list(planned), "level": LEVEL,
               "level_per_look": float(level_per_look(planned)), "stopped": stop,
               "seeds": state["seeds"], "undecided": sorted(state["undecided_pairs"])}  # fmt: skip
    record_sequential(SweepEnv.current().parent_run_id, summary)
    log.info("sequential: stopped after %d looks (%s)", len(looks), stop)
