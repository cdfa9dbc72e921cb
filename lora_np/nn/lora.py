"""LoRALinear: a frozen Linear plus a trainable low-rank update.

    y = x W0ᵀ + b0 + s · (x Aᵀ) Bᵀ,      ΔW = s · B A  (rank ≤ r)

Conventions (loralib and PEFT):

* ``lora_A``: ``(r, d_in)``, random — kaiming-uniform in ±1/√d_in (loralib's ``a=√5``) or,
  with ``init="gaussian"``, normal with std 1/r (PEFT's ``init_lora_weights="gaussian"``);
* ``lora_B``: ``(d_out, r)``, zeros — so ΔW = 0 at the start and the adapted model begins
  exactly as the pretrained one;
* scale ``s = alpha / r``, or ``alpha / √r`` with ``use_rslora=True`` (Kalajdzievski, 2023);
* ``weight`` (W0) and ``bias`` (b0) are the base layer's own Parameters, frozen. Their
  gradients are never formed: the backward pass costs two thin matmuls instead of a full one.

The popular book code (Raschka) stores the transposed layout, ``x @ A @ B`` with ``A: (d_in, r)``.

Trainable parameters: r · (d_in + d_out), against d_in · d_out for W0. The *break-even rank*
d_in·d_out / (d_in + d_out) is where the two are equal; at or above it LoRA saves nothing.
"""
from __future__ import annotations

import math
import numbers
import warnings

from .. import functional as F
from ..backend import get_array_module
from .layers import Embedding, Linear, as_rng, check_features, check_ids
from .module import Module, Parameter

INITS = ("kaiming", "gaussian")


class LoRARankWarning(UserWarning):
    """r is at or above the break-even rank: the adapter is as large as the matrix it adapts."""


def break_even_rank(d_in: int, d_out: int) -> float:
    """The rank at which r · (d_in + d_out) = d_in · d_out."""
    return d_in * d_out / (d_in + d_out)


def lora_scaling(r: int, alpha: float, use_rslora: bool = False) -> float:
    """s = alpha / r (LoRA) or alpha / √r (rsLoRA, which keeps the update's size stable as r grows)."""
    return alpha / math.sqrt(r) if use_rslora else alpha / r


def check_lora_args(r, alpha, d_in: int, d_out: int, where: str = "LoRA") -> None:
    """Validate r and alpha for a (d_out, d_in) weight: errors for bad values, a warning at break-even."""
    if isinstance(r, bool) or not isinstance(r, numbers.Integral) or r <= 0:
        raise ValueError(f"{where}: r must be a positive integer, got {r!r}")
    if r > min(d_in, d_out):
        raise ValueError(f"{where}: r={r} is above min(d_in, d_out) = min({d_in}, {d_out}) = {min(d_in, d_out)}; "
                         "B @ A cannot have a rank above that, so the extra rank would be wasted")
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not alpha > 0:
        raise ValueError(f"{where}: alpha must be a positive number, got {alpha!r}")
    be = break_even_rank(d_in, d_out)
    if r >= be:
        warnings.warn(f"{where}: r={r} is at or above the break-even rank {be:.1f} for a {d_out}x{d_in} weight: "
                      f"the adapter has {r * (d_in + d_out)} parameters, the weight itself {d_in * d_out}",
                      LoRARankWarning, stacklevel=4)


