"""What GPT-2 adds to the Transformer's operations: Conv1D's weight layout and the fused q, k, v projection.

**Conv1D** (OpenAI's name; transformers keeps it) is a linear layer whose weight is stored the other
way round from ``Linear``'s: ``W`` is ``(d_in, d_out)`` and

    y = x W + b,        dx = G Wᵀ,    dW = xᵀ G,    db = Σ_rows G,

with ``G = dL/dy``. It is ``linear`` with ``W`` transposed; a checkpoint stores it this way, so the
model stores it this way too and a loaded tensor is used as it is, never transposed.

**The fused projection** ``c_attn``: one Conv1D from d to 3d computes ``[q | k | v]`` in one matmul;
the three are its output's thirds along the last axis. The split is a view, so its backward puts
the three gradients side by side again:

    q, k, v = qkv[..., :d], qkv[..., d:2d], qkv[..., 2d:],      dqkv = [dq | dk | dv].

**The tied head**: GPT-2's output layer reuses the token embedding, ``logits = h wteᵀ`` (``linear``
with ``W = wte``). ``wte`` is used twice, as a lookup table at the input and as the head's weight, so
its gradient is the sum of both: ``dwte = onehot(ids)ᵀ dx₀ + Gᵀ h``. In :mod:`lora_np.gpt2` the two
layers share one Parameter, and each backward adds its part into the same ``grad``.
"""
from __future__ import annotations

from ..backend import get_array_module
from .dense import _mm, _rows


def conv1d_forward(x, W, b=None):
    """y = x W + b.   x: (..., d_in)  W: (d_in, d_out)  b: (d_out,) or None  ->  y: (..., d_out)"""
    y = _mm(x, W)                                  # (..., d_out)
    if b is not None:
        y += b                                     # (..., d_out)  in place: y is a fresh product
    return y, (x, W, b is not None)


def conv1d_backward(dy, cache, need_weight_grad=True):
    """dx = G Wᵀ,  dW = xᵀ G (the checkpoint's layout, (d_in, d_out)),  db = Σ_rows G.

    With ``need_weight_grad=False`` (a frozen layer) only dx is formed.
    """
    x, W, has_bias = cache
    dx = _mm(dy, W.T)                              # (..., d_in)
    if not need_weight_grad:
        return dx, None, None
    G = _rows(dy)                                  # (N, d_out)
    dW = _rows(x).T @ G                            # (d_in, d_out)
    db = G.sum(axis=0) if has_bias else None       # (d_out,)
    return dx, dW, db


def split_qkv_forward(qkv):
    """The fused projection's output (..., 3d) -> (q, k, v), each (..., d): views, no copy."""
    if qkv.shape[-1] % 3:
        raise ValueError(f"split_qkv: the last axis must hold q, k and v (a multiple of 3), "
                         f"got shape {tuple(qkv.shape)}")
    d = qkv.shape[-1] // 3
    return (qkv[..., :d], qkv[..., d:2 * d], qkv[..., 2 * d:]), d


def split_qkv_backward(dq, dk, dv):
    """dqkv = [dq | dk | dv] along the last axis: (..., 3d)."""
    return get_array_module(dq).concatenate([dq, dk, dv], axis=-1)   # (..., 3d)
