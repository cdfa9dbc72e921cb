"""The parameter budget of LoRA, and what it means for memory on real model sizes.

One weight ``W: (d_out, d_in)``. Full fine-tuning trains all of it; LoRA trains ``B: (d_out, r)``
and ``A: (r, d_in)`` instead:

    full = d_in · d_out,        lora(r) = r · (d_in + d_out),

so LoRA saves parameters exactly when r < r* = d_in·d_out / (d_in + d_out), the break-even rank
(half the harmonic mean of d_in and d_out, always below min(d_in, d_out)). For a square d × d
weight, r* = d / 2 and the fraction trained is lora / full = 2r / d.

Memory during training, per parameter: its weight, its gradient, the optimizer's state (Adam: two
moments) and, in mixed precision, an fp32 master copy of the weight. With N parameters in the
model and T of them trained,

    full FT:  N · (w + g + o + m)             LoRA:  (N + T) · w  +  T · (g + o + m)

(w, g, o, m: bytes per parameter for weights, gradients, optimizer state, master copies). The
frozen weights are still stored, but they get no gradient, no optimizer state and no master copy.
Activations are not counted: they grow with the batch and sequence length and LoRA barely changes them.
For GPT-3 175B (fp16 mixed precision + Adam) this gives 2.8 TB for full fine-tuning and 350.3 GB
for LoRA; the LoRA paper reports 350 GB for LoRA (the frozen fp16 weights) and 1.2 TB for full
fine-tuning, a figure from its own setup that this rule of thumb does not try to reproduce.

>>> full, lora = compare_memory("LLaMA-7B", "fp16 mixed precision + Adam", r=8)
>>> print(format_memory_table(full, lora))
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as _host_np  # the budget curves are small host arrays for plotting

from ..tables import BINARY_UNITS, DECIMAL_UNITS, byte_unit, format_bytes, text_table
from ..validate import integer, message, positive_int, positive_number
from .lowrank import lowrank_param_count
from .presets import MODEL_PRESETS, PRECISION_PRESETS, ModelPreset, PrecisionSpec, lookup_preset

__all__ = ["full_param_count", "lora_param_count", "BreakEven", "break_even", "ParameterBudget",
           "parameter_budget", "lora_trainable_params", "MemoryBreakdown", "full_finetune_memory",
           "lora_memory", "compare_memory",
           "format_memory_table", "ModelPreset", "MODEL_PRESETS", "PrecisionSpec", "PRECISION_PRESETS",
           "byte_unit", "format_bytes", "BINARY_UNITS", "DECIMAL_UNITS"]


def _above_min(r: int, d_in: int, d_out: int, where: str) -> str:
    return (f"{where}: r={r} is above min(d_in, d_out) = min({d_in}, {d_out}) = {min(d_in, d_out)}; "
            "B @ A cannot have a higher rank than that")


# --------------------------------------------------------------------------- one weight matrix


def full_param_count(d_in: int, d_out: int) -> int:
    """Parameters full fine-tuning trains in ``W: (d_out, d_in)``: d_in · d_out."""
    return positive_int(d_in, "d_in", "full_param_count") * positive_int(d_out, "d_out", "full_param_count")


def lora_param_count(d_in: int, d_out: int, r: int) -> int:
    """Parameters LoRA trains for ``W: (d_out, d_in)``: ``A (r, d_in)`` and ``B (d_out, r)``,
    r · (d_in + d_out).

    The same count as :func:`lora_np.experiments.lowrank.lowrank_param_count` with m = d_out,
    n = d_in; here r must also satisfy r ≤ min(d_in, d_out), as in a LoRA layer.
    """
    where = "lora_param_count"
    d_in, d_out = positive_int(d_in, "d_in", where), positive_int(d_out, "d_out", where)
    r = positive_int(r, "r", where)
    if r > min(d_in, d_out):
        raise ValueError(_above_min(r, d_in, d_out, where))
    return lowrank_param_count(d_out, d_in, r)


class BreakEven(NamedTuple):
    """``rank``: r* = d_in·d_out / (d_in + d_out), where LoRA and full fine-tuning train equally many
    parameters; ``largest_saving_rank``: the largest integer r with r·(d_in + d_out) < d_in·d_out
    (0 when no rank saves anything, e.g. d_in = 1)."""

    rank: float
    largest_saving_rank: int


def break_even(d_in: int, d_out: int) -> BreakEven:
    """The break-even rank of ``W: (d_out, d_in)`` and the largest rank that still saves parameters.

    r·(d_in + d_out) < d_in·d_out  ⇔  r < r*, so the largest saving integer is ⌈r*⌉ − 1
    = (d_in·d_out − 1) // (d_in + d_out), computed exactly in integers.
    (:func:`lora_np.nn.break_even_rank` is the float r* alone.)
    """
    d_in, d_out = positive_int(d_in, "d_in", "break_even"), positive_int(d_out, "d_out", "break_even")
    return BreakEven(d_in * d_out / (d_in + d_out), (d_in * d_out - 1) // (d_in + d_out))


@dataclass
class ParameterBudget:
    """Trainable parameters of one ``(d_out, d_in)`` weight against r (host arrays, for plotting)."""

    d_in: int
    d_out: int
    ranks: object           # (k,) int64  the ranks r
    lora: object            # (k,) int64  r · (d_in + d_out)
    full: int               # d_in · d_out
    fraction: object        # (k,) float  lora / full
    break_even: BreakEven

    def at(self, r: int) -> dict:
        """The numbers at rank ``r`` (one of ``ranks``), as plain Python values."""
        ranks = self.ranks.tolist()
        r = integer(r, "r", "ParameterBudget.at", low=ranks[0], high=ranks[-1])
        if r not in ranks:
            raise ValueError(message("r", f"one of the budget's ranks {ranks}", r, "ParameterBudget.at"))
        i = ranks.index(r)
        return {"d_in": self.d_in, "d_out": self.d_out, "r": r, "lora": int(self.lora[i]), "full": self.full,
                "fraction": float(self.fraction[i]), "break_even": self.break_even.rank,
                "largest_saving_rank": self.break_even.largest_saving_rank,
                "saves": int(self.lora[i]) < self.full}


def parameter_budget(d_in: int, d_out: int, ranks=None) -> ParameterBudget:
    """LoRA's and full fine-tuning's parameter counts for ``W: (d_out, d_in)`` at each rank.

    ``ranks``: increasing integers in [1, min(d_in, d_out)]; default every one of them.
    """
    where = "parameter_budget"
    d_in, d_out = positive_int(d_in, "d_in", where), positive_int(d_out, "d_out", where)
    ranks = range(1, min(d_in, d_out) + 1) if ranks is None else list(ranks)
    if not len(ranks):
        raise ValueError(f"{where}: ranks must not be empty")
    rs = [positive_int(r, "r", where) for r in ranks]
    if max(rs) > min(d_in, d_out):
        raise ValueError(_above_min(max(rs), d_in, d_out, where))
    if any(b <= a for a, b in zip(rs, rs[1:], strict=False)):        # each rank with the next
        raise ValueError(f"{where}: ranks must be strictly increasing, got {list(ranks)!r}")
    full = d_in * d_out
    lora = _host_np.array([lowrank_param_count(d_out, d_in, r) for r in rs], dtype=_host_np.int64)   # (k,)
    return ParameterBudget(d_in, d_out, _host_np.array(rs, dtype=_host_np.int64), lora, full,
                           lora / full, break_even(d_in, d_out))                             # (k,) each


def lora_trainable_params(model, r: int, targets=None) -> int:
    """LoRA's trainable parameters: n_layers · Σ_targets r · (d_in + d_out).

    ``model``: a :class:`ModelPreset` or a key of ``MODEL_PRESETS``; ``targets``: matrix names
    (default the preset's first target set, e.g. q and v).
    GPT-3 175B, r = 4 on q and v: 96 · 2 · 4 · (12288 + 12288) = 18,874,368.
    """
    model = lookup_preset(model, MODEL_PRESETS, ModelPreset, "model", "lora_trainable_params")
    targets = model.default_targets if targets is None else model.check_targets(targets)
    shapes = model.shapes
    return model.n_layers * sum(lora_param_count(shapes[t][1], shapes[t][0], r) for t in targets)


@dataclass(frozen=True)
class MemoryBreakdown:
    """Bytes for each part of training memory, the trained parameter count and the checkpoint size."""

    label: str
    weights: float
    gradients: float
    optimizer: float
    master: float
    trainable: int
    n_params: int
    checkpoint: float

    PARTS = ("weights", "gradients", "optimizer", "master")      # a class constant, not a field

    @property
    def total(self) -> float:
        return self.weights + self.gradients + self.optimizer + self.master

    @property
    def fraction(self) -> float:
        """Trained parameters over the model's own (the adapter not counted in the denominator)."""
        return self.trainable / self.n_params

    def as_dict(self) -> dict:
        return {"label": self.label, **{p: getattr(self, p) for p in self.PARTS}, "total": self.total,
                "trainable": self.trainable, "fraction": self.fraction, "checkpoint": self.checkpoint}


def _breakdown(label, n_params, trainable, stored, spec, checkpoint_bytes, where):
    checkpoint_bytes = positive_number(checkpoint_bytes, "checkpoint_bytes", where)   # per saved parameter
    return MemoryBreakdown(label, stored * spec.weight_bytes, trainable * spec.grad_bytes,
                           trainable * spec.optimizer_bytes, trainable * spec.master_bytes, trainable,
                           n_params, trainable * checkpoint_bytes)


def full_finetune_memory(model, precision, checkpoint_bytes: float = 2) -> MemoryBreakdown:
    """Full fine-tuning: every one of the N parameters is trained, N · (w + g + o + m) bytes.

    The checkpoint saves all N parameters at ``checkpoint_bytes`` each (2: fp16), e.g. GPT-3 175B:
    175e9 · 2 B = 350 GB.
    """
    model = lookup_preset(model, MODEL_PRESETS, ModelPreset, "model", "full_finetune_memory")
    spec = lookup_preset(precision, PRECISION_PRESETS, PrecisionSpec, "precision", "full_finetune_memory")
    n = model.n_params
    return _breakdown("full fine-tuning", n, n, n, spec, checkpoint_bytes, "full_finetune_memory")


def lora_memory(model, precision, r: int, targets=None, checkpoint_bytes: float = 2) -> MemoryBreakdown:
    """LoRA at rank r: (N + T) · w for the frozen weights and the adapter, T · (g + o + m) for the rest.

    The checkpoint is the adapter alone, T · ``checkpoint_bytes``. GPT-3 175B with r = 4 on q, v:
    T = 18,874,368, so 37.7 MB (36.0 MiB) in fp16 and about 9,300× smaller than the 350 GB model.
    The LoRA paper's "35 MB" ("roughly 10,000×") is its own rounded figure for the same setting.
    """
    model = lookup_preset(model, MODEL_PRESETS, ModelPreset, "model", "lora_memory")
    spec = lookup_preset(precision, PRECISION_PRESETS, PrecisionSpec, "precision", "lora_memory")
    trainable = lora_trainable_params(model, r, targets)
    return _breakdown(f"LoRA r = {r}", model.n_params, trainable, model.n_params + trainable, spec,
                      checkpoint_bytes, "lora_memory")


def compare_memory(model, precision, r: int, targets=None, checkpoint_bytes: float = 2):
    """``(full, lora)``: :func:`full_finetune_memory` and :func:`lora_memory` for the same setting.

    A nominal 7B model in fp16 mixed precision with Adam: full ≈ 7e9 · (2+2+8+4) B ≈ 104 GiB,
    LoRA ≈ 13 GiB of frozen fp16 weights plus a few hundred MiB at most.
    """
    return (full_finetune_memory(model, precision, checkpoint_bytes),
            lora_memory(model, precision, r, targets, checkpoint_bytes))


# --------------------------------------------------------------------------- formatting


def format_memory_table(*breakdowns: MemoryBreakdown, binary: bool = True) -> str:
    """A text table: one column per breakdown, one row per part of memory, then counts and checkpoint."""
    if not breakdowns or not all(isinstance(b, MemoryBreakdown) for b in breakdowns):
        raise ValueError("format_memory_table: pass one or more MemoryBreakdown objects")
    parts = (("weights", "weights"), ("gradients", "gradients"), ("optimizer state", "optimizer"),
             ("master copies", "master"), None, ("total", "total"))

    def sizes(attr):
        return [format_bytes(getattr(b, attr), binary) for b in breakdowns]

    rows = [None if part is None else [part[0]] + sizes(part[1]) for part in parts]
    rows += [["trained params"] + [f"{b.trainable:,}" for b in breakdowns],
             ["% of the model"] + [f"{100 * b.fraction:.4f}%" for b in breakdowns],
             ["checkpoint"] + sizes("checkpoint")]
    return text_table([""] + [b.label for b in breakdowns], rows)
