"""Forward/backward pairs for the Transformer: embeddings, LayerNorm, attention, patches.

Shapes: ``B`` batch, ``T`` tokens, ``d`` model width, ``H`` heads, ``dh = d / H``, ``V`` vocabulary.
Every matrix product is batched over (B, H): there is no Python loop over heads or examples.
"""
from __future__ import annotations

import math

from ..backend import get_array_module
from .blocks import BLOCK, blocks, empty, for_each, on_host, scratch, work_like
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
    """y = γ ⊙ x̂ + β,  x̂ = (x − μ) / √(σ² + ε), with μ, σ² over the last axis.   x: (…, d)

    Plainly (:func:`layernorm_reference`): ``xc = x − x.mean(−1); rstd = 1/√(mean(xc²) + ε);
    x̂ = xc · rstd; y = γ x̂ + β``; here the same steps run in place, in the outputs' memory.
    """
    xp = get_array_module(x)
    y, xhat = empty(x), empty(x)                                         # (…, d) each
    rstd = xp.empty(x.shape[:-1] + (1,), dtype=x.dtype)                  # (…, 1)
    for xb, xhb, yb, rb in blocks(x, xhat, y, rstd, numbers=None):       # (rows, d), (rows, 1): one
        xp.subtract(xb, xb.mean(axis=-1, keepdims=True), out=xhb)        # xc = x − μ
        xp.multiply(xhb, xhb, out=yb)                                    # xc² (y's memory as scratch)
        rb[...] = 1.0 / xp.sqrt(yb.mean(axis=-1, keepdims=True) + eps)   # 1 / √(σ² + ε)
        xhb *= rb                                                        # x̂
        xp.multiply(xhb, gamma, out=yb)
        yb += beta                                                       # y = γ x̂ + β
    return y, (xhat, rstd, gamma)


def layernorm_backward(dy, cache, need_param_grad: bool = True):
    """With ĝ = G ⊙ γ:  dx = (1/σ) (ĝ − mean(ĝ) − x̂ · mean(ĝ ⊙ x̂)),  dγ = Σ G ⊙ x̂,  dβ = Σ G.

    The first mean removes the direction normalisation makes invisible, a shift of x; the second
    removes the scale direction (exactly so only for ε = 0: with ε a rescaled x changes x̂ slightly).
    Plainly: ``g = dy·γ; dx = rstd · (g − g.mean(−1) − x̂ · (g·x̂).mean(−1))``; here in place, in
    dx's memory and one work array. ``need_param_grad=False`` (γ and β frozen) returns None for
    both and skips their sums.
    """
    xhat, rstd, gamma = cache
    xp = get_array_module(xhat)
    dx, work = empty(xhat), scratch(xhat, numbers=None)                  # (…, d), (rows, d)
    dgamma = xp.zeros(gamma.shape, dtype=xhat.dtype) if need_param_grad else None   # (d,)
    for dyb, xhb, rb, db in blocks(dy, xhat, rstd, dx, numbers=None):
        w = work[:len(dyb)]
        xp.multiply(dyb, gamma, out=db)                                  # ĝ
        if need_param_grad:
            xp.multiply(dyb, xhb, out=w)                                 # G ⊙ x̂
            dgamma += w.sum(axis=0)
            w *= gamma                                                   # ĝ ⊙ x̂
        else:
            xp.multiply(db, xhb, out=w)                                  # ĝ ⊙ x̂
        db -= db.mean(axis=-1, keepdims=True)
        xp.multiply(xhb, w.mean(axis=-1, keepdims=True), out=w)          # x̂ · mean(ĝ ⊙ x̂)
        db -= w
        db *= rb                                                         # dx
    dbeta = _rows(dy).sum(axis=0) if need_param_grad else None           # (d,)
    return dx, dgamma, dbeta


