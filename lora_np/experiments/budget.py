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

import math
import numbers
from dataclasses import dataclass
from typing import NamedTuple

import numpy as _host_np   # the budget curves are small host arrays for plotting

from .lowrank import lowrank_param_count
from .presets import (MODEL_PRESETS, PRECISION_PRESETS, ModelPreset, PrecisionSpec,  # noqa: F401 (re-exported)
                      _lookup, _pos_int)


def _check_rank(r, d_in: int, d_out: int, where: str) -> int:
    r = _pos_int(r, "r", where)
    if r > min(d_in, d_out):
        raise ValueError(f"{where}: r={r} is above min(d_in, d_out) = min({d_in}, {d_out}) = {min(d_in, d_out)}; "
                         "B @ A cannot have a higher rank than that")
    return r


# --------------------------------------------------------------------------- one weight matrix


def full_param_count(d_in: int, d_out: int) -> int:
    """Parameters full fine-tuning trains in ``W: (d_out, d_in)``: d_in · d_out."""
    return _pos_int(d_in, "d_in", "full_param_count") * _pos_int(d_out, "d_out", "full_param_count")


def lora_param_count(d_in: int, d_out: int, r: int) -> int:
    """Parameters LoRA trains for ``W: (d_out, d_in)``: ``A (r, d_in)`` and ``B (d_out, r)``, r · (d_in + d_out).

    The same count as :func:`lora_np.experiments.lowrank.lowrank_param_count` with m = d_out,
    n = d_in; here r must also satisfy r ≤ min(d_in, d_out), as in a LoRA layer.
    """
    d_in, d_out = _pos_int(d_in, "d_in", "lora_param_count"), _pos_int(d_out, "d_out", "lora_param_count")
    return lowrank_param_count(d_out, d_in, _check_rank(r, d_in, d_out, "lora_param_count"))


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
    d_in, d_out = _pos_int(d_in, "d_in", "break_even"), _pos_int(d_out, "d_out", "break_even")
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
        ok = not isinstance(r, bool) and isinstance(r, numbers.Integral)
        hits = _host_np.flatnonzero(self.ranks == r) if ok else ()
        if not len(hits):
            raise ValueError(f"ParameterBudget.at: r={r!r} must be one of the budget's ranks "
                             f"({int(self.ranks[0])}..{int(self.ranks[-1])})")
        i = int(hits[0])
        return {"d_in": self.d_in, "d_out": self.d_out, "r": int(r), "lora": int(self.lora[i]), "full": self.full,
                "fraction": float(self.fraction[i]), "break_even": self.break_even.rank,
                "largest_saving_rank": self.break_even.largest_saving_rank, "saves": int(self.lora[i]) < self.full}


def parameter_budget(d_in: int, d_out: int, ranks=None) -> ParameterBudget:
    """LoRA's and full fine-tuning's parameter counts for ``W: (d_out, d_in)`` at each rank.

    ``ranks``: increasing integers in [1, min(d_in, d_out)]; default every one of them.
    """
    d_in, d_out = _pos_int(d_in, "d_in", "parameter_budget"), _pos_int(d_out, "d_out", "parameter_budget")
    ranks = range(1, min(d_in, d_out) + 1) if ranks is None else list(ranks)
    if not len(ranks):
        raise ValueError("parameter_budget: ranks must not be empty")
    rs = [_check_rank(r, d_in, d_out, "parameter_budget") for r in ranks]
    if any(b <= a for a, b in zip(rs, rs[1:])):
        raise ValueError(f"parameter_budget: ranks must be strictly increasing, got {list(ranks)!r}")
    full = d_in * d_out
    lora = _host_np.array([lowrank_param_count(d_out, d_in, r) for r in rs], dtype=_host_np.int64)   # (k,)
    return ParameterBudget(d_in, d_out, _host_np.array(rs, dtype=_host_np.int64), lora, full,
                           lora / full, break_even(d_in, d_out))                                       # (k,) each


def lora_trainable_params(model, r: int, targets=None) -> int:
    """LoRA's trainable parameters: n_layers · Σ_targets r · (d_in + d_out).

    ``model``: a :class:`ModelPreset` or a key of ``MODEL_PRESETS``; ``targets``: matrix names
    (default the preset's first target set, e.g. q and v).
    GPT-3 175B, r = 4 on q and v: 96 · 2 · 4 · (12288 + 12288) = 18,874,368.
    """
    model = _lookup(model, MODEL_PRESETS, ModelPreset, "model", "lora_trainable_params")
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
    if isinstance(checkpoint_bytes, bool) or not isinstance(checkpoint_bytes, numbers.Real) or not checkpoint_bytes > 0:
        raise ValueError(f"{where}: checkpoint_bytes must be a positive number of bytes per saved parameter, "
                         f"got {checkpoint_bytes!r}")
    return MemoryBreakdown(label, stored * spec.weight_bytes, trainable * spec.grad_bytes,
                           trainable * spec.optimizer_bytes, trainable * spec.master_bytes, trainable, n_params,
                           trainable * checkpoint_bytes)


