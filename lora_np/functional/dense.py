"""Pure forward/backward pairs: the maths of every operation, one pair per operation.

Each ``*_forward`` returns ``(out, cache)``; the matching ``*_backward(dout, cache)`` returns the
gradients of the loss with respect to the inputs. Nothing here holds state or knows about
modules, so every pair can be gradient-checked on its own (``tests/test_gradcheck_ops.py``).

Notation: ``G = dL/dy`` is the upstream gradient, shapes are written in comments, ``N`` is the
number of rows (a batch may carry extra leading axes: ``(..., d)`` works everywhere).

LoRA's own pair is in ``lora``; it builds on ``linear`` and ``dropout`` here.
"""
from __future__ import annotations

import math

from ..backend import get_array_module
from .blocks import blocks, empty, for_each, work_like


def _rows(x):
    """Flatten leading axes: (..., d) -> (N, d), for weight gradients."""
    return x.reshape(-1, x.shape[-1])


def _mm(x, M):
    """x @ M for x: (..., k) and a matrix M: (k, m) as ONE 2-D matmul, reshaped back to (..., m).

    NumPy's matmul on a stack of matrices times a matrix does not hand the whole stack to one BLAS
    call; flattening the leading axes first does. Measured on (64, 16, 192) and (32, 64, 256) float32
    activations (NumPy 2.4, one BLAS thread): the stacked form took 1.4-1.5x as long.
    """
    return (_rows(x) @ M).reshape(x.shape[:-1] + (M.shape[-1],))


# --------------------------------------------------------------------------- Linear

def linear_forward(x, W, b=None):
    """y = x Wᵀ + b.   x: (..., d_in)  W: (d_out, d_in)  b: (d_out,) or None  ->  y: (..., d_out)"""
    y = _mm(x, W.T)                                # (..., d_out)
    if b is not None:
        y += b                                     # (..., d_out)  in place: y is a fresh product
    return y, (x, W, b is not None)


def linear_backward(dy, cache, need_weight_grad=True):
    """dx = G W,  dW = Gᵀ x,  db = Σ_rows G.

    With ``need_weight_grad=False`` (a frozen layer) dW and db are neither computed nor
    allocated: the gradient still flows to the input, it just stops at the weight.
    """
    x, W, has_bias = cache
    dx = _mm(dy, W)                                # (..., d_in)
    if not need_weight_grad:
        return dx, None, None
    G = _rows(dy)                                  # (N, d_out)
    dW = G.T @ _rows(x)                            # (d_out, d_in)
    db = G.sum(axis=0) if has_bias else None       # (d_out,)
    return dx, dW, db


# --------------------------------------------------------------------------- activations

def relu_forward(x):
    """y = max(x, 0)."""
    xp = get_array_module(x)
    return xp.maximum(x, 0), x


def relu_backward(dy, x):
    """dy/dx = 1 where x > 0, else 0 (the kink at 0 is given gradient 0)."""
    return dy * (x > 0)


_GELU_C = math.sqrt(2.0 / math.pi)


def gelu_forward(x):
    """GELU, tanh approximation: y = ½ x (1 + tanh(u)),  u = c (x + 0.044715 x³),  c = √(2/π).

    The plain version, one line each (:func:`gelu_reference`; a test checks they agree):
        t = tanh(c * (x + 0.044715 * x**3));  y = 0.5 * x * (1 + t)
    Here the same operations run in place on cache-sized blocks (:mod:`.blocks`): 1.5x faster.
    t is kept for the backward, which would otherwise compute tanh again.
    """
    xp = get_array_module(x)
    y, t = empty(x), empty(x)                                  # (...) each

    def block(xb, yb, tb):                                     # (rows, width) slices
        xp.multiply(xb, xb, out=tb)                            # x²
        tb *= xb                                               # x³
        tb *= 0.044715
        tb += xb
        tb *= _GELU_C                                          # u
        xp.tanh(tb, out=tb)                                    # t = tanh(u)
        xp.add(tb, 1.0, out=yb)
        yb *= xb
        yb *= 0.5                                              # y = ½ x (1 + t)
    for_each(block, blocks(x, y, t))
    return y, (x, t)