def layernorm_reference(x, gamma, beta, eps: float = 1e-5):
    """LayerNorm in plain lines (what :func:`layernorm_forward` computes)."""
    xp = get_array_module(x)
    xc = x - x.mean(axis=-1, keepdims=True)
    return gamma * xc / xp.sqrt((xc * xc).mean(axis=-1, keepdims=True) + eps) + beta


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

    The softmax is computed in place in S's own memory, one head's (T, Tk) block at a time (cache
    sized, :mod:`.blocks`); plainly it is ``P = softmax(where(mask, S, −∞))`` (:func:`attention_reference`).
    """
    xp = get_array_module(q)
    Q, K, Vh = split_heads(q, n_heads), split_heads(k, n_heads), split_heads(v, n_heads)  # (B, H, T | Tk, dh)
    scale = 1.0 / math.sqrt(Q.shape[-1])
    P = Q @ K.transpose(0, 1, 3, 2)                                      # (B, H, T, Tk)  Q Kᵀ
    if causal:                                                           # (T, Tk): 0 visible, −∞ hidden
        hide = xp.where(causal_mask(P.shape[-2], xp, P.shape[-1]), 0.0, -xp.inf).astype(P.dtype)

    def block(Pb):                                                       # (n, T, Tk): n whole heads
        Pb *= scale                                                      # S
        if causal:
            Pb += hide                                                   # masked keys get weight exp(−∞) = 0
        Pb -= Pb.max(axis=-1, keepdims=True)                             # stable: the row max is 0
        xp.exp(Pb, out=Pb)
        Pb /= Pb.sum(axis=-1, keepdims=True)                             # P = softmax(S)
    for_each(block, ((Pb,) for Pb in _head_blocks(P)))
    Y = P @ Vh                                                           # (B, H, T, dh)
    return merge_heads(Y), (Q, K, Vh, P, scale)


def attention_backward(dout, cache):
    """With dO the upstream gradient per head (Vh: the values per head):
    dV = Pᵀ dO,  dP = dO Vᵀ,  dS = softmax_backward(dP, P),  dQ = dS K · scale,  dK = dSᵀ Q · scale.

    Masked entries have P = 0, so dS = 0 there: the mask needs no special case in the backward.
    Each row of dS sums to zero (softmax ignores a shift of its inputs), which is why the key
    projection's bias gets a zero gradient, up to rounding (~1e-15): it shifts a query's scores
    uniformly. (Not so with a prefix in front of the keys: the prefix's scores do not shift.)
    Here dS · scale is formed in place in dP's memory, one head block at a time.
    """
    Q, K, Vh, P, scale = cache
    xp = get_array_module(P)
    dO = split_heads(dout, Q.shape[1])                                   # (B, H, T, dh)
    dV = P.transpose(0, 1, 3, 2) @ dO                                    # (B, H, Tk, dh)
    dS = dO @ Vh.transpose(0, 1, 3, 2)                                   # (B, H, T, Tk)  dP, for now

    def block(dSb, Pb):                                                  # (n, T, Tk) each
        w = work_like(dSb)                                               # this thread's scratch
        xp.multiply(dSb, Pb, out=w)
        dSb -= w.sum(axis=-1, keepdims=True)                             # dP − Σ_j dP_j P_j
        dSb *= Pb                                                        # dS = P ⊙ (dP − Σ_j dP_j P_j)
        dSb *= scale                                                     # folded in: dQ, dK need dS·scale
    for_each(block, zip(_head_blocks(dS), _head_blocks(P), strict=True))
    dQ = dS @ K                                                          # (B, H, T, dh)
    dK = dS.transpose(0, 1, 3, 2) @ Q                                    # (B, H, Tk, dh)
    return merge_heads(dQ), merge_heads(dK), merge_heads(dV)


def _head_blocks(A):
    """A (B, H, T, Tk) array as blocks of whole (T, Tk) score matrices, about BLOCK numbers each
    (a view per block: A is a fresh C-ordered product)."""
    stack = A.reshape(-1, A.shape[-2], A.shape[-1])                      # (B·H, T, Tk)
    n = max(1, BLOCK // (A.shape[-2] * A.shape[-1])) if on_host(A) else stack.shape[0]
    return (stack[i:i + n] for i in range(0, stack.shape[0], n))


def attention_reference(q, k, v, n_heads: int, causal: bool = False):
    """Attention in plain lines (what :func:`attention_forward` computes): returns (B, T, d)."""
    xp = get_array_module(q)
    Q, K, Vh = split_heads(q, n_heads), split_heads(k, n_heads), split_heads(v, n_heads)
    S = (Q @ K.transpose(0, 1, 3, 2)) / math.sqrt(Q.shape[-1])           # (B, H, T, Tk)
    if causal:
        S = xp.where(causal_mask(S.shape[-2], xp, S.shape[-1]), S, -xp.inf)
    E = xp.exp(S - S.max(axis=-1, keepdims=True))
    return merge_heads((E / E.sum(axis=-1, keepdims=True)) @ Vh)


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
