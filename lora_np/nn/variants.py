"""LoRA variants from PEFT's feature set: DoRA, VeRA and PiSSA, as drop-in layers.

Every variant adapts a frozen ``Linear`` (W0: (d_out, d_in), b0: (d_out,)) and is a
:class:`~lora_np.nn.lora.LoRALayer`, so ``merge``/``unmerge``, ``strength`` and the model-level
helpers work unchanged. What each one trains, per layer:

=========  =====================================================  ==========================
variant    update                                                 trainable parameters
=========  =====================================================  ==========================
lora       W0 + s·B A                                             r (d_in + d_out)
dora       m ⊙ V / ‖V‖_rows,  V = W0 + s·B A   (Liu et al. 2024)  r (d_in + d_out) + d_out
vera       W0 + diag(λ_b) B diag(λ_d) A, A and B frozen, shared   r + d_out
pissa      W_res + s·B A, B A = W0's top-r SVD (Meng et al. 2024) r (d_in + d_out)
=========  =====================================================  ==========================

Parameter names follow PEFT: ``lora_A``, ``lora_B``, ``lora_magnitude`` (PEFT's
``lora_magnitude_vector``), ``vera_lambda_d``, ``vera_lambda_b``.
"""
from __future__ import annotations

import math

from .. import backend, validate
from .. import functional as F
from ..backend import get_array_module
from .layers import Linear, as_rng
from .lora import LoRALayer, LoRALinear
from .module import Parameter

VARIANTS = ("lora", "dora", "vera", "pissa")


def variant_trainable_count(variant: str, d_in: int, d_out: int, r: int) -> int:
    """Closed-form trainable parameters of one adapted (d_out, d_in) layer."""
    validate.choice(variant, "variant", VARIANTS)
    d_in, d_out, r = (validate.positive_int(v, a, "variant_trainable_count") for v, a in
                      ((d_in, "d_in"), (d_out, "d_out"), (r, "r")))
    return {"lora": r * (d_in + d_out), "pissa": r * (d_in + d_out),
            "dora": r * (d_in + d_out) + d_out, "vera": r + d_out}[variant]


# --------------------------------------------------------------------------- DoRA

class DoRALinear(LoRALayer):
    """DoRA: y = (x Vᵀ) ⊙ (m / ‖V‖_rows) + b0 with V = W0 + s·B A (see ``F.dora_linear_forward``).

    ``lora_A`` kaiming-uniform in ±1/√d_in and ``lora_B`` zeros, as in :class:`LoRALinear`;
    ``lora_magnitude`` (d_out,) starts at ‖W0‖ per row, so a fresh layer is the base layer.
    ``exact_grad=False`` uses the paper's cheaper gradient, which treats ‖V‖ as a constant.
    ``strength`` scales s·B A inside V; the magnitude m stays applied at any strength.
    """

    variant = "dora"
    adapter_tensors = ("lora_A", "lora_B", "lora_magnitude")
    options = ("alpha", "use_rslora", "exact_grad", "rng")

    def __init__(self, base: Linear, r: int = 4, alpha: float = 8.0, use_rslora: bool = False,
                 exact_grad: bool = True, rng=None, name: str = "DoRALinear"):
        self._setup(base, r, alpha, use_rslora, name)
        if not isinstance(exact_grad, bool):
            raise TypeError(f"{name}: exact_grad must be True or False, got {exact_grad!r}")
        self.d_in, self.d_out, self.exact_grad = base.d_in, base.d_out, exact_grad
        rng, dtype = as_rng(rng), self.weight.dtype
        bound = 1.0 / math.sqrt(self.d_in)
        A = rng.uniform(-bound, bound, (self.r, self.d_in), dtype=dtype)             # (r, d_in)
        xp = get_array_module(A)
        self.lora_A = Parameter(A)                                                   # (r, d_in)
        self.lora_B = Parameter(xp.zeros((self.d_out, self.r), dtype=dtype))         # (d_out, r)
        self.lora_magnitude = Parameter(F.row_norms(self.weight.data))               # (d_out,) ‖W0‖ rows

    def merged_weight(self):
        """W' = (m / ‖V‖_rows) ⊙ V, the weight DoRA computes with. (d_out, d_in)"""
        W0 = self._W0 if self.merged else self.weight.data      # merged: weight holds W', not W0
        V = W0 + self.s * (self.lora_B.data @ self.lora_A.data)                      # (d_out, d_in)
        return (self.lora_magnitude.data / F.row_norms(V))[:, None] * V              # (d_out, d_in)

    def delta_weight(self):
        """W' − W0, so that LoRALayer.merge (W0 + ΔW) gives W' up to one rounding."""
        W0 = self._W0 if self.merged else self.weight.data
        return self.merged_weight() - W0                                             # (d_out, d_in)

    def adapter_forward(self, x):
        return F.dora_linear_forward(x, self.weight.data, self.b0, self.lora_A.data, self.lora_B.data,
                                     self.s, self.lora_magnitude.data)

    def adapter_backward(self, dy, cache):
        return F.dora_linear_backward(dy, cache, exact=self.exact_grad)              # dx, dA, dB, dm

    def extra_repr(self):
        return (f"d_in={self.d_in}, d_out={self.d_out}, r={self.r}, alpha={self.alpha:g}, "
                f"scaling={self.scaling:g}, exact_grad={self.exact_grad}, merged={self.merged}")


