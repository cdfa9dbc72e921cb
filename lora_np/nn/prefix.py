"""Prefix tuning (Li & Liang, 2021): every attention layer gets p learned key/value pairs.

    K' = [P_k; K],   V' = [P_v; V],   y = o(concat_h softmax(Q_h K'_hᵀ / √dh) V'_h)

``P_k`` and ``P_v`` (``prefix_key``, ``prefix_value``: (p, d) each) are the only trainable
numbers of the layer; ``q``, ``k``, ``v``, ``o`` stay frozen. Per layer that is 2·p·d parameters.
The prefix is the same for every input: think of p virtual tokens whose keys and values are
learned directly, which every real token can attend to (in a causal model too: they hold no future).

Initialisation: small random, normal with std 0.02 (the std of the model's own embeddings).
Unlike LoRA (B = 0) and adapters (W_up = 0), prefix tuning cannot start as the exact base
model: a key of (near) zero scores (near) 0, so the prefix takes a share of every query's
attention, about p / (p + Σ_j exp(s_ij)), away from the real tokens, and returns values near 0
for it. The paper reparametrises P through an MLP during training for stability; like PEFT's
default (``prefix_projection=False``) we learn P directly.

Cost at inference: every query scores p + T keys instead of T, so the attention's two matrix
products grow from T² to T·(T + p) per head; nothing merges away (the prefix is not a weight
update but extra sequence length).
"""
from __future__ import annotations

from .. import validate
from ..functional.prefix import prefix_attention_backward, prefix_attention_forward
from .attention import MultiHeadAttention
from .layers import as_rng
from .module import Module, Parameter

PREFIX_STD = 0.02


def check_n_prefix(n_prefix, where: str = "prefix tuning") -> int:
    """n_prefix must be an integer ≥ 0 (0: no prefix, the layer is the base attention)."""
    return validate.integer(n_prefix, "n_prefix", where, low=0)


class PrefixAttention(Module):
    """A frozen :class:`MultiHeadAttention` (``base_layer``) whose keys and values get a learned prefix.

    x: (B, T, d) -> y: (B, T, d). ``enabled = False`` runs the base attention unchanged.
    ``last_scores_shape`` records the (B, H, T, p + T) score matrix of the last forward pass.
    """

    def __init__(self, base: MultiHeadAttention, n_prefix: int = 8, std: float = PREFIX_STD, rng=None):
        if not isinstance(base, MultiHeadAttention):
            raise TypeError(f"PrefixAttention: base must be a MultiHeadAttention, got {type(base).__name__}")
        try:
            std = validate.number(std, "std", "PrefixAttention", low=0.0)
        except ValueError:                              # the wording callers already match
            raise ValueError(validate.message("std", "a non-negative number", std,
                                              "PrefixAttention")) from None
        self.n_prefix = check_n_prefix(n_prefix, "PrefixAttention")
        self.base_layer = base.freeze()
        d, dtype = base.d_model, base.q.weight.dtype
        self.d_model, self.n_heads, self.causal = d, base.n_heads, base.causal
        rng = as_rng(rng)
        self.prefix_key = Parameter(rng.standard_normal((self.n_prefix, d), dtype=dtype) * std)     # (p, d)
        self.prefix_value = Parameter(rng.standard_normal((self.n_prefix, d), dtype=dtype) * std)   # (p, d)
        self.enabled = True
        self.last_scores_shape = None
        self._cache = None

    def forward(self, x):
        if not self.enabled:
            self._cache = "base"
            return self.base_layer(x)                                         # (B, T, d)
        if x.ndim != 3:
            raise ValueError(f"attention input must be (B, T, d_model), got shape {tuple(x.shape)}")
        b = self.base_layer
        heads, cache = prefix_attention_forward(b.q(x), b.k(x), b.v(x), self.prefix_key.data,
                                                self.prefix_value.data, self.n_heads, self.causal)
        self._cache = cache
        self.last_scores_shape = tuple(cache[3].shape)                        # (B, H, T, p + T)
        return b.o(heads)                                                     # (B, T, d)

    def backward(self, dy):
        cache, self._cache = self._need_cache(self._cache), None
        if isinstance(cache, str):
            return self.base_layer.backward(dy)
        b = self.base_layer
        dq, dk, dv, dPk, dPv = prefix_attention_backward(b.o.backward(dy), cache)   # (B, T, d) ×3, (p, d) ×2
        if self.prefix_key.trainable:
            self.prefix_key.accumulate(dPk)
        if self.prefix_value.trainable:
            self.prefix_value.accumulate(dPv)
        return b.q.backward(dq) + b.k.backward(dk) + b.v.backward(dv)         # (B, T, d)

    def extra_repr(self):
        return (f"n_prefix={self.n_prefix}, d_model={self.d_model}, causal={self.causal}, "
                f"enabled={self.enabled}")


def prefix_layers(model: Module) -> list[tuple[str, PrefixAttention]]:
    """(name, layer) for every prefix attention layer of the model."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, PrefixAttention)]


def add_prefix_tuning(model: Module, n_prefix: int = 8, std: float = PREFIX_STD, seed: int = 0) -> Module:
    """Give every :class:`MultiHeadAttention` of ``model`` a learned prefix of ``n_prefix`` slots.

    Each attention layer becomes a :class:`PrefixAttention` (its projections named
    ``blocks.0.attn.base_layer.q`` ...), everything is frozen except the prefixes
    (``blocks.0.attn.prefix_key``, ``prefix_value``). Trainable: 2 · n_prefix · d per attention layer.
    The model is changed in place and returned.
    """
    n_prefix = check_n_prefix(n_prefix, "add_prefix_tuning")
    if type(model) is MultiHeadAttention:
        raise TypeError("add_prefix_tuning: model is itself a MultiHeadAttention; wrap it as "
                        "PrefixAttention(model, n_prefix) instead")
    names = [n for n, m in model.named_modules() if type(m) is MultiHeadAttention]
    if prefix_layers(model):
        raise ValueError("add_prefix_tuning: this model already has prefix attention layers; "
                         "start again from a fresh copy of the base model")
    if not names:
        raise ValueError(f"add_prefix_tuning: the model ({type(model).__name__}) has no MultiHeadAttention "
                         "layer to put a prefix in front of; prefix tuning needs a Transformer")
    rng = as_rng(seed)
    model.freeze()
    for name in names:                                  # e.g. "blocks.0.attn"
        layer = PrefixAttention(model.get_submodule(name), n_prefix, std=std, rng=rng.spawn())
        model.set_submodule(name, layer)
    return model


def set_prefix_enabled(model: Module, enabled: bool = True) -> Module:
    """Switch every prefix on or off (off: the base model's attention, exactly)."""
    enabled = validate.boolean(enabled, "enabled", "set_prefix_enabled")
    layers = prefix_layers(model)
    if not layers:
        raise ValueError("set_prefix_enabled: the model has no prefix attention layers "
                         "(add_prefix_tuning first)")
    for _, layer in layers:
        layer.enabled = enabled
    return model


__all__ = ["PrefixAttention", "add_prefix_tuning", "prefix_layers", "set_prefix_enabled", "check_n_prefix",
           "PREFIX_STD"]
