"""`make gpu-check`: the whole GPU check in one call on a lent GPU machine, within its time
budget, leaving at most 8 files in --out (the device tool's $OUT); `make gpu-check DRY_RUN=1`
runs the same steps here on the CPU at tiny sizes, as CI does, so they cannot rot. And
`--import DIR` brings what a GPU check left into results/gpu/ (its store, with the artifact
paths rewritten to where they now lie), for `mnist-bench-report --tracking-uri ...` beside
this machine's runs.

The steps, each with its budget on the GPU machine (BUDGET; 8 minutes in all):
  versions   the GPU, its driver and CUDA, each framework's view of it
  tests      tests/test_gpu.py: CuPy, JAX and PyTorch on CUDA against the NumPy network
  sweep      the compare preset for numpy (CuPy), jax and torch, 5 seeds, device=gpu and, for
             reference, device=cpu (2 threads, the project's budget), in one sweep, with
             MLflow's system metrics (GPU utilization and memory) on the runs
  transfer   the training set copied to the GPU once by each framework, timed on its own
  speed      mnist-bench-speed --scaling --device gpu, batches 16 to 16384 (launch overhead
             at small batches; compilation is each point's first-epoch extra)
The store is SQLite in --out; the runs' artifacts travel as one tarball beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tarfile
import time
from pathlib import Path

BUDGET = {"versions": 15, "tests": 60, "sweep": 270, "transfer": 15,
          "speed": 100}  # fmt: skip  # seconds on the GPU machine: 460 of 480
IMPLEMENTATIONS = "numpy,jax,torch"  # the GPU machines carry no TensorFlow
BATCHES = "16,64,256,1024,4096,16384"
STORE, ARTIFACTS, TARBALL = "gpu-check.db", "artifacts", "artifacts.tar.gz"


def sizes(dry_run: bool) -> dict:
    """The steps' sizes: the real check, or the dry run's tiny ones on a CPU."""
    if dry_run:
        return {"device": "cpu", "devices": "cpu", "seeds": "0,1",
                "sweep": ["dataset.n_train=1000", "train.epochs=2"],
                "speed": ["--quick", "--batches", "64,256"]}  # fmt: skip
    return {"device": "gpu", "devices": "gpu,cpu", "seeds": "0,1,2,3,4", "sweep": [],
            "speed": ["--batches", BATCHES]}  # fmt: skip


class Steps:
    """Runs each step as a command, its output into the log, its time against its budget."""

    def __init__(self, out: Path, dry_run: bool):
        self.out, self.dry_run, self.times, self.failed = out, dry_run, {}, []
        self.log = open(out / "log.txt", "w")  # noqa: SIM115 (kept open for every step)

    def run(self, name: str, argv: list[str], env: dict | None = None) -> None:
        started = time.perf_counter()
        self.log.write(f"\n$ {' '.join(argv)}\n")
        self.log.flush()
        proc = subprocess.run(argv, stdout=self.log, stderr=subprocess.STDOUT,
                              env={**os.environ, **(env or {})})  # fmt: skip
        self.times[name] = time.perf_counter() - started
        line = f"{name}: {self.times[name]:.0f} s (budget {BUDGET[name]} s on the GPU machine)"
        if proc.returncode != 0:
            self.failed.append(name)
            line += f"; FAILED (exit {proc.returncode}, see log.txt)"
        print(line, flush=True)

    def budget_lines(self) -> list[str]:
        rows = [f"| {n} | {self.times.get(n, float('nan')):.0f} | {b} |" for n, b in BUDGET.items()]
        total = sum(self.times.values())
        return ["| step | seconds | budget s |", "|---|---|---|", *rows,
                f"| all | {total:.0f} | {sum(BUDGET.values())} |"]  # fmt: skip


VERSIONS = """
import json, subprocess
found = {}
try:
    q = "name,driver_version,memory.total"
    found["nvidia-smi"] = subprocess.run(["nvidia-smi", f"--query-gpu={q}", "--format=csv,noheader"],
                                         capture_output=True, text=True).stdout.strip()
except FileNotFoundError:
    found["nvidia-smi"] = "not found"
import torch; found["torch"] = [torch.__version__, torch.version.cuda, torch.cuda.is_available()]
import jax; found["jax"] = [jax.__version__, [str(d) for d in jax.devices()]]
try:
    import cupy; found["cupy"] = [cupy.__version__, cupy.cuda.runtime.runtimeGetVersion()]
except Exception as e:
    found["cupy"] = repr(e)
print(json.dumps(found, indent=1))
"""

TRANSFER = """
import json, time, numpy as np, sys
x = np.random.default_rng(0).random((55000, 784), dtype=np.float32)
found = {}
def timed(name, copy, sync):
    copy(); sync()
    t = time.perf_counter(); copy(); sync(); found[name] = time.perf_counter() - t
