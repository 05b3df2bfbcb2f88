"""The implementations: one module each, registered by one file each in conf/implementation/.

A module must provide `build(model, optimizer, batch_size, weights, seed, **options)`, which
returns a `Network` (implementations.base). Everything specific to its framework lives in the
module too, as optional module-level verbs; `Implementation` supplies the default for each one
a module leaves out, so the harness, the speed benchmark and the environment tags ask an
`Implementation` and never a framework's name:

    configure(threads, device)  process-wide settings before the framework's first op (thread
                                pools, visible devices); raise SpecError where they cannot apply.
                                Default: the thread budget is the harness's BLAS limit, and
                                device=gpu is refused.
    set_seed(seed)              seed the framework and drop state an earlier job left behind.
    synchronize()               wait for queued device work (called on a GPU only).
    device_peak_mb()            the device memory high-water mark in MB, or None (GPU only).
    versions()                  {package: version} of what the framework runs on, recorded
                                with every run.
    VARIANTS                    {name: {option: value}}: the framework's other documented
                                settings worth measuring (eager, graph, XLA...); the speed
                                benchmark times each beside the default options.
"""

from __future__ import annotations

import importlib
from functools import cache, cached_property
from pathlib import Path

from implementations.base import Build
from implementations.spec import SpecError

CONFIG_DIR = Path(__file__).resolve().parents[1] / "conf" / "implementation"
IMPL_ORDER = ("numpy", "tf_tape", "keras", "jax")  # how tables, pairs and colours list them


def impl_key(name: str) -> tuple[int, str]:
    """Canonical implementation order: IMPL_ORDER first, the others alphabetically."""
    return (IMPL_ORDER.index(name), "") if name in IMPL_ORDER else (len(IMPL_ORDER), name)


class Implementation:
    """One registered implementation: its name, its module (imported on first use, so a NumPy
    run never imports TensorFlow) and the framework verbs with their defaults."""

    def __init__(self, name: str, module: str, extra: str | None = None):
        self.name, self.module_name, self.extra = name, module, extra

    def __repr__(self) -> str:
        return f"Implementation({self.name!r}, {self.module_name!r})"

    @cached_property
    def module(self):
        """The module, imported now; a framework its optional extra brings is named in one
        line when it is missing."""
        try:
            return importlib.import_module(self.module_name)
        except ModuleNotFoundError as e:
            if self.extra is None or e.name == self.module_name:
                raise
            raise SpecError(
                f"implementation={self.name} needs the '{self.extra}' extra: "
                f"pip install 'mnist-bench[{self.extra}]'"
            ) from None

    def _verb(self, name: str):
        return getattr(self.module, name, None)

    @property
    def build(self) -> Build:
        return self.module.build

    def configure(self, threads: int | None, device: str) -> None:
        if verb := self._verb("configure"):
            verb(threads, device)
        elif device != "cpu":
            raise SpecError(f"device={device} is not available for implementation={self.name}")

    def seed(self, seed: int) -> None:
        if verb := self._verb("set_seed"):
            verb(seed)

    def synchronize(self, device: str) -> None:
        """Wait for queued device work, so a clock read after it measures the work."""
        if device != "cpu" and (verb := self._verb("synchronize")):
            verb()

    def device_peak_mb(self, device: str) -> float | None:
        verb = self._verb("device_peak_mb")
        return verb() if device != "cpu" and verb else None

    def versions(self) -> dict[str, str]:
        verb = self._verb("versions")
        return verb() if verb else {}

    def variants(self) -> dict[str, dict]:
        return dict(getattr(self.module, "VARIANTS", {}))


@cache
def registry() -> dict[str, Implementation]:
    """Every implementation conf/implementation/ lists, by name (the file's stem)."""
    import yaml

    found = {}
    for path in sorted(CONFIG_DIR.glob("*.yaml")):
        entry = yaml.safe_load(path.read_text())
        found[path.stem] = Implementation(path.stem, entry["module"], entry.get("extra"))
    return found


def implementation(name: str, module: str | None = None) -> Implementation:
    """A job's implementation: the registered one, or (a config that names its own module)
    a new entry."""
    known = registry().get(name)
    if known is not None and module in (None, known.module_name):
        return known
    if module is None:
        raise SpecError(f"implementation={name} is not registered; one of {', '.join(registry())}")
    return Implementation(name, module)
