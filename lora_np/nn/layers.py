"""Thin stateful modules over :mod:`lora_np.functional`: Linear, activations, Dropout, Sequential.

Each ``forward`` stores the cache its functional pair returned; each ``backward`` consumes it
(so a second backward without a new forward is an error, as is a backward before any forward).
"""
from __future__ import annotations

import math

from .. import backend, validate
from .. import functional as F
from .module import Module, Parameter


def as_rng(rng) -> backend.Rng:
    """An ``Rng`` from an ``Rng``, an integer seed >= 0 or ``None`` (seed 0).

    Anything else is a ``TypeError`` (a seed is not a number to compute with).
    """
    if isinstance(rng, backend.Rng):
        return rng
    if rng is None:
        return backend.Rng(0)
    try:
        seed = validate.integer(rng, "rng", low=0)
    except ValueError:
        raise TypeError(validate.message("rng", "a lora_np.backend.Rng, an integer seed >= 0 or None",
                                         rng)) from None
    return backend.Rng(seed)


def check_features(x, d_in: int, dtype, where: str) -> None:
    """Raise a clear error if ``x`` is not an array of the model's backend, width and dtype."""
    if not backend.is_array(x):
        raise TypeError(f"{where}: x must be an array (use lora_np.backend.asarray), got {type(x).__name__}")
    if x.ndim < 1 or x.shape[-1] != d_in:
        raise ValueError(f"{where}: x must have {d_in} features in its last axis, got shape {tuple(x.shape)}")
    if x.dtype != dtype:
        raise TypeError(f"{where}: x has dtype {x.dtype} but the weights are {dtype}; "
                        f"convert it with x.astype({dtype.name!r})")


def check_finite(x, where: str, name: str = "x") -> None:
    """Raise a clear error if a floating array holds NaN or ±inf (one device synchronisation)."""
    xp = backend.get_array_module(x)
    if x.dtype.kind == "f" and not bool(xp.isfinite(x).all()):
        bad = int((~xp.isfinite(x)).sum())
        raise ValueError(f"{where}: {name} contains {bad} NaN or inf value(s); clean or impute the inputs "
                         "first")


def check_ids(ids, V: int, where: str) -> None:
    """Raise a clear error unless ``ids`` are integers in [0, V)."""
    if not backend.is_array(ids) or ids.dtype.kind not in "iu":
        raise TypeError(f"{where}: token ids must be an integer array, got "
                        f"{ids.dtype if backend.is_array(ids) else type(ids).__name__}")
    if ids.size and (int(ids.min()) < 0 or int(ids.max()) >= V):
        raise ValueError(f"{where}: token ids must lie in [0, {V - 1}] for a vocabulary of {V}, "
                         f"found values in [{int(ids.min())}, {int(ids.max())}]")


class Linear(Module):
    """y = x Wᵀ + b.  W: (d_out, d_in), b: (d_out,) — PyTorch's layout and initialisation
    (both uniform in ±1/√d_in). ``tied_to`` names the layer whose weight Parameter this one shares
    (GPT-2's head and its token embedding), or is None.
    """

    tied_to = None

    def __init__(self, d_in: int, d_out: int, bias: bool = True, rng=None, dtype=None):
        d_in = validate.positive_int(d_in, "d_in", "Linear")
        d_out = validate.positive_int(d_out, "d_out", "Linear")
        bias = validate.boolean(bias, "bias", "Linear")
        rng, bound = as_rng(rng), 1.0 / math.sqrt(d_in)
        self.d_in, self.d_out = d_in, d_out
        self.weight = Parameter(rng.uniform(-bound, bound, (d_out, d_in), dtype=dtype))   # (d_out, d_in)
        self.bias = Parameter(rng.uniform(-bound, bound, (d_out,), dtype=dtype)) if bias else None
        self._cache = None

    def forward(self, x):
        check_features(x, self.d_in, self.weight.dtype, type(self).__name__)
        y, self._cache = F.linear_forward(x, self.weight.data, self.bias.data if self.bias else None)
        return y                                                         # (..., d_out)

    def backward(self, dy):
        cache, self._cache = self._need_cache(self._cache), None
        dx, dW, db = F.linear_backward(dy, cache, need_weight_grad=self.weight.trainable)
        if dW is not None:
            self.weight.accumulate(dW)
            if self.bias is not None and self.bias.trainable:
                self.bias.accumulate(db)
        elif self.bias is not None and self.bias.trainable:
            self.bias.accumulate(dy.reshape(-1, self.d_out).sum(axis=0))  # (d_out,) bias-only tuning
        return dx                                                        # (..., d_in)

    def extra_repr(self):
        return f"d_in={self.d_in}, d_out={self.d_out}, bias={self.bias is not None}"


