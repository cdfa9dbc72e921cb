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

import numpy as _host_np  # the comparison is done on the host

from . import backend
from .nn import SoftmaxCrossEntropy


def rel_error(a, b) -> float:
    """max over entries of |a − b| / max(1e-8, |a| + |b|)  (CS231n's definition)."""
    a, b = backend.to_numpy(a).astype(_host_np.float64), backend.to_numpy(b).astype(_host_np.float64)
    if a.shape != b.shape:
        raise ValueError(f"rel_error: shapes differ, {a.shape} vs {b.shape}")
    diff, scale = _host_np.abs(a - b), _host_np.abs(a) + _host_np.abs(b)
    return float(_host_np.max(diff / _host_np.maximum(1e-8, scale)))


def weighted_sum(out, G) -> float:
    """L = Σ out ⊙ G: turns an operation's output into a scalar whose upstream gradient is G."""
    return float((out * G).sum())


def rel_error_tensor(a, b) -> float:
    """max |a − b| / max(1e-8, max(|a| + |b|)): the largest error relative to the tensor's scale.

    For whole models. An entry whose true gradient is nearly zero (1e-5 of its neighbours') has a
    finite-difference error of ~1e-11 from rounding alone, so an entry-by-entry ratio measures the
    rounding, not the formula; against the tensor's largest entry a wrong formula still shows ~1.
    """
    a, b = backend.to_numpy(a).astype(_host_np.float64), backend.to_numpy(b).astype(_host_np.float64)
    if a.shape != b.shape:
        raise ValueError(f"rel_error_tensor: shapes differ, {a.shape} vs {b.shape}")
    return float(_host_np.abs(a - b).max() / max(1e-8, float((_host_np.abs(a) + _host_np.abs(b)).max())))


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


def cross_entropy(labels):
    """``loss_and_grad`` for :func:`check_model_gradients`: the mean cross-entropy of ``labels``.

    ``cross_entropy(labels)(logits) -> (loss: float, dloss/dlogits)``, through
    :class:`~lora_np.nn.SoftmaxCrossEntropy`: logits (…, C), integer labels (…).
    """
    criterion = SoftmaxCrossEntropy()

    def loss_and_grad(logits):
        loss = float(criterion(logits, labels))
        return loss, criterion.backward()
    return loss_and_grad


def check_model_gradients(model, x, loss_and_grad, max_coords: int = 40, seed: int = 0) -> dict:
    """Relative errors of a module's analytic gradients against central differences.

    ``loss_and_grad(out) -> (loss: float, dout)`` turns the module's output into a scalar loss
    and its gradient (for a classifier: ``cross_entropy(labels)``). Checked: every trainable
    parameter (at most ``max_coords`` random entries each) and, when ``x`` is a float array, the
    input. Returns ``{name: rel_error}``, the input under ``"input"``. Use float64 parameters and
    inputs.
    """
    model.zero_grad()
    loss, dout = loss_and_grad(model(x))
    dx = model.backward(dout)

    def f():
        value, _ = loss_and_grad(model(x))
        return float(value)

    def compare(arr, grad):
        coords = random_indices(arr.shape, max_coords, seed) if arr.size > max_coords else None
        num, ana = numerical_gradient(f, arr, indices=coords), backend.to_numpy(grad)
        if coords is not None:                      # compare only the sampled entries
            rows = tuple(_host_np.array(c) for c in zip(*coords, strict=True))
            num, ana = num[rows], ana[rows]
        return rel_error_tensor(num, ana)

    errors = {name: compare(p.data, p.grad) for name, p in model.named_parameters() if p.trainable}
    if dx is not None and x.dtype.kind == "f":
        errors["input"] = compare(x, dx)
    model.clear_caches()
    return errors
