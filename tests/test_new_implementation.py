"""The seam for a new implementation: a copy of the project plus one module and one config
file, and nothing else, runs a sweep, the report and the speed benchmark with it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from implementations import Implementation
from implementations.spec import SpecError
from tests.conftest import ROOT
from tests.test_app import ENV

MODULE = '''"""The scratch network under another name: a new implementation that wraps an existing one."""

from implementations import numpy_scratch
from implementations.numpy_scratch import configure, device_peak_mb, synchronize, versions  # noqa: F401


def build(model, optimizer, batch_size, weights, seed, **options):
    return numpy_scratch.build(model, optimizer, batch_size, weights, seed, **options)
'''
CONFIG = """# A new implementation: one module, this file, nothing else.
name: twin
module: implementations.numpy_twin
options:
  device: ${device.name}
"""


@pytest.fixture
def project_with_twin(tmp_path) -> Path:
    """A copy of the project (code and configs) with the two new files added."""
    copy = tmp_path / "project"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in ("bench", "conf", "implementations"):
        shutil.copytree(ROOT / folder, copy / folder, ignore=ignore)
    (copy / "implementations" / "numpy_twin.py").write_text(MODULE)
    (copy / "conf" / "implementation" / "twin.yaml").write_text(CONFIG)
    return copy


def run(copy: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**ENV, "PYTHONPATH": str(copy)}  # the copy's packages, not the installed ones
    proc = subprocess.run(
        [sys.executable, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_a_module_and_a_config_file_add_an_implementation(project_with_twin, tmp_path):
    copy, store = project_with_twin, f"sqlite:///{tmp_path}/mlflow.db"
    where = run(copy, tmp_path, "-c", "import bench, implementations; print(bench.__file__)")
    assert where.stdout.strip().startswith(str(copy))
    run(
        copy, tmp_path, "-m", "bench", "-m", "+experiment=compare", "implementation=numpy,twin",
        "seed=0", "dataset.n_train=1000", "train.epochs=2", f"tracking.uri={store}",
        f"tracking.artifact_root={tmp_path}/artifacts", f"hydra.sweep.dir={tmp_path}/multirun",
    )  # fmt: skip
    run(
        copy, tmp_path, "-m", "bench.commands.report", "--tracking-uri", store,
        "--out", str(tmp_path / "reports"), "--name", "twin",
    )  # fmt: skip
    report = (tmp_path / "reports" / "twin" / "report.md").read_text()
    assert "| twin |" in report and "2 runs, 2 finished" in report
    run(
        copy, tmp_path, "-m", "bench.commands.speed", "--quick", "--implementation", "numpy",
        "--implementation", "twin", "--out", str(tmp_path / "speed"), "--tracking-uri", store,
    )  # fmt: skip
    speed = (tmp_path / "speed" / "speed.md").read_text()
    assert "| keras_dense512 b128 | 128 | twin |" in speed
    assert "twin (implementations.numpy_twin)" in speed  # its import cost


def test_a_missing_extra_is_named_in_one_line(tmp_path, monkeypatch):
    (tmp_path / "needs_extra.py").write_text("import a_framework_that_is_not_installed\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    impl = Implementation("fancy", "needs_extra", extra="fancy")
    with pytest.raises(SpecError) as info:
        impl.build  # noqa: B018  the first use imports the module
    assert str(info.value) == (
        "implementation=fancy needs the 'fancy' extra: pip install 'mnist-bench[fancy]'"
    )
