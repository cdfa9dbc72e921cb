"""Bottleneck adapters (Houlsby et al., 2019): a small residual MLP inserted after a sublayer.

    h ← h + W_up · act(W_down · h + b_down) + b_up        W_down: (m, d),  W_up: (d, m),  m ≪ d

Layout as everywhere in lora_np (PyTorch's): ``down`` is a ``Linear(d, m)`` whose weight is
(m, d), ``up`` a ``Linear(m, d)`` whose weight is (d, m). ``W_up`` and ``b_up`` start at zero,
so an inserted adapter is the identity and the adapted model starts exactly as the base model
(the same trick as LoRA's B = 0). ``W_down`` starts random (PyTorch's uniform in ±1/√d): with
W_up = 0 its first gradient is zero, but W_up's is G ᵀ act(z) ≠ 0, so learning starts at once.
Trainable parameters per adapter: m·d + m + d·m + d = 2md + m + d.

Backward, with G = dL/dy, z = W_down h + b_down and a = act(z):
    dW_up = Gᵀ a,  db_up = Σ G,  da = G W_up,  dz = da ⊙ act'(z),
    dW_down = dzᵀ h,  db_down = Σ dz,  dh = G + dz W_down      (the residual copies G through).
Each line is the backward of one existing module (Linear, GELU), composed here.

Unlike LoRA, an adapter cannot be merged into the weights (the activation sits between W_down and
W_up), so every input travels through its two extra matrix products at inference too.
Houlsby et al. also train the LayerNorms; here only the adapters are trained.
"""
from __future__ import annotations

from .. import backend, validate
from .attention import TransformerBlock
from .layers import GELU, Linear, ReLU, as_rng
from .module import Module

ACTIVATIONS = {"gelu": GELU, "relu": ReLU}
PLACES = ("attn", "mlp")


def check_bottleneck(bottleneck, where: str = "adapter") -> int:
    """The bottleneck width m must be a positive integer."""
    return validate.positive_int(bottleneck, "bottleneck", where)


class BottleneckAdapter(Module):
    """y = h + up(act(down(h))): (…, d) -> (…, d), the identity at initialisation (up = 0)."""

    def __init__(self, d_model: int, bottleneck: int, activation: str = "gelu", rng=None, dtype=None):
        d_model = validate.positive_int(d_model, "d_model", "BottleneckAdapter")
        m = check_bottleneck(bottleneck, "BottleneckAdapter")
        activation = validate.choice(activation, "activation", tuple(ACTIVATIONS), "BottleneckAdapter")
        rng = as_rng(rng)
        self.d_model, self.bottleneck, self.activation = d_model, m, activation
        self.down = Linear(d_model, m, rng=rng, dtype=dtype)                 # W_down: (m, d), random
        self.act = ACTIVATIONS[activation]()
        self.up = Linear(m, d_model, rng=rng, dtype=dtype)                   # W_up: (d, m)
        xp = backend.get_array_module(self.up.weight.data)
        self.up.weight.data = xp.zeros_like(self.up.weight.data)             # (d, m) zero: starts as identity
        self.up.bias.data = xp.zeros_like(self.up.bias.data)                 # (d,)

    def forward(self, h):
        return h + self.up(self.act(self.down(h)))                           # (…, d)

    def backward(self, dy):
        return dy + self.down.backward(self.act.backward(self.up.backward(dy)))   # (…, d)

    def extra_repr(self):
        return f"d_model={self.d_model}, bottleneck={self.bottleneck}, activation={self.activation}"


class SublayerWithAdapter(Module):
    """y = adapter(sublayer(x)): a frozen sublayer (``base_layer``) followed by an adapter in series.

    Backward: dx = sublayerᵀ(adapterᵀ(dy)).
    """

    def __init__(self, base: Module, adapter: BottleneckAdapter):
        self.base_layer, self.adapter = base, adapter

    def forward(self, x):
        return self.adapter(self.base_layer(x))                              # (B, T, d)

    def backward(self, dy):
        return self.base_layer.backward(self.adapter.backward(dy))           # (B, T, d)


def bottleneck_adapters(model: Module) -> list[tuple[str, BottleneckAdapter]]:
    """(name, adapter) for every bottleneck adapter of the model, in forward order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, BottleneckAdapter)]


def _check_where(where) -> tuple:
    if isinstance(where, str):
        places = (where,)
    else:
        places = tuple(where) if isinstance(where, (list, tuple)) else None
    if not places or len(set(places)) != len(places) or not set(places) <= set(PLACES):
        raise ValueError(f"insert_adapter_layers: where must name one or both of {PLACES} (no repeats), "
                         f"got {where!r}")
    return places


def insert_adapter_layers(model: Module, bottleneck: int = 8, where=PLACES, activation: str = "gelu",
                          seed: int = 0) -> Module:
    """Insert a :class:`BottleneckAdapter` after the attention and/or feed-forward sublayer of every
    :class:`TransformerBlock`, freeze everything else, return the model (changed in place).

    ``where``: ``"attn"``, ``"mlp"`` or both. Each chosen sublayer ``blocks.i.attn`` becomes a
    :class:`SublayerWithAdapter` (``blocks.i.attn.base_layer``, ``blocks.i.attn.adapter``), so a
    block computes h = x + adapter(attn(ln1(x))), as Houlsby et al. place it (before the residual sum).
    Trainable: (2md + m + d) per adapter, one adapter per chosen sublayer per block.
    """
    m = check_bottleneck(bottleneck, "insert_adapter_layers")
    places = _check_where(where)
    blocks = [b for _, b in model.named_modules() if isinstance(b, TransformerBlock)]
    if not blocks:
        raise ValueError(f"insert_adapter_layers: the model ({type(model).__name__}) has no "
                         "TransformerBlock to insert adapters into")
    if bottleneck_adapters(model):
        raise ValueError("insert_adapter_layers: this model already has adapters; "
                         "start again from a fresh copy of the base model")
    rng = as_rng(seed)
    model.freeze()
    for block in blocks:
        dtype = block.ln1.weight.dtype
        for place in places:
            adapter = BottleneckAdapter(block.d_model, m, activation, rng=rng.spawn(), dtype=dtype)
            setattr(block, place, SublayerWithAdapter(getattr(block, place), adapter))
    return model
