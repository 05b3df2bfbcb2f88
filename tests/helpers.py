"""Test helpers: the implementations as the config registry lists them."""

from __future__ import annotations

from omegaconf import OmegaConf

from implementations import load_build
from tests.conftest import ROOT

IMPLEMENTATION_CONFIGS = {
    p.stem: OmegaConf.load(p) for p in sorted((ROOT / "conf" / "implementation").glob("*.yaml"))
}
NAMES = list(IMPLEMENTATION_CONFIGS)


def build(name: str, *args, **kwargs):
    cfg = IMPLEMENTATION_CONFIGS[name]
    return load_build(cfg.module)(*args, **{**cfg.options, **kwargs})
