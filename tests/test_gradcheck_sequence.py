"""Float64 gradient checks of the Transformer operations: relative error < 1e-7 each."""
import pytest

from lora_np import backend
from lora_np import functional as F
from lora_np.gradcheck import numerical_gradient, rel_error
from lora_np.gradcheck import weighted_sum as scalar

TOL = 1e-7


@pytest.fixture(autouse=True)
def _f64(float64):
    yield


def test_embedding(rng):
    ids, W = rng.integers(0, 7, (3, 4)), rng.standard_normal((7, 5))
    y, cache = F.embedding_forward(ids, W)
    G = rng.standard_normal(y.shape)
    num = numerical_gradient(lambda: scalar(F.embedding_forward(ids, W)[0], G), W)
    assert rel_error(num, F.embedding_backward(G, cache)) < TOL


def test_lora_embedding(rng):
    ids, W0 = rng.integers(0, 7, (3, 4)), rng.standard_normal((7, 5))
    A, B = rng.standard_normal((2, 7)), rng.standard_normal((5, 2))      # A ≠ 0 so that dB ≠ 0
    y, cache = F.lora_embedding_forward(ids, W0, A, B, 0.8)
    G = rng.standard_normal(y.shape)
    dA, dB = F.lora_embedding_backward(G, cache)

    def f():
        return scalar(F.lora_embedding_forward(ids, W0, A, B, 0.8)[0], G)
    assert rel_error(numerical_gradient(f, A), dA) < TOL
    assert rel_error(numerical_gradient(f, B), dB) < TOL
    y_ref, _ = F.embedding_forward(ids, W0 + 0.8 * (B @ A).T)            # ΔW = s (B A)ᵀ
    assert rel_error(y, y_ref) < 1e-12


def test_layernorm(rng):
    x = rng.standard_normal((2, 3, 6))
    gamma, beta = rng.standard_normal((6,)), rng.standard_normal((6,))
    y, cache = F.layernorm_forward(x, gamma, beta)
    G = rng.standard_normal(y.shape)
    dx, dg, db = F.layernorm_backward(G, cache)

    def f():
        return scalar(F.layernorm_forward(x, gamma, beta)[0], G)
    for arr, g in ((x, dx), (gamma, dg), (beta, db)):
        assert rel_error(numerical_gradient(f, arr), g) < TOL


def test_softmax_backward(rng):
    S = rng.standard_normal((3, 5))
    G = rng.standard_normal((3, 5))
    P = F.softmax(S)
    num = numerical_gradient(lambda: scalar(F.softmax(S), G), S)
    assert rel_error(num, F.softmax_backward(G, P)) < TOL


@pytest.mark.parametrize("causal", [False, True])
def test_attention(rng, causal):
    B, T, d, H = 2, 5, 8, 2
    q, k, v = (rng.standard_normal((B, T, d)) for _ in range(3))
    out, cache = F.attention_forward(q, k, v, H, causal)
    G = rng.standard_normal(out.shape)
    grads = F.attention_backward(G, cache)

    def f():
        return scalar(F.attention_forward(q, k, v, H, causal)[0], G)
    for arr, g in zip((q, k, v), grads, strict=True):                     # dq, dk, dv: all three
        assert rel_error(numerical_gradient(f, arr), g) < TOL


def test_attention_heads_are_independent_computations(rng):
    """Two heads of width 4 equal two separate single-head attentions on the halves."""
    q, k, v = (rng.standard_normal((1, 3, 8)) for _ in range(3))
    both, _ = F.attention_forward(q, k, v, 2)
    left, _ = F.attention_forward(q[..., :4], k[..., :4], v[..., :4], 1)
    right, _ = F.attention_forward(q[..., 4:], k[..., 4:], v[..., 4:], 1)
    assert rel_error(both[..., :4], left) < 1e-12 and rel_error(both[..., 4:], right) < 1e-12


def test_patchify_roundtrip_and_gradient(rng):
    img = rng.standard_normal((2, 8, 8, 3))
    patches, shape = F.patchify_forward(img, 4)
    assert patches.shape == (2, 4, 48)
    assert rel_error(patches[0, 1], img[0, 0:4, 4:8].reshape(-1)) == 0.0   # patch 1 = top-right block
    assert backend.to_numpy(F.patchify_backward(patches, shape) == img).all()
    G = rng.standard_normal(patches.shape)
    num = numerical_gradient(lambda: scalar(F.patchify_forward(img, 4)[0], G), img)
    assert rel_error(num, F.patchify_backward(G, shape)) < TOL
