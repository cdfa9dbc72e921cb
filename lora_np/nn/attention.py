"""The Transformer's modules: multi-head self-attention, the GELU MLP block, the pre-LN block.

Every projection (``q``, ``k``, ``v``, ``o``, ``mlp.up``, ``mlp.down``) is an ordinary
:class:`Linear`, so LoRA can wrap any of them by name — the LoRA paper adapts ``q`` and ``v``.
"""
from __future__ import annotations

from .. import functional as F
from .. import validate
from .layers import GELU, LayerNorm, Linear, as_rng, check_features
from .module import Module


class MultiHeadAttention(Module):
    """y = o(concat_h softmax(Q_h K_hᵀ / √dh) V_h),  with Q = q(x), K = k(x), V = v(x).

    x: (B, T, d) -> y: (B, T, d). ``causal=True`` lets position t attend only to positions ≤ t.
    """

    def __init__(self, d_model: int, n_heads: int, causal: bool = False, rng=None, dtype=None):
        d_model = validate.positive_int(d_model, "d_model", "MultiHeadAttention")
        n_heads = validate.positive_int(n_heads, "n_heads", "MultiHeadAttention")
        causal = validate.boolean(causal, "causal", "MultiHeadAttention")
        if d_model % n_heads:
            raise ValueError(f"MultiHeadAttention: d_model ({d_model}) must be divisible "
                             f"by n_heads ({n_heads})")
        rng = as_rng(rng)
        self.d_model, self.n_heads, self.causal = d_model, n_heads, causal
        self.q = Linear(d_model, d_model, rng=rng, dtype=dtype)
        self.k = Linear(d_model, d_model, rng=rng, dtype=dtype)
        self.v = Linear(d_model, d_model, rng=rng, dtype=dtype)
        self.o = Linear(d_model, d_model, rng=rng, dtype=dtype)
        self._cache = None

    def forward(self, x):
        if x.ndim != 3:
            raise ValueError(f"attention input must be (B, T, d_model), got shape {tuple(x.shape)}")
        q, k, v = self.q(x), self.k(x), self.v(x)                       # (B, T, d) each
        heads, self._cache = F.attention_forward(q, k, v, self.n_heads, self.causal)
        return self.o(heads)                                             # (B, T, d)

    def backward(self, dy):
        cache, self._cache = self._need_cache(self._cache), None
        dq, dk, dv = F.attention_backward(self.o.backward(dy), cache)    # (B, T, d) each
        dx = self.q.backward(dq)                                         # (B, T, d)
        dx += self.k.backward(dk)                                        # x fed all three: add them
        dx += self.v.backward(dv)
        return dx

    def extra_repr(self):
        return f"d_model={self.d_model}, n_heads={self.n_heads}, causal={self.causal}"


class FeedForward(Module):
    """y = down(GELU(up(x))),  up: d -> hidden (4d by default), down: hidden -> d."""

    def __init__(self, d_model: int, hidden: int, rng=None, dtype=None):
        d_model = validate.positive_int(d_model, "d_model", "FeedForward")
        hidden = validate.positive_int(hidden, "hidden", "FeedForward")
        rng = as_rng(rng)
        self.up = Linear(d_model, hidden, rng=rng, dtype=dtype)
        self.act = GELU()
        self.down = Linear(hidden, d_model, rng=rng, dtype=dtype)

    def forward(self, x):
        return self.down(self.act(self.up(x)))                           # (…, d)

    def backward(self, dy):
        return self.up.backward(self.act.backward(self.down.backward(dy)))


class TransformerBlock(Module):
    """Pre-LN residual block (GPT-2's):  h = x + attn(ln1(x)),  y = h + mlp(ln2(h)).

    Backward: a residual connection copies the gradient, so dh = dy + ln2ᵀ(mlpᵀ(dy)) and
    dx = dh + ln1ᵀ(attnᵀ(dh)) — each branch adds its contribution to the identity path.
    """

    def __init__(self, d_model: int, n_heads: int, mlp_hidden: int, causal: bool = False, rng=None,
                 dtype=None):
        d_model = validate.positive_int(d_model, "d_model", "TransformerBlock")
        mlp_hidden = validate.positive_int(mlp_hidden, "mlp_hidden", "TransformerBlock")
        rng = as_rng(rng)
        self.ln1 = LayerNorm(d_model, dtype=dtype)
        self.attn = MultiHeadAttention(d_model, n_heads, causal, rng=rng, dtype=dtype)
        self.ln2 = LayerNorm(d_model, dtype=dtype)
        self.mlp = FeedForward(d_model, mlp_hidden, rng=rng, dtype=dtype)
        self.d_model = d_model

    def forward(self, x):
        check_features(x, self.d_model, self.ln1.weight.dtype, "TransformerBlock")
        h = x + self.attn(self.ln1(x))                                   # (B, T, d)
        return h + self.mlp(self.ln2(h))                                 # (B, T, d)

    def backward(self, dy):
        dh = dy + self.ln2.backward(self.mlp.backward(dy))               # (B, T, d)
        return dh + self.ln1.backward(self.attn.backward(dh))            # (B, T, d)
