"""A small Transformer with two heads: a ViT-style image classifier and a character language model.

    tokens ─► embeddings (+ learned positions) ─► N × [pre-LN attention + MLP block] ─► LayerNorm ─► head

Parameter names: ``tok_emb``, ``pos_emb`` (or ``patch_emb``, ``cls_token``, ``pos``),
``blocks.{i}.attn.{q,k,v,o}``, ``blocks.{i}.mlp.{up,down}``, ``blocks.{i}.ln{1,2}``, ``ln_f``,
``head`` — so ``target_modules=["q", "v"]`` adapts every block's query and value projections.
"""
from __future__ import annotations

from dataclasses import dataclass

from .. import backend
from .. import functional as F
from ..nn import Embedding, LayerNorm, Linear, Module, Parameter, as_rng, check_finite
from ..nn.attention import TransformerBlock
from ..validate import choice, integer, positive_int, positive_number

SIZES = ("d_model", "n_heads", "n_layers", "mlp_ratio", "context", "image_size", "patch_size", "channels")


@dataclass
class TransformerConfig:
    """Sizes of the model. ``vocab_size`` for a language model, ``n_classes`` for a classifier."""

    d_model: int = 64
    n_heads: int = 4
    n_layers: int = 2
    mlp_ratio: int = 4
    context: int = 64                 # the longest sequence the model accepts (LM)
    vocab_size: int | None = None
    n_classes: int | None = None
    image_size: int = 16
    patch_size: int = 4
    channels: int = 3
    pooling: str = "cls"              # "cls" (a learned class token) or "mean"
    seed: int = 0

    def validate(self) -> None:
        """Raise a ValueError naming the first field that is not a valid size (``vocab_size`` and
        ``n_classes`` may be None here; each model checks the one it needs)."""
        where = "TransformerConfig"
        for name in SIZES:
            positive_int(getattr(self, name), name, where)
        for name in ("vocab_size", "n_classes"):
            if getattr(self, name) is not None:
                positive_int(getattr(self, name), name, where)
        integer(self.seed, "seed", where, low=0)
        if self.d_model % self.n_heads:
            raise ValueError(f"{where}: d_model ({self.d_model}) must be divisible "
                             f"by n_heads ({self.n_heads})")
        if self.image_size % self.patch_size:
            raise ValueError(f"{where}: image_size ({self.image_size}) must be divisible "
                             f"by patch_size ({self.patch_size})")
        choice(self.pooling, "pooling", ("cls", "mean"), where)


class _Trunk(Module):
    """Shared by both models: the blocks and the final LayerNorm."""

    def _build_trunk(self, cfg: TransformerConfig, causal: bool, rng, dtype):
        hidden = cfg.mlp_ratio * cfg.d_model
        self.blocks = [TransformerBlock(cfg.d_model, cfg.n_heads, hidden, causal, rng=rng, dtype=dtype)
                       for _ in range(cfg.n_layers)]
        self.ln_f = LayerNorm(cfg.d_model, dtype=dtype)

    def _trunk_forward(self, x):
        for block in self.blocks:
            x = block(x)                                                  # (B, T, d)
        return self.ln_f(x)

    def _trunk_backward(self, dx):
        dx = self.ln_f.backward(dx)
        for block in reversed(self.blocks):
            dx = block.backward(dx)
        return dx                                                         # (B, T, d)


class TransformerLM(_Trunk):
    """Causal character language model: ids (B, T) -> next-token logits (B, T, vocab_size)."""

    def __init__(self, config: TransformerConfig, dtype=None):
        config.validate()
        positive_int(config.vocab_size, "vocab_size", "TransformerLM")   # an LM needs a vocabulary
        self.config, rng = config, as_rng(config.seed)
        self.tok_emb = Embedding(config.vocab_size, config.d_model, rng=rng, dtype=dtype)
        self.pos_emb = Embedding(config.context, config.d_model, rng=rng, dtype=dtype)
        self._build_trunk(config, True, rng, dtype)
        self.head = Linear(config.d_model, config.vocab_size, rng=rng, dtype=dtype)
        self.n_classes = config.vocab_size

    def forward(self, ids):
        if not backend.is_array(ids) or ids.ndim != 2 or ids.shape[0] == 0:
            raise ValueError("ids must be a non-empty (B, T) integer array")
        T = ids.shape[1]
        if T == 0:
            raise ValueError(f"TransformerLM: ids has shape {tuple(ids.shape)}: every sequence needs at "
                             "least one token (an empty sequence has nothing to predict from)")
        if T > self.config.context:
            raise ValueError(f"sequence length {T} is longer than the context ({self.config.context}); "
                             "crop it to the last context tokens")
        positions = backend.get_array_module(ids).arange(T)                # (T,)
        x = self.tok_emb(ids) + self.pos_emb(positions)                    # (B, T, d)
        return self.head(self._trunk_forward(x))                           # (B, T, V)

    def backward(self, dlogits):
        dx = self._trunk_backward(self.head.backward(dlogits))             # (B, T, d)
        self.tok_emb.backward(dx)
        self.pos_emb.backward(dx.sum(axis=0))                              # positions are shared by the batch
        return None


