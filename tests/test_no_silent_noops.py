"""What used to do nothing, or something wrong, without a word: now an error that says what to do,
or the behaviour one would expect.

* an optimizer made before ``inject_lora`` (or for another model) trained nothing;
* unfreezing the bias of a LoRA-wrapped layer did nothing (its gradient was never formed);
* NaN in an image or in the training data gave NaN logits, then "lower the learning rate";
* an empty sequence gave NumPy's reduction error.
"""
import numpy as np
import pytest

from lora_np import backend
from lora_np.gradcheck import check_model_gradients, cross_entropy
from lora_np.lora import LoraConfig, adapter_layers, adapters_disabled, inject_lora, trainable_report
from lora_np.models import MLP, TransformerConfig, TransformerLM, ViTClassifier
from lora_np.nn import Module, SoftmaxCrossEntropy
from lora_np.optim import SGD, Adam
from lora_np.train import TrainingDiverged, fit

MODEL_TOL = 1e-6


def data(n=16, seed=0):
    rng = backend.Rng(seed)
    return rng.standard_normal((n, 6)), rng.integers(0, 3, (n,))


def test_an_optimizer_made_before_inject_lora_is_refused_with_what_to_do():
    model = MLP(6, (8,), 3)
    opt = Adam(model, lr=1e-2)                            # holds W0 and b0, which inject_lora freezes
    inject_lora(model, LoraConfig(r=2, target_modules=["fc1"]))
    X, y = data()
    with pytest.raises(ValueError, match=r"Adam: the optimizer does not hold the model's trainable "
                                         r"parameters: "
                                         r"2 trainable parameter\(s\) of the model are not in it \(e.g. "
                                         r"'fc1.lora_A'\)"
                                         r".*Create the optimizer after inject_lora"):
        fit(model, opt, X, y, epochs=1)
    with pytest.raises(ValueError, match="Create the optimizer after inject_lora"):
        opt.step()                                        # a hand-written loop: refused at the first step
    B_before = backend.to_numpy(model.fc1.lora_B.data).copy()
    fit(model, Adam(model, lr=1e-2), X, y, epochs=1)      # made after: trains B
    assert not np.array_equal(backend.to_numpy(model.fc1.lora_B.data), B_before)


def test_an_optimizer_for_another_model_is_refused():
    model, other = MLP(6, (8,), 3, seed=0), MLP(6, (8,), 3, seed=1)
    with pytest.raises(ValueError, match=r"SGD: .* 4 trainable parameter\(s\) of the model are not in it"):
        fit(model, SGD(other, lr=0.1), *data(), epochs=1)


def test_an_unfrozen_bias_of_an_adapted_layer_trains():
    model = inject_lora(MLP(6, (8,), 3), LoraConfig(r=2, target_modules=["fc1"]))
    model.fc1.bias.trainable = True                       # the user unfreezes b0 by hand
    before = backend.to_numpy(model.fc1.bias.data).copy()
    fit(model, Adam(model, lr=1e-2), *data(), epochs=1)
    assert not np.array_equal(backend.to_numpy(model.fc1.bias.data), before)


@pytest.mark.parametrize("variant", ["lora", "dora", "vera", "pissa"])
def test_bias_gradients_of_adapted_layers_pass_a_float64_check(float64, variant):
    """bias="lora_only": every adapted layer's own b0 gets db0 = Σ_rows G, checked numerically."""
    model = inject_lora(MLP(5, (6, 6), 3, seed=2), LoraConfig(r=2, target_modules=["fc1", "fc2"],
                                                             variant=variant, bias="lora_only", seed=1))
    rng = backend.Rng(4)
    for layer in adapter_layers(model).values():
        for p in layer.adapter_parameters().values():
            p.data = p.data + rng.standard_normal(p.shape) * 0.3
    x, labels = rng.standard_normal((7, 5)), rng.integers(0, 3, (7,))
    errors = check_model_gradients(model, x, cross_entropy(labels))
    assert {"fc1.bias", "fc2.bias"} <= set(errors)
    assert max(errors.values()) < MODEL_TOL, errors


def test_bias_lora_only_counts_trains_and_leaves_the_base_bias_alone():
    base = MLP(6, (8, 8), 3)
    b0 = backend.to_numpy(base.fc1.bias.data).copy()
    model = inject_lora(base, LoraConfig(r=2, target_modules=["fc1", "fc2"], bias="lora_only"))
    assert trainable_report(model).trainable == 2 * (6 + 8) + 2 * (8 + 8) + 8 + 8
    fit(model, Adam(model, lr=1e-2), *data(), epochs=2)
    assert not np.array_equal(backend.to_numpy(model.fc1.bias.data), b0)       # the adapter's own copy
    with adapters_disabled(model):
        assert np.array_equal(backend.to_numpy(model.fc1.bias.data), b0)       # the base's, untouched


