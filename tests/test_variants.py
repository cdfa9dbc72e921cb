"""LoRA variants — DoRA, VeRA, PiSSA, LoRA+: hand-derived gradients, start-at-the-base invariants,
merging, closed-form parameter counts, and clear errors.

The invariants: a fresh DoRA or VeRA layer *is* the base layer (bit for bit); a fresh PiSSA layer
is the base up to one rounding (residual + principal part); merged == unmerged and unmerge
restores the layer's W0 bit for bit; PiSSA never touches the base's shared W0.
"""
import math
import re
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lora_np import functional as F
from lora_np.backend import Rng, to_numpy
from lora_np.gradcheck import check_model_gradients, cross_entropy, numerical_gradient, rel_error
from lora_np.lora.loraplus import loraplus_param_groups
from lora_np.models import MLP
from lora_np.nn import (
    DoRALinear,
    Linear,
    LoRALayer,
    LoRALinear,
    LoRARankWarning,
    PiSSALinear,
    SoftmaxCrossEntropy,
    VeRALinear,
    VeRAShared,
    make_lora_layer,
    pissa_to_lora,
    variant_trainable_count,
)
from lora_np.optim import Adam

OP_TOL, MODEL_TOL = 1e-7, 1e-6


def scalar(out, G):
    return float((out * G).sum())


def same(a, b):
    return np.array_equal(to_numpy(a), to_numpy(b))


def make(variant, d_in=7, d_out=5, r=2, bias=True, seed=0, **kw):
    """(base, layer): a fresh Linear and the variant built on it (VeRA gets a pair sized to it)."""
    base = Linear(d_in, d_out, bias=bias, rng=seed)
    if variant == "vera":
        kw.setdefault("vera_shared", VeRAShared(r, d_in + 2, d_out + 3, seed=seed + 7,
                                                dtype=base.weight.dtype))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LoRARankWarning)        # small shapes reach break-even
        return base, make_lora_layer(base, variant, r=r, alpha=3.0, rng=seed + 1, **kw)


def perturb(layer, rng, scale=0.5):
    """Move every trainable adapter tensor away from its initialisation (B ≠ 0, λ_b ≠ 0, m ≠ ‖W0‖)."""
    for _, p in layer.named_parameters():
        if p.trainable:
            p.data = p.data + rng.standard_normal(p.shape) * scale


# --------------------------------------------------------------------------- the functional pairs

def dora_inputs(rng, lead=(6,), bias=True, d_in=5, d_out=4, r=2):
    return dict(x=rng.standard_normal(lead + (d_in,)), W0=rng.standard_normal((d_out, d_in)),
                b0=rng.standard_normal((d_out,)) if bias else None, A=rng.standard_normal((r, d_in)),
                B=rng.standard_normal((d_out, r)), s=0.7, m=rng.random((d_out,)) + 0.5)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("lead", [(6,), (2, 3)])
def test_dora_pair_exact_gradient(float64, rng, lead, bias):
    ins = dora_inputs(rng, lead, bias)
    out, cache = F.dora_linear_forward(**ins)
    G = rng.standard_normal(out.shape)
    grads = F.dora_linear_backward(G, cache, exact=True)

    def f():
        return scalar(F.dora_linear_forward(**ins)[0], G)

    for name, g in zip(("x", "A", "B", "m"), grads, strict=True):
        err = rel_error(numerical_gradient(f, ins[name]), g)
        assert err < OP_TOL, f"d/d{name}: relative error {err:.2e}"


