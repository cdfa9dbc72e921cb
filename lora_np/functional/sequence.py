"""Forward/backward pairs for the Transformer: embeddings, LayerNorm, attention, patches.

Shapes: ``B`` batch, ``T`` tokens, ``d`` model width, ``H`` heads, ``dh = d / H``, ``V`` vocabulary.
Every matrix product is batched over (B, H): there is no Python loop over heads or examples.
"""
from __future__ import annotations

import math

from ..backend import get_array_module
from .dense import _rows


def one_hot(ids, V: int, dtype):
    """(…,) integer ids -> (N, V) rows of the identity: the embedding lookup as a matrix."""
    xp = get_array_module(ids)
    return (ids.reshape(-1, 1) == xp.arange(V)).astype(dtype)          # (N, V)


# --------------------------------------------------------------------------- embeddings

def embedding_forward(ids, W):
    """y = W[ids], a row lookup.   ids: (…,) integers in [0, V)   W: (V, d)  ->  y: (…, d)"""
    return W[ids], (ids, W.shape[0])


def embedding_backward(dy, cache):
    """dW[v] = Σ_{n: ids_n = v} dy_n — a scatter-add, written as a matmul with the one-hot
    matrix so it runs unchanged on every backend: dW = onehot(ids)ᵀ dy.   (No gradient for ids.)"""
    ids, V = cache
    return one_hot(ids, V, dy.dtype).T @ _rows(dy)                       # (V, d)


# --------------------------------------------------------------------------- LayerNorm

def layernorm_forward(x, gamma, beta, eps: float = 1e-5):
    """y = γ ⊙ x̂ + β,  x̂ = (x − μ) / √(σ² + ε), with μ, σ² over the last axis.   x: (…, d)"""
    xp = get_array_module(x)
    mu = x.mean(axis=-1, keepdims=True)                                  # (…, 1)
    xc = x - mu                                                          # (…, d)
    rstd = 1.0 / xp.sqrt((xc * xc).mean(axis=-1, keepdims=True) + eps)   # (…, 1)
    xhat = xc * rstd                                                     # (…, d)
    return gamma * xhat + beta, (xhat, rstd, gamma)


def layernorm_backward(dy, cache):
    """With ĝ = G ⊙ γ:  dx = (1/σ) (ĝ − mean(ĝ) − x̂ · mean(ĝ ⊙ x̂)),  dγ = Σ G ⊙ x̂,  dβ = Σ G.

    The first mean removes the direction normalisation makes invisible, a shift of x; the second
    removes the scale direction (exactly so only for ε = 0: with ε a rescaled x changes x̂ slightly).
    """
    xhat, rstd, gamma = cache
    g = dy * gamma                                                       # (…, d)
    dx = rstd * (g - g.mean(axis=-1, keepdims=True)
                 - xhat * (g * xhat).mean(axis=-1, keepdims=True))       # (…, d)
    dgamma = (_rows(dy) * _rows(xhat)).sum(axis=0)                       # (d,)
    dbeta = _rows(dy).sum(axis=0)                                        # (d,)
    return dx, dgamma, dbeta


# --------------------------------------------------------------------------- attention

def softmax_backward(dP, P):
    """For P = softmax(S) along the last axis:  dS = P ⊙ (dP − Σ_j dP_j P_j)."""
    return P * (dP - (dP * P).sum(axis=-1, keepdims=True))


