"""The MLP in PyTorch: `torch.nn` layers, autograd, and optimizers that follow Keras' update
rules (as the other implementations do).

A training step is written once, `_train_step`: forward, loss, backward, update. It runs eagerly
(PyTorch's default), or compiled by `torch.compile` (option `compile`, the `compiled` variant:
TorchInductor, which on a CPU generates C++ and needs a C++ compiler). Loss and correct counts
are summed where the tensors live and read once per epoch, so on a GPU no step waits for the
host. torch.optim's SGD and momentum are Keras' rules already; RMSprop and Adam put epsilon
elsewhere, so they are written here (`KerasRMSprop`, `KerasAdam`).
"""

from __future__ import annotations

import logging
import os
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from implementations.base import EVAL_BATCH_SIZE
from implementations.spec import (
    CLASSES,
    ModelSpec,
    OptimizerSpec,
    SpecError,
    check_batch_size,
    started_with,
)


class ProfilerNotice(logging.Filter):
    """Drops dynamo's "Profiler record function ... will be ignored": torch.optim wraps every
    optimizer's step in a profiler record_function, which a compiled step leaves out (and says
    so once, on the console of every compiled job)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Profiler record function" not in record.getMessage()


logging.getLogger("torch._dynamo.variables.ctx_manager").addFilter(ProfilerNotice())
ACTIVATIONS = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}
DTYPES = {"float32": torch.float32, "float64": torch.float64}

# --- the framework verbs (implementations/__init__.py)

_settings: dict = {}  # the process settings torch started with: they cannot change later


def configure(threads: int | None, device: str) -> None:
    """Intra-op threads (the thread budget), deterministic kernels, and the device."""
    wanted = {"train.threads": threads, "device": device}
    if started_with("PyTorch", _settings, wanted):
        return
    if device == "gpu":
        if not torch.cuda.is_available():
            raise SpecError("device=gpu but PyTorch sees no GPU; use device=cpu")
        # cuBLAS is deterministic only with a fixed workspace, set before CUDA starts
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    if threads:
        torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    _settings.update(wanted)


def set_seed(seed: int) -> None:
    torch.manual_seed(seed)  # every device's generator


def synchronize() -> None:
    torch.cuda.synchronize()


def device_peak_mb() -> float | None:
    return torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None


def versions() -> dict[str, str]:
    found = {"torch": torch.__version__.split("+")[0]}
    if _settings.get("device") == "gpu" and torch.version.cuda:
        found["cuda"] = torch.version.cuda
    return found


def check_compiler() -> None:
    """TorchInductor compiles a CPU step to C++: without a compiler it fails mid-epoch."""
    import shutil

    found = [c for c in (os.environ.get("CXX"), "g++", "clang++") if c and shutil.which(c)]
    if not found:
        raise SpecError(
            "implementation.options.compile=true on a CPU needs a C++ compiler (TorchInductor "
            "generates C++) and none was found (CXX, g++, clang++); install one (apt-get "
            "install g++) or use compile=false"
        )


# --- optimizers: Keras' update rules where torch.optim's differ


class KerasRMSprop(torch.optim.Optimizer):
    """s = rho s + (1 - rho) g^2;  p = p - lr g / sqrt(s + eps). torch.optim.RMSprop divides by
    sqrt(s) + eps, which moves a run by more than the lockstep tolerance."""

    def __init__(self, params, lr: float, rho: float, eps: float):
        super().__init__(params, {"lr": lr, "rho": rho, "eps": eps})

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            for p in group["params"]:
                s = self.state[p].setdefault("s", torch.zeros_like(p))
                s.mul_(group["rho"]).addcmul_(p.grad, p.grad, value=1 - group["rho"])
                p.addcdiv_(p.grad, (s + group["eps"]).sqrt_(), value=-group["lr"])


class KerasAdam(torch.optim.Optimizer):
    """m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
    p = p - lr sqrt(1 - b2^t) / (1 - b1^t) m / (sqrt(v) + eps). torch.optim.Adam adds eps to
    sqrt(v) / sqrt(1 - b2^t) instead: the same only when eps is negligible."""

    def __init__(self, params, lr: float, b1: float, b2: float, eps: float):
        super().__init__(params, {"lr": lr, "b1": b1, "b2": b2, "eps": eps})

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            b1, b2 = group["b1"], group["b2"]
            for p in group["params"]:
                state = self.state[p]
                if not state:
                    state.update(t=0, m=torch.zeros_like(p), v=torch.zeros_like(p))
                state["t"] += 1
                t = state["t"]
                state["m"].lerp_(p.grad, 1 - b1)  # m + (1 - b1)(g - m)
                state["v"].mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
                alpha = group["lr"] * (1 - b2**t) ** 0.5 / (1 - b1**t)
                p.addcdiv_(state["m"], state["v"].sqrt().add_(group["eps"]), value=-alpha)


def optimizer_for(spec: OptimizerSpec, layers: list[nn.Linear]) -> torch.optim.Optimizer:
    """One parameter group per layer, each with its rate (the output layer may have its own)."""
    groups = [{"params": [layer.weight, layer.bias], "lr": lr}
              for layer, lr in zip(layers, spec.layer_lrs(len(layers)))]  # fmt: skip
    if spec.name in ("sgd", "momentum"):  # torch's buffer b = m b + g is Keras' velocity / -lr
        momentum = spec.momentum if spec.name == "momentum" else 0.0
        return torch.optim.SGD(groups, lr=spec.lr, momentum=momentum)
    if spec.name == "rmsprop":
        return KerasRMSprop(groups, spec.lr, spec.rho, spec.epsilon)
    return KerasAdam(groups, spec.lr, spec.beta1, spec.beta2, spec.epsilon)


# --- the network


def per_sample_loss(model: ModelSpec):
    """loss(z, y) -> (B,): softmax cross-entropy from logits, or the squared error of the
    output activation, summed over the classes (squared_error) or averaged (Keras' mse)."""
    if model.loss == "cross_entropy":
        return lambda z, y: F.cross_entropy(z, y, reduction="none")
    output = torch.sigmoid if model.output == "sigmoid" else (lambda z: z)
    over_classes = torch.sum if model.loss == "squared_error" else torch.mean

    def squared_error(z, y):
        target = F.one_hot(y, CLASSES).to(z.dtype)
        return over_classes(torch.square(output(z) - target), dim=1)

    return squared_error


def framework_weights(model: ModelSpec, seed: int) -> list[np.ndarray]:
    """Initial weights drawn by torch's own initializers (used outside lockstep)."""
    generator = torch.Generator().manual_seed(seed)
    dtype = DTYPES[model.dtype]
    weights = []
    for fan_in, fan_out in zip(model.sizes[:-1], model.sizes[1:]):
        W = torch.empty(fan_out, fan_in, dtype=dtype)  # torch's (out, in) layout
        if model.init == "normal":
            nn.init.normal_(W, 0.0, model.init_std, generator=generator)
        elif model.init == "glorot_normal":
            nn.init.xavier_normal_(W, generator=generator)
        elif model.init == "glorot_uniform":
            nn.init.xavier_uniform_(W, generator=generator)
        else:  # he_normal
            nn.init.kaiming_normal_(W, nonlinearity="relu", generator=generator)
        b = torch.zeros(fan_out, dtype=dtype)
        if model.bias_init == "normal":
            nn.init.normal_(b, 0.0, model.init_std, generator=generator)
        weights += [W.T.numpy().copy(), b.numpy()]
    return weights


class TorchMLP:
    """nn.Sequential of Linear layers and activations; the last Linear makes the logits."""

    def __init__(
        self,
        model: ModelSpec,
        optimizer: OptimizerSpec,
        batch_size: int,
        weights: list[np.ndarray] | None = None,
        seed: int = 0,
        device: str = "cpu",
        compile: bool = False,
    ):
        self.batch_size = check_batch_size(batch_size)
        self.model = model
        self.device = torch.device("cuda" if device == "gpu" else "cpu")
        self.dtype = DTYPES[model.dtype]
        pairs = list(zip(model.sizes[:-1], model.sizes[1:]))
        self.layers = [nn.Linear(a, b, dtype=self.dtype) for a, b in pairs]
        act = ACTIVATIONS[model.activation]
        stack = [m for layer in self.layers[:-1] for m in (layer, act())] + [self.layers[-1]]
        self.net = nn.Sequential(*stack).to(self.device)
        self.set_weights(weights if weights is not None else framework_weights(model, seed))
        self.loss_fn = per_sample_loss(model)
        self.optimizer = optimizer_for(optimizer, self.layers)
        # compiled once per batch shape (a full batch, the last shorter one): each shape's
        # compile lands in the first epoch, never in a steady one
        if compile and self.device.type == "cpu":
            check_compiler()
        step = torch.compile(self._train_step, dynamic=False) if compile else self._train_step
        self.train_step = step

    def _objective(self, x, y):
        z = self.net(x)
        losses = self.loss_fn(z, y)  # (B,)
        total = losses.sum() if self.model.reduction == "sum" else losses.mean()
        return total, losses, z

    def _train_step(self, x, y):
        """One update; the batch's summed loss and correct count, left on the device."""
        self.optimizer.zero_grad(set_to_none=True)
        total, losses, z = self._objective(x, y)
        total.backward()
        self.optimizer.step()
        return losses.detach().sum(), (z.detach().argmax(dim=1) == y).sum()

    def _forward_step(self, x, y):
        with torch.no_grad():
            z = self.net(x)
            return self.loss_fn(z, y).sum(), (z.argmax(dim=1) == y).sum()

    def _gradient_step(self, x, y):
        """A step stopped after the backward pass: gradients computed, no update."""
        self.optimizer.zero_grad(set_to_none=True)
        total, losses, z = self._objective(x, y)
        total.backward()
        return losses.detach().sum(), (z.detach().argmax(dim=1) == y).sum()

    def _tensors(self, x, y):
        """The epoch's arrays on the device: a view of NumPy's memory on a CPU, one transfer
        on a GPU."""
        x = np.ascontiguousarray(x, dtype=self.model.dtype)
        with warnings.catch_warnings():  # the harness's splits are read-only: torch only reads
            warnings.filterwarnings("ignore", "The given NumPy array is not writable")
            x = torch.from_numpy(x).to(self.device)
        return x, torch.from_numpy(np.asarray(y, dtype=np.int64)).to(self.device)

    def _sum_over_batches(self, step, x, y, batch_size):
        x, y = self._tensors(x, y)
        total_loss = torch.zeros((), dtype=torch.float64, device=self.device)
        correct = torch.zeros((), dtype=torch.int64, device=self.device)
        for start in range(0, len(x), batch_size):
            loss, hits = step(x[start : start + batch_size], y[start : start + batch_size])
            total_loss += loss
            correct += hits
        return float(total_loss) / len(x), int(correct) / len(x)  # the pass's one host sync

    def train_epoch(self, x, y):
        return self._sum_over_batches(self.train_step, x, y, self.batch_size)

    def evaluate(self, x, y):
        return self._sum_over_batches(self._forward_step, x, y, EVAL_BATCH_SIZE)

    def phase_epoch(self, phase, x, y):
        """An epoch of steps stopped after the forward or the backward pass (speed benchmark)."""
        step = self._forward_step if phase == "forward" else self._gradient_step
        self._sum_over_batches(step, x, y, self.batch_size)

    def predict(self, x):
        x = self._tensors(x, np.zeros(0))[0]
        with torch.no_grad():
            return torch.cat([self.net(x[i : i + EVAL_BATCH_SIZE])
                              for i in range(0, len(x), EVAL_BATCH_SIZE)]).cpu().numpy()  # fmt: skip

    def gradients(self, x, y):
        self.optimizer.zero_grad(set_to_none=True)
        total, _, _ = self._objective(*self._tensors(x, y))
        total.backward()
        return [t.grad.T.cpu().numpy().copy() if t.ndim == 2 else t.grad.cpu().numpy().copy()
                for layer in self.layers for t in (layer.weight, layer.bias)]  # fmt: skip

    def get_weights(self):
        return [t.detach().T.cpu().numpy().copy() if t.ndim == 2 else t.detach().cpu().numpy().copy()
                for layer in self.layers for t in (layer.weight, layer.bias)]  # fmt: skip

    def set_weights(self, weights):
        with torch.no_grad():
            for layer, W, b in zip(self.layers, weights[0::2], weights[1::2], strict=True):
                layer.weight.copy_(torch.as_tensor(np.asarray(W).T, dtype=self.dtype))
                layer.bias.copy_(torch.as_tensor(np.asarray(b), dtype=self.dtype))


# the speed benchmark's other settings: the step compiled by TorchInductor
VARIANTS = {"compiled": {"compile": True}}

build = TorchMLP  # the module's entry point: build(model, optimizer, batch_size, weights, seed)