# --------------------------------------------------------------------------- VeRA

class VeRAShared:
    """The frozen random pair every VeRA layer of a model slices: A (r, d_in_max), B (d_out_max, r).

    Kaiming-uniform as in PEFT's VeRA: U(±√(6 / fan_in)), fan_in = d_in_max for A and r for B.
    Regenerated from ``seed`` (PEFT's ``projection_prng_key``), so an adapter needs to store only
    the λ vectors. Not a Module: the layers keep it in an underscore attribute, so A and B never
    appear in ``named_parameters`` and are neither trained nor counted nor saved per layer.
    """

    def __init__(self, r: int, d_in_max: int, d_out_max: int, seed: int = 0, dtype=None):
        self.r = validate.positive_int(r, "r", "VeRAShared")
        self.d_in_max = validate.positive_int(d_in_max, "d_in_max", "VeRAShared")
        self.d_out_max = validate.positive_int(d_out_max, "d_out_max", "VeRAShared")
        self.seed = validate.integer(seed, "seed", "VeRAShared")
        rng = backend.Rng(self.seed)
        bound_A, bound_B = math.sqrt(6.0 / self.d_in_max), math.sqrt(6.0 / self.r)
        self.A = rng.uniform(-bound_A, bound_A, (self.r, self.d_in_max), dtype=dtype)   # (r, d_in_max)
        self.B = rng.uniform(-bound_B, bound_B, (self.d_out_max, self.r), dtype=dtype)  # (d_out_max, r)

    @classmethod
    def for_layers(cls, bases, r: int, seed: int = 0) -> VeRAShared:
        """A pair sized to the largest of these Linear layers (PEFT's ``_find_dim``), in their dtype."""
        bases = list(bases)
        if not bases or not all(isinstance(b, Linear) for b in bases):
            raise ValueError("VeRAShared.for_layers: bases must be a non-empty list of Linear layers")
        return cls(r, max(b.d_in for b in bases), max(b.d_out for b in bases), seed, bases[0].weight.dtype)

    def slices(self, d_in: int, d_out: int):
        """This layer's views A[:, :d_in] (r, d_in) and B[:d_out, :] (d_out, r) — no copies."""
        return self.A[:, :d_in], self.B[:d_out, :]

    def __repr__(self):
        return (f"VeRAShared(r={self.r}, d_in_max={self.d_in_max}, d_out_max={self.d_out_max}, "
                f"seed={self.seed})")


class VeRALinear(LoRALayer):
    """VeRA: y = x W0ᵀ + b0 + s · (((x Aᵀ) ⊙ λ_d) Bᵀ) ⊙ λ_b with a shared frozen A, B.

    ``vera_lambda_d`` (r,) starts at ``d_initial``, ``vera_lambda_b`` (d_out,) at zero, so ΔW = 0
    and a fresh layer is the base layer. VeRA has no alpha: the scale s is just ``strength``.
    Its r is the shared matrices' width and costs one parameter per rank, so LoRA's rank rules
    (r ≤ min(d_in, d_out), the break-even warning) do not apply.
    """

    variant = "vera"
    adapter_tensors = ("vera_lambda_d", "vera_lambda_b")
    options = ("vera_shared", "d_initial")

    def __init__(self, base: Linear, r: int, vera_shared: VeRAShared | None = None, d_initial: float = 0.1,
                 name: str = "VeRALinear"):
        self._setup(base, r, 1.0, False, name)
        self.d_in, self.d_out, shared = base.d_in, base.d_out, vera_shared
        if not isinstance(shared, VeRAShared):
            raise TypeError(f"{name}: vera_shared must be a VeRAShared, got {type(shared).__name__}; "
                            "variant 'vera' needs the model's shared matrices "
                            "(VeRAShared.for_layers(bases, r, seed))")
        if self.r != shared.r:
            raise ValueError(f"{name}: r={self.r} does not match the shared matrices' r={shared.r}")
        if base.d_in > shared.d_in_max or base.d_out > shared.d_out_max:
            raise ValueError(f"{name}: the layer ({base.d_out}x{base.d_in}, d_out x d_in) is larger than the "
                             f"shared matrices allow (d_out_max={shared.d_out_max}, "
                             f"d_in_max={shared.d_in_max}); "
                             "size shared to the largest adapted layer, e.g. VeRAShared.for_layers(bases, r)")
        if shared.A.dtype != base.weight.dtype:
            raise TypeError(f"{name}: shared is {shared.A.dtype} but the weights are {base.weight.dtype}; "
                            f"build it with VeRAShared(..., dtype={base.weight.dtype.name!r})")
        self._shared, self.d_initial = shared, validate.finite_number(d_initial, "d_initial", name)
        xp, dtype = get_array_module(shared.A), self.weight.dtype
        self.vera_lambda_d = Parameter(xp.full((self.r,), self.d_initial, dtype=dtype))   # (r,)
        self.vera_lambda_b = Parameter(xp.zeros((self.d_out,), dtype=dtype))            # (d_out,)

    def _check_rank(self, r, alpha, base) -> int:
        return validate.positive_int(r, "r", self.name)

    def _scaling(self) -> float:
        return 1.0

    def delta_weight(self):
        """ΔW = s · diag(λ_b) B diag(λ_d) A, shape (d_out, d_in)."""
        A, B = self._shared.slices(self.d_in, self.d_out)                           # (r, d_in), (d_out, r)
        return self.s * ((self.vera_lambda_b.data[:, None] * B) @ (self.vera_lambda_d.data[:, None] * A))

    def adapter_forward(self, x):
        A, B = self._shared.slices(self.d_in, self.d_out)                           # (r, d_in), (d_out, r)
        return F.vera_linear_forward(x, self.weight.data, self.b0, A, B, self.vera_lambda_d.data,
                                     self.vera_lambda_b.data, self.s)

    def adapter_backward(self, dy, cache):
        return F.vera_linear_backward(dy, cache)                                     # dx, dλ_d, dλ_b

    def extra_repr(self):
        return (f"d_in={self.d_in}, d_out={self.d_out}, r={self.r}, shared={self._shared!r}, "
                f"merged={self.merged}")


