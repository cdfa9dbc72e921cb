"""LoRALinear: shapes and initialisation, merging, hand-derived gradients, and clear errors.

The invariants: B = 0 at the start, so a fresh adapter *is* the base layer (bit for bit);
merged == unmerged; unmerge restores W0 bit for bit; W0 and b0 never receive a gradient.
"""
import math
import re
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lora_np import backend, functional
from lora_np.backend import Rng, to_numpy
from lora_np.gradcheck import numerical_gradient, rel_error
from lora_np.lora import inject_lora, lora_layers, merge_lora, unmerge_lora
from lora_np.models import MLP
from lora_np.nn import Linear, LoRALinear, LoRARankWarning, ReLU, break_even_rank

TOL = 1e-7


@st.composite
def lora_cases(draw):
    d_in, d_out = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    return dict(d_in=d_in, d_out=d_out, r=draw(st.integers(1, min(d_in, d_out))),
                lead=tuple(draw(st.lists(st.integers(1, 4), max_size=2))),
                alpha=draw(st.sampled_from([0.5, 1.0, 8.0, 16.0])), rslora=draw(st.booleans()),
                bias=draw(st.booleans()), seed=draw(st.integers(0, 2 ** 16)))


def make_layer(d_in, d_out, r, alpha=8.0, rslora=False, bias=True, seed=0, **kw):
    base = Linear(d_in, d_out, bias=bias, rng=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LoRARankWarning)        # small shapes reach break-even
        return base, LoRALinear(base, r=r, alpha=alpha, use_rslora=rslora, rng=seed + 1, **kw)


def randomize_B(layer, rng):
    layer.lora_B.data = rng.standard_normal(layer.lora_B.shape)


# --------------------------------------------------------------------------- shapes and init

@settings(max_examples=25, deadline=None)
@given(lora_cases())
def test_fresh_adapter_is_exactly_the_base_layer(case):
    d_in, d_out, r, lead = case["d_in"], case["d_out"], case["r"], case["lead"]
    base, layer = make_layer(d_in, d_out, r, case["alpha"], case["rslora"], case["bias"], case["seed"])
    x = Rng(case["seed"] + 2).standard_normal(lead + (d_in,))
    y, y_base = layer(x), base(x)
    assert tuple(y.shape) == lead + (d_out,)
    assert y.dtype == y_base.dtype == backend.default_dtype()
    assert (to_numpy(y) == to_numpy(y_base)).all()              # bit-identical, not just close

    assert tuple(layer.lora_A.shape) == (r, d_in)
    assert tuple(layer.lora_B.shape) == (d_out, r)
    assert not to_numpy(layer.lora_B.data).any()                 # B starts at zero
    assert layer.num_parameters(trainable_only=True) == r * (d_in + d_out)
    assert [n for n, p in layer.named_parameters() if p.trainable] == ["lora_A", "lora_B"]
    assert layer.weight is base.weight and not layer.weight.trainable   # W0 shared, frozen
    if case["bias"]:
        assert layer.bias is base.bias and not layer.bias.trainable
    expected = case["alpha"] / math.sqrt(r) if case["rslora"] else case["alpha"] / r
    assert layer.scaling == pytest.approx(expected, rel=1e-15)


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 12), st.integers(1, 12), st.data())
def test_rank_warning_exactly_at_and_above_break_even(d_in, d_out, data):
    r = data.draw(st.integers(1, min(d_in, d_out)))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        LoRALinear(Linear(d_in, d_out), r=r)
    rank_warnings = [w for w in caught if issubclass(w.category, LoRARankWarning)]
    assert len(rank_warnings) == (1 if r >= d_in * d_out / (d_in + d_out) else 0)
    assert break_even_rank(d_in, d_out) == d_in * d_out / (d_in + d_out)