def test_dora_paper_gradient_treats_the_norm_as_a_constant(float64, rng):
    ins = dora_inputs(rng, (2, 3))
    out, cache = F.dora_linear_forward(**ins)
    G = rng.standard_normal(out.shape)
    dx, dA, dB, dm = F.dora_linear_backward(G, cache, exact=True)
    px, pA, pB, pm = F.dora_linear_backward(G, cache, exact=False)
    assert same(px, dx) and same(pm, dm)                         # not through n(V): identical

    def f():
        return scalar(F.dora_linear_forward(**ins)[0], G)

    for name, paper in (("A", pA), ("B", pB)):                   # dA, dB: clearly not the true gradient
        num = numerical_gradient(f, ins[name])
        assert rel_error(num, paper) > 0.1
        assert np.linalg.norm(num - to_numpy(paper)) > 0.05 * np.linalg.norm(num)
    # ... but exactly the gradient of the same layer with n frozen at its current value (the paper's §4.3)
    x, W0, b0, A, B, s, m = (ins[k] for k in ("x", "W0", "b0", "A", "B", "s", "m"))
    c_frozen = m / F.row_norms(W0 + s * (B @ A))                 # (d_out,), fixed from here on

    def f_frozen():
        return scalar(F.lora_linear_forward(x, W0, None, A, B, s)[0] * c_frozen + b0, G)

    assert rel_error(numerical_gradient(f_frozen, A), pA) < OP_TOL
    assert rel_error(numerical_gradient(f_frozen, B), pB) < OP_TOL


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("lead", [(6,), (2, 3)])
def test_vera_pair_gradient(float64, rng, lead, bias):
    d_in, d_out, r = 5, 4, 3
    ins = dict(x=rng.standard_normal(lead + (d_in,)), W0=rng.standard_normal((d_out, d_in)),
               b0=rng.standard_normal((d_out,)) if bias else None, A=rng.standard_normal((r, d_in)),
               B=rng.standard_normal((d_out, r)), lambda_d=rng.standard_normal((r,)),
               lambda_b=rng.standard_normal((d_out,)), s=0.8)
    out, cache = F.vera_linear_forward(**ins)
    G = rng.standard_normal(out.shape)
    grads = F.vera_linear_backward(G, cache)
    assert len(grads) == 3                                       # dx, dλ_d, dλ_b: none for A, B

    def f():
        return scalar(F.vera_linear_forward(**ins)[0], G)

    for name, g in zip(("x", "lambda_d", "lambda_b"), grads, strict=True):
        err = rel_error(numerical_gradient(f, ins[name]), g)
        assert err < OP_TOL, f"d/d{name}: relative error {err:.2e}"


# --------------------------------------------------------------------------- whole-model gradient checks

def mlp_with(variant, **kw):
    """A tiny float64 MLP (6 -> 8 -> 3) whose fc1 and head are replaced by the variant by hand."""
    model = MLP(6, (8,), 3, seed=0).freeze()
    bases = {n: model.get_submodule(n) for n in ("fc1", "head")}
    if variant == "vera":
        kw["vera_shared"] = VeRAShared.for_layers(bases.values(), r=2, seed=3)
    for i, (n, base) in enumerate(bases.items()):
        model.set_submodule(n, make_lora_layer(base, variant, r=2, alpha=4.0, rng=i, name=n, **kw))
    return model


@pytest.mark.parametrize("variant", ["dora", "vera", "pissa"])
def test_model_gradients_with_each_variant(float64, rng, variant):
    model = mlp_with(variant)
    if variant != "pissa":                                       # PiSSA is checked as initialised
        for layer in (m for _, m in model.named_modules() if isinstance(m, LoRALayer)):
            perturb(layer, rng, 0.3)
    errors = check_model_gradients(model, rng.standard_normal((4, 6)),
                                   cross_entropy(rng.integers(0, 3, (4,))))
    expected = {"dora": {"lora_A", "lora_B", "lora_magnitude"}, "vera": {"vera_lambda_d", "vera_lambda_b"},
                "pissa": {"lora_A", "lora_B"}}[variant]
    assert {k.split(".")[-1] for k in errors} == expected | {"input"}
    assert max(errors.values()) < MODEL_TOL, errors
    assert all(p.grad is None for n, p in model.named_parameters() if n.endswith(("weight", "bias")))


# --------------------------------------------------------------------------- starting at the base model