class Embedding(Module):
    """y = W[ids]: a learned vector per token (or per position).  W: (V, d), normal with std 0.02.
    ``tied_to`` names the layer that shares W (GPT-2's head), or is None."""

    tied_to = None

    def __init__(self, num_embeddings: int, dim: int, rng=None, dtype=None, std: float = 0.02):
        num_embeddings = validate.positive_int(num_embeddings, "num_embeddings", "Embedding")
        dim = validate.positive_int(dim, "dim", "Embedding")
        std = validate.number(std, "std", "Embedding", low=0.0)
        self.num_embeddings, self.dim = num_embeddings, dim
        W = as_rng(rng).standard_normal((num_embeddings, dim), dtype=dtype) * std   # (V, d)
        self.weight = Parameter(W)                                                    # (V, d)
        self._cache = None

    def forward(self, ids):
        check_ids(ids, self.num_embeddings, type(self).__name__)
        y, self._cache = F.embedding_forward(ids, self.weight.data)
        return y                                                         # (…, d)

    def backward(self, dy):
        cache, self._cache = self._need_cache(self._cache), None
        if self.weight.trainable:
            self.weight.accumulate(F.embedding_backward(dy, cache))
        return None                                                      # ids have no gradient

    def extra_repr(self):
        return f"num_embeddings={self.num_embeddings}, dim={self.dim}"


class LayerNorm(Module):
    """y = γ ⊙ (x − μ)/√(σ² + ε) + β over the last axis. γ (``weight``) ones, β (``bias``) zeros."""

    def __init__(self, dim: int, eps: float = 1e-5, dtype=None):
        dim = validate.positive_int(dim, "dim", "LayerNorm")
        eps = validate.positive_number(eps, "eps", "LayerNorm")
        xp, dtype = backend.get_xp(), backend.default_dtype() if dtype is None else dtype
        self.dim, self.eps = dim, eps
        self.weight = Parameter(xp.ones((dim,), dtype=dtype))           # γ: (d,)
        self.bias = Parameter(xp.zeros((dim,), dtype=dtype))            # β: (d,)
        self._cache = None

    def forward(self, x):
        check_features(x, self.dim, self.weight.dtype, type(self).__name__)
        y, self._cache = F.layernorm_forward(x, self.weight.data, self.bias.data, self.eps)
        return y

    def backward(self, dy):
        cache, self._cache = self._need_cache(self._cache), None
        need = self.weight.trainable or self.bias.trainable
        dx, dgamma, dbeta = F.layernorm_backward(dy, cache, need_param_grad=need)
        if self.weight.trainable:
            self.weight.accumulate(dgamma)
        if self.bias.trainable:
            self.bias.accumulate(dbeta)
        return dx

    def extra_repr(self):
        return f"dim={self.dim}"


class _Activation(Module):
    """An element-wise activation: forward/backward straight from a functional pair."""

    _forward = _backward = None

    def __init__(self):
        self._cache = None

    def forward(self, x):
        y, self._cache = type(self)._forward(x)
        return y

    def backward(self, dy):
        cache, self._cache = self._need_cache(self._cache), None
        return type(self)._backward(dy, cache)