def gelu_backward(dy, cache):
    """dy/dx = ½ (1 + t) + ½ x (1 − t²) · c (1 + 3 · 0.044715 x²),  t as in the forward.

    Plain version: dx = dy * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * c * (1 + 0.134145 * x * x)),
    here evaluated in place, block by block, like the forward.
    """
    x, t = cache
    xp = get_array_module(x)
    dx = empty(x)                                              # (...)

    def block(dyb, xb, tb, db):
        w = work_like(db)                                      # this thread's scratch
        xp.multiply(xb, xb, out=db)                            # x²
        db *= 3 * 0.044715
        db += 1.0
        db *= _GELU_C                                          # du/dx = c (1 + 3·0.044715 x²)
        db *= xb
        db *= 0.5                                              # ½ x du/dx
        xp.multiply(tb, tb, out=w)
        xp.subtract(1.0, w, out=w)                             # 1 − t² = dt/du
        db *= w
        xp.add(tb, 1.0, out=w)
        w *= 0.5                                               # ½ (1 + t)
        db += w
        db *= dyb                                              # times the upstream gradient
    for_each(block, blocks(dy, x, t, dx))
    return dx


def gelu_reference(x):
    """GELU in one plain line (what :func:`gelu_forward` computes, block by block)."""
    xp = get_array_module(x)
    return 0.5 * x * (1.0 + xp.tanh(_GELU_C * (x + 0.044715 * x ** 3)))


def tanh_forward(x):
    """y = tanh(x)."""
    xp = get_array_module(x)
    y = xp.tanh(x)
    return y, y


def tanh_backward(dy, y):
    """dy/dx = 1 − tanh(x)² = 1 − y²: the output is all the backward needs."""
    return dy * (1.0 - y * y)


def dropout_forward(x, mask, p):
    """Inverted dropout: y = x · m / (1 − p), m ~ Bernoulli(1 − p). The expectation of y is x."""
    return x * mask / (1.0 - p), (mask, p)


def dropout_backward(dy, cache):
    """dy/dx = m / (1 − p): the same mask scales the gradient."""
    mask, p = cache
    return dy * mask / (1.0 - p)


# --------------------------------------------------------------------------- loss

def softmax(z, axis=-1):
    """Numerically stable softmax: subtract the row maximum before exponentiating."""
    xp = get_array_module(z)
    e = xp.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def log_softmax(z, axis=-1):
    """log softmax(z) = z − max − log Σ exp(z − max): never exponentiates a large number."""
    xp = get_array_module(z)
    shifted = z - z.max(axis=axis, keepdims=True)
    return shifted - xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))


def softmax_cross_entropy_forward(logits, labels):
    """L = −(1/N) Σ_n log softmax(z_n)[y_n].   logits: (N, C)  labels: (N,) integers in [0, C).

    Fused with the softmax so that it stays finite for any logits (log-sum-exp trick):
    log softmax(z)[y] = (z_y − max z) − log Σ_c exp(z_c − max z). The probabilities are kept for the
    backward, so exp runs once per step: plainly, ``L = −log_softmax(z)[rows, y].mean()``.
    """
    xp = get_array_module(logits)
    N = logits.shape[0]
    rows = xp.arange(N)                            # (N,)
    shifted = logits - logits.max(axis=-1, keepdims=True)                # (N, C)
    target = shifted[rows, labels]                 # (N,)  z_y − max z
    probs = xp.exp(shifted, out=shifted)           # (N, C)  exp(z − max z), in place
    total = probs.sum(axis=-1)                     # (N,)
    loss = (xp.log(total) - target).mean()         # ()
    probs /= total[:, None]                        # (N, C)  softmax(z)
    return loss, (probs, labels)


def softmax_cross_entropy_backward(dloss, cache):
    """dL/dz = (softmax(z) − onehot(y)) / N, times the upstream scalar."""
    probs, labels = cache
    xp = get_array_module(probs)
    N = probs.shape[0]
    dz = probs * (dloss / N)                       # (N, C)
    dz[xp.arange(N), labels] -= dloss / N          # (N, C)  minus the one-hot target
    return dz
