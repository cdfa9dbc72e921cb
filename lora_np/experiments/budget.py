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


def _pos_int(value, arg: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise ValueError(f"{where}: {arg} must be a positive integer, got {value!r}")
    return int(value)


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


# --------------------------------------------------------------------------- real models


@dataclass(frozen=True)
class ModelPreset:
    """A model's size and the weight matrices LoRA may adapt, ``(name, (d_out, d_in))``, in each of
    its ``n_layers`` blocks. ``target_sets`` name the usual choices (the first is the default)."""

    name: str
    n_params: int
    n_layers: int
    d_model: int
    matrices: tuple
    target_sets: tuple      # ((label, (matrix names...)), ...)
    note: str = ""

    def __post_init__(self):
        where = f"ModelPreset({self.name!r})"
        for arg in ("n_params", "n_layers", "d_model"):
            _pos_int(getattr(self, arg), arg, where)
        if not self.matrices:
            raise ValueError(f"{where}: matrices must name at least one (name, (d_out, d_in)) weight")
        for name, shape in self.matrices:
            if len(shape) != 2:
                raise ValueError(f"{where}: matrix {name!r} needs a shape (d_out, d_in), got {shape!r}")
            for d in shape:
                _pos_int(d, f"the shape of {name!r}", where)
        per_layer = sum(d_out * d_in for _, (d_out, d_in) in self.matrices)
        if self.n_layers * per_layer > self.n_params:
            raise ValueError(f"{where}: n_layers × the matrices = {self.n_layers * per_layer:,} parameters, "
                             f"more than n_params = {self.n_params:,}")
        if not self.target_sets:
            raise ValueError(f"{where}: target_sets must hold at least one (label, targets) pair")
        for _, targets in self.target_sets:
            self.check_targets(targets)

    @property
    def shapes(self) -> dict:
        return dict(self.matrices)

    @property
    def default_targets(self) -> tuple:
        return tuple(self.target_sets[0][1])

    def check_targets(self, targets) -> tuple:
        """``targets`` as a tuple of matrix names; an error for an empty set or an unknown name."""
        targets = (targets,) if isinstance(targets, str) else tuple(targets)
        unknown = [t for t in targets if t not in self.shapes]
        if not targets or unknown:
            raise ValueError(f"{self.name}: targets must be a non-empty subset of {tuple(self.shapes)}, "
                             f"got {targets!r}")
        return targets


def _transformer(name, n_params, n_layers, d, d_ff, gated=False, note=""):
    """A decoder block: attention q, k, v, o (d × d) and an MLP up/down (gated: also gate)."""
    mlp = (("gate", (d_ff, d)),) if gated else ()
    mlp += (("up", (d_ff, d)), ("down", (d, d_ff)))
    matrices = (("q", (d, d)), ("k", (d, d)), ("v", (d, d)), ("o", (d, d))) + mlp
    sets = (("q, v (the LoRA paper)", ("q", "v")), ("q, k, v, o (attention)", ("q", "k", "v", "o")),
            ("every linear layer", tuple(m for m, _ in matrices)))
    return ModelPreset(name, n_params, n_layers, d, matrices, sets, note)


MODEL_PRESETS = {p.name: p for p in (
    ModelPreset("fruit MLP 20-256-256-10", 73_738, 1, 256,
                (("fc1", (256, 20)), ("fc2", (256, 256)), ("head", (10, 256))),
                (("fc1, fc2 (the notebooks)", ("fc1", "fc2")), ("fc1", ("fc1",)),
                 ("fc1, fc2, head", ("fc1", "fc2", "head"))),
                "our pretrained fruit classifier (lora_np.experiments.pretrain); one 'layer' holding all three"),
    _transformer("GPT-2 small (124M)", 124_439_808, 12, 768, 3072,
                 note="q, k, v are one fused (2304, 768) c_attn in the released weights; counted here as three"),
    _transformer("7B (nominal 7.0e9)", 7_000_000_000, 32, 4096, 11008, gated=True,
                 note="a round 7e9 parameters with LLaMA-7B's shapes, for rules of thumb"),
    _transformer("LLaMA-7B", 6_738_415_616, 32, 4096, 11008, gated=True),
    _transformer("LLaMA-13B", 13_015_864_320, 40, 5120, 13824, gated=True),
    _transformer("GPT-3 175B", 175_000_000_000, 96, 12288, 4 * 12288,
                 note="the LoRA paper's model; 175e9 is the nominal count"),
)}


@dataclass(frozen=True)
class PrecisionSpec:
    """Bytes per parameter for weights, gradients, optimizer state and master copies (0 = none kept)."""

    name: str
    weight_bytes: float
    grad_bytes: float
    optimizer_bytes: float
    master_bytes: float

    def __post_init__(self):
        for arg in ("weight_bytes", "grad_bytes", "optimizer_bytes", "master_bytes"):
            v = getattr(self, arg)
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v) or v < 0:
                raise ValueError(f"PrecisionSpec({self.name!r}): {arg} must be a finite number >= 0, got {v!r}")
        if self.weight_bytes == 0:
            raise ValueError(f"PrecisionSpec({self.name!r}): weight_bytes must be > 0 (the weights are stored)")

    @property
    def trained_bytes(self) -> float:
        """Bytes per *trained* parameter: w + g + o + m."""
        return self.weight_bytes + self.grad_bytes + self.optimizer_bytes + self.master_bytes


PRECISION_PRESETS = {p.name: p for p in (
    PrecisionSpec("fp16 mixed precision + Adam", 2, 2, 8, 4),     # fp16 weights/grads, fp32 moments and master
    PrecisionSpec("fp32 + Adam", 4, 4, 8, 0),                     # two fp32 moments: 2 × 4 B
    PrecisionSpec("fp16 mixed precision + SGD", 2, 2, 0, 4),      # plain SGD keeps no state
    PrecisionSpec("fp16 inference", 2, 0, 0, 0),
    PrecisionSpec("fp32 inference", 4, 0, 0, 0),
)}


def _lookup(value, presets: dict, kind: type, arg: str, where: str):
    if isinstance(value, kind):
        return value
    if isinstance(value, str) and value in presets:
        return presets[value]
    raise ValueError(f"{where}: {arg} must be a {kind.__name__} or one of {tuple(presets)}, got {value!r}")


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