if sys.argv[1] == "gpu":
    import cupy, torch, jax
    timed("cupy", lambda: cupy.asarray(x), cupy.cuda.Device().synchronize)
    timed("torch", lambda: torch.from_numpy(x).cuda(), torch.cuda.synchronize)
    timed("jax", lambda: jax.device_put(x).block_until_ready(), lambda: None)
else:  # the dry run: a host copy stands in for each
    for name in ("cupy", "torch", "jax"):
        timed(name, lambda: x.copy(), lambda: None)
print(json.dumps({k: round(v, 4) for k, v in found.items()}))
"""


def check(out: Path, dry_run: bool) -> int:
    """Every step; the files of --out; 1 when a step failed."""
    out.mkdir(parents=True, exist_ok=True)
    for old in out.iterdir():
        shutil.rmtree(old) if old.is_dir() else old.unlink()
    size, py = sizes(dry_run), sys.executable
    steps = Steps(out, dry_run)
    store = f"sqlite:///{(out / STORE).resolve()}"
    artifacts = Path("/tmp/mnist-bench-gpu-check") / ARTIFACTS  # outside --out: 8 files at most
    shutil.rmtree(artifacts, ignore_errors=True)
    tracked = [f"tracking.uri={store}", f"tracking.artifact_root={artifacts}",
               "tracking.log_model=false", f"hydra.sweep.dir={artifacts.parent}/multirun"]  # fmt: skip
    steps.run("versions", [py, "-c", VERSIONS])
    steps.run("tests", [py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_gpu.py"])
    # one sweep over both devices (2 threads each: the project's budget), so the store's
    # latest sweep, what a report reads by default, holds the GPU runs and their CPU reference
    steps.run("sweep", [py, "-m", "bench", "-m", "+experiment=compare",
                        f"implementation={IMPLEMENTATIONS}", f"device={size['devices']}",
                        f"seed={size['seeds']}", "train.threads=2", "tracking.system_metrics=true",
                        *size["sweep"], *tracked])  # fmt: skip
    steps.run("transfer", [py, "-c", TRANSFER, size["device"]])
    speed = [py, "-m", "bench.commands.speed", "--scaling", "--device", size["device"],
             *size["speed"], "--out", str(out), "--tracking-uri", store]  # fmt: skip
    for name in IMPLEMENTATIONS.split(","):
        speed += ["--implementation", name]
    steps.run("speed", speed)
    with tarfile.open(out / TARBALL, "w:gz") as tar:
        if artifacts.is_dir():
            tar.add(artifacts, arcname=ARTIFACTS)
    (out / "budget.md").write_text("\n".join(steps.budget_lines()) + "\n")
    (out / "paths.json").write_text(json.dumps({"artifacts": str(artifacts)}))
    for extra in [p for p in out.glob("scaling-*.png") if p.name != "scaling-batch.png"]:
        extra.unlink()  # the batch axis is the GPU's question; its table has the widths too
    for lock in out.glob("*.lock"):
        lock.unlink()  # the store's first-use lock: empty, and one of the 8 files otherwise
    files = sorted(p.name for p in out.iterdir())
    print(f"{len(files)} files in {out}: {', '.join(files)}")
    print("\n".join(steps.budget_lines()))
    steps.log.close()
    return 1 if steps.failed or len(files) > 8 else 0


def import_check(folder: Path, results: Path) -> int:
    """What a GPU check left in `folder`, into `results`: the store, the artifacts unpacked
    beside it and every artifact path in the store rewritten to them, the pages."""
    results.mkdir(parents=True, exist_ok=True)
    old = json.loads((folder / "paths.json").read_text())["artifacts"]
    with tarfile.open(folder / TARBALL) as tar:
        tar.extractall(results, filter="data")
    new = str((results / ARTIFACTS).resolve())
    shutil.copy(folder / STORE, results / "mlflow.db")
    with sqlite3.connect(results / "mlflow.db") as db:  # MLflow's tables keep absolute paths
        for table, column in (("runs", "artifact_uri"), ("experiments", "artifact_location")):
            db.execute(f"UPDATE {table} SET {column} = replace({column}, ?, ?)", (old, new))
    for page in ("scaling.md", "scaling-batch.png", "budget.md", "log.txt"):
        if (folder / page).exists():
            shutil.copy(folder / page, results / page)
    print(
        f"imported into {results}: mnist-bench-report --tracking-uri sqlite:///{results}/mlflow.db"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make gpu-check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=os.environ.get("OUT") or "results/gpu-check")
    parser.add_argument("--dry-run", action="store_true", help="here, on the CPU, tiny sizes")
    parser.add_argument("--import", dest="folder", metavar="DIR",
                        help="bring a finished check's files into --results")  # fmt: skip
    parser.add_argument("--results", default="results/gpu")
    args = parser.parse_args(argv)
    if args.folder:
        return import_check(Path(args.folder), Path(args.results))
    return check(Path(args.out), args.dry_run)


if __name__ == "__main__":
    sys.exit(main())
