"""Test helpers: the implementations as the config registry lists them."""

from __future__ import annotations

from omegaconf import OmegaConf

from implementations import load_build
from tests.conftest import ROOT

IMPLEMENTATION_CONFIGS = {
    p.stem: OmegaConf.load(p) for p in sorted((ROOT / "conf" / "implementation").glob("*.yaml"))
}
NAMES = list(IMPLEMENTATION_CONFIGS)


def build(name: str, *args, device: str = "cpu", **kwargs):
    cfg = IMPLEMENTATION_CONFIGS[name]
    root = OmegaConf.create({"device": {"name": device}, "implementation": cfg})
    options = OmegaConf.to_container(root.implementation.options, resolve=True)
    return load_build(cfg.module)(*args, **{**options, **kwargs})