@pytest.mark.parametrize("d_in", [4, 64, 300])
def test_kaiming_init_is_uniform_within_one_over_sqrt_d_in(float64, no_warnings, d_in):
    layer = LoRALinear(Linear(d_in, 300, rng=0), r=1 if d_in < 8 else 4, rng=1)   # below break-even
    A, bound = to_numpy(layer.lora_A.data), 1.0 / math.sqrt(d_in)
    assert np.abs(A).max() <= bound
    if A.size >= 1000:                                           # a uniform in ±bound fills it
        assert np.abs(A).max() > 0.99 * bound
        assert abs(A.std() - bound / math.sqrt(3)) < 0.05 * bound / math.sqrt(3)


def test_gaussian_init_has_std_one_over_r(float64):
    layer = LoRALinear(Linear(512, 256, rng=0), r=4, init="gaussian", rng=1)
    A = to_numpy(layer.lora_A.data)                              # 2048 draws
    assert abs(A.std() - 0.25) < 0.05 * 0.25
    assert abs(A.mean()) < 0.02
    assert not to_numpy(layer.lora_B.data).any()


def test_float32_layer_stays_float32(rng):
    _, layer = make_layer(6, 5, 2)
    randomize_B(layer, rng)
    x = rng.standard_normal((3, 6))
    y = layer(x)
    dx = layer.backward(rng.standard_normal(y.shape))
    for a in (y, dx, layer.lora_A.data, layer.lora_B.data, layer.lora_A.grad, layer.lora_B.grad):
        assert a.dtype == np.float32


# --------------------------------------------------------------------------- merging

def test_merge_equals_unmerged_and_unmerge_restores_w0_bit_for_bit(float64, rng):
    _, layer = make_layer(7, 5, 3, alpha=6.0)
    randomize_B(layer, rng)
    x = rng.standard_normal((4, 7))
    y_unmerged = layer(x)
    W0, W0_host = layer.weight.data, to_numpy(layer.weight.data).copy()
    expected_merged = W0_host + (6.0 / 3) * to_numpy(layer.lora_B.data) @ to_numpy(layer.lora_A.data)

    layer.merge()
    assert layer.merged
    assert rel_error(layer.weight.data, expected_merged) < 1e-12
    y_merged = layer(x)
    assert rel_error(y_merged, y_unmerged) < 1e-12

    layer.unmerge()
    assert not layer.merged
    assert layer.weight.data is W0                               # the very same array is back
    assert np.array_equal(to_numpy(layer.weight.data), W0_host)
    assert np.array_equal(to_numpy(layer(x)), to_numpy(y_unmerged))


def test_merging_twice_is_refused_and_changes_nothing(float64, rng):
    _, layer = make_layer(6, 4, 2)
    randomize_B(layer, rng)
    W0_host = to_numpy(layer.weight.data).copy()
    layer.merge()
    merged_host = to_numpy(layer.weight.data).copy()
    with pytest.raises(RuntimeError, match="already merged"):
        layer.merge()
    assert layer.merged
    assert np.array_equal(to_numpy(layer.weight.data), merged_host)
    layer.unmerge()                                              # the kept W0 was not clobbered
    assert np.array_equal(to_numpy(layer.weight.data), W0_host)


def test_unmerge_of_an_unmerged_layer_is_refused(rng):
    _, layer = make_layer(6, 4, 2)
    W0 = layer.weight.data
    with pytest.raises(RuntimeError, match="not merged"):
        layer.unmerge()
    assert layer.weight.data is W0 and not layer.merged


def test_backward_through_a_merged_layer_is_refused(rng):
    _, layer = make_layer(6, 4, 2)
    layer.merge()
    y = layer(rng.standard_normal((3, 6)))
    with pytest.raises(RuntimeError, match="unmerge"):
        layer.backward(rng.standard_normal(y.shape))
    assert layer.lora_A.grad is None and layer.lora_B.grad is None


