"""The C++ log level of TensorFlow and of JAX's XLA, set before either is imported: both read
TF_CPP_MIN_LOG_LEVEL once, and whichever comes first would decide it for both (JAX sets 1,
which lets TensorFlow's cuInit error through). And the lines no log level reaches: absl writes
"All log messages before absl::InitializeLog() ..." and TensorFlow's CUDA stub its "Could not
find cuda drivers" notice straight to the process's stderr, at import and when devices are
listed; `quiet_native_lines` holds them back there and passes every other line on."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile

NOISE = (  # native notices that only say what a CPU machine is, never an error of ours
    "All log messages before absl::InitializeLog()",
    "cudart_stub.cc",
    "Could not find cuda drivers",
    "oneDNN custom operations are on",
    "This TensorFlow binary is optimized",
    "To enable the following instructions",
    "Unable to register cuDNN factory",
    "Unable to register cuFFT factory",
    "Unable to register cuBLAS factory",
    "computation_placer.cc",
    "TF-TRT Warning",
)


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
    # JAX's Python side says at INFO that it found no TPU ("Unable to initialize backend
    # 'tpu'"): Hydra logs INFO, so it would come before a device error's one line
    logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)


@contextlib.contextmanager
def quiet_native_lines():
    """The process's stderr (file descriptor 2, where native code writes) collected while the
    block runs, then written out without the NOISE lines."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            for line in held.read().decode(errors="replace").splitlines(keepends=True):
                if not any(n in line for n in NOISE):
                    sys.stderr.write(line)
            sys.stderr.flush()