@settings(max_examples=12, deadline=None)
@given(st.integers(1, 9), st.integers(1, 9), st.booleans(), st.integers(0, 2 ** 16), st.data())
def test_fresh_dora_and_vera_are_exactly_the_base(d_in, d_out, bias, seed, data):
    r = data.draw(st.integers(1, min(d_in, d_out)))
    x = Rng(seed).standard_normal((3, d_in))
    for variant in ("dora", "vera"):
        base, layer = make(variant, d_in, d_out, r, bias, seed)
        assert same(layer(x), base(x))                           # m/n = 1 and λ_b = 0 exactly


def test_fresh_pissa_is_the_base_up_to_rounding_and_leaves_w0_alone(float64, rng):
    base, layer = make("pissa", 9, 7, 3)
    W0, W0_host = base.weight.data, to_numpy(base.weight.data).copy()
    x = rng.standard_normal((4, 9))
    assert rel_error(layer(x), base(x)) < 1e-12                  # W_res + s·B0A0 = W0, one rounding apart
    assert layer.weight is not base.weight and not layer.weight.trainable   # its own residual
    assert layer.bias is base.bias
    assert base.weight.data is W0 and same(W0, W0_host)          # the shared W0 is untouched
    S = np.linalg.svd(W0_host, compute_uv=False)                 # s·B0A0 is the best rank-3 part:
    principal = layer.s * to_numpy(layer.lora_B.data) @ to_numpy(layer.lora_A.data)
    assert np.allclose(np.linalg.svd(principal, compute_uv=False)[:3], S[:3], rtol=1e-12)
    assert math.isclose(np.linalg.norm(W0_host - principal, 2), S[3], rel_tol=1e-10)   # Eckart–Young


def test_pissa_to_lora_reproduces_the_trained_layer_on_the_original_w0(float64, rng):
    for rslora, strength in ((False, 1.0), (True, 0.5)):
        base, layer = make("pissa", 12, 10, 2, use_rslora=rslora)
        perturb(layer, rng, 0.1)                                 # "trained"
        layer.strength = strength
        A2, B2 = pissa_to_lora(layer)
        assert tuple(A2.shape) == (4, 12) and tuple(B2.shape) == (10, 4)
        alpha2 = 3.0 * (math.sqrt(2) if rslora else 2.0)         # keeps s at rank 2r
        lora = LoRALinear(base, r=4, alpha=alpha2, use_rslora=rslora)
        assert math.isclose(lora.scaling, layer.scaling, rel_tol=1e-15)
        lora.lora_A.data, lora.lora_B.data = A2, B2
        x = rng.standard_normal((5, 12))
        assert rel_error(lora(x), layer(x)) < 1e-12


# --------------------------------------------------------------------------- merging and counting

@pytest.mark.parametrize("variant", ["dora", "vera", "pissa"])
def test_merge_equals_unmerged_and_unmerge_restores_w0(float64, rng, variant):
    base, layer = make(variant)
    perturb(layer, rng)
    base_W0 = to_numpy(base.weight.data).copy()
    x = rng.standard_normal((4, 7))
    y = layer(x)
    W0, W0_host = layer.weight.data, to_numpy(layer.weight.data).copy()
    dW = to_numpy(layer.delta_weight()).copy()
    layer.merge()
    assert rel_error(layer(x), y) < 1e-12
    assert np.allclose(to_numpy(layer.delta_weight()), dW, rtol=0, atol=1e-14)   # same ΔW while merged
    with pytest.raises(RuntimeError, match="unmerge"):
        layer.backward(rng.standard_normal(y.shape))
    layer.unmerge()
    assert layer.weight.data is W0 and same(W0, W0_host)         # bit for bit
    assert same(layer(x), y)
    if variant == "pissa":
        assert same(base.weight.data, base_W0)                   # merging PiSSA never touched the base


