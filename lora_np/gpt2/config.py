"""GPT-2's sizes, read from and written to a Hugging Face ``config.json``.

The loader honours the keys that set the architecture's sizes and refuses any option that would
make a checkpoint compute something this model does not (an exact-erf GELU, scaling
attention by the layer index, cross-attention), naming the key. Keys that change nothing at
inference (dropout rates, the initialisation's std, the summary head of GPT2DoubleHeadsModel,
versions) are read and ignored; an unknown key is refused when it is set, because it may change
what the model computes.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..validate import boolean, integer, positive_int, positive_number

# Both names are the tanh approximation ½x(1 + tanh(√(2/π)(x + 0.044715x³))), lora_np's GELU.
ACTIVATIONS = ("gelu_new", "gelu_pytorch_tanh")
# Keys read and ignored: dropout (lora_np's GPT-2 has none; fine-tuning here runs without it), how
# the weights were initialised, GPT2DoubleHeadsModel's summary head, bookkeeping.
IGNORED = ("architectures", "attn_pdrop", "embd_pdrop", "resid_pdrop", "summary_first_dropout",
           "initializer_range", "n_ctx", "summary_activation", "summary_proj_to_labels", "summary_type",
           "summary_use_proj", "task_specific_params", "torch_dtype", "dtype", "transformers_version",
           "use_cache", "pad_token_id", "reorder_and_upcast_attn", "_name_or_path", "id2label", "label2id",
           "output_attentions", "output_hidden_states", "return_dict", "tokenizer_class")
# Options that change the computation, with the only value this model implements.
FIXED = {"model_type": "gpt2", "scale_attn_weights": True, "scale_attn_by_inverse_layer_idx": False,
         "add_cross_attention": False, "is_encoder_decoder": False}


@dataclass
class GPT2Config:
    """GPT-2's sizes under transformers' names. The defaults are GPT-2 small (124M parameters)."""

    vocab_size: int = 50257
    n_positions: int = 1024            # the longest sequence (learned positions)
    n_embd: int = 768                  # d
    n_layer: int = 12
    n_head: int = 12
    n_inner: int | None = None         # the MLP's width; None: 4d
    layer_norm_epsilon: float = 1e-5
    activation_function: str = "gelu_new"
    bos_token_id: int | None = None
    eos_token_id: int | None = None
    tie_word_embeddings: bool = True   # the head's weight is wte (False: a head of its own, lm_head.weight)
    seed: int = 0                      # for a randomly initialised model

    def __post_init__(self):
        where = "GPT2Config"
        for name in ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head"):
            setattr(self, name, positive_int(getattr(self, name), name, where))
        if self.n_inner is not None:
            self.n_inner = positive_int(self.n_inner, "n_inner", where)
        self.layer_norm_epsilon = positive_number(self.layer_norm_epsilon, "layer_norm_epsilon", where)
        if self.activation_function not in ACTIVATIONS:
            raise ValueError(f"{where}: activation_function={self.activation_function!r} is not supported: "
                             f"this GPT-2 uses the tanh approximation of GELU, {ACTIVATIONS}")
        for name in ("bos_token_id", "eos_token_id"):
            if getattr(self, name) is not None:
                integer(getattr(self, name), name, where, low=0, high=self.vocab_size - 1)
        self.seed = integer(self.seed, "seed", where, low=0)
        boolean(self.tie_word_embeddings, "tie_word_embeddings", where)
        if self.n_embd % self.n_head:
            raise ValueError(f"{where}: n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")

    @property
    def hidden(self) -> int:
        """The MLP's width: n_inner, or 4·n_embd."""
        return self.n_inner or 4 * self.n_embd

    @property
    def context(self) -> int:
        """The longest sequence, under the name lora_np's ``generate`` reads."""
        return self.n_positions

    @classmethod
    def from_dict(cls, cfg: dict, where: str = "config.json") -> GPT2Config:
        """The config of a transformers ``config.json`` (a dict); ValueError naming a key it cannot honour."""
        if not isinstance(cfg, dict):
            raise ValueError(f"{where}: a GPT-2 config must be a JSON object, got {type(cfg).__name__}")
        fields = {f.name for f in dataclasses.fields(cls)} - {"seed"}
        for key, value in cfg.items():
            if key in fields or key in IGNORED:
                continue
            if key in FIXED:
                if value != FIXED[key]:
                    raise ValueError(f"{where}: {key}={value!r} is not supported: this GPT-2 implements "
                                     f"{key}={FIXED[key]!r} only")
                continue
            if not (value is None or value is False or (isinstance(value, (list, dict, str)) and not value)):
                raise ValueError(f"{where}: {key}={value!r} is an option this loader does not know; it "
                                 "refuses unknown options that are set, since they may change what the model "
                                 "computes")
        if "model_type" not in cfg:
            raise ValueError(f"{where}: no model_type: expected \"model_type\": \"gpt2\"")
        try:
            return cls(**{k: v for k, v in cfg.items() if k in fields})
        except (TypeError, ValueError) as err:
            raise ValueError(f"{where}: {err}") from err

    def to_dict(self) -> dict:
        """transformers' ``config.json`` for this model (loadable by ``GPT2LMHeadModel.from_pretrained``)."""
        out = {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2"}
        out.update({f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "seed"})
        out.update({"attn_pdrop": 0.0, "embd_pdrop": 0.0, "resid_pdrop": 0.0})
        return out