class ReLU(_Activation):
    """y = max(x, 0)."""
    _forward, _backward = F.relu_forward, F.relu_backward


class GELU(_Activation):
    """GELU with the tanh approximation (GPT-2's)."""
    _forward, _backward = F.gelu_forward, F.gelu_backward


class Tanh(_Activation):
    """y = tanh(x)."""
    _forward, _backward = F.tanh_forward, F.tanh_backward


class Dropout(Module):
    """Inverted dropout: zero each entry with probability p while training; identity in eval."""

    def __init__(self, p: float = 0.5, rng=None):
        p = validate.fraction(p, "p", "Dropout")
        self.p, self.rng, self._cache = p, as_rng(rng), None

    def forward(self, x):
        if not self.training or self.p == 0.0:
            self._cache = "identity"
            return x
        mask = self.rng.random(x.shape, dtype=x.dtype) >= self.p        # (...) keep-mask
        y, self._cache = F.dropout_forward(x, mask, self.p)
        return y

    def backward(self, dy):
        cache, self._cache = self._need_cache(self._cache), None
        return dy if cache == "identity" else F.dropout_backward(dy, cache)

    def extra_repr(self):
        return f"p={self.p}"


class Sequential(Module):
    """Modules applied in order; backward runs them in reverse.

    ``Sequential(a, b)`` names its children ``0``, ``1``; ``Sequential({"fc1": a, "act": b})``
    uses the given names (as PyTorch's ``Sequential(OrderedDict(...))`` does).
    """

    def __init__(self, *modules):
        named = modules[0].items() if len(modules) == 1 and isinstance(modules[0], dict) else \
            ((str(i), m) for i, m in enumerate(modules))
        for name, m in named:
            if not isinstance(m, Module):
                raise TypeError(f"Sequential takes Modules, got {type(m).__name__} for {name!r}")
            setattr(self, name, m)

    def layers(self):
        return [m for _, m in self._children()]

    def forward(self, x):
        for m in self.layers():
            x = m(x)
        return x

    def backward(self, dy):
        for m in reversed(self.layers()):
            dy = m.backward(dy)
        return dy


class SoftmaxCrossEntropy(Module):
    """Mean cross-entropy of integer labels under softmax(logits), fused and stable.

    ``loss = criterion(logits, labels)``; ``dlogits = criterion.backward()``.
    logits: (…, C) and labels: (…) — a sequence model's (B, T, C) and (B, T) are averaged over
    every position.
    """

    def __init__(self):
        self._cache = None

    def forward(self, logits, labels):
        if not backend.is_array(logits) or logits.ndim < 2 or logits.shape[0] == 0:
            raise ValueError(f"logits must have shape (N, …, C) with N >= 1, got "
                             f"{tuple(logits.shape) if backend.is_array(logits) else type(logits).__name__}")
        if not backend.is_array(labels) or tuple(labels.shape) != tuple(logits.shape[:-1]) \
                or labels.dtype.kind not in "iu":
            raise ValueError(f"labels must be integers of shape {tuple(logits.shape[:-1])}, got "
                             + (f"shape {tuple(labels.shape)} and dtype {labels.dtype}"
                                if backend.is_array(labels) else type(labels).__name__))
        lo, hi, C = int(labels.min()), int(labels.max()), logits.shape[-1]
        if lo < 0 or hi >= C:
            raise ValueError(f"labels must lie in [0, {C - 1}] for {C} classes, found values in [{lo}, {hi}]")
        loss, cache = F.softmax_cross_entropy_forward(logits.reshape(-1, C), labels.reshape(-1))
        self._cache = (cache, logits.shape)
        return loss

    def backward(self, dloss=1.0):
        (cache, shape), self._cache = self._need_cache(self._cache), None
        return F.softmax_cross_entropy_backward(dloss, cache).reshape(shape)
