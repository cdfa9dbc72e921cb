"""LoRA's maths: the forward and backward pass of a linear layer and of an embedding with an adapter.

A frozen weight W0 plus a trainable low-rank update:

    y = x W0ᵀ + b0 + s · (x Aᵀ) Bᵀ,        ΔW = s · B A   (rank ≤ r)

(in training with PEFT's ``lora_dropout``, the adapter sees drop(x) instead of x).

Conventions (loralib and PEFT): ``A`` is ``(r, d_in)``, ``B`` is ``(d_out, r)``, so ``ΔW`` has the
shape of ``W0``, ``(d_out, d_in)``; ``s = alpha / r`` (``alpha / √r`` with rsLoRA). Raschka's book
uses the transposed layout (``x @ A @ B`` with ``A: (d_in, r)``); the maths is the same.

Notation as in ``dense``: ``G = dL/dy`` is the upstream gradient; a batch may carry extra leading
axes, ``(..., d)``, which are flattened into ``N`` rows for the weight gradients.
"""
from __future__ import annotations

from .dense import _mm, _rows, dropout_backward, dropout_forward
from .sequence import one_hot


def lora_linear_forward(x, W0, b0, A, B, s, dropout=None):
    """y = x W0ᵀ + b0 + s · (x Aᵀ) Bᵀ, without ever forming B A.

    Inputs:
    - x: (..., d_in) input
    - W0: (d_out, d_in) frozen weight;  b0: (d_out,) frozen bias, or None
    - A: (r, d_in) and B: (d_out, r), the adapter;  s: the scale alpha / r (or alpha / √r)
    - dropout: None, or ``(mask, p)`` for inverted dropout on the adapter's input only
      (PEFT's ``lora_dropout``): the adapter then sees drop(x) = x ⊙ mask / (1 − p), W0 sees x.

    Returns ``(y, cache)`` with y: (..., d_out). Two thin products, O(N r (d_in + d_out)) work.
    """
    xa, drop = (x, None) if dropout is None else dropout_forward(x, *dropout)   # (..., d_in)
    u = _mm(xa, A.T)                                   # (..., r)     the rank-r bottleneck
    y = _mm(x, W0.T)                                   # (..., d_out)  x W0ᵀ
    y += _mm(s * u, B.T)                               # (..., d_out)  + s (x Aᵀ) Bᵀ (s applied to the thin u)
    if b0 is not None:
        y += b0                                        # (..., d_out)
    return y, (xa, W0, A, B, s, u, drop)


def lora_linear_backward(dy, cache):
    """With G = dL/dy, x_a = drop(x) the adapter's input (x itself without dropout) and u = x_a Aᵀ:

        dB = s Gᵀ u,      dA = s (G B)ᵀ x_a,      dx = G W0 + drop'(s (G B) A),

    where drop' multiplies by the same mask / (1 − p) (the identity without dropout).
    Returns ``(dx, dA, dB)``. No dW0 and no db0: W0 and b0 are frozen, so their gradients are never
    formed.
    """
    xa, W0, A, B, s, u, drop = cache
    gB = s * _mm(dy, B)                                # (..., r)     s G B, the gradient at u
    dA = _rows(gB).T @ _rows(xa)                       # (r, d_in)
    dB = s * (_rows(dy).T @ _rows(u))                  # (d_out, r)
    dxa = _mm(gB, A)                                   # (..., d_in)  through the adapter
    if drop is not None:
        dxa = dropout_backward(dxa, drop)              # (..., d_in)  back through dropout
    dx = _mm(dy, W0)                                   # (..., d_in)  through W0
    dx += dxa                                          # (..., d_in)  x feeds both paths: add them
    return dx, dA, dB


def lora_embedding_forward(ids, W0, A, B, s):
    """y = W0[ids] + s · (Aᵀ)[ids] Bᵀ, i.e. the lookup in W = W0 + s (B A)ᵀ.

    Inputs: ids (…,) integers in [0, V);  W0: (V, d) frozen;  A: (r, V);  B: (d, r).
    loralib's orientation for embeddings: A starts at zero and B is random, so that
    ΔW = s (B A)ᵀ: (V, d) starts at zero while the gradient of A does not.
    """
    u = A.T[ids]                                       # (…, r)
    return W0[ids] + s * (u @ B.T), (ids, u, A, B, s)  # (…, d)


def lora_embedding_backward(dy, cache):
    """With G = dL/dy and u = (Aᵀ)[ids]:  dB = s Gᵀ u,  dA = (s G B)ᵀ onehot(ids).   Returns (dA, dB)."""
    ids, u, A, B, s = cache
    du = s * (_rows(dy) @ B)                           # (N, r)
    dA = du.T @ one_hot(ids, A.shape[1], dy.dtype)     # (r, V)
    dB = s * (_rows(dy).T @ _rows(u))                  # (d, r)
    return dA, dB
