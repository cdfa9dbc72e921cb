"""The tuned functions compute what their plain one-line versions compute.

GELU, LayerNorm, attention's softmax and Adam run in place, block by block
(:mod:`lora_np.functional.blocks`); the cross-entropy keeps its probabilities for the backward.
Each is compared here with the formula its docstring gives, on shapes that span several blocks
with a partial last one, in float64 (agreement to rounding) and float32. Their gradients are
checked against central differences in ``tests/test_gradcheck_ops.py`` and ``test_gradcheck_sequence.py``.
"""
import math

import numpy as np
import pytest

from lora_np import backend
from lora_np import functional as F
from lora_np.functional.blocks import BLOCK, blocks, on_host
from lora_np.functional.dense import gelu_reference
from lora_np.functional.sequence import _head_blocks, attention_reference, layernorm_reference
from lora_np.nn import Parameter
from lora_np.optim import Adam, AdamW

TOL = {"float64": 1e-12, "float32": 2e-6}
# rows × width > 2 BLOCKs and not a multiple of a block's rows: several blocks, a partial last one
SHAPE = (5, 29, 1024)


def data(shape, dtype, seed=0):
    return backend.asarray(np.random.default_rng(seed).standard_normal(shape), dtype=dtype)


def close(a, b, dtype):
    return backend.max_abs(a - b) <= TOL[dtype] * (1.0 + backend.max_abs(b))


def test_the_test_shapes_span_several_blocks_with_a_partial_last_one():
    x = np.zeros(SHAPE)
    sizes = [b[0].shape[0] for b in blocks(x)]
    assert len(sizes) > 2 and sizes[-1] < sizes[0] and sum(sizes) == 5 * 29
    assert sizes[0] * SHAPE[-1] <= BLOCK


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_gelu_forward_and_backward_match_the_plain_formulas(dtype):
    x, dy = data(SHAPE, dtype), data(SHAPE, dtype, 1)
    y, cache = F.gelu_forward(x)
    assert close(y, gelu_reference(x), dtype)
    c, t = math.sqrt(2 / math.pi), cache[1]
    plain_dx = dy * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * c * (1 + 0.134145 * x * x))
    assert close(F.gelu_backward(dy, cache), plain_dx, dtype)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_layernorm_forward_and_backward_match_the_plain_formulas(dtype):
    x, dy = data((5, 23, 768), dtype), data((5, 23, 768), dtype, 1)
    gamma, beta = data((768,), dtype, 2), data((768,), dtype, 3)
    y, (xhat, rstd, _) = F.layernorm_forward(x, gamma, beta)
    assert close(y, layernorm_reference(x, gamma, beta), dtype)
    g = dy * gamma
    plain_dx = rstd * (g - g.mean(axis=-1, keepdims=True) - xhat * (g * xhat).mean(axis=-1, keepdims=True))
    dx, dgamma, dbeta = F.layernorm_backward(dy, (xhat, rstd, gamma))
    assert close(dx, plain_dx, dtype)
    assert close(dgamma, (dy * xhat).sum(axis=(0, 1)), dtype) and close(dbeta, dy.sum(axis=(0, 1)), dtype)