def test_bias_all_is_refused_with_the_reason():
    with pytest.raises(ValueError, match=r"bias='all' is not supported: .* use bias='lora_only'"):
        LoraConfig(bias="all")
    with pytest.raises(ValueError, match=r"LoraConfig: bias must be one of \('none', 'lora_only'\)"):
        LoraConfig(bias="some")


@pytest.mark.parametrize("field, value, error", [
    ("lora_alpha", float("inf"), "lora_alpha must be a finite positive number"),
    ("use_rslora", "false", "use_rslora must be True or False"),
    ("r", 0, "r must be a positive integer"),
    ("lora_dropout", 1.0, r"lora_dropout must be a number in \[0, 1\)"),
    ("variant", "lokr", "variant must be one of"),
])
def test_lora_config_fields_are_checked_when_it_is_made(field, value, error):
    with pytest.raises(ValueError, match=f"LoraConfig: {error}"):
        LoraConfig(**{field: value})


@pytest.mark.parametrize("opt", [lambda m: Adam(m, lr=float("inf")), lambda m: SGD(m, lr=float("nan"))])
def test_a_non_finite_learning_rate_is_refused(opt):
    with pytest.raises(ValueError, match="lr must be a finite positive number"):
        opt(MLP(6, (8,), 3))


def test_nan_pixels_are_refused_by_the_vit():
    model = ViTClassifier(TransformerConfig(d_model=8, n_heads=2, n_layers=1, image_size=8, patch_size=4,
                                            channels=3, n_classes=3))
    images = np.zeros((2, 8, 8, 3), np.float32)
    images[1, 2, 3, 0] = np.nan
    with pytest.raises(ValueError, match=r"ViTClassifier: images contains 1 NaN or inf value"):
        model(backend.asarray(images))


def test_nan_in_the_training_data_is_named_not_blamed_on_the_learning_rate():
    X, y = data()
    X_host = backend.to_numpy(X)
    X_host[3, 2] = np.inf
    model = MLP(6, (8,), 3)
    with pytest.raises(ValueError, match=r"fit: X contains 1 NaN or inf value"):
        fit(model, Adam(model, lr=1e-2), backend.asarray(X_host), y, epochs=1)


class Unchecked(Module):
    """A hand-made model that does not check its inputs (so fit's own diagnosis is what speaks)."""

    def __init__(self):
        self.net = MLP(6, (8,), 3)

    def forward(self, x):
        return self.net.head(self.net.act1(self.net.fc1(x)))

    def backward(self, d):
        return self.net.fc1.backward(self.net.act1.backward(self.net.head.backward(d)))


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning", "ignore:invalid value:RuntimeWarning")
def test_training_diverged_tells_a_learning_rate_blow_up_from_bad_inputs():
    X, y = data(64)
    model = MLP(6, (8,), 3)
    with pytest.raises(TrainingDiverged, match=r"with finite inputs: .* try a lower learning rate than "
                                               r"lr=1e\+30"):
        fit(model, SGD(model, lr=1e30), X, y, epochs=5)
    model = Unchecked()
    xb = backend.to_numpy(X[:4]).copy()
    xb[0, 0] = np.nan
    from lora_np.train import _diverged
    msg = _diverged(float("nan"), 3, 0, model, SGD(model, lr=0.1), backend.asarray(xb))
    assert "the input batch contains NaN or inf" in msg and "learning rate is not the cause" in msg


def test_an_empty_sequence_is_refused_by_the_language_model():
    lm = TransformerLM(TransformerConfig(d_model=8, n_heads=2, n_layers=1, context=8, vocab_size=5))
    with pytest.raises(ValueError, match=r"TransformerLM: ids has shape \(1, 0\): every sequence needs at "
                                         r"least"):
        lm(backend.asarray(np.zeros((1, 0), np.int64)))


def test_the_criterion_refuses_nothing_it_should_accept():
    """The checks above do not get in the way of a normal step."""
    model = inject_lora(MLP(6, (8,), 3), LoraConfig(r=2))
    X, y = data()
    loss = SoftmaxCrossEntropy()(model(X), y)
    assert np.isfinite(float(loss))


def test_float_token_ids_with_nan_are_refused_by_the_language_model():
    """Token ids are integers: a float array (which could hold NaN) is refused, not cast."""
    lm = TransformerLM(TransformerConfig(d_model=8, n_heads=2, n_layers=1, context=8, vocab_size=5))
    ids = np.array([[1.0, np.nan, 2.0]])
    with pytest.raises(TypeError, match=r"token ids must be an integer array, got float"):
        lm(backend.asarray(ids))