def full_finetune_memory(model, precision, checkpoint_bytes: float = 2) -> MemoryBreakdown:
    """Full fine-tuning: every one of the N parameters is trained, N · (w + g + o + m) bytes.

    The checkpoint saves all N parameters at ``checkpoint_bytes`` each (2: fp16), e.g. GPT-3 175B:
    175e9 · 2 B = 350 GB.
    """
    model = _lookup(model, MODEL_PRESETS, ModelPreset, "model", "full_finetune_memory")
    spec = _lookup(precision, PRECISION_PRESETS, PrecisionSpec, "precision", "full_finetune_memory")
    return _breakdown("full fine-tuning", model.n_params, model.n_params, model.n_params, spec, checkpoint_bytes,
                      "full_finetune_memory")


def lora_memory(model, precision, r: int, targets=None, checkpoint_bytes: float = 2) -> MemoryBreakdown:
    """LoRA at rank r: (N + T) · w for the frozen weights and the adapter, T · (g + o + m) for the rest.

    The checkpoint is the adapter alone, T · ``checkpoint_bytes``. GPT-3 175B with r = 4 on q, v:
    T = 18,874,368, so 37.7 MB (36.0 MiB) in fp16 and about 9,300× smaller than the 350 GB model.
    The LoRA paper's "35 MB" ("roughly 10,000×") is its own rounded figure for the same setting.
    """
    model = _lookup(model, MODEL_PRESETS, ModelPreset, "model", "lora_memory")
    spec = _lookup(precision, PRECISION_PRESETS, PrecisionSpec, "precision", "lora_memory")
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


BINARY_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")
DECIMAL_UNITS = ("B", "kB", "MB", "GB", "TB")


def byte_unit(n: float, binary: bool = True) -> tuple:
    """``(unit, size)``: the largest unit with n ≥ 1 of it (1024ᵏ for binary, 1000ᵏ for decimal)."""
    if isinstance(n, bool) or not isinstance(n, numbers.Real) or not math.isfinite(n) or n < 0:
        raise ValueError(f"byte_unit: n must be a finite number of bytes >= 0, got {n!r}")
    units, base = (BINARY_UNITS, 1024) if binary else (DECIMAL_UNITS, 1000)
    k = 0
    while k + 1 < len(units) and n >= base ** (k + 1):
        k += 1
    return units[k], base ** k


def format_bytes(n: float, binary: bool = True, digits: int = 2) -> str:
    """``13.04 GiB`` (binary, powers of 1024) or ``14.00 GB`` (decimal, powers of 1000)."""
    unit, size = byte_unit(n, binary)
    return f"{n:g} B" if size == 1 else f"{n / size:.{digits}f} {unit}"


def format_memory_table(*breakdowns: MemoryBreakdown, binary: bool = True) -> str:
    """A text table: one column per breakdown, one row per part of memory, then counts and checkpoint."""
    if not breakdowns or not all(isinstance(b, MemoryBreakdown) for b in breakdowns):
        raise ValueError("format_memory_table: pass one or more MemoryBreakdown objects")
    rows = [("weights", "weights"), ("gradients", "gradients"), ("optimizer state", "optimizer"),
            ("master copies", "master"), ("total", "total")]
    w = max(16, *(len(b.label) for b in breakdowns))
    lines = [f"{'':<18}" + "".join(f"{b.label:>{w}}" for b in breakdowns)]
    for title, attr in rows:
        if title == "total":
            lines.append("-" * len(lines[0]))
        lines.append(f"{title:<18}" + "".join(f"{format_bytes(getattr(b, attr), binary):>{w}}" for b in breakdowns))
    lines.append(f"{'trained params':<18}" + "".join(f"{b.trainable:>{w},}" for b in breakdowns))
    lines.append(f"{'% of the model':<18}" + "".join(f"{100 * b.fraction:>{w - 1}.4f}%" for b in breakdowns))
    lines.append(f"{'checkpoint':<18}" + "".join(f"{format_bytes(b.checkpoint, binary):>{w}}" for b in breakdowns))
    return "\n".join(lines)
