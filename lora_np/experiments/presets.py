"""Real model sizes and training precisions for the memory calculator (:mod:`.budget`).

A :class:`ModelPreset` names a model's size and the weight matrices LoRA may adapt in each block;
a :class:`PrecisionSpec` gives bytes per parameter for weights, gradients, optimizer state and
master copies. Every number is an input: the presets are named examples, not a rule.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..validate import message, number, positive_int


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
            positive_int(getattr(self, arg), arg, where)
        if not self.matrices:
            raise ValueError(f"{where}: matrices must name at least one (name, (d_out, d_in)) weight")
        for name, shape in self.matrices:
            if len(shape) != 2:
                raise ValueError(f"{where}: matrix {name!r} needs a shape (d_out, d_in), got {shape!r}")
            for d in shape:
                positive_int(d, f"the shape of {name!r}", where)
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
                "our pretrained fruit classifier (lora_np.experiments.pretrain); "
                "one 'layer' holding all three"),
    _transformer("GPT-2 small (124M)", 124_439_808, 12, 768, 3072,
                 note="q, k, v are one fused (2304, 768) c_attn in the released weights; "
                      "counted here as three"),
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
            number(getattr(self, arg), arg, f"PrecisionSpec({self.name!r})", low=0)
        if self.weight_bytes == 0:
            raise ValueError(f"PrecisionSpec({self.name!r}): weight_bytes must be > 0 "
                             "(the weights are stored)")

    @property
    def trained_bytes(self) -> float:
        """Bytes per *trained* parameter: w + g + o + m."""
        return self.weight_bytes + self.grad_bytes + self.optimizer_bytes + self.master_bytes


PRECISION_PRESETS = {p.name: p for p in (
    PrecisionSpec("fp16 mixed precision + Adam", 2, 2, 8, 4),     # fp16 weights/grads, fp32 moments, master
    PrecisionSpec("fp32 + Adam", 4, 4, 8, 0),                     # two fp32 moments: 2 × 4 B
    PrecisionSpec("fp16 mixed precision + SGD", 2, 2, 0, 4),      # plain SGD keeps no state
    PrecisionSpec("fp16 inference", 2, 0, 0, 0),
    PrecisionSpec("fp32 inference", 4, 0, 0, 0),
)}


def lookup_preset(value, presets: dict, kind: type, arg: str, where: str):
    """``value`` itself when it is a ``kind`` (a ModelPreset or a PrecisionSpec), else the preset it names."""
    if isinstance(value, kind):
        return value
    if isinstance(value, str) and value in presets:
        return presets[value]
    raise ValueError(message(arg, f"a {kind.__name__} or one of {tuple(presets)}", value, where))