@pytest.mark.parametrize("variant", ["lora", "dora", "vera", "pissa"])
def test_trainable_counts_match_the_closed_forms(variant):
    d_in, d_out, r = 11, 6, 3
    _, layer = make(variant, d_in, d_out, r)
    assert layer.num_parameters(trainable_only=True) == variant_trainable_count(variant, d_in, d_out, r)
    assert getattr(type(layer), "variant", "lora") == variant
    names = [n for n, p in layer.named_parameters() if p.trainable]
    assert names == {"lora": ["lora_A", "lora_B"], "dora": ["lora_A", "lora_B", "lora_magnitude"],
                     "vera": ["vera_lambda_d", "vera_lambda_b"], "pissa": ["lora_A", "lora_B"]}[variant]
    counts = {"lora": 51, "dora": 57, "vera": 9, "pissa": 51}
    assert variant_trainable_count(variant, d_in, d_out, r) == counts[variant]


def test_vera_shares_one_frozen_pair_and_only_trains_vectors(rng):
    shared = VeRAShared(4, 10, 9, seed=5)
    again = VeRAShared(4, 10, 9, seed=5)
    assert same(shared.A, again.A) and same(shared.B, again.B)   # regenerated from the seed
    assert float(abs(shared.A).max()) <= math.sqrt(6 / 10) and float(abs(shared.B).max()) <= math.sqrt(6 / 4)
    l1, l2 = VeRALinear(Linear(10, 9), 4, shared), VeRALinear(Linear(6, 3), 4, shared)
    assert l1._shared is l2._shared is shared
    assert not to_numpy(l1.vera_lambda_b.data).any()
    assert np.all(to_numpy(l1.vera_lambda_d.data) == np.float32(0.1))
    assert all(n.startswith(("weight", "bias", "vera_lambda")) for n, _ in l2.named_parameters())
    probe = LoRALinear.__new__(LoRALinear)                       # VeRA runs the same _setup as LoRA
    probe._setup(Linear(4, 4), 1, 1.0, False, "probe")
    assert set(vars(probe)) <= set(vars(l1))
    assert (l1.alpha, l1.scaling, l1.s) == (1.0, 1.0, 1.0)        # no alpha: the scale is the strength


def test_float32_variants_stay_float32(rng):
    for variant in ("dora", "vera", "pissa"):
        _, layer = make(variant)
        perturb(layer, rng)
        y = layer(rng.standard_normal((3, 7)))
        dx = layer.backward(rng.standard_normal(y.shape))
        assert all(a.dtype == np.float32 for a in (y, dx, *(p.grad for p in layer.trainable_parameters())))


# --------------------------------------------------------------------------- LoRA+

def lora_mlp(rng):
    model = MLP(6, (8,), 3, seed=0).freeze()
    for i, n in enumerate(("fc1", "head")):
        layer = LoRALinear(model.get_submodule(n), r=2, alpha=4.0, rng=i, name=n)
        layer.lora_B.data = rng.standard_normal(layer.lora_B.shape)   # B ≠ 0, so A gets a gradient
        model.set_submodule(n, layer)
    return model


def test_loraplus_groups_and_first_adam_step(float64, rng):
    model, lr = lora_mlp(rng), 1e-3
    groups = loraplus_param_groups(model, lr=lr, ratio=16.0)
    params = dict(model.named_parameters())
    assert [g["lr"] for g in groups] == [lr, 16 * lr]
    assert {id(p) for p in groups[1]["params"]} == {id(params[n]) for n in ("fc1.lora_B", "head.lora_B")}
    assert {id(p) for p in groups[0]["params"]} == {id(params[n]) for n in ("fc1.lora_A", "head.lora_A")}
    before = {n: to_numpy(p.data).copy() for n, p in params.items()}
    opt, ce = Adam(groups, lr=lr), SoftmaxCrossEntropy()
    ce(model(rng.standard_normal((8, 6))), rng.integers(0, 3, (8,)))
    model.backward(ce.backward())
    opt.step()
    step = {n: np.abs(to_numpy(p.data) - before[n]) / lr for n, p in params.items()}
    for n in params:                                              # Adam's first step is lr·sign(g)
        expected = 16.0 if n.endswith("lora_B") else 1.0 if n.endswith("lora_A") else 0.0
        assert np.allclose(np.median(step[n]), expected, rtol=1e-4, atol=0), (n, np.median(step[n]))


