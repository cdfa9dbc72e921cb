"""How much of a training step is matrix products, and how fast those products run.

NumPy's ``@`` is not a Python function, so a profiler cannot see it. Instead:

1. **record**: run one step with every array viewed as :class:`Recording`, an ``ndarray`` subclass
   that notes each ``np.matmul`` call's operand shapes, strides and dtype (and computes it as usual);
2. **replay**: time each recorded product again on fresh arrays with the same shapes and memory
   layout (``as_strided``, so a transposed view stays a transposed view), best of a few runs;
3. **share** = the products' time / the step's time; **throughput** = their FLOPs / their time,
   against the **peak**: the best rate of one large square float32 product on this machine.

The replayed products run alone, with warm caches, so the share is a slight underestimate of the
time the step really spends in them; the rest of the step is element-wise passes and Python.
"""
from __future__ import annotations

import copy
import time

import numpy as np


class Recording(np.ndarray):
    """An ndarray that logs every matmul it takes part in to ``Recording.log``."""

    log: list = []

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        plain = [a.view(np.ndarray) if isinstance(a, Recording) else a for a in inputs]
        if "out" in kwargs:
            kwargs["out"] = tuple(o.view(np.ndarray) if isinstance(o, Recording) else o
                                  for o in kwargs["out"])
        if ufunc is np.matmul and method == "__call__":
            Recording.log.append(tuple((a.shape, a.strides, a.dtype.str) for a in plain[:2]))
        out = getattr(ufunc, method)(*plain, **kwargs)
        if isinstance(out, np.ndarray) and out.shape:
            return out.view(Recording)
        return out


def record_matmuls(net, x, y, make_step) -> list:
    """The operands of every matmul in one training step of a copy of ``net`` (see the module doc)."""
    net = copy.deepcopy(net)
    for _, p in net.named_parameters():
        p.data = p.data.view(Recording)
    Recording.log = []
    step = make_step(net, x.view(Recording), y.view(Recording))
    step()
    log, Recording.log = Recording.log, []
    return log


def _operand(shape, strides, dtype, rng):
    """A fresh array with this shape and these (non-negative) strides: the recorded memory layout."""
    itemsize = np.dtype(dtype).itemsize
    span = 1 + sum((n - 1) * s for n, s in zip(shape, strides, strict=True)) // itemsize if all(shape) else 1
    buffer = rng.standard_normal(span).astype(dtype)                    # (span,)
    return np.lib.stride_tricks.as_strided(buffer, shape, strides)


def flops(log) -> float:
    """2·m·k·n per product, times the batch of stacked products."""
    total = 0.0
    for (a_shape, _, _), (b_shape, _, _) in log:
        a_shape = (1,) + a_shape if len(a_shape) == 1 else a_shape
        b_shape = b_shape + (1,) if len(b_shape) == 1 else b_shape
        batch = np.broadcast_shapes(a_shape[:-2], b_shape[:-2])
        total += 2.0 * int(np.prod(batch)) * a_shape[-2] * a_shape[-1] * b_shape[-1]
    return total


def replay_seconds(log, repeats: int = 3) -> float:
    """Seconds the recorded products take when run alone: the sum of each one's best time."""
    rng = np.random.default_rng(0)
    total = 0.0
    for a_spec, b_spec in log:
        a, b = _operand(*a_spec, rng), _operand(*b_spec, rng)
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - start)
        total += best
    return total


def peak_gflops(n: int = 2048, repeats: int = 5) -> float:
    """The best GFLOP/s of one n×n float32 product with the BLAS threads this process has."""
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n)).astype(np.float32) for _ in range(2))
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2.0 * n ** 3 / best / 1e9


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start