class LoRALayer(Module):
    """What every LoRA layer shares: r, alpha, the scale, a strength knob, merging.

    ``strength`` multiplies the scale at inference and in training (1 = the adapter as trained,
    0 = switched off): the "LoRA weight" that image-generation tools expose.
    Subclasses set ``weight`` (the frozen W0), ``lora_A``, ``lora_B`` and define ``delta_weight``.
    ``adapter_tensors`` names the trained tensors that make up the adapter (what is saved).
    """

    adapter_tensors = ("lora_A", "lora_B")

    def adapter_parameters(self) -> dict:
        """``{name: Parameter}`` of the adapter's own tensors (not W0, not shared frozen ones)."""
        return {n: getattr(self, n) for n in self.adapter_tensors}

    def _setup(self, r, alpha, d_in, d_out, use_rslora, name):
        check_lora_args(r, alpha, d_in, d_out, where=name)
        self.r, self.alpha, self.use_rslora, self.name = int(r), float(alpha), use_rslora, name
        self.scaling = lora_scaling(self.r, self.alpha, use_rslora)
        self.strength = 1.0
        self.merged, self._W0, self._cache = False, None, None

    @property
    def s(self) -> float:
        """The scale in use: (alpha / r or alpha / √r) · strength."""
        return self.scaling * self.strength

    def delta_weight(self):
        raise NotImplementedError

    def _refuse_merged_backward(self):
        raise RuntimeError(f"{self.name}: this layer is merged (W0 + ΔW in one matrix), so A and B "
                           "cannot be trained; call unmerge() before training")

    def merge(self) -> None:
        """W0 ← W0 + ΔW, for inference with no extra latency.

        The original W0 is kept aside so that :meth:`unmerge` restores it bit for bit
        (subtracting ΔW again would not: floating-point addition is not exactly invertible).
        Merging an already merged layer is refused (RuntimeError) and changes nothing;
        :func:`lora_np.lora.merge_lora` on a whole model skips merged layers, so it is idempotent.
        """
        if self.merged:
            raise RuntimeError(f"{self.name}: already merged; merging again would add ΔW twice. "
                               "Call unmerge() first if you changed A or B")
        self._W0 = self.weight.data
        self.weight.data = self._W0 + self.delta_weight()                          # W0's shape
        self.merged = True

    def unmerge(self) -> None:
        """Restore the exact W0 that was there before :meth:`merge`."""
        if not self.merged:
            raise RuntimeError(f"{self.name}: not merged, so there is nothing to unmerge")
        self.weight.data, self._W0 = self._W0, None
        self.merged = False

    def _accumulate(self, dA, dB):
        if self.lora_A.trainable:
            self.lora_A.accumulate(dA)
        if self.lora_B.trainable:
            self.lora_B.accumulate(dB)