def test_merge_lora_is_idempotent_and_unmerge_lora_restores(float64, rng):
    model = inject_lora(MLP(6, (8, 8), 3, seed=0), r=2, target_modules=None)
    for _, layer in lora_layers(model):
        randomize_B(layer, rng)
    x = rng.standard_normal((5, 6))
    logits = model(x)
    before = {n: to_numpy(p.data).copy() for n, p in model.named_parameters()}

    merge_lora(model)
    once = {n: to_numpy(p.data).copy() for n, p in model.named_parameters()}
    merge_lora(model)                                            # a no-op, not ΔW added twice
    twice = {n: to_numpy(p.data).copy() for n, p in model.named_parameters()}
    assert all(layer.merged for _, layer in lora_layers(model))
    assert all(np.array_equal(once[n], twice[n]) for n in once)
    assert not np.array_equal(once["fc1.weight"], before["fc1.weight"])
    assert rel_error(model(x), logits) < 1e-12

    unmerge_lora(model)
    unmerge_lora(model)                                          # also idempotent
    assert not any(layer.merged for _, layer in lora_layers(model))
    assert all(np.array_equal(to_numpy(p.data), before[n]) for n, p in model.named_parameters())
    assert np.array_equal(to_numpy(model(x)), to_numpy(logits))


# --------------------------------------------------------------------------- gradients

@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("lead", [(5,), (2, 3), ()])
@pytest.mark.parametrize("rslora", [False, True])
def test_backward_matches_numerical_gradients(float64, rng, monkeypatch, bias, lead, rslora):
    _, layer = make_layer(5, 4, 2, alpha=3.0, rslora=rslora, bias=bias)
    randomize_B(layer, rng)                                      # B ≠ 0, or dA would be 0
    x = rng.standard_normal(lead + (5,))
    G = rng.standard_normal(lead + (4,))

    def no_weight_gradient(*args, **kwargs):
        raise AssertionError("LoRALinear must not take the Linear (weight-gradient) backward path")
    monkeypatch.setattr(functional, "linear_backward", no_weight_gradient)

    layer(x)
    dx = layer.backward(G)
    assert layer.weight.grad is None
    assert layer.bias is None or layer.bias.grad is None

    def f():
        return float((layer(x) * G).sum())

    for arr, analytic in ((x, dx), (layer.lora_A.data, layer.lora_A.grad),
                          (layer.lora_B.data, layer.lora_B.grad)):
        err = rel_error(numerical_gradient(f, arr), analytic)
        assert err < TOL, f"relative error {err:.2e}"
    assert layer.weight.grad is None                             # still, after many forwards


def test_gradients_accumulate_over_two_backward_passes(float64, rng):
    _, layer = make_layer(5, 4, 2)
    randomize_B(layer, rng)
    x1, x2 = rng.standard_normal((3, 5)), rng.standard_normal((2, 5))
    G1, G2 = rng.standard_normal((3, 4)), rng.standard_normal((2, 4))
    layer(x1)
    layer.backward(G1)
    gA1, gB1 = to_numpy(layer.lora_A.grad).copy(), to_numpy(layer.lora_B.grad).copy()
    layer(x2)
    layer.backward(G2)
    layer.zero_grad()
    assert layer.lora_A.grad is None
    layer(x2)
    layer.backward(G2)
    gA2, gB2 = to_numpy(layer.lora_A.grad), to_numpy(layer.lora_B.grad)
    layer(x1)
    layer.backward(G1)
    assert rel_error(layer.lora_A.grad, gA1 + gA2) < 1e-12
    assert rel_error(layer.lora_B.grad, gB1 + gB2) < 1e-12


def test_lora_dropout_is_identity_in_eval_mode(rng):
    _, layer = make_layer(6, 4, 2, dropout=0.5)
    randomize_B(layer, rng)
    x = rng.standard_normal((8, 6))
    layer.eval()
    y1, y2 = layer(x), layer(x)
    b0 = layer.bias.data
    y_ref, _ = functional.lora_linear_forward(x, layer.weight.data, b0, layer.lora_A.data,
                                              layer.lora_B.data, layer.scaling)
    assert np.array_equal(to_numpy(y1), to_numpy(y_ref))
    assert np.array_equal(to_numpy(y1), to_numpy(y2))


