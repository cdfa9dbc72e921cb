"""Float64 central-difference checks of every backward in lora_np.functional: rel. error < 1e-7.

Each check turns the operation into a scalar L = Σ out ⊙ G for a fixed random G, so that
dL/d(out) = G is the upstream gradient fed to the backward.
"""
import pytest

from lora_np import backend
from lora_np import functional as F
from lora_np.gradcheck import numerical_gradient, rel_error
from lora_np.gradcheck import weighted_sum as scalar

TOL = 1e-7


@pytest.fixture(autouse=True)
def _f64(float64):
    yield


def check(forward, backward, inputs, wrt, rng):
    """Compare backward's gradients with numerical ones for every array named in ``wrt``.

    ``wrt`` names one input per gradient the backward returns, in order (None: not checked); a
    backward that returns more or fewer gradients than that fails with ValueError.
    """
    out, cache = forward(**inputs)
    G = rng.standard_normal(out.shape)
    grads = backward(G, cache)
    for name, g in zip(wrt, grads if isinstance(grads, tuple) else (grads,), strict=True):
        if name is None:
            continue
        x = inputs[name]
        num = numerical_gradient(lambda: scalar(forward(**inputs)[0], G), x)
        err = rel_error(num, g)
        assert err < TOL, f"d/d{name}: relative error {err:.2e}"


def test_check_fails_when_the_backward_returns_a_gradient_too_few_or_too_many(rng):
    """A gradient the backward forgot must fail the check, not be skipped silently."""
    ins = dict(x=rng.standard_normal((5, 4)), W=rng.standard_normal((3, 4)), b=rng.standard_normal((3,)))
    check(F.linear_forward, F.linear_backward, ins, ["x", "W", "b"], rng)      # dx, dW, db: passes

    def forgets_db(G, cache):
        return F.linear_backward(G, cache)[:2]                                 # dx, dW
    with pytest.raises(ValueError, match="shorter"):
        check(F.linear_forward, forgets_db, ins, ["x", "W", "b"], rng)
    with pytest.raises(ValueError, match="longer"):
        check(F.linear_forward, F.linear_backward, ins, ["x", "W"], rng)       # db not named
    check(F.linear_forward, F.linear_backward, ins, ["x", None, "b"], rng)     # None: dW not checked


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("lead", [(5,), (2, 3)])
def test_linear(rng, bias, lead):
    ins = dict(x=rng.standard_normal(lead + (4,)), W=rng.standard_normal((3, 4)),
               b=rng.standard_normal((3,)) if bias else None)
    out, cache = F.linear_forward(**ins)
    G = rng.standard_normal(out.shape)
    dx, dW, db = F.linear_backward(G, cache)

    def f():
        return scalar(F.linear_forward(**ins)[0], G)
    assert rel_error(numerical_gradient(f, ins["x"]), dx) < TOL
    assert rel_error(numerical_gradient(f, ins["W"]), dW) < TOL
    if bias:
        assert rel_error(numerical_gradient(f, ins["b"]), db) < TOL
    else:
        assert db is None


def test_linear_frozen_weight_gives_only_dx(rng):
    x, W = rng.standard_normal((5, 4)), rng.standard_normal((3, 4))
    out, cache = F.linear_forward(x, W)
    G = rng.standard_normal(out.shape)
    dx, dW, db = F.linear_backward(G, cache, need_weight_grad=False)
    assert dW is None and db is None
    assert rel_error(numerical_gradient(lambda: scalar(F.linear_forward(x, W)[0], G), x), dx) < TOL


@pytest.mark.parametrize("dropout", [False, True])
@pytest.mark.parametrize("lead", [(6,), (2, 3)])
def test_lora_linear(rng, dropout, lead):
    d_in, d_out, r = 5, 4, 2
    x = rng.standard_normal(lead + (d_in,))
    W0, b0 = rng.standard_normal((d_out, d_in)), rng.standard_normal((d_out,))
    A, B = rng.standard_normal((r, d_in)), rng.standard_normal((d_out, r))   # B ≠ 0 to test dA
    p = 0.3 if dropout else 0.0
    drop = (rng.random(x.shape) >= p, p) if dropout else None          # (mask, p): dropout on the adapter
    out, cache = F.lora_linear_forward(x, W0, b0, A, B, 0.7, drop)
    G = rng.standard_normal(out.shape)
    dx, dA, dB = F.lora_linear_backward(G, cache)

    def f():
        return scalar(F.lora_linear_forward(x, W0, b0, A, B, 0.7, drop)[0], G)
    for arr, g in ((x, dx), (A, dA), (B, dB)):
        assert rel_error(numerical_gradient(f, arr), g) < TOL


def test_lora_linear_equals_explicit_delta_w(rng):
    x, W0 = rng.standard_normal((6, 5)), rng.standard_normal((4, 5))
    A, B, s = rng.standard_normal((3, 5)), rng.standard_normal((4, 3)), 1.5
    y, _ = F.lora_linear_forward(x, W0, None, A, B, s)
    y_ref, _ = F.linear_forward(x, W0 + s * (B @ A))
    assert rel_error(y, y_ref) < 1e-12


@pytest.mark.parametrize("op", ["relu", "gelu", "tanh"])
def test_activations(rng, op):
    x = rng.standard_normal((4, 5))
    if op == "relu":                                   # keep inputs away from the kink at 0
        xp = backend.get_array_module(x)
        x = xp.where(abs(x) < 0.05, x + 0.1, x)
    fwd, bwd = getattr(F, f"{op}_forward"), getattr(F, f"{op}_backward")
    check(lambda x: fwd(x), bwd, {"x": x}, ["x"], rng)


def test_gelu_matches_its_definition(rng):
    import math
    x = rng.standard_normal((50,))
    y, _ = F.gelu_forward(x)
    xs, ys = backend.to_numpy(x), backend.to_numpy(y)
    ref = [0.5 * v * (1 + math.tanh(math.sqrt(2 / math.pi) * (v + 0.044715 * v ** 3))) for v in xs]
    assert max(abs(a - b) for a, b in zip(ys, ref, strict=True)) < 1e-12


def test_dropout(rng):
    x, p = rng.standard_normal((6, 5)), 0.4
    mask = rng.random(x.shape) >= p
    check(lambda x: F.dropout_forward(x, mask, p), F.dropout_backward, {"x": x}, ["x"], rng)


def test_softmax_cross_entropy(rng):
    # Unit-scale logits keep every probability above ~1e-2: an entry of the gradient as small as
    # 1e-6 would drown in the finite difference's rounding error (~1e-11), not in a wrong formula.
    logits, labels = rng.standard_normal((7, 5)), rng.integers(0, 5, (7,))
    loss, cache = F.softmax_cross_entropy_forward(logits, labels)
    dz = F.softmax_cross_entropy_backward(1.0, cache)
    num = numerical_gradient(lambda: float(F.softmax_cross_entropy_forward(logits, labels)[0]), logits)
    assert rel_error(num, dz) < TOL


def test_softmax_cross_entropy_is_stable_for_huge_logits(rng):
    logits = rng.standard_normal((4, 3)) * 1e4
    labels = rng.integers(0, 3, (4,))
    loss, cache = F.softmax_cross_entropy_forward(logits, labels)
    dz = F.softmax_cross_entropy_backward(1.0, cache)
    xp = backend.get_array_module(dz)
    assert bool(xp.isfinite(loss)) and bool(xp.isfinite(dz).all())
    assert abs(float(dz.sum())) < 1e-9                  # each row of softmax − onehot sums to 0
