"""GPT-2 (Radford et al. 2019) in lora_np's modules, named as transformers names it.

    ids ─► wte[ids] + wpe[0..T) ─► n_layer × [x + attn(ln_1(x)),  h + mlp(ln_2(h))] ─► ln_f ─► h wteᵀ

What GPT-2 adds to the course's Transformer (:mod:`lora_np.models.transformer`):

* ``c_attn``: one :class:`~lora_np.nn.conv1d.Conv1D` from d to 3d computes q, k and v together
  (:func:`lora_np.functional.split_qkv_forward`); ``c_proj`` is the output projection;
* every projection is a Conv1D, weight stored (d_in, d_out) as the checkpoint stores it;
* the MLP is ``c_fc`` (d → 4d), GELU with the tanh approximation (``gelu_new``), ``c_proj`` (4d → d);
* LayerNorm with ε = 1e-5, learned positions, biases everywhere;
* the head ``lm_head`` is tied to the token embedding: it is a bias-free Linear whose weight *is*
  ``transformer.wte.weight`` (one Parameter), so ``wte``'s gradient collects both uses (with
  ``tie_word_embeddings=False``, as after merging a head adapter, it has a weight of its own).

Parameter names are transformers' (``transformer.h.0.attn.c_attn.weight``, ``lm_head``), which are
PEFT's module paths too: ``target_modules=["c_attn"]`` selects what a PEFT user expects. There is
no dropout: the model computes what GPT-2 computes at inference, and fine-tunes without dropout.
"""
from __future__ import annotations

from .. import backend, validate
from .. import functional as F
from ..nn import GELU, Embedding, LayerNorm, Linear, Module, as_rng
from ..nn.conv1d import Conv1D
from .config import GPT2Config


class GPT2Attention(Module):
    """Causal multi-head self-attention, fused projection: [q | k | v] = c_attn(x), y = c_proj(heads)."""

    def __init__(self, config: GPT2Config, rng, dtype=None):
        d = config.n_embd
        self.n_head = config.n_head
        self.c_attn = Conv1D(d, 3 * d, rng=rng, dtype=dtype)             # (d, 3d)
        self.c_proj = Conv1D(d, d, rng=rng, dtype=dtype)                 # (d, d)
        self._cache = None

    def forward(self, x):
        (q, k, v), _ = F.split_qkv_forward(self.c_attn(x))               # (B, T, d) each
        heads, self._cache = F.attention_forward(q, k, v, self.n_head, causal=True)
        return self.c_proj(heads)                                        # (B, T, d)

    def backward(self, dy):
        cache, self._cache = self._need_cache(self._cache), None
        dq, dk, dv = F.attention_backward(self.c_proj.backward(dy), cache)    # (B, T, d) each
        return self.c_attn.backward(F.split_qkv_backward(dq, dk, dv))         # (B, T, d)


class GPT2MLP(Module):
    """y = c_proj(GELU(c_fc(x))),  c_fc: d -> 4d,  c_proj: 4d -> d."""

    def __init__(self, config: GPT2Config, rng, dtype=None):
        self.c_fc = Conv1D(config.n_embd, config.hidden, rng=rng, dtype=dtype)
        self.act = GELU()
        self.c_proj = Conv1D(config.hidden, config.n_embd, rng=rng, dtype=dtype)

    def forward(self, x):
        return self.c_proj(self.act(self.c_fc(x)))                       # (B, T, d)

    def backward(self, dy):
        return self.c_fc.backward(self.act.backward(self.c_proj.backward(dy)))


class GPT2Block(Module):
    """Pre-LN residual block: h = x + attn(ln_1(x)),  y = h + mlp(ln_2(h)).

    Backward: each residual copies the gradient past its branch, dh = dy + ln_2ᵀ(mlpᵀ(dy)),
    dx = dh + ln_1ᵀ(attnᵀ(dh)).
    """

    def __init__(self, config: GPT2Config, rng, dtype=None):
        eps = config.layer_norm_epsilon
        self.ln_1 = LayerNorm(config.n_embd, eps=eps, dtype=dtype)
        self.attn = GPT2Attention(config, rng, dtype)
        self.ln_2 = LayerNorm(config.n_embd, eps=eps, dtype=dtype)
        self.mlp = GPT2MLP(config, rng, dtype)

    def forward(self, x):
        h = x + self.attn(self.ln_1(x))                                  # (B, T, d)
        return h + self.mlp(self.ln_2(h))                                # (B, T, d)

    def backward(self, dy):
        dh = dy + self.ln_2.backward(self.mlp.backward(dy))              # (B, T, d)
        return dh + self.ln_1.backward(self.attn.backward(dh))           # (B, T, d)