class ViTClassifier(_Trunk):
    """Images (B, H, W, C) -> class logits (B, n_classes), from p×p patches as tokens."""

    def __init__(self, config: TransformerConfig, dtype=None):
        config.validate()
        positive_int(config.n_classes, "n_classes", "ViTClassifier")   # a classifier needs classes
        self.config, rng, d = config, as_rng(config.seed), config.d_model
        self.n_patches = (config.image_size // config.patch_size) ** 2
        self.patch_emb = Linear(config.patch_size ** 2 * config.channels, d, rng=rng, dtype=dtype)
        n_tokens = self.n_patches + (config.pooling == "cls")
        if config.pooling == "cls":
            self.cls_token = Parameter(rng.standard_normal((1, 1, d), dtype=dtype) * 0.02)   # (1, 1, d)
        self.pos = Parameter(rng.standard_normal((1, n_tokens, d), dtype=dtype) * 0.02)      # (1, T, d)
        self._build_trunk(config, False, rng, dtype)
        self.head = Linear(d, config.n_classes, rng=rng, dtype=dtype)
        self.n_classes = config.n_classes
        self._cache = None

    def forward(self, images):
        c = self.config
        want = (c.image_size, c.image_size, c.channels)
        if not backend.is_array(images) or images.ndim != 4 or tuple(images.shape[1:]) != want:
            raise ValueError(f"images must have shape (B, {want[0]}, {want[1]}, {want[2]}), got "
                             f"{tuple(images.shape) if backend.is_array(images) else type(images).__name__}")
        if images.shape[0] == 0:
            raise ValueError("images is an empty batch (0 images)")
        check_finite(images, "ViTClassifier", "images")
        patches, shape = F.patchify_forward(images, c.patch_size)         # (B, N, p·p·C)
        x = self.patch_emb(patches)                                       # (B, N, d)
        if c.pooling == "cls":
            xp = backend.get_array_module(x)
            cls = xp.broadcast_to(self.cls_token.data, (x.shape[0], 1, c.d_model))
            x = xp.concatenate([cls, x], axis=1)                          # (B, 1 + N, d)
        h = self._trunk_forward(x + self.pos.data)                        # (B, T, d)
        pooled = h[:, 0] if c.pooling == "cls" else h.mean(axis=1)        # (B, d)
        self._cache = h.shape
        return self.head(pooled)                                          # (B, n_classes)

    def backward(self, dlogits):
        shape, self._cache = self._need_cache(self._cache), None
        xp = backend.get_array_module(dlogits)
        dpooled = self.head.backward(dlogits)                             # (B, d)
        if self.config.pooling == "cls":
            dh = xp.zeros(shape, dtype=dpooled.dtype)                     # (B, T, d)
            dh[:, 0] = dpooled                                            # only the class token was read
        else:
            dh = xp.broadcast_to(dpooled[:, None, :] / shape[1], shape)   # (B, T, d) the mean's share
        dx = self._trunk_backward(dh)                                     # (B, T, d)
        if self.pos.trainable:
            self.pos.accumulate(dx.sum(axis=0, keepdims=True))            # (1, T, d)
        if self.config.pooling == "cls":
            if self.cls_token.trainable:
                self.cls_token.accumulate(dx[:, :1].sum(axis=0, keepdims=True))   # (1, 1, d)
            dx = dx[:, 1:]                                                # (B, N, d)
        self.patch_emb.backward(dx)
        return None


def generate(model: TransformerLM, prompt_ids, n_new: int, temperature: float = 1.0, top_k: int | None = None,
             seed: int = 0):
    """Sample ``n_new`` tokens after ``prompt_ids`` (1-D), one at a time; returns all ids (1-D).

    Each step: logits of the last position / temperature, keep the ``top_k`` largest, softmax,
    and draw by inverting the cumulative distribution with a seeded uniform number — the same
    seed gives the same text on every backend. temperature → 0 approaches greedy decoding.
    """
    n_new = integer(n_new, "n_new", "generate", low=0)
    temperature = positive_number(temperature, "temperature", "generate")
    V = model.config.vocab_size
    if top_k is not None:
        top_k = integer(top_k, "top_k", "generate", low=1, high=V)
    if not backend.is_array(prompt_ids) or prompt_ids.ndim != 1 or prompt_ids.shape[0] == 0:
        raise ValueError("generate: prompt_ids must be a non-empty 1-D integer array")
    xp, rng, was_training = backend.get_array_module(prompt_ids), as_rng(seed), model.training
    model.eval()
    ids = prompt_ids
    for _ in range(n_new):
        window = ids[-model.config.context:][None, :]                       # (1, T ≤ context)
        logits = model(window)[0, -1] / temperature                         # (V,)
        if top_k is not None:
            kth = xp.sort(logits)[V - top_k]                                # the k-th largest logit
            logits = xp.where(logits < kth, -xp.inf, logits)                # (V,)
        cdf = xp.cumsum(F.softmax(logits))                                  # (V,)
        u = rng.uniform(0.0, 1.0, (1,), dtype=cdf.dtype) * cdf[-1]          # (1,)
        nxt = xp.minimum((cdf < u).sum(), V - 1).astype(ids.dtype)          # () the drawn token
        ids = xp.concatenate([ids, nxt.reshape(1)])                         # (T + 1,)
    model.train(was_training)
    model.clear_caches()
    return ids