def split_heads(x, H: int):
    """(B, T, d) -> (B, H, T, d/H)."""
    B, T, d = x.shape
    return x.reshape(B, T, H, d // H).transpose(0, 2, 1, 3)


def merge_heads(x):
    """(B, H, T, dh) -> (B, T, H·dh)."""
    B, H, T, dh = x.shape
    return x.transpose(0, 2, 1, 3).reshape(B, T, H * dh)


def causal_mask(T: int, xp, n_keys: int | None = None):
    """(T, n_keys) booleans, True where query i may look at key j. With n_keys = T (the default):
    j ≤ i. With more keys than queries, the first n_keys − T keys come before every query (a
    prefix: :mod:`lora_np.functional.prefix`) and are visible to all of them: j − (n_keys − T) ≤ i."""
    n_keys = T if n_keys is None else n_keys
    return xp.tril(xp.ones((T, n_keys), dtype=bool), k=n_keys - T)


def attention_forward(q, k, v, n_heads: int, causal: bool = False):
    """Multi-head scaled dot-product attention on already projected q: (B, T, d) and k, v: (B, Tk, d).

    Per head:  S = Q Kᵀ / √dh,  P = softmax(S) (masked by :func:`causal_mask` if causal),  O = P V.
    Usually Tk = T; prefix tuning puts Tk − T extra keys in front (Tk > T).
    Returns the heads concatenated, (B, T, d); the output projection is a separate Linear.
    """
    xp = get_array_module(q)
    Q, K, Vh = split_heads(q, n_heads), split_heads(k, n_heads), split_heads(v, n_heads)  # (B, H, T | Tk, dh)
    scale = 1.0 / math.sqrt(Q.shape[-1])
    S = (Q @ K.transpose(0, 1, 3, 2)) * scale                            # (B, H, T, Tk)
    if causal:
        S = xp.where(causal_mask(S.shape[-2], xp, S.shape[-1]), S, -xp.inf)   # (B, H, T, Tk)
    S = S - S.max(axis=-1, keepdims=True)                                # (B, H, T, Tk) stable
    E = xp.exp(S)                                                        # (B, H, T, Tk) masked -> 0
    P = E / E.sum(axis=-1, keepdims=True)                                # (B, H, T, Tk)
    Y = P @ Vh                                                           # (B, H, T, dh)
    return merge_heads(Y), (Q, K, Vh, P, scale)


def attention_backward(dout, cache):
    """With dO the upstream gradient per head (Vh: the values per head):
    dV = Pᵀ dO,  dP = dO Vᵀ,  dS = softmax_backward(dP, P),  dQ = dS K · scale,  dK = dSᵀ Q · scale.

    Masked entries have P = 0, so dS = 0 there: the mask needs no special case in the backward.
    Each row of dS sums to zero (softmax ignores a shift of its inputs), which is why the key
    projection's bias gets a zero gradient, up to rounding (~1e-15): it shifts a query's scores
    uniformly. (Not so with a prefix in front of the keys: the prefix's scores do not shift.)
    """
    Q, K, Vh, P, scale = cache
    dO = split_heads(dout, Q.shape[1])                                   # (B, H, T, dh)
    dV = P.transpose(0, 1, 3, 2) @ dO                                    # (B, H, Tk, dh)
    dP = dO @ Vh.transpose(0, 1, 3, 2)                                   # (B, H, T, Tk)
    dS = softmax_backward(dP, P)                                         # (B, H, T, Tk)
    dQ = (dS @ K) * scale                                                # (B, H, T, dh)
    dK = (dS.transpose(0, 1, 3, 2) @ Q) * scale                          # (B, H, Tk, dh)
    return merge_heads(dQ), merge_heads(dK), merge_heads(dV)


# --------------------------------------------------------------------------- images

def patchify_forward(images, p: int):
    """(B, Hi, Wi, C) images -> (B, N, p·p·C) flattened p×p patches, N = (Hi/p)(Wi/p), row-major."""
    B, Hi, Wi, C = images.shape
    x = images.reshape(B, Hi // p, p, Wi // p, p, C)                     # (B, gh, p, gw, p, C)
    x = x.transpose(0, 1, 3, 2, 4, 5)                                    # (B, gh, gw, p, p, C)
    return x.reshape(B, (Hi // p) * (Wi // p), p * p * C), images.shape  # (B, N, p·p·C)


def patchify_backward(dy, shape):
    """The inverse rearrangement: patch gradients back to pixel positions (a permutation)."""
    B, Hi, Wi, C = shape
    p = int(math.isqrt(dy.shape[-1] // C))
    x = dy.reshape(B, Hi // p, Wi // p, p, p, C)                         # (B, gh, gw, p, p, C)
    return x.transpose(0, 1, 3, 2, 4, 5).reshape(B, Hi, Wi, C)           # (B, Hi, Wi, C)
