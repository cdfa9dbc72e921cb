"""The MLP with LoRA injected: whole-model gradient checks, injection rules, counts, clear errors."""
import copy
import re

import numpy as np
import pytest

from lora_np import backend, functional
from lora_np.backend import Rng, to_numpy
from lora_np.gradcheck import numerical_gradient, rel_error
from lora_np.lora import LoraConfig, inject_lora, lora_layers, print_trainable_parameters, trainable_report
from lora_np.models import MLP
from lora_np.nn import Linear, LoRALinear, Sequential, SoftmaxCrossEntropy

TOL = 1e-6                                   # a whole model: a little looser than one operation
KINK_MARGIN = 1e-4                           # ReLU pre-activations must stay this far from 0


def randomize_all_B(model, rng):
    for _, layer in lora_layers(model):
        layer.lora_B.data = rng.standard_normal(layer.lora_B.shape)


def pre_activations(model, x):
    """The outputs of every hidden Linear layer (what ReLU sees)."""
    outs, h = [], x
    for m in model.layers():
        h = m(h)
        if isinstance(m, (Linear, LoRALinear)) and m is not model.layers()[-1]:
            outs.append(to_numpy(h))
    model.clear_caches()
    return outs


# --------------------------------------------------------------------------- gradients

@pytest.mark.parametrize("activation", ["relu", "gelu", "tanh"])
@pytest.mark.parametrize("adapter", ["lora", "full"])
def test_whole_mlp_gradients_match_numerical(float64, activation, adapter):
    rng = Rng(1)
    model = MLP(6, (8, 8), 3, activation=activation, seed=0)
    if adapter == "lora":
        inject_lora(model, r=2, lora_alpha=4, target_modules=None)
        randomize_all_B(model, rng)                              # B ≠ 0, or every dA would be 0
    x, y = rng.standard_normal((5, 6)), rng.integers(0, 3, (5,))
    if activation == "relu":
        margin = min(np.abs(h).min() for h in pre_activations(model, x))
        assert margin > KINK_MARGIN, "an input sits on a ReLU kink: pick another seed"
    criterion = SoftmaxCrossEntropy()

    model.zero_grad()
    criterion(model(x), y)
    dx = model.backward(criterion.backward())

    def f():
        return float(criterion(model(x), y))

    trainable = [(n, p) for n, p in model.named_parameters() if p.trainable]
    frozen = [(n, p) for n, p in model.named_parameters() if not p.trainable]
    if adapter == "lora":
        assert [n for n, _ in trainable] == [f"{layer}.lora_{m}" for layer in ("fc1", "fc2", "head")
                                             for m in "AB"]
        assert len(frozen) == 6                                  # every weight and bias
    else:
        assert not frozen
    for name, p in frozen:
        assert p.grad is None, f"{name} is frozen but got a gradient"
    for name, p in trainable:
        assert p.grad is not None and tuple(p.grad.shape) == tuple(p.shape), name
        err = rel_error(numerical_gradient(f, p.data), p.grad)
        assert err < TOL, f"d/d{name}: relative error {err:.2e}"
    err = rel_error(numerical_gradient(f, x), dx)
    assert err < TOL, f"d/dx: relative error {err:.2e}"


def test_frozen_layers_never_form_a_weight_gradient(rng, monkeypatch):
    """A frozen Linear passes dx on but must not even compute dW (it would cost a full matmul)."""
    model = inject_lora(MLP(6, (8, 8), 3), r=2, target_modules=["fc1"])   # fc2, head: frozen Linear
    weight_grads, original = [], functional.linear_backward

    def spy(*args, **kwargs):
        dx, dW, db = original(*args, **kwargs)
        weight_grads.append(dW)
        return dx, dW, db
    monkeypatch.setattr(functional, "linear_backward", spy)

    criterion = SoftmaxCrossEntropy()
    criterion(model(rng.standard_normal((4, 6))), rng.integers(0, 3, (4,)))
    model.backward(criterion.backward())
    assert len(weight_grads) == 2 and all(dW is None for dW in weight_grads)
    assert model.fc1.lora_A.grad is not None


