"""The GPU check's plumbing, here on the CPU, as CI runs it: the wheels a GPU machine lacks
(downloaded for CPython 3.12, within the 64 MiB a device call carries), the check's dry run
(every step at tiny sizes, at most 8 files left), its import into a results folder, and the
report over this machine's store and the check's."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import zipfile
from pathlib import Path

import pandas as pd

from bench.commands.gpu_wheels import ON_THE_GPU_MACHINE, closure
from tests.conftest import ROOT
from tests.docs import run_documented
from tests.test_app import ENV, command


def test_the_closure_is_what_the_gpu_machine_lacks():
    pins = closure()
    assert {"hydra-core", "omegaconf", "antlr4-python3-runtime", "mlflow", "mlflow-skinny",
            "sqlalchemy", "alembic"} <= set(pins)  # fmt: skip
    assert not set(pins) & ON_THE_GPU_MACHINE and "torch" not in pins and "pandas" not in pins
    assert "tensorflow" not in pins  # no implementation the check runs needs it


def test_make_gpu_wheels_fits_a_device_call(tmp_path):
    folder = tmp_path / "wheels"
    proc = run_documented("make gpu-wheels", f"GPU_WHEELS={folder}", cwd=ROOT, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    last = proc.stdout.strip().splitlines()[-1]
    total = float(last.split(": ")[-1].split(" of ")[0])
    assert total < 64 and last.endswith("of 64 MiB")
    names = {w.name.split("-")[0].lower() for w in (folder / "wheels").glob("*.whl")}
    assert {"hydra_core", "omegaconf", "antlr4_python3_runtime", "mlflow", "sqlalchemy"} <= names
    assert all("cp312" in w.name or "-none-" in w.name or "abi3" in w.name
               for w in (folder / "wheels").glob("*.whl"))  # fmt: skip
    [mlflow] = (folder / "wheels").glob("mlflow-[0-9]*.whl")
    assert not [n for n in zipfile.ZipFile(mlflow).namelist() if n.startswith("mlflow/server/js/")]
    assert (folder / "data" / "mnist" / "train-images-idx3-ubyte.gz").is_file()


def test_the_dry_run_imported_and_reported_beside_this_machine(tmp_path):
    out = tmp_path / "out"
    proc = run_documented("make gpu-check DRY_RUN=1", f"OUT={out}", cwd=ROOT, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    files = sorted(p.name for p in out.iterdir())
    assert not [f for f in files if f.endswith(".lock")]  # only what a user reads
    assert len(files) <= 8 and {"gpu-check.db", "artifacts.tar.gz", "scaling.md",
                                "budget.md", "log.txt"} <= set(files)  # fmt: skip
    budget = (out / "budget.md").read_text()
    for step in ("versions", "tests", "sweep", "transfer", "speed"):
        assert f"| {step} |" in budget
    with sqlite3.connect(out / "gpu-check.db") as db:
        system = db.execute("SELECT count(*) FROM metrics WHERE key LIKE 'system/%'").fetchone()
    assert system[0] > 0  # the sweep's runs carry MLflow's system metrics

    results = tmp_path / "gpu"
    imported = subprocess.run([sys.executable, "-m", "bench.commands.gpu_check", "--import",
                               str(out), "--results", str(results)], capture_output=True,
                              text=True, env=ENV)  # fmt: skip
    assert imported.returncode == 0, imported.stderr
    here = tmp_path / "mlflow.db"  # this machine's store (command()'s place for it)
    sweep = command(tmp_path, "-m", "implementation=numpy", "seed=0,1", "dataset.n_train=1000",
                    "train.epochs=2")  # fmt: skip
    assert subprocess.run(sweep, cwd=tmp_path, env=ENV, capture_output=True).returncode == 0
    report = run_documented(
        "mnist-bench-report --tracking-uri sqlite:///results/mlflow.db "
        "--tracking-uri sqlite:///results/gpu/mlflow.db",
        "--out", str(tmp_path / "report"), cwd=tmp_path,
        replace={"results/mlflow.db": str(here), "results/gpu/mlflow.db": f"{results}/mlflow.db"},
    )  # fmt: skip
    assert report.returncode == 0, report.stderr[-3000:]
    [folder] = (tmp_path / "report").iterdir()
    page = (folder / "report.md").read_text()
    assert "Artifacts missing" not in page  # the check's artifacts found where they were moved
    runs = pd.read_csv(folder / "runs.csv")
    assert set(runs.store) == {"store 1", "store 2"}
    assert set(runs["tags.implementation"]) == {"numpy", "jax", "torch"}
    assert Path(results / "artifacts").is_dir()
