"""Forward/backward pairs for prefix tuning: a learned prefix in front of the keys and values.

Prefix tuning (Li & Liang, 2021) leaves every weight of the model frozen and gives each attention
layer ``p`` extra key/value pairs of its own, learned directly:

    K' = [P_k; K],   V' = [P_v; V]          P_k, P_v: (p, d),  K, V: (B, T, d)  ->  (B, p + T, d)

The same prefix is put in front of every example of the batch (a broadcast), and split into heads
exactly like K and V. Queries are not extended: each of the T queries now scores p + T keys,
so the score matrix per head is (T, p + T) instead of (T, T): attention costs T·(T + p), not T².

With causal attention, query i may see every prefix slot (they hold no future token) and the
tokens j ≤ i: in the (T, p + T) mask that is the lower triangle shifted right by p columns.

Shapes: ``B`` batch, ``T`` tokens, ``p`` prefix slots, ``d`` width, ``H`` heads, ``dh = d / H``.
With ``p = 0`` every function here computes exactly what :func:`attention_forward` computes.
"""
from __future__ import annotations

from ..backend import get_array_module
from .sequence import attention_backward, attention_forward, causal_mask


def prefix_concat_forward(x, P):
    """y = [P; x] along the token axis, P broadcast over the batch.

    x: (B, T, d)  P: (p, d)  ->  y: (B, p + T, d)
    """
    xp = get_array_module(x)
    Pb = xp.broadcast_to(P[None], (x.shape[0],) + tuple(P.shape))         # (B, p, d) one prefix, B views
    return xp.concatenate([Pb, x], axis=1), P.shape[0]                     # (B, p + T, d)


def prefix_concat_backward(dy, p: int):
    """The split of the gradient: dx = dy[:, p:],  dP = Σ_batch dy[:, :p] (the prefix was used B times)."""
    return dy[:, p:], dy[:, :p].sum(axis=0)                               # (B, T, d), (p, d)


def prefix_causal_mask(T: int, p: int, xp):
    """(T, p + T) booleans, True where query i may look at key j: every prefix slot (j < p) and
    every token up to itself (j − p ≤ i). It is :func:`causal_mask` with p columns of True in front.
    """
    return causal_mask(T, xp, p + T)                                       # (T, p + T)


def prefix_attention_forward(q, k, v, P_k, P_v, n_heads: int, causal: bool = False):
    """Multi-head attention of q over the keys and values with a prefix in front.

    q, k, v: (B, T, d) already projected;  P_k, P_v: (p, d).  K' = [P_k; K], V' = [P_v; V], then
    :func:`attention_forward` with T queries and p + T keys: per head S = Q K'ᵀ / √dh: (T, p + T),
    P = softmax(S) (masked by :func:`prefix_causal_mask` if causal), O = P V'.
    Returns the heads concatenated, (B, T, d), and the cache: attention's ``(Q, K', V', P, scale)``, then p.
    """
    kk, p = prefix_concat_forward(k, P_k)                                  # (B, p + T, d)
    vv, _ = prefix_concat_forward(v, P_v)                                  # (B, p + T, d)
    heads, cache = attention_forward(q, kk, vv, n_heads, causal)           # (B, T, d)
    return heads, cache + (p,)


def prefix_attention_backward(dout, cache):
    """Attention's backward over the extended keys (:func:`attention_backward`), then the
    concatenation's: dk = dK'[:, p:],  dP_k = Σ_batch dK'[:, :p]  (and the same for v and P_v).

    Returns (dq, dk, dv, dP_k, dP_v).
    """
    dq, dkk, dvv = attention_backward(dout, cache[:-1])                    # (B, T, d), (B, p + T, d) ×2
    dk, dP_k = prefix_concat_backward(dkk, cache[-1])                      # (B, T, d), (p, d)
    dv, dP_v = prefix_concat_backward(dvv, cache[-1])                      # (B, T, d), (p, d)
    return dq, dk, dv, dP_k, dP_v
