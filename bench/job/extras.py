"""Optional engines stay optional: a command that asks for one whose extra is not installed
stops with one line naming the extra, before Hydra's own lookup error; and a config group
option that does not exist (`implementation=torch`) is one line naming the allowed ones, not
Hydra's twelve."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

# override prefix -> (the module the option needs, the extra that installs it)
EXTRAS = {
    "hydra/launcher=joblib": ("hydra_plugins.hydra_joblib_launcher", "joblib"),
    "hydra/launcher=submitit_": ("hydra_plugins.hydra_submitit_launcher", "slurm"),
    "hydra/sweeper=optuna": ("hydra_plugins.hydra_optuna_sweeper", "optuna"),
    "+experiment=tune": ("hydra_plugins.hydra_optuna_sweeper", "optuna"),
}


class MissingExtra(RuntimeError):
    pass


def installed(module: str) -> bool:
    """Whether a module can be imported, without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # its parent package is missing
        return False


def missing_extra_message(option: str, extra: str) -> str:
    """The one line that names the extra to install."""
    return f"{option} needs the '{extra}' extra: pip install 'mnist-bench[{extra}]'"


def check_extras(args: list[str]) -> None:
    """Raise MissingExtra for the first override whose engine is not installed."""
    for arg in args:
        for prefix, (module, extra) in EXTRAS.items():
            if arg.startswith(prefix) and not installed(module):
                raise MissingExtra(missing_extra_message(arg, extra))


class BadChoice(ValueError):
    pass


# `[+]group=a,b`: a plain choice or a comma-separated sweep of them (Hydra's other sweep
# syntax, choice(...), range(...), globs and interpolations, is left to Hydra)
CHOICE = re.compile(r"^\+{0,2}(?P<group>[a-z_]+)=(?P<values>[^\s=()\[\]{}*$'\"]+)$")


def check_choices(args: list[str], conf: Path) -> None:
    """Raise BadChoice for the first `group=option` override whose option has no file in
    the config group (`conf/<group>/<option>.yaml`)."""
    for arg in args:
        match = CHOICE.match(arg)
        if match is None or not (conf / match["group"]).is_dir():
            continue
        allowed = sorted(p.stem for p in (conf / match["group"]).glob("*.yaml"))
        for value in match["values"].split(","):
            if value not in allowed:
                raise BadChoice(f"{arg}: {match['group']} {value!r} does not exist; allowed: "
                                f"{', '.join(allowed)}")  # fmt: skip