class LoRALinear(LoRALayer):
    """A Linear layer with a LoRA adapter. Build it from an existing (pretrained) ``Linear``.

    >>> layer = LoRALinear(Linear(64, 32), r=4, alpha=8)
    >>> layer.num_parameters(trainable_only=True)      # r · (d_in + d_out)
    384
    """

    variant = "lora"

    def __init__(self, base: Linear, r: int = 4, alpha: float = 8.0, init: str = "kaiming",
                 use_rslora: bool = False, dropout: float = 0.0, rng=None, name: str = "LoRALinear"):
        if not isinstance(base, Linear):
            raise TypeError(f"{name}: base must be a Linear, got {type(base).__name__}")
        self._setup(r, alpha, base.d_in, base.d_out, use_rslora, name)
        if init not in INITS:
            raise ValueError(f"{name}: init must be one of {INITS}, got {init!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"{name}: dropout must be in [0, 1), got {dropout!r}")
        rng = as_rng(rng)
        self.d_in, self.d_out, self.init, self.dropout = base.d_in, base.d_out, init, dropout
        self.weight, self.bias = base.weight, base.bias                     # W0, b0: shared, frozen
        self.weight.trainable = False
        if self.bias is not None:
            self.bias.trainable = False
        dtype = self.weight.dtype
        if init == "kaiming":
            bound = 1.0 / math.sqrt(self.d_in)
            A = rng.uniform(-bound, bound, (self.r, self.d_in), dtype=dtype)      # (r, d_in)
        else:
            A = rng.standard_normal((self.r, self.d_in), dtype=dtype) * (1.0 / self.r)  # (r, d_in)
        xp = get_array_module(A)
        self.lora_A = Parameter(A)                                                # (r, d_in)
        self.lora_B = Parameter(xp.zeros((self.d_out, self.r), dtype=dtype))      # (d_out, r)
        self._rng = rng

    def delta_weight(self):
        """ΔW = s · B A, shape (d_out, d_in). Formed only for merging and analysis."""
        return self.s * (self.lora_B.data @ self.lora_A.data)                    # (d_out, d_in)

    def forward(self, x):
        check_features(x, self.d_in, self.weight.dtype, self.name)
        b0 = self.bias.data if self.bias is not None else None
        if self.merged:                                       # W0 + ΔW is already in weight
            y, cache = F.linear_forward(x, self.weight.data, b0)
            self._cache = ("merged", cache)
            return y
        p = self.dropout if self.training else 0.0
        mask = self._rng.random(x.shape, dtype=x.dtype) >= p if p > 0 else None   # (..., d_in)
        y, cache = F.lora_linear_forward(x, self.weight.data, b0, self.lora_A.data,
                                         self.lora_B.data, self.s, mask, p)
        self._cache = ("lora", cache)
        return y                                                                    # (..., d_out)

    def backward(self, dy):
        kind, cache = self._need_cache(self._cache)
        self._cache = None
        if kind == "merged":
            self._refuse_merged_backward()
        dx, dA, dB = F.lora_linear_backward(dy, cache)
        self._accumulate(dA, dB)
        return dx                                                                   # (..., d_in)

    def extra_repr(self):
        rule = "alpha/sqrt(r)" if self.use_rslora else "alpha/r"
        return (f"d_in={self.d_in}, d_out={self.d_out}, r={self.r}, alpha={self.alpha:g}, "
                f"scaling={self.scaling:g} ({rule}), init={self.init}, merged={self.merged}")


class LoRAEmbedding(LoRALayer):
    """An Embedding with a LoRA adapter, in loralib's orientation:

        W = W0 + s · (B A)ᵀ,   A: (r, V) zeros,   B: (d, r) standard normal.

    A starts at zero here (not B) because a lookup only touches the rows of the tokens it sees:
    with B random, dA ≠ 0 from the first step. Trainable parameters: r · (V + d).
    """

    variant = "lora"

    def __init__(self, base, r: int = 4, alpha: float = 8.0, use_rslora: bool = False, rng=None,
                 name: str = "LoRAEmbedding"):
        if not isinstance(base, Embedding):
            raise TypeError(f"{name}: base must be an Embedding, got {type(base).__name__}")
        self._setup(r, alpha, base.num_embeddings, base.dim, use_rslora, name)
        rng = as_rng(rng)
        self.num_embeddings, self.dim = base.num_embeddings, base.dim
        self.weight = base.weight                                               # W0: (V, d), frozen
        self.weight.trainable = False
        dtype = self.weight.dtype
        xp = get_array_module(self.weight.data)
        self.lora_A = Parameter(xp.zeros((self.r, self.num_embeddings), dtype=dtype))   # (r, V)
        self.lora_B = Parameter(rng.standard_normal((self.dim, self.r), dtype=dtype))   # (d, r)

    def delta_weight(self):
        """ΔW = s · (B A)ᵀ, shape (V, d)."""
        return self.s * (self.lora_B.data @ self.lora_A.data).T                 # (V, d)

    def forward(self, ids):
        check_ids(ids, self.num_embeddings, self.name)
        if self.merged:
            y, cache = F.embedding_forward(ids, self.weight.data)
            self._cache = ("merged", cache)
            return y
        y, cache = F.lora_embedding_forward(ids, self.weight.data, self.lora_A.data, self.lora_B.data, self.s)
        self._cache = ("lora", cache)
        return y                                                                 # (…, d)

    def backward(self, dy):
        kind, cache = self._need_cache(self._cache)
        self._cache = None
        if kind == "merged":
            self._refuse_merged_backward()
        self._accumulate(*F.lora_embedding_backward(dy, cache))
        return None                                                              # ids have no gradient

    def extra_repr(self):
        return f"V={self.num_embeddings}, d={self.dim}, r={self.r}, alpha={self.alpha:g}, merged={self.merged}"
