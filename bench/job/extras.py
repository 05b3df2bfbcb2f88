"""Optional engines stay optional: a command that asks for one whose extra is not installed
stops with one line naming the extra, before Hydra's own lookup error."""

from __future__ import annotations

import importlib.util

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