# --------------------------------------------------------------------------- injection

def adapted(model):
    return [n for n, _ in lora_layers(model)]


@pytest.mark.parametrize("targets, expected", [
    ("fc1", ["fc1"]),
    (["fc1"], ["fc1"]),
    (["fc2", "head"], ["fc2", "head"]),
    ("fc*", ["fc1", "fc2"]),
    (None, ["fc1", "fc2", "head"]),
])
def test_inject_selects_the_named_linear_layers(targets, expected):
    model = inject_lora(MLP(6, (8, 8), 3), r=2, target_modules=targets)
    assert adapted(model) == expected
    for name, m in model.named_modules():
        if name in ("fc1", "fc2", "head"):
            assert isinstance(m, LoRALinear) == (name in expected)
    trainable = [n for n, p in model.named_parameters() if p.trainable]
    assert trainable == [f"{n}.lora_{m}" for n in expected for m in "AB"]
    assert all(not p.trainable for n, p in model.named_parameters() if ".lora_" not in n)


def test_inject_suffix_rule_matches_nested_layers():
    model = Sequential({"body": MLP(6, (8, 8), 3)})
    inject_lora(model, r=2, target_modules=["fc1", "head"])     # "fc1" matches "body.fc1"
    assert adapted(model) == ["body.fc1", "body.head"]
    assert isinstance(model.body.fc1, LoRALinear) and isinstance(model.body.fc2, Linear)
    assert [n for n, p in model.named_parameters() if p.trainable] == \
        ["body.fc1.lora_A", "body.fc1.lora_B", "body.head.lora_A", "body.head.lora_B"]


@pytest.mark.parametrize("pattern", ["c1", "dy.fc1"])
def test_suffix_rule_needs_a_whole_name_component(pattern):
    with pytest.raises(ValueError, match=re.escape(repr(pattern))):
        inject_lora(Sequential({"body": MLP(6, (8, 8), 3)}), r=2, target_modules=[pattern])


def test_pattern_that_matches_nothing_names_it_and_lists_the_layers():
    with pytest.raises(ValueError) as err:
        inject_lora(MLP(6, (8, 8), 3), r=2, target_modules=["fc1", "nope"])
    msg = str(err.value)
    assert "'nope'" in msg
    assert all(name in msg for name in ("fc1", "fc2", "head"))


def test_failed_injection_leaves_the_model_untouched():
    model = MLP(6, (8, 8), 3)
    with pytest.raises(ValueError):
        inject_lora(model, r=2, target_modules=["nope"])
    assert not adapted(model) and all(p.trainable for p in model.parameters())


def test_injecting_twice_is_refused():
    model = inject_lora(MLP(6, (8, 8), 3), r=2)
    with pytest.raises(ValueError, match="already has LoRA"):
        inject_lora(model, r=2)


def test_inject_shares_w0_and_keeps_the_config():
    model = MLP(6, (8, 8), 3)
    W0, b0 = model.fc1.weight.data, model.fc1.bias.data
    config = LoraConfig(r=2, lora_alpha=4, target_modules=["fc1"])
    inject_lora(model, config)
    assert model.fc1.weight.data is W0 and model.fc1.bias.data is b0   # shared, not copied
    assert model.fc1.r == 2 and model.fc1.scaling == 2.0
    assert model.lora_config is config


@pytest.mark.parametrize("activation", ["relu", "gelu", "tanh"])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_fresh_adapters_leave_the_logits_exactly_unchanged(rng, activation, mode):
    model = MLP(6, (8, 8), 3, activation=activation, seed=3)
    base = copy.deepcopy(model)
    inject_lora(model, r=2, lora_dropout=0.3, target_modules=None)   # dropout acts on the LoRA path only
    model.train(mode == "train")
    base.train(mode == "train")
    x = rng.standard_normal((7, 6))
    assert np.array_equal(to_numpy(model(x)), to_numpy(base(x)))


