"""Tags that say where and with what a run was measured. An allow-list: nothing else from the
environment (no variables, no secrets) is ever logged."""

from __future__ import annotations

import platform
import socket
import subprocess
from functools import cache
from importlib import metadata
from pathlib import Path

import numpy  # noqa: F401  loads the BLAS threadpoolctl is asked about
from threadpoolctl import threadpool_info

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {"numpy": "numpy", "mlflow": "mlflow", "hydra": "hydra-core"}  # every run uses them


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo's), else what the platform reports."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@cache
def git_state() -> tuple[str, str]:
    """(commit, 'true'/'false' dirty); 'unknown' outside a git checkout."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout
        return commit, str(bool(status.strip())).lower()
    except (OSError, subprocess.SubprocessError):
        return "unknown", "unknown"


def blas() -> str:
    """The BLAS NumPy itself runs on. Other libraries a framework loads later (its own BLAS)
    are left out, so every job of a process reports the same value."""
    libs = [
        f"{i.get('internal_api')} {i.get('version')}"
        for i in threadpool_info()
        if i.get("user_api") == "blas" and "numpy" in str(i.get("filepath", ""))
    ]
    return ", ".join(sorted(set(libs))) or "none"


def environment_tags(device: str, threads: int | None, versions: dict[str, str]) -> dict[str, str]:
    """`versions` is what the implementation runs on (Implementation.versions()): its
    framework's packages, and on a GPU the CUDA version under the key `cuda`."""
    commit, dirty = git_state()
    versions = dict(versions)
    cuda = versions.pop("cuda", None)
    tags = {f"version.{name}": _version(dist) for name, dist in PACKAGES.items()}
    tags.update({f"version.{name}": version for name, version in versions.items()})
    tags.update(
        {
            "version.python": platform.python_version(),
            "device": device,
            "device_name": cpu_model(),
            "cpu_model": cpu_model(),
            "blas": blas(),
            "threads": str(threads or "all"),
            "host": socket.gethostname(),
            "git_commit": commit,
            "git_dirty": dirty,
        }
    )
    if device == "gpu":
        tags.update(gpu_tags())
        if cuda:
            tags["cuda_version"] = cuda
    return tags


def gpu_tags() -> dict[str, str]:
    """GPU model and driver, from nvidia-smi."""
    tags = {"device_name": "none"}
    try:
        line = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout.splitlines()[0]
        tags["device_name"], tags["gpu_driver"] = (v.strip() for v in line.split(",", 1))
    except (OSError, subprocess.SubprocessError, IndexError, ValueError):
        pass
    return tags
