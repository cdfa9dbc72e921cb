"""LoRA layers: a frozen Linear (or Embedding) plus a trainable low-rank update.

    y = x W0ᵀ + b0 + s · (x Aᵀ) Bᵀ,      ΔW = s · B A  (rank ≤ r)

(with ``dropout`` > 0, in training the adapter sees drop(x) instead of x: PEFT's ``lora_dropout``.)

The maths is in :mod:`lora_np.functional.lora` (``lora_linear_forward/backward``); the classes
here hold the parameters and run it. Conventions (loralib and PEFT):

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

:class:`LoRALayer` is the skeleton every adapted layer shares (checks, the merged path, the
cache, gradient accumulation); a variant (:mod:`lora_np.nn.variants`: DoRA, VeRA, PiSSA) supplies
only its own maths in ``adapter_forward`` / ``adapter_backward``. :func:`make_lora_layer`, at the
end of this file, is what ``inject_lora`` calls for every targeted layer.
"""
from __future__ import annotations

import math
import warnings

from .. import functional as F
from .. import validate
from ..backend import get_array_module
from .layers import Embedding, Linear, as_rng, check_features, check_ids
from .module import Module, Parameter

INITS = ("kaiming", "gaussian")
VARIANT_CLASSES: dict = {}          # variant name -> its Linear class; each one registers itself below


class LoRARankWarning(UserWarning):
    """r is at or above the break-even rank: the adapter is as large as the matrix it adapts."""


def break_even_rank(d_in: int, d_out: int) -> float:
    """The rank at which r · (d_in + d_out) = d_in · d_out."""
    return d_in * d_out / (d_in + d_out)


def lora_scaling(r: int, alpha: float, use_rslora: bool = False) -> float:
    """s = alpha / r (LoRA) or alpha / √r (rsLoRA, Kalajdzievski 2023).

    Which rule keeps learning stable as r grows depends on the optimizer: under Adam (normalised
    steps) alpha / r keeps the first update's size independent of r; rsLoRA's alpha / √r lets larger
    ranks learn faster (see docs/derivations.md and ``experiments.scaling_sweep``).
    """
    return alpha / math.sqrt(r) if use_rslora else alpha / r


def check_lora_args(r, alpha, d_in: int, d_out: int, where: str = "LoRA") -> int:
    """Validate r and alpha for a (d_out, d_in) weight: errors for bad values; a warning when r is at
    or above the break-even rank, or above min(d_in, d_out) (allowed, as PEFT allows it, but wasted)."""
    r = validate.positive_int(r, "r", where)
    validate.positive_number(alpha, "alpha", where)
    if r > min(d_in, d_out):
        warnings.warn(f"{where}: r={r} is above min(d_in, d_out) = min({d_in}, {d_out}) = "
                      f"{min(d_in, d_out)}; "
                      "B @ A cannot have a rank above that, so the extra rank only adds parameters",
                      LoRARankWarning, stacklevel=5)
        return r
    be = break_even_rank(d_in, d_out)
    if r >= be:
        warnings.warn(f"{where}: r={r} is at or above the break-even rank {be:.1f} for a {d_out}x{d_in} "
                      f"weight: the adapter has {r * (d_in + d_out)} parameters, the weight itself "
                      f"{d_in * d_out}",
                      LoRARankWarning, stacklevel=5)
    return r


