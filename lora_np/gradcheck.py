"""Numerical gradient checking (CS231n's gradient_check, for any backend).

Central differences: ∂f/∂x_i ≈ (f(x + h e_i) − f(x − h e_i)) / 2h, error O(h²). Use float64
and h = 1e-5: the truncation error (~h²) and the rounding error (~ε/h) are then both ≈ 1e-10.

>>> x = rng.standard_normal((4, 3), dtype="float64")
>>> num = numerical_gradient(lambda: float((x ** 2).sum()), x)
>>> rel_error(num, 2 * x) < 1e-7
True
"""
from __future__ import annotations

import itertools

import numpy as _host_np   # the comparison is done on the host

from . import backend


def rel_error(a, b) -> float:
    """max over entries of |a − b| / max(1e-8, |a| + |b|)  (CS231n's definition)."""
    a, b = backend.to_numpy(a).astype(_host_np.float64), backend.to_numpy(b).astype(_host_np.float64)
    if a.shape != b.shape:
        raise ValueError(f"rel_error: shapes differ, {a.shape} vs {b.shape}")
    return float(_host_np.max(_host_np.abs(a - b) / _host_np.maximum(1e-8, _host_np.abs(a) + _host_np.abs(b))))


def numerical_gradient(f, x, h: float = 1e-5, indices=None):
    """∂f/∂x by central differences, perturbing ``x`` in place (and restoring it).

    ``f()`` returns a Python float and reads ``x`` by reference. ``indices``: an iterable of
    index tuples to check (default: every entry); entries not checked stay 0.
    Returns a host array of x's shape.
    """
    if x.dtype != _host_np.float64:
        raise TypeError(f"numerical_gradient needs float64 arrays for an accurate check, got {x.dtype}")
    grad = _host_np.zeros(x.shape)
    for idx in indices if indices is not None else itertools.product(*map(range, x.shape)):
        old = float(x[idx])
        x[idx] = old + h
        f_plus = f()
        x[idx] = old - h
        f_minus = f()
        x[idx] = old
        grad[idx] = (f_plus - f_minus) / (2 * h)
    return grad


def random_indices(shape, count: int, seed: int = 0):
    """``count`` random index tuples into an array of ``shape`` (for large parameters)."""
    rng = _host_np.random.default_rng(seed)
    return [tuple(int(rng.integers(0, n)) for n in shape) for _ in range(count)]