# --------------------------------------------------------------------------- PiSSA

def pissa_decompose(W0, r: int, s: float):
    """W0 = U S Vᵀ  ->  A = diag(√(S_r/s)) V_rᵀ (r, d_in),  B = U_r diag(√(S_r/s)) (d_out, r),
    W_res = W0 − s·B A (d_out, d_in).  s·B A = U_r S_r V_rᵀ, the best rank-r part of W0 (Eckart–Young).
    """
    xp = get_array_module(W0)
    U, S, Vt = xp.linalg.svd(W0, full_matrices=False)       # (d_out, k), (k,), (k, d_in)
    root = xp.sqrt(S[:r] / s)                                # (r,)
    A = root[:, None] * Vt[:r]                               # (r, d_in)
    B = U[:, :r] * root                                      # (d_out, r)
    return A, B, W0 - s * (B @ A)                            # ..., (d_out, d_in) the residual


class PiSSALinear(LoRALinear):
    """PiSSA: LoRA whose adapter starts at W0's principal rank-r part and whose frozen weight is
    the residual, W_res = W0 − s·B0 A0. At init W_res + s·B0 A0 = W0 up to rounding.

    Unlike the other variants, ``weight`` here is the layer's OWN frozen Parameter holding W_res:
    the base model's W0 (``base.weight``) is neither overwritten nor replaced, so the base and any
    other adapter sharing it stay intact. ``bias`` is still the base's shared b0. The initial
    A0, B0 are kept (``_A0``, ``_B0``; recomputable from W0 by the SVD) for :func:`pissa_to_lora`.
    ``strength`` scales the principal part too: at strength 0 the layer is W_res, not W0.
    """

    variant = "pissa"
    options = ("alpha", "use_rslora", "dropout", "rng")

    def __init__(self, base: Linear, r: int = 4, alpha: float = 8.0, use_rslora: bool = False,
                 dropout: float = 0.0, rng=None, name: str = "PiSSALinear"):
        super().__init__(base, r=r, alpha=alpha, use_rslora=use_rslora, dropout=dropout, rng=rng, name=name)
        A, B, W_res = pissa_decompose(base.weight.data, self.r, self.scaling)
        self.lora_A.data, self.lora_B.data = A, B                                   # (r, d_in), (d_out, r)
        self.weight = Parameter(W_res, trainable=False)                             # (d_out, d_in) its own
        self._A0, self._B0 = A.copy(), B.copy()

    def extra_repr(self):
        return super().extra_repr() + ", weight=W0 residual"


def pissa_to_lora(layer: PiSSALinear):
    """The trained PiSSA adapter as a plain LoRA update of the ORIGINAL W0, of rank 2r.

    The layer computes W_res + s·B A = W0 + s (B A − B0 A0), so with
        B' = [B, −B0]  (d_out, 2r),   A' = [A; A0]  (2r, d_in):   s·B'A' = s (B A − B0 A0).
    Use them with the same scale s: a LoRALinear of rank 2r on the original base needs
    alpha' = 2·alpha (alpha·√2 with rsLoRA), as PEFT's conversion does. A strength ≠ 1 is
    folded into B'.
    """
    if not isinstance(layer, PiSSALinear):
        raise TypeError(f"pissa_to_lora: layer must be a PiSSALinear, got {type(layer).__name__}")
    xp = get_array_module(layer.lora_A.data)
    B = xp.concatenate([layer.strength * layer.lora_B.data, -layer._B0], axis=1)    # (d_out, 2r)
    A = xp.concatenate([layer.lora_A.data, layer._A0], axis=0)                      # (2r, d_in)
    return A, B