class LoRALayer(Module):
    """What every LoRA layer shares: r, alpha, the scale, a strength knob, merging, and the one
    forward/backward skeleton.

    ``forward`` checks the input, then runs either the merged weight (W0 + ΔW in one matrix, after
    :meth:`merge`) or the adapter's own maths, ``adapter_forward(x) -> (y, cache)``. ``backward``
    refuses a merged layer, calls ``adapter_backward(dy, cache) -> (dx, *grads)`` and adds each
    gradient to the trainable tensor of the same position in ``adapter_tensors``.

    ``strength`` multiplies the scale at inference and in training (1 = the adapter as trained,
    0 = switched off): the "LoRA weight" that image-generation tools expose.
    A subclass sets ``base_type``, ``adapter_tensors`` (the trained tensors: what is saved),
    ``options`` (what :func:`make_lora_layer` may pass it) and defines ``adapter_forward``,
    ``adapter_backward`` and ``delta_weight``.
    """

    variant = "lora"
    base_type = Linear
    adapter_tensors = ("lora_A", "lora_B")
    options = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.base_type is Linear and "variant" in vars(cls):
            VARIANT_CLASSES[cls.variant] = cls

    # ---- set-up
    def _setup(self, base, r, alpha, use_rslora: bool, name: str) -> None:
        """Check the base and the rank, share the base's frozen weight and bias, set the scale."""
        if not isinstance(base, self.base_type):
            raise TypeError(f"{name}: base must be a{'n' if self.base_type is Embedding else ''} "
                            f"{self.base_type.__name__}, got {type(base).__name__}")
        self.name = name
        self.r = self._check_rank(r, alpha, base)
        self.alpha, self.use_rslora = float(alpha), validate.boolean(use_rslora, "use_rslora", name)
        self.scaling = self._scaling()
        self.strength = 1.0
        self.merged, self._W0, self._cache = False, None, None
        self.weight, self.bias = base.weight, getattr(base, "bias", None)      # W0, b0: shared, frozen
        self.tied_to, self._tied = getattr(base, "tied_to", None), None        # W0 also used elsewhere?
        self.weight.trainable = False
        if self.bias is not None:
            self.bias.trainable = False
        self.owns_bias = False

    def train_own_bias(self) -> None:
        """PEFT's ``bias="lora_only"``: this adapter trains its OWN copy of b0 (the base's b0 stays as
        it is, so the base model and the other adapters are unchanged). The copy is saved with the
        adapter; db0 = Σ_rows G is formed only for it."""
        if self.bias is None:
            raise ValueError(f"{self.name}: the base layer has no bias to train")
        if not self.owns_bias:
            self.bias = Parameter(self.bias.data.copy())                         # (d_out,) trainable
            self.owns_bias = True

    def _check_rank(self, r, alpha, base) -> int:
        """LoRA's rules: r a positive integer and alpha > 0; a warning at or above the break-even rank."""
        return check_lora_args(r, alpha, base.weight.shape[1], base.weight.shape[0], where=self.name)

    def _scaling(self) -> float:
        return lora_scaling(self.r, self.alpha, self.use_rslora)

    def adapter_parameters(self) -> dict:
        """``{name: Parameter}`` of the adapter's own tensors (not W0, not shared frozen ones), with its
        own bias when it trains one."""
        names = self.adapter_tensors + (("bias",) if self.owns_bias else ())
        return {n: getattr(self, n) for n in names}

    @property
    def b0(self):
        """The bias array b0 (d_out,) (frozen, unless the adapter trains its own), or None."""
        return self.bias.data if self.bias is not None else None

    @property
    def s(self) -> float:
        """The scale in use: (alpha / r or alpha / √r) · strength."""
        return self.scaling * self.strength

    # ---- what a variant supplies
    def adapter_forward(self, x):
        raise NotImplementedError

    def adapter_backward(self, dy, cache):
        raise NotImplementedError

    def delta_weight(self):
        raise NotImplementedError

    # ---- the skeleton
    def _check_input(self, x) -> None:
        check_features(x, self.weight.shape[1], self.weight.dtype, self.name)

    def _merged_forward(self, x):
        return F.linear_forward(x, self.weight.data, self.b0)[0]                  # (..., d_out)

    def forward(self, x):
        self._check_input(x)
        if self.merged:                                       # W0 + ΔW is already in weight
            self._cache = ("merged", None)
            return self._merged_forward(x)
        y, cache = self.adapter_forward(x)
        self._cache = ("adapter", cache)
        return y

    def backward(self, dy):
        kind, cache = self._need_cache(self._cache)
        self._cache = None
        if kind == "merged":
            raise RuntimeError(f"{self.name}: this layer is merged (W0 + ΔW in one matrix), so the adapter "
                               "cannot be trained; call unmerge() before training")
        dx, *grads = self.adapter_backward(dy, cache)
        for name, g in zip(self.adapter_tensors, grads, strict=True):
            param = getattr(self, name)
            if param.trainable:
                param.accumulate(g)
        if self.bias is not None and self.bias.trainable:                 # an unfrozen b0: db0 = Σ_rows G
            self.bias.accumulate(dy.reshape(-1, dy.shape[-1]).sum(axis=0))   # (d_out,)
        return dx

    # ---- merging
    def merge(self) -> None:
        """W0 ← W0 + ΔW, for inference with no extra latency.

        The original W0 is kept aside so that :meth:`unmerge` restores it bit for bit
        (subtracting ΔW again would not: floating-point addition is not exactly invertible).
        A weight tied to another layer (``tied_to``: GPT-2's head and token embedding share one) is
        not changed in place: the merged layer gets its own copy, so the other layer keeps W0 (as it
        does unmerged: an adapter on the head does not change the lookup, nor one on wte the head).
        Merging an already merged layer is refused (RuntimeError) and changes nothing;
        :func:`lora_np.lora.merge_lora` on a whole model skips merged layers, so it is idempotent.
        """
        if self.merged:
            raise RuntimeError(f"{self.name}: already merged; merging again would add ΔW twice. "
                               "Call unmerge() first if you changed A or B")
        self._W0 = self.weight.data
        merged = self._W0 + self.delta_weight()                                      # W0's shape
        if self.tied_to is None:
            self.weight.data = merged
        else:          # W0 is shared (GPT-2's head and wte): this layer gets its own copy, the other keeps W0
            self._tied, self.weight = self.weight, Parameter(merged, trainable=False)
        self.merged = True

    def unmerge(self) -> None:
        """Restore the exact W0 that was there before :meth:`merge`."""
        if not self.merged:
            raise RuntimeError(f"{self.name}: not merged, so there is nothing to unmerge")
        if self._tied is not None:
            self.weight, self._tied = self._tied, None
        self.weight.data, self._W0 = self._W0, None
        self.merged = False