# --------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("ratio", [0, -1.0, float("nan"), True, "16"])
def test_loraplus_bad_ratio_is_refused(rng, ratio):
    with pytest.raises(ValueError, match="ratio must be a finite positive number"):
        loraplus_param_groups(lora_mlp(rng), lr=1e-3, ratio=ratio)


def test_loraplus_needs_lora_b_and_a_positive_lr(rng):
    with pytest.raises(ValueError, match="lr must be a finite positive number"):
        loraplus_param_groups(lora_mlp(rng), lr=0.0)
    with pytest.raises(ValueError, match="no trainable lora_B"):
        loraplus_param_groups(mlp_with("vera"), lr=1e-3)


def test_vera_layer_larger_than_the_shared_matrices_is_refused():
    shared = VeRAShared(2, 6, 4)
    with pytest.raises(ValueError, match=re.escape("larger than the shared matrices allow (d_out_max=4, "
                                                   "d_in_max=6)")):
        VeRALinear(Linear(6, 5), 2, shared)
    with pytest.raises(ValueError, match="larger than the shared"):
        VeRALinear(Linear(7, 4), 2, shared)
    with pytest.raises(ValueError, match=r"r=3 does not match the shared matrices' r=2"):
        VeRALinear(Linear(6, 4), 3, shared)
    with pytest.raises(TypeError, match="shared must be a VeRAShared"):
        VeRALinear(Linear(6, 4), 2, None)
    with pytest.raises(TypeError, match="shared is float64"):
        VeRALinear(Linear(6, 4), 2, VeRAShared(2, 6, 4, dtype="float64"))
    with pytest.raises(ValueError, match="d_initial must be a finite number"):
        VeRALinear(Linear(6, 4), 2, shared, d_initial=float("inf"))


@pytest.mark.parametrize("r", [0, -1, 2.5, True, "2", None])
@pytest.mark.parametrize("variant", ["dora", "vera", "pissa"])
def test_bad_rank_is_refused(variant, r):
    with pytest.raises(ValueError, match=r"\br must be a positive integer"):
        make(variant, r=r, vera_shared=VeRAShared(2, 9, 8)) if variant == "vera" else make(variant, r=r)


def test_bad_variant_arguments_are_refused():
    with pytest.raises(ValueError, match="variant must be one of"):
        make_lora_layer(Linear(6, 4), "adalora")
    with pytest.raises(ValueError, match="variant must be one of"):
        variant_trainable_count("ia3", 6, 4, 2)
    with pytest.raises(TypeError, match="variant 'vera' needs the model's shared matrices"):
        make_lora_layer(Linear(6, 4), "vera", r=2)
    with pytest.raises(ValueError, match="dropout=0.1 is not supported by variant 'dora'"):
        make_lora_layer(Linear(6, 4), "dora", r=2, dropout=0.1)
    with pytest.warns(LoRARankWarning, match=re.escape("min(d_in, d_out)")):
        DoRALinear(Linear(6, 4), r=5)
    with pytest.raises(TypeError, match="exact_grad must be True or False"):
        DoRALinear(Linear(6, 4), r=2, exact_grad="yes")
    with pytest.raises(TypeError, match="base must be a Linear"):
        PiSSALinear(DoRALinear(Linear(6, 4), r=2), r=2)
    with pytest.raises(TypeError, match="layer must be a PiSSALinear"):
        pissa_to_lora(LoRALinear(Linear(6, 4), r=1))
    with pytest.raises(ValueError, match="d_in_max must be a positive integer"):
        VeRAShared(2, 0, 4)