@pytest.mark.parametrize("causal, T, Tk", [(False, 72, 72), (True, 72, 72), (True, 48, 60)])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_attention_forward_and_backward_match_the_plain_formulas(causal, T, Tk, dtype):
    B, d, H = 7, 32, 4                         # 28 score matrices of 72×72: three blocks of heads
    q, k, v = data((B, T, d), dtype), data((B, Tk, d), dtype, 1), data((B, Tk, d), dtype, 2)
    out, cache = F.attention_forward(q, k, v, H, causal)
    assert close(out, attention_reference(q, k, v, H, causal), dtype)
    Q, K, Vh, P, scale = cache
    dout = data((B, T, d), dtype, 3)
    dO = F.split_heads(dout, H)
    dS = F.softmax_backward(dO @ Vh.transpose(0, 1, 3, 2), P)          # the plain softmax backward
    dq, dk, dv = F.attention_backward(dout, cache)
    assert close(dq, F.merge_heads((dS @ K) * scale), dtype)
    assert close(dk, F.merge_heads((dS.transpose(0, 1, 3, 2) @ Q) * scale), dtype)
    assert close(dv, F.merge_heads(P.transpose(0, 1, 3, 2) @ dO), dtype)
    if T == Tk and on_host(P):                 # the blocks of heads really are several, the last partial
        sizes = [len(b) for b in _head_blocks(P)]
        assert len(sizes) == 3 and sizes[-1] < sizes[0]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_cross_entropy_matches_log_softmax_and_its_gradient(dtype):
    z = data((37, 11), dtype) * 30.0                                     # large logits: still finite
    y = backend.asarray(np.random.default_rng(1).integers(0, 11, 37))
    loss, cache = F.softmax_cross_entropy_forward(z, y)
    rows = backend.get_xp().arange(37)
    assert close(loss, -F.log_softmax(z)[rows, y].mean(), dtype)
    dz = F.softmax_cross_entropy_backward(2.0, cache)
    onehot = F.one_hot(y, 11, z.dtype)
    assert close(dz, 2.0 * (F.softmax(z) - onehot) / 37, dtype)


@pytest.mark.parametrize("cls, wd", [(Adam, 0.0), (Adam, 0.1), (AdamW, 0.1)])
def test_adam_in_place_matches_the_plain_update_over_several_steps(cls, wd):
    shapes = [(7, 5), (5,), (3, 7)]
    params = [Parameter(data(s, "float64", i)) for i, s in enumerate(shapes)]
    plain = [p.data.copy() for p in params]
    m = [0 * w for w in plain]
    v = [0 * w for w in plain]
    opt = cls(params, lr=0.01, betas=(0.9, 0.99), eps=1e-8, weight_decay=wd)
    for t in range(1, 5):
        for i, p in enumerate(params):
            p.grad = data(shapes[i], "float64", 10 * t + i)
            g = p.grad + wd * plain[i] if (wd and cls is Adam) else p.grad
            m[i] = 0.9 * m[i] + 0.1 * g
            v[i] = 0.99 * v[i] + 0.01 * g * g
            if cls is AdamW:
                plain[i] = plain[i] - 0.01 * wd * plain[i]
            xp = backend.get_xp()
            plain[i] = plain[i] - 0.01 * (m[i] / (1 - 0.9 ** t)) / (xp.sqrt(v[i] / (1 - 0.99 ** t)) + 1e-8)
        opt.step()
        for p, w in zip(params, plain, strict=True):
            assert close(p.data, w, "float64")


def test_layernorm_backward_without_parameter_gradients_gives_the_same_dx():
    x, dy = data((4, 9, 64), "float64"), data((4, 9, 64), "float64", 1)
    gamma, beta = data((64,), "float64", 2), data((64,), "float64", 3)
    _, cache = F.layernorm_forward(x, gamma, beta)
    dx, dgamma, dbeta = F.layernorm_backward(dy, cache)
    dx_frozen, none_g, none_b = F.layernorm_backward(dy, cache, need_param_grad=False)
    assert none_g is None and none_b is None
    assert close(dx_frozen, dx, "float64")                                   # the same, to rounding


def test_blocks_on_two_threads_give_exactly_what_one_thread_gives():
    from lora_np.functional.blocks import get_threads, set_threads
    x, dy = data(SHAPE, "float32"), data(SHAPE, "float32", 1)
    q, k, v = (data((7, 72, 32), "float32", i) for i in range(3))
    dout = data((7, 72, 32), "float32", 3)

    def run():
        y, cache = F.gelu_forward(x)
        out, acache = F.attention_forward(q, k, v, 4, True)
        return [y, F.gelu_backward(dy, cache), out, *F.attention_backward(dout, acache)]
    before = get_threads()
    try:
        set_threads(1)
        one = run()
        set_threads(2)
        two = run()
    finally:
        set_threads(before)
    for a, b in zip(one, two, strict=True):
        assert backend.max_abs(a - b) == 0.0


def test_set_threads_refuses_what_is_not_a_positive_count():
    from lora_np.functional.blocks import set_threads
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="n must be a positive integer"):
            set_threads(bad)