class LoRALinear(LoRALayer):
    """A Linear layer with a LoRA adapter. Build it from an existing (pretrained) ``Linear``.

    >>> layer = LoRALinear(Linear(64, 32), r=4, alpha=8)
    >>> layer.num_parameters(trainable_only=True)      # r · (d_in + d_out)
    384
    """

    variant = "lora"
    options = ("alpha", "use_rslora", "init", "dropout", "rng")

    def __init__(self, base: Linear, r: int = 4, alpha: float = 8.0, init: str = "kaiming",
                 use_rslora: bool = False, dropout: float = 0.0, rng=None, name: str = "LoRALinear"):
        self._setup(base, r, alpha, use_rslora, name)
        self.init = validate.choice(init, "init", INITS, name)
        self.dropout = validate.fraction(dropout, "dropout", name)
        self.d_in, self.d_out = base.d_in, base.d_out
        rng, dtype = as_rng(rng), self.weight.dtype
        if init == "kaiming":
            bound = 1.0 / math.sqrt(self.d_in)
            A = rng.uniform(-bound, bound, (self.r, self.d_in), dtype=dtype)          # (r, d_in)
        else:
            A = rng.standard_normal((self.r, self.d_in), dtype=dtype) * (1.0 / self.r)  # (r, d_in)
        xp = get_array_module(A)
        self.lora_A = Parameter(A)                                                    # (r, d_in)
        self.lora_B = Parameter(xp.zeros((self.d_out, self.r), dtype=dtype))          # (d_out, r)
        self._rng = rng

    def delta_weight(self):
        """ΔW = s · B A, shape (d_out, d_in). Formed only for merging and analysis."""
        return self.s * (self.lora_B.data @ self.lora_A.data)                        # (d_out, d_in)

    def adapter_forward(self, x):
        """y = x W0ᵀ + b0 + s · (drop(x) Aᵀ) Bᵀ; dropout only in training, on the adapter's input."""
        p = self.dropout if self.training else 0.0
        dropout = (self._rng.random(x.shape, dtype=x.dtype) >= p, p) if p > 0 else None   # (..., d_in) mask
        return F.lora_linear_forward(x, self.linear_weight(), self.b0, self.lora_A.data, self.lora_B.data,
                                     self.s, dropout)

    def linear_weight(self):
        """W0 in Linear's layout, (d_out, d_in) (a Conv1D base gives its transpose, a view)."""
        return self.weight.data

    def adapter_backward(self, dy, cache):
        return F.lora_linear_backward(dy, cache)                                     # dx, dA, dB

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

    base_type = Embedding

    def __init__(self, base: Embedding, r: int = 4, alpha: float = 8.0, use_rslora: bool = False, rng=None,
                 name: str = "LoRAEmbedding"):
        self._setup(base, r, alpha, use_rslora, name)
        self.num_embeddings, self.dim = base.num_embeddings, base.dim
        rng, dtype = as_rng(rng), self.weight.dtype
        xp = get_array_module(self.weight.data)
        self.lora_A = Parameter(xp.zeros((self.r, self.num_embeddings), dtype=dtype))   # (r, V)
        self.lora_B = Parameter(rng.standard_normal((self.dim, self.r), dtype=dtype))   # (d, r)

    def delta_weight(self):
        """ΔW = s · (B A)ᵀ, shape (V, d)."""
        return self.s * (self.lora_B.data @ self.lora_A.data).T                 # (V, d)

    def _check_input(self, ids) -> None:
        check_ids(ids, self.num_embeddings, self.name)

    def _merged_forward(self, ids):
        return F.embedding_forward(ids, self.weight.data)[0]                    # (…, d)

    def adapter_forward(self, ids):
        return F.lora_embedding_forward(ids, self.weight.data, self.lora_A.data, self.lora_B.data, self.s)

    def adapter_backward(self, dy, cache):
        return (None, *F.lora_embedding_backward(dy, cache))                    # ids have no gradient

    def extra_repr(self):
        return (f"V={self.num_embeddings}, d={self.dim}, r={self.r}, alpha={self.alpha:g}, "
                f"merged={self.merged}")


