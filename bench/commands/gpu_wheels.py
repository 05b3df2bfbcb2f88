"""`make gpu-wheels`: what a GPU machine lacks for a tracked run, as files that travel with the
working tree (64 MiB in all, data included).

The lent GPU machines carry NumPy, CuPy, JAX, PyTorch, pandas, SciPy, matplotlib and more
(ON_THE_GPU_MACHINE, from the device tool's package list), but not Hydra, OmegaConf, MLflow
or their own dependencies, and reach no registry. This writes, into a git-ignored folder:

- the wheels of that closure for CPython 3.12 on manylinux x86-64, at the versions this venv
  runs (so the GPU machine runs what CI tests), built here from the sdist where a package has
  no wheel (antlr4-python3-runtime, OmegaConf's parser);
- MLflow's wheel without its web UI (the GPU check records runs, it serves no page), which
  leaves its client and SQL store;
- the MNIST IDX files (`data/mnist`), which the GPU machine has not either;

and prints their total size, which must leave the working tree under the limit.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOTS = ("hydra-core", "mlflow")  # what a tracked run needs beyond the GPU machine's packages
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64", "manylinux1_x86_64")  # fmt: skip
TARGET = {"python_version": "3.12", "python_full_version": "3.12.0", "sys_platform": "linux",
          "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
          "implementation_name": "cpython", "platform_python_implementation": "CPython",
          "extra": ""}  # fmt: skip
LIMIT_MIB = 64  # what travels with one device call, the working tree included
UI_FILES = re.compile(r"^mlflow/server/js/")  # the web UI's build: MBs the GPU check never serves
ON_THE_GPU_MACHINE = frozenset(
    """
absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch
build certifi charset-normalizer chex click cloudpickle cmake colorama contourpy coverage
cuda-bindings cuda-core cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn
einops equinox etils execnet filelock flatbuffers flax fonttools formulaic frozenlist fsspec
gpytorch grpcio h11 h5py hf-xet httpcore httpx huggingface-hub humanize hypothesis idna imageio
iniconfig interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin jaxlib jaxtyping jinja2 joblib
kiwisolver lazy-loader lightning lightning-utilities linear-operator lineax llvmlite lxml markdown
markdown-it-py markupsafe matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack multidict
multipledispatch mypy-extensions nanobind narwhals networkx ninja numba numba-cuda numpy numpyro
nvidia-ml-py onnx onnx-ir onnxruntime onnxscript opencv-python-headless optax opt-einsum
opt-einsum-fx optimistix orbax-checkpoint packaging pandas pathspec patsy peft pillow pip pluggy
portalocker prometheus-client propcache protobuf psutil pyarrow pybind11 py-cpuinfo pygments
pyparsing pyproject-hooks pyre-extensions pytest pytest-benchmark pytest-cov pytest-mock
pytest-timeout pytest-xdist python-dateutil pytorch-lightning pyyaml regex requests rich sacrebleu
safetensors scikit-build-core scikit-image scikit-learn scipy seaborn sentencepiece
sentence-transformers setuptools shellingham simplejson six sortedcontainers statsmodels sympy
tabulate tensorboard tensorboard-data-server tensorstore threadpoolctl tifffile tiktoken timm
tokenizers toolz torch torchaudio torchdiffeq torch-geometric torchmetrics torchvision tqdm
transformers treescope triton typer typing-extensions typing-inspect urllib3 uvloop
wadler-lindig werkzeug wheel wrapt xarray xxhash yarl zipp
""".split()
)


def closure(roots=ROOTS) -> dict[str, str]:
    """Every distribution the roots need on the GPU machine's Python (3.12, Linux x86-64) that
    it does not carry, with the version installed here: {name: version}."""
    wanted, todo = {}, list(roots)
    while todo:
        name = canonicalize_name(todo.pop())
        if name in wanted or name in ON_THE_GPU_MACHINE:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            raise SystemExit(f"error: {name} (needed on the GPU machine) is not installed here; "
                             "run make install first") from None  # fmt: skip
        wanted[name] = dist.version
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate(TARGET):
                todo.append(req.name)
    return wanted


def download(pins: dict[str, str], folder: Path) -> None:
    """The wheels for CPython 3.12 manylinux x86-64; a pure-Python sdist built into one."""
    platforms = [a for p in PLATFORMS for a in ("--platform", p)]
    base = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
            "--python-version", "3.12", "--implementation", "cp", *platforms, "-d", str(folder)]  # fmt: skip
    for name, version in sorted(pins.items()):
        spec = f"{name}=={version}"
        if subprocess.run([*base, spec], capture_output=True).returncode == 0:
            continue
        built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w",
                                str(folder), spec], capture_output=True, text=True)  # fmt: skip
        wheels = list(folder.glob(f"{name.replace('-', '_')}-{version}-*.whl"))
        if built.returncode != 0 or not any(w.name.endswith("-none-any.whl") for w in wheels):
            raise SystemExit(f"error: no CPython 3.12 manylinux wheel of {spec}, nor a pure-Python "
                             f"one built from its sdist")  # fmt: skip


def without_ui(wheel: Path) -> None:
    """MLflow's wheel rewritten without the web UI's files (and their RECORD lines)."""
    slim = wheel.with_suffix(".slim")
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(slim, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            if UI_FILES.match(item.filename):
                continue
            data = src.read(item)
            if item.filename.endswith(".dist-info/RECORD"):
                kept = [ln for ln in data.decode().splitlines() if not UI_FILES.match(ln)]
                data = ("\n".join(kept) + "\n").encode()
            dst.writestr(item, data)
    slim.replace(wheel)


def mib(paths) -> float:
    return sum(p.stat().st_size for p in paths) / 2**20


def tracked_mib() -> float:
    """The size of the files git tracks: the rest of what a device call carries."""
    names = subprocess.run(["git", "ls-files"], capture_output=True, text=True, check=True)
    return mib(Path(n) for n in names.stdout.splitlines() if Path(n).is_file())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make gpu-wheels", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=".gpu-wheels", help="a git-ignored folder")
    args = parser.parse_args(argv)
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    wheels = out / "wheels"
    wheels.mkdir(parents=True)
    pins = closure()
    download(pins, wheels)
    for wheel in wheels.glob("mlflow-*.whl"):
        without_ui(wheel)
    data = Path(os.environ.get("MNIST_BENCH_DATA_DIR") or "../shared/data") / "mnist"
    if not data.is_dir():
        raise SystemExit(f"error: MNIST not found at {data}: set MNIST_BENCH_DATA_DIR")
    shutil.copytree(data, out / "data" / "mnist")
    files = [p for p in out.rglob("*") if p.is_file()]
    for wheel in sorted(wheels.glob("*.whl")):
        print(f"{wheel.stat().st_size / 2**20:7.2f} MiB  {wheel.name}")
    tree, total = tracked_mib(), mib(files)
    print(f"{len(pins)} packages, {mib(wheels.glob('*.whl')):.1f} MiB of wheels, "
          f"{mib((out / 'data').rglob('*.gz')):.1f} MiB of data: {total:.1f} MiB in {out}/; "
          f"with the tracked tree ({tree:.1f} MiB): {total + tree:.1f} of {LIMIT_MIB} MiB")  # fmt: skip
    if total + tree > LIMIT_MIB:
        print(f"error: {total + tree:.1f} MiB is over the {LIMIT_MIB} MiB a device call carries",
              file=sys.stderr)  # fmt: skip
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