# --------------------------------------------------------------------------- counting

def test_trainable_report_counts_per_layer_and_in_total(no_warnings):
    r, dims = 2, {"fc1": (6, 8), "fc2": (8, 8), "head": (8, 3)}
    model = inject_lora(MLP(6, (8, 8), 3), r=r, target_modules=["fc1", "head"])
    rep = trainable_report(model)
    rows = {row.name: row for row in rep.layers}
    assert set(rows) == set(dims)
    for name, (d_in, d_out) in dims.items():
        lora = r * (d_in + d_out) if name != "fc2" else 0
        assert rows[name].trainable == lora
        assert rows[name].total == d_in * d_out + d_out + lora
    assert rep.trainable == 2 * (6 + 8) + 2 * (8 + 3) == model.num_parameters(trainable_only=True)
    assert rep.total == sum(p.size for p in model.parameters())
    assert rep.percent == pytest.approx(100.0 * rep.trainable / rep.total)


def test_print_trainable_parameters_uses_peft_format(capsys):
    # PEFT's docstring example: fc1 4·(20+256) + fc2 4·(256+256) = 3,152 trained of 76,890.
    model = inject_lora(MLP(20, (256, 256), 10), LoraConfig(r=4, lora_alpha=8, target_modules=["fc1", "fc2"]))
    print_trainable_parameters(model)
    out = capsys.readouterr().out
    assert out == "trainable params: 3,152 || all params: 76,890 || trainable%: 4.0994\n"
    m = re.fullmatch(r"trainable params: ([\d,]+) \|\| all params: ([\d,]+) \|\| trainable%: ([\d.]+)\n", out)
    tr, tot, pct = int(m[1].replace(",", "")), int(m[2].replace(",", "")), float(m[3])
    assert tr == model.num_parameters(trainable_only=True) and tot == model.num_parameters()
    assert pct == pytest.approx(100 * tr / tot, abs=5e-5)


# --------------------------------------------------------------------------- bad input

@pytest.fixture
def model():
    return inject_lora(MLP(6, (8, 8), 3), r=2)


def test_one_dimensional_input_is_refused(model, rng):
    with pytest.raises(ValueError, match="2-D"):
        model(rng.standard_normal((6,)))


def test_non_array_input_is_refused(model):
    with pytest.raises((TypeError, ValueError), match="array"):
        model([[0.0] * 6])


def test_empty_batch_is_refused(model, rng):
    with pytest.raises(ValueError, match="empty batch"):
        model(rng.standard_normal((0, 6)))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_input_is_refused(model, bad):
    x = backend.asarray([[0.5] * 6, [0.1] * 5 + [bad]])
    with pytest.raises(ValueError, match="NaN or inf"):
        model(x)


def test_wrong_width_is_refused(model, rng):
    with pytest.raises(ValueError, match="6 features"):
        model(rng.standard_normal((4, 5)))


@pytest.mark.parametrize("dtype", ["float64", "int64"])
def test_wrong_dtype_is_refused(model, dtype):
    x = backend.asarray(np.ones((4, 6)), dtype=dtype)
    with pytest.raises(TypeError, match="dtype"):
        model(x)


@pytest.mark.parametrize("labels, match", [
    ([0, 1, 3], r"labels must lie in \[0, 2\]"),                 # 3 classes: 3 is out of range
    ([0, -1, 2], r"labels must lie in \[0, 2\]"),
    ([0.0, 1.0, 2.0], "labels must be integers"),
    ([0, 1], "labels must be integers of shape"),
    ([[0, 1, 2]], "labels must be integers of shape"),
])
def test_bad_labels_are_refused(rng, labels, match):
    logits = rng.standard_normal((3, 3))
    with pytest.raises(ValueError, match=match):
        SoftmaxCrossEntropy()(logits, backend.asarray(labels))
