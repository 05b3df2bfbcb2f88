"""The C++ log level of TensorFlow and of JAX's XLA, set before either is imported: both read
TF_CPP_MIN_LOG_LEVEL once, and whichever comes first would decide it for both (JAX sets 1,
which lets TensorFlow's cuInit error through)."""

from __future__ import annotations

import os
import sys


def _no_nvidia_gpu() -> bool:
    """Linux without an NVIDIA device node (nor WSL's GPU bridge): no GPU either can use."""
    nodes = ("/dev/nvidiactl", "/dev/nvidia0", "/dev/dxg")
    return sys.platform == "linux" and not any(os.path.exists(p) for p in nodes)


def quiet_native_logs() -> None:
    """Level 2 hides C++ info and warnings, not errors. On a machine without an NVIDIA GPU,
    CUDA builds of TensorFlow still call cuInit and log its failure as an error ("E0000 ...
    failed call to cuInit") that only says there is no GPU: level 3 there, so a healthy CPU
    sweep prints no error line. A GPU machine keeps level 2 (its errors are real). A level
    the user set is kept."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3" if _no_nvidia_gpu() else "2")