# --------------------------------------------------------------------------- the factory

_OPTION_DEFAULTS = {"alpha": 8.0, "use_rslora": False, "init": "kaiming", "dropout": 0.0, "rng": None,
                    "exact_grad": True, "vera_shared": None, "d_initial": 0.1}


def make_lora_layer(base: Linear, variant: str = "lora", r: int = 4, alpha: float = 8.0, *,
                    name: str | None = None, **options) -> LoRALayer:
    """One adapted Linear layer of the chosen variant: what ``inject_lora`` calls per target.

    ``variant``: ``"lora"`` (:class:`LoRALinear`) or a variant of :mod:`lora_np.nn.variants`
    (``"dora"``, ``"vera"``, ``"pissa"``). ``options`` are the layer's own keyword arguments:
    ``use_rslora``, ``init``, ``dropout``, ``rng``, ``exact_grad`` (DoRA), ``vera_shared`` and
    ``d_initial`` (VeRA). An option a variant does not take is refused unless it has its default;
    ``alpha`` and ``rng`` are passed to the variants that use them (VeRA has no alpha).
    """
    if variant not in VARIANT_CLASSES:
        raise ValueError(f"variant must be one of {tuple(VARIANT_CLASSES)}, got {variant!r}")
    cls = VARIANT_CLASSES[variant]
    name = name or cls.__name__
    options = {"alpha": alpha, **options}
    for opt, value in options.items():
        if opt not in _OPTION_DEFAULTS:
            raise TypeError(f"make_lora_layer: unknown option {opt!r}; the options are "
                            f"{tuple(_OPTION_DEFAULTS)}")
        default = _OPTION_DEFAULTS[opt]
        is_default = (value is None if default is None
                      else value == default and isinstance(value, bool) == isinstance(default, bool))
        if opt not in cls.options and opt not in ("alpha", "rng") and not is_default:
            takers = tuple(v for v, c in VARIANT_CLASSES.items() if opt in c.options)
            raise ValueError(f"{name}: {opt}={value!r} is not supported by variant {variant!r}; "
                             f"{opt} applies to the variants {takers}")
    return cls(base, r, name=name, **{k: v for k, v in options.items() if k in cls.options})
