"""GPT-2's linear layer, ``Conv1D``: y = x W + b with W stored (d_in, d_out), and its LoRA layer.

The name is historical (OpenAI's GPT code; transformers keeps it): it is a linear layer, not a
convolution. Its weight is the transpose of :class:`~lora_np.nn.Linear`'s, exactly as a GPT-2
checkpoint stores it (``h.0.attn.c_attn.weight`` is ``(d, 3d)``), so loading copies tensors as
they are. The maths is :func:`lora_np.functional.conv1d_forward` / ``conv1d_backward``.

:class:`LoRAConv1D` adapts it as PEFT does with ``fan_in_fan_out=True``: A is ``(r, d_in)`` and
B is ``(d_out, r)`` as for a Linear (so the adapter's tensors are the same as on a Linear layer),
the forward is the same two thin products, and only merging differs: ΔW is added in the
checkpoint's layout, W ← W + (s B A)ᵀ.
"""
from __future__ import annotations

from .. import functional as F
from .. import validate
from ..backend import get_array_module
from .layers import as_rng, check_features
from .lora import LoRALinear, check_lora_args
from .module import Module, Parameter


class Conv1D(Module):
    """y = x W + b.  W: (d_in, d_out), normal with std 0.02 (GPT-2's initialisation); b: (d_out,) zeros."""

    tied_to = None                      # never tied (the attribute LoRA layers ask every base for)

    def __init__(self, d_in: int, d_out: int, rng=None, dtype=None, std: float = 0.02):
        d_in = validate.positive_int(d_in, "d_in", "Conv1D")
        d_out = validate.positive_int(d_out, "d_out", "Conv1D")
        std = validate.number(std, "std", "Conv1D", low=0.0)
        rng = as_rng(rng)
        self.d_in, self.d_out = d_in, d_out
        W = rng.standard_normal((d_in, d_out), dtype=dtype) * std                   # (d_in, d_out)
        self.weight = Parameter(W)                                                   # (d_in, d_out)
        self.bias = Parameter(get_array_module(W).zeros((d_out,), dtype=W.dtype))          # (d_out,) zeros
        self._cache = None

    def forward(self, x):
        check_features(x, self.d_in, self.weight.dtype, "Conv1D")
        y, self._cache = F.conv1d_forward(x, self.weight.data, self.bias.data)
        return y                                                                     # (..., d_out)

    def backward(self, dy):
        cache, self._cache = self._need_cache(self._cache), None
        need = self.weight.trainable or self.bias.trainable
        dx, dW, db = F.conv1d_backward(dy, cache, need_weight_grad=need)
        if self.weight.trainable:
            self.weight.accumulate(dW)
        if self.bias.trainable:
            self.bias.accumulate(db)
        return dx                                                                    # (..., d_in)

    def extra_repr(self):
        return f"d_in={self.d_in}, d_out={self.d_out} (weight stored (d_in, d_out))"


class LoRAConv1D(LoRALinear):
    """A Conv1D with a LoRA adapter: y = x W0 + b0 + s · (x Aᵀ) Bᵀ.

    The forward and backward are :func:`lora_np.functional.lora_linear_forward` with W0ᵀ (a view,
    no copy): x (W0ᵀ)ᵀ = x W0. ``delta_weight`` is in the checkpoint's layout, (d_in, d_out).
    Only plain LoRA is offered on Conv1D layers (as PEFT's GPT-2 support is, for fan_in_fan_out).
    """

    base_type = Conv1D

    def _check_rank(self, r, alpha, base) -> int:
        return check_lora_args(r, alpha, base.d_in, base.d_out, where=self.name)

    def _check_input(self, x) -> None:
        check_features(x, self.weight.shape[0], self.weight.dtype, self.name)

    def _merged_forward(self, x):
        return F.conv1d_forward(x, self.weight.data, self.b0)[0]                    # (..., d_out)

    def delta_weight(self):
        """ΔW = s · (B A)ᵀ = s · Aᵀ Bᵀ, shape (d_in, d_out): W0's layout."""
        return self.s * (self.lora_A.data.T @ self.lora_B.data.T)                    # (d_in, d_out)

    def linear_weight(self):
        """W0ᵀ, (d_out, d_in): a view, so the LoRA pair computes x (W0ᵀ)ᵀ = x W0 without a copy."""
        return self.weight.data.T