def test_lora_dropout_in_training_touches_only_the_lora_path(rng):
    base, layer = make_layer(6, 4, 2, dropout=0.5)
    x = rng.standard_normal((8, 6))
    layer.train()
    assert np.array_equal(to_numpy(layer(x)), to_numpy(base(x)))  # B = 0: nothing to drop
    randomize_B(layer, rng)
    layer.eval()
    y_eval = to_numpy(layer(x))
    layer.train()
    y_train1, y_train2 = to_numpy(layer(x)), to_numpy(layer(x))
    assert not np.array_equal(y_train1, y_eval)
    assert not np.array_equal(y_train1, y_train2)                # a fresh mask every forward


# --------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("r", [0, -1, 2.5, True, "2", None])
def test_bad_rank_is_refused(r):
    with pytest.raises(ValueError, match=r"\br must be a positive integer"):
        LoRALinear(Linear(6, 4), r=r)


def test_rank_above_min_dimension_warns_once_and_builds_the_layer():
    """PEFT allows r > min(d_in, d_out) (and adapters trained that way exist): warn, do not refuse."""
    with pytest.warns(LoRARankWarning,
                      match=re.escape("r=5 is above min(d_in, d_out) = min(6, 4) = 4")) as rec:
        layer = LoRALinear(Linear(6, 4), r=5)
    assert len(rec) == 1                                          # not also the break-even warning
    assert layer.lora_A.shape == (5, 6) and layer.lora_B.shape == (4, 5)


def test_rank_at_break_even_warns(no_warnings):
    with pytest.warns(LoRARankWarning, match="break-even"):
        LoRALinear(Linear(4, 4), r=2)                            # 2·(4+4) = 16 = 4·4
    LoRALinear(Linear(4, 4), r=1)                                # below: no warning at all


@pytest.mark.parametrize("alpha", [0, -1, 0.0, float("nan"), float("inf"), "8", True])
def test_bad_alpha_is_refused(alpha):
    with pytest.raises(ValueError, match="alpha must be a finite positive number"):
        LoRALinear(Linear(6, 4), r=2, alpha=alpha)


def test_bad_init_is_refused():
    with pytest.raises(ValueError, match="init must be one of"):
        LoRALinear(Linear(6, 4), r=2, init="foo")


@pytest.mark.parametrize("dropout", [1.0, -0.1, 1.5])
def test_bad_dropout_is_refused(dropout):
    with pytest.raises(ValueError, match=r"dropout must be a number in \[0, 1\)"):
        LoRALinear(Linear(6, 4), r=2, dropout=dropout)


@pytest.mark.parametrize("base", [ReLU(), "fc1", None])
def test_base_must_be_a_linear(base):
    with pytest.raises(TypeError, match="base must be a Linear"):
        LoRALinear(base, r=2)


def test_lora_layer_is_not_a_valid_base():
    _, layer = make_layer(6, 4, 2)
    with pytest.raises(TypeError, match="base must be a Linear"):
        LoRALinear(layer, r=2)


def test_wrong_input_width_names_the_features(rng):
    _, layer = make_layer(6, 4, 2)
    with pytest.raises(ValueError, match="6 features"):
        layer(rng.standard_normal((3, 5)))


def test_wrong_input_dtype_is_refused(rng):
    _, layer = make_layer(6, 4, 2)                               # float32 weights
    with pytest.raises(TypeError, match="dtype"):
        layer(rng.standard_normal((3, 6), dtype="float64"))


def test_backward_before_forward_is_refused(rng):
    _, layer = make_layer(6, 4, 2)
    with pytest.raises(RuntimeError, match="forward"):
        layer.backward(rng.standard_normal((3, 4)))


def test_second_backward_after_one_forward_is_refused(rng):
    _, layer = make_layer(6, 4, 2)
    y = layer(rng.standard_normal((3, 6)))
    dy = rng.standard_normal(y.shape)
    layer.backward(dy)
    grad_A = to_numpy(layer.lora_A.grad).copy()
    with pytest.raises(RuntimeError, match="forward"):
        layer.backward(dy)
    assert np.array_equal(to_numpy(layer.lora_A.grad), grad_A)  # nothing was accumulated twice
