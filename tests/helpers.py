"""Test helpers: the implementations as the config registry lists them."""

from __future__ import annotations

from omegaconf import OmegaConf

from implementations import registry
from tests.conftest import ROOT

IMPLEMENTATION_CONFIGS = {
    p.stem: OmegaConf.load(p) for p in sorted((ROOT / "conf" / "implementation").glob("*.yaml"))
}
NAMES = list(IMPLEMENTATION_CONFIGS)


def build(name: str, *args, device: str = "cpu", **kwargs):
    """The implementation's network with its config's options (device resolved), after its
    process settings, as a job builds it."""
    cfg = IMPLEMENTATION_CONFIGS[name]
    root = OmegaConf.create({"device": {"name": device}, "implementation": cfg})
    options = OmegaConf.to_container(root.implementation.options, resolve=True)
    impl = registry()[name]
    impl.configure(2, device)
    return impl.build(*args, **{**options, **kwargs})