class _Unset(backend.Rng):
    """Draws zeros (lazily allocated by the system): for weights that a checkpoint is about to replace,
    which makes loading GPT-2 small 3 s faster than drawing 124M random numbers first."""

    def standard_normal(self, shape, dtype=None):
        return backend.get_xp().zeros(shape, dtype=dtype or backend.default_dtype())

    def uniform(self, low, high, shape, dtype=None):
        return self.standard_normal(shape, dtype)


class GPT2Model(Module):
    """The trunk: ids (B, T) -> hidden states (B, T, d), after the final LayerNorm ``ln_f``."""

    def __init__(self, config: GPT2Config, dtype=None, init: bool = True):
        rng, d = as_rng(config.seed) if init else _Unset(), config.n_embd
        self.config = config
        self.wte = Embedding(config.vocab_size, d, rng=rng, dtype=dtype)          # (V, d)
        self.wpe = Embedding(config.n_positions, d, rng=rng, dtype=dtype)             # (n_positions, d)
        self.h = [GPT2Block(config, rng, dtype) for _ in range(config.n_layer)]
        self.ln_f = LayerNorm(d, eps=config.layer_norm_epsilon, dtype=dtype)

    def forward(self, ids):
        if not backend.is_array(ids) or ids.ndim != 2 or 0 in ids.shape:
            raise ValueError("GPT2: ids must be a non-empty (B, T) integer array, got "
                             + (f"shape {tuple(ids.shape)}" if backend.is_array(ids) else type(ids).__name__))
        T = ids.shape[1]
        if T > self.config.n_positions:
            raise ValueError(f"GPT2: sequence length {T} is longer than n_positions "
                             f"({self.config.n_positions}); crop it to the last {self.config.n_positions} "
                             "tokens")
        x = self.wte(ids) + self.wpe(backend.get_array_module(ids).arange(T))    # (B, T, d)
        for block in self.h:
            x = block(x)                                                         # (B, T, d)
        return self.ln_f(x)                                                      # (B, T, d)

    def backward(self, dh):
        dx = self.ln_f.backward(dh)                                              # (B, T, d)
        for block in reversed(self.h):
            dx = block.backward(dx)
        self.wte.backward(dx)
        self.wpe.backward(dx.sum(axis=0))                        # (T, d): the batch shares the positions
        return None


class GPT2LMHeadModel(Module):
    """GPT-2 with its tied language-model head: ids (B, T) -> next-token logits (B, T, V).

    >>> model = GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=500, n_positions=64))
    >>> model = load_gpt2("path/to/gpt2")              # a Hugging Face checkpoint folder (lora_np.gpt2)
    """

    def __init__(self, config: GPT2Config | None = None, dtype=None, init: bool = True):
        """``init=False``: weights are zeros, to be loaded (:func:`lora_np.gpt2.load_gpt2` does)."""
        config = config if config is not None else GPT2Config()
        if not isinstance(config, GPT2Config):
            raise TypeError(f"GPT2LMHeadModel: config must be a GPT2Config, got {type(config).__name__}")
        self.config = config
        self.transformer = GPT2Model(config, dtype, validate.boolean(init, "init", "GPT2LMHeadModel"))
        unset = not init or config.tie_word_embeddings                  # tied: the head's own draw is unused
        self.lm_head = Linear(config.n_embd, config.vocab_size, bias=False, dtype=dtype,
                              rng=_Unset() if unset else config.seed + 1)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.transformer.wte.weight                    # tied: one Parameter (V, d)
            self.lm_head.tied_to, self.transformer.wte.tied_to = "transformer.wte", "lm_head"
        self.n_classes = config.vocab_size

    def forward(self, ids):
        return self.lm_head(self.transformer(ids))                               # (B, T, V)

    def backward(self, dlogits):
        return self.transformer.backward(self.lm_head.backward(dlogits))        # wte.grad: head + lookup

    def extra_repr(self):
        c = self.config
        return f"n_layer={c.n_layer}, n_embd={c.n_embd}, n_head={c.n_head}, vocab_size={c.vocab_size}"
