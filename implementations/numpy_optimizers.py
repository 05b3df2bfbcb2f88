"""The scratch network's optimizers, written by hand: Keras' update rules, so lockstep runs agree
step for step with the frameworks.

Each optimizer updates flat (parameters, gradients, lr) groups in place through one scratch
buffer per group: a few whole-array passes per step, no temporaries (~3x faster than
p -= f(g)). Each class's `reference` is the textbook rule on fresh arrays, one line per
formula; the fused `step` must follow it (tests/test_numpy_optimizers.py).

What makes them fast lives here too:
- Cache blocking: on a CPU a step runs all its passes over one block of BLOCK elements while
  it is in cache, instead of each pass streaming the whole 1.6 MB arrays.
- Subnormal flushing: subnormal floats (0 < |x| < finfo.tiny) cost 3-20x per operation on
  Intel CPUs (TensorFlow flushes them to zero on CPU; NumPy cannot). A state entry whose
  gradient stays exactly 0 (the weight of a never-lit border pixel) decays geometrically into
  them and stays there: 0.9 x rounds back to x at a few times the smallest subnormal. RMSprop
  keeps its state >= eps, so it never gets there; momentum and Adam zero their tiny states
  every FLUSH_EVERY steps.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from implementations.spec import OptimizerSpec

FLUSH_EVERY = 64  # steps
BLOCK = 2**16  # elements: a block's p, g, state and scratch (1 MB in float32) stay in L2


def flush_tiny(state):
    """Zero |state| < 2^20 tiny (1.2e-32 in float32): with a decay >= 0.8 no entry turns
    subnormal between flushes, and such an entry moves a parameter by less than that."""
    np.copyto(state, 0, where=np.abs(state) < np.finfo(state.dtype).tiny * 2**20)


def blocks(groups):
    """On a CPU, the groups cut into blocks of BLOCK elements: a step runs all its passes over
    one block while it is in cache, instead of each pass streaming the whole 1.6 MB arrays."""
    if not isinstance(groups[0][0], np.ndarray):  # CuPy arrays on a GPU: no blocking
        return groups
    return [
        (p[i : i + BLOCK], g[i : i + BLOCK], lr)
        for p, g, lr in groups
        for i in range(0, p.size, BLOCK)
    ]


class SGD:
    """p = p - lr g"""

    def __init__(self, spec: OptimizerSpec, groups):
        self.spec, self.groups, self.t = spec, blocks(groups), 0
        shared = np.empty_like(max((p for p, _, _ in self.groups), key=len))  # stays in cache
        self.scratch = [shared[: p.size] for p, _, _ in self.groups]

    @staticmethod
    def reference(spec, lr, t, p, g):
        return (p - lr * g,)

    def state(self):
        """Per group, the textbook state that `reference` takes after p and g."""
        return [() for _ in self.groups]

    def step(self):
        for (p, g, lr), tmp in zip(self.groups, self.scratch):
            np.multiply(g, lr, out=tmp)
            p -= tmp  # p -= lr * g


class Momentum(SGD):
    """v = momentum v - lr g;  p = p + v"""

    def __init__(self, spec, groups):
        super().__init__(spec, groups)
        self.velocity = [np.zeros_like(p) for p, _, _ in self.groups]

    @staticmethod
    def reference(spec, lr, t, p, g, v):
        v = spec.momentum * v - lr * g
        return p + v, v

    def state(self):
        return [(v,) for v in self.velocity]

    def step(self):
        self.t += 1
        for (p, g, lr), v, tmp in zip(self.groups, self.velocity, self.scratch):
            np.multiply(g, lr, out=tmp)
            v *= self.spec.momentum
            v -= tmp  # v = momentum * v - lr * g
            p += v
            if self.t % FLUSH_EVERY == 0:
                flush_tiny(v)


class RMSprop(SGD):
    """s = rho s + (1 - rho) g^2;  p = p - lr g / sqrt(s + eps)

    Kept: w = (s + eps) / (1 - rho), so w = rho w + g^2 + eps (from w = eps / (1 - rho) at
    s = 0) and sqrt(s + eps) = sqrt(1 - rho) sqrt(w). The (1 - rho) of s moves into a
    constant, and w >= eps / (1 - rho) is never subnormal where s would decay into them."""

    def __init__(self, spec, groups):
        super().__init__(spec, groups)
        self.w = [np.full_like(p, spec.epsilon / (1 - spec.rho)) for p, _, _ in self.groups]

    @staticmethod
    def reference(spec, lr, t, p, g, s):
        s = spec.rho * s + (1 - spec.rho) * g**2
        return p - lr * g / np.sqrt(s + spec.epsilon), s

    def state(self):
        return [(w * (1 - self.spec.rho) - self.spec.epsilon,) for w in self.w]

    def step(self):
        rho, eps = self.spec.rho, self.spec.epsilon
        for (p, g, lr), w, tmp in zip(self.groups, self.w, self.scratch):
            w *= rho
            np.square(g, out=tmp)
            w += tmp
            w += eps  # w = rho w + g^2 + eps
            np.sqrt(w, out=tmp)
            np.divide(g, tmp, out=tmp)
            tmp *= lr / math.sqrt(1 - rho)
            p -= tmp  # p -= lr g / sqrt(s + eps)


class Adam(SGD):
    """m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
    p = p - lr sqrt(1 - b2^t) / (1 - b1^t) m / (sqrt(v) + eps)

    Kept: M = m / (1 - b1) and V = v / (1 - b2), so M = b1 M + g and V = b2 V + g^2 (a pass
    each fewer); the (1 - b1) and sqrt(1 - b2) move into constants."""

    def __init__(self, spec, groups):
        super().__init__(spec, groups)
        self.M = [np.zeros_like(p) for p, _, _ in self.groups]
        self.V = [np.zeros_like(p) for p, _, _ in self.groups]

    @staticmethod
    def reference(spec, lr, t, p, g, m, v):
        b1, b2 = spec.beta1, spec.beta2
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g**2
        alpha = lr * math.sqrt(1 - b2**t) / (1 - b1**t)
        return p - alpha * m / (np.sqrt(v) + spec.epsilon), m, v

    def state(self):
        b1, b2 = self.spec.beta1, self.spec.beta2
        return [(M * (1 - b1), V * (1 - b2)) for M, V in zip(self.M, self.V)]

    def step(self):
        b1, b2 = self.spec.beta1, self.spec.beta2
        self.t += 1
        root = math.sqrt(1 - b2)  # sqrt(v) + eps = root (sqrt(V) + eps / root)
        alpha_over_lr = math.sqrt(1 - b2**self.t) / (1 - b1**self.t) * (1 - b1) / root
        for (p, g, lr), M, V, tmp in zip(self.groups, self.M, self.V, self.scratch):
            M *= b1
            M += g  # M = b1 M + g
            np.square(g, out=tmp)
            V *= b2
            V += tmp  # V = b2 V + g^2
            np.sqrt(V, out=tmp)
            tmp += self.spec.epsilon / root
            np.divide(M, tmp, out=tmp)
            tmp *= lr * alpha_over_lr  # a float keeps p's dtype
            p -= tmp  # p -= alpha m / (sqrt(v) + eps)
            if self.t % FLUSH_EVERY == 0:
                flush_tiny(M)
                flush_tiny(V)


OPTIMIZERS = {"sgd": SGD, "momentum": Momentum, "rmsprop": RMSprop, "adam": Adam}


def lr_groups(flat, flat_grads, params, lrs):
    """(parameters, gradients, lr) flat views, one per run of parameters sharing a rate:
    one group, or two when the output layer has its own rate."""
    groups, start = [], 0
    for lr, run in itertools.groupby(zip(lrs, params), key=lambda pair: pair[0]):
        end = start + sum(p.size for _, p in run)
        groups.append((flat[start:end], flat_grads[start:end], lr))
        start = end
    return groups
