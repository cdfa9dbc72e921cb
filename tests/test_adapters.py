"""Several named adapters on one base: switching, disabling, strength, combining, unloading."""
import copy

import numpy as np
import pytest

from lora_np import backend
from lora_np.lora import (
    LoraConfig,
    active_adapter,
    adapter_layers,
    adapters_disabled,
    add_adapter,
    add_weighted_adapter,
    delete_adapter,
    disable_adapters,
    enable_adapters,
    inject_lora,
    list_adapters,
    lora_layers,
    lora_state_dict,
    merge_and_unload,
    merge_lora,
    set_adapter,
    set_adapter_strength,
    unmerge_lora,
)
from lora_np.models import MLP
from lora_np.nn import Linear, LoRALayer
from lora_np.optim import Adam
from lora_np.train import fit


def out(model, X):
    y = backend.to_numpy(model(X))
    model.clear_caches()
    return y


def randomize(model, name, rng, scale=0.3):
    for layer in adapter_layers(model, name).values():
        layer.lora_B.data = rng.standard_normal(layer.lora_B.shape, dtype=layer.lora_B.dtype) * scale


@pytest.fixture
def two(rng):
    """A base MLP and a copy carrying adapters "a" (fc1, r=2) and "b" (fc1 + fc2, r=3), both non-zero."""
    base = MLP(6, (8, 8), 3, seed=1)
    model = inject_lora(copy.deepcopy(base), LoraConfig(r=2, target_modules=["fc1"], seed=1),
                        adapter_name="a")
    add_adapter(model, "b", LoraConfig(r=3, lora_alpha=6, target_modules=["fc1", "fc2"], seed=2))
    randomize(model, "a", rng)
    randomize(model, "b", rng)
    return base, model, rng.standard_normal((5, 6))


def test_switching_shows_each_adapter_and_keeps_the_other(two):
    base, model, X = two
    assert list_adapters(model) == ["a", "b"] and active_adapter(model) == "a"
    ya = out(model, X)
    set_adapter(model, "b")
    yb = out(model, X)
    assert not np.array_equal(ya, yb) and not np.array_equal(yb, out(base, X))
    names = sorted(n for n, p in model.named_parameters() if p.trainable)
    assert names == ["fc1.lora_A", "fc1.lora_B", "fc2.lora_A", "fc2.lora_B"]
    set_adapter(model, "a")
    assert np.array_equal(out(model, X), ya)


def test_training_one_adapter_leaves_the_other_untouched(two, task_small):
    base, model, X = two
    a_before = {p: backend.to_numpy(layer.lora_B.data).copy()
                for p, layer in adapter_layers(model, "a").items()}
    set_adapter(model, "b")
    Xt, yt = task_small
    fit(model, Adam(model, lr=1e-2), Xt, yt, epochs=2, batch_size=16)
    for p, layer in adapter_layers(model, "a").items():
        assert np.array_equal(backend.to_numpy(layer.lora_B.data), a_before[p])
    frozen = {n: p for n, p in model.named_parameters() if "lora" not in n}
    assert sorted(frozen) == sorted(n for n, _ in base.named_parameters())
    assert all(np.array_equal(backend.to_numpy(frozen[n].data), backend.to_numpy(p.data))
               for n, p in base.named_parameters())


@pytest.fixture
def task_small(rng):
    return rng.standard_normal((32, 6)), rng.integers(0, 3, (32,))


def test_disabled_is_exactly_the_base_and_strength_interpolates(two):
    base, model, X = two
    y_base, y_a = out(base, X), out(model, X)
    with adapters_disabled(model):
        assert np.array_equal(out(model, X), y_base)
        assert not any(isinstance(m, LoRALayer) for _, m in model.named_modules())
    assert np.array_equal(out(model, X), y_a)                      # restored on exit
    disable_adapters(model)
    assert np.array_equal(out(model, X), y_base)
    enable_adapters(model)
    set_adapter_strength(model, 0.0)
    assert np.array_equal(out(model, X), y_base)                   # strength 0 == disabled
    set_adapter_strength(model, 1.0)
    assert np.array_equal(out(model, X), y_a)                      # strength 1 == active


def test_delete_adapter(two):
    base, model, X = two
    delete_adapter(model, "a")
    assert list_adapters(model) == ["b"] and active_adapter(model) is None
    assert np.array_equal(out(model, X), out(base, X))
    with pytest.raises(KeyError, match="no adapter named 'a'"):
        set_adapter(model, "a")


# full rank of an 8x8 layer, on purpose
@pytest.mark.filterwarnings("ignore::lora_np.nn.lora.LoRARankWarning")
def test_linear_combination_is_the_weighted_sum_and_svd_at_full_rank_equals_it(float64, two):
    base, model, X = two
    dW = {name: {p: layer.delta_weight() for p, layer in adapter_layers(model, name).items()}
          for name in ("a", "b")}
    add_weighted_adapter(model, ["a", "b"], [0.7, -0.4], "lin")
    add_weighted_adapter(model, ["a", "b"], [0.7, -0.4], "svd", combination="svd", rank=6)
    for path in ("fc1", "fc2"):
        want = 0.7 * dW["a"].get(path, 0) + -0.4 * dW["b"][path]
        for name in ("lin", "svd"):
            got = adapter_layers(model, name)[path].delta_weight()
            assert float(abs(got - want).max()) < 1e-12, (name, path)
    set_adapter(model, "lin")
    y_lin = out(model, X)
    set_adapter(model, "svd")
    assert np.allclose(out(model, X), y_lin, rtol=0, atol=1e-12)
    assert adapter_layers(model, "lin")["fc1"].r == 5                 # 2 + 3: the factors stacked


def test_svd_combination_truncates_to_the_best_rank(float64, two):
    base, model, X = two
    add_weighted_adapter(model, ["b"], [1.0], "cut", combination="svd", rank=1)
    layer, full = adapter_layers(model, "cut")["fc2"], adapter_layers(model, "b")["fc2"].delta_weight()
    S = np.linalg.svd(backend.to_numpy(full), compute_uv=False)
    err = np.linalg.norm(backend.to_numpy(layer.delta_weight() - full))
    assert layer.r == 1 and abs(err - np.sqrt((S[1:] ** 2).sum())) < 1e-10      # Eckart–Young


def test_merge_and_unload_gives_a_plain_model_with_the_same_outputs(two):
    base, model, X = two
    y = out(model, X)
    plain = merge_and_unload(model)
    assert not any(isinstance(m, LoRALayer) for _, m in plain.named_modules())
    assert isinstance(plain.fc1, Linear) and not hasattr(plain, "_lora")
    assert np.allclose(out(plain, X), y, rtol=1e-5, atol=1e-5)
    assert not np.array_equal(backend.to_numpy(plain.fc1.weight.data), backend.to_numpy(base.fc1.weight.data))


def test_merged_adapters_refuse_switching_and_training(two, task_small):
    base, model, X = two
    merge_lora(model)
    with pytest.raises(RuntimeError, match="unmerge"):
        set_adapter(model, "b")
    with pytest.raises(RuntimeError, match="merged"):
        fit(model, Adam(model, lr=1e-2), *task_small, epochs=1, batch_size=8)
    unmerge_lora(model)
    set_adapter(model, "b")


def test_bad_names_and_arguments(two):
    base, model, X = two
    with pytest.raises(ValueError, match="already exists"):
        add_adapter(model, "a", LoraConfig(r=1))
    with pytest.raises(ValueError, match="adapter_name"):
        add_adapter(model, "x.y", LoraConfig(r=1))
    with pytest.raises(ValueError, match="equal length"):
        add_weighted_adapter(model, ["a", "b"], [1.0], "c")
    with pytest.raises(ValueError, match="rank must be a positive integer"):
        add_weighted_adapter(model, ["a"], [1.0], "c", combination="svd")
    with pytest.raises(ValueError, match="combination"):
        add_weighted_adapter(model, ["a"], [1.0], "c", combination="cat")
    with pytest.raises(KeyError, match="no adapter named 'zzz'"):
        add_weighted_adapter(model, ["zzz"], [1.0], "c")
    with pytest.raises(ValueError, match="strength"):
        set_adapter_strength(model, "high")
    with pytest.raises(ValueError, match="no adapters"):
        set_adapter(MLP(6, (8,), 3), "a")
    assert len(lora_layers(model)) == 1


@pytest.mark.parametrize("variant, per_layer", [("lora", lambda i, o, r: r * (i + o)),
                                                ("dora", lambda i, o, r: r * (i + o) + o),
                                                ("vera", lambda i, o, r: r + o),
                                                ("pissa", lambda i, o, r: r * (i + o))])
def test_variants_through_the_config(rng, variant, per_layer):
    base = MLP(6, (8, 8), 3, seed=1)
    X = rng.standard_normal((4, 6))
    model = inject_lora(copy.deepcopy(base), LoraConfig(r=2, target_modules=["fc1", "fc2"], variant=variant))
    assert {layer.variant for _, layer in lora_layers(model)} == {variant}
    assert model.num_parameters(trainable_only=True) == per_layer(6, 8, 2) + per_layer(8, 8, 2)
    assert np.allclose(out(model, X), out(base, X), rtol=0, atol=1e-5)    # every variant starts at the base
    state = lora_state_dict(model)
    assert sum(v.size for v in state.values()) == model.num_parameters(trainable_only=True)


def test_pissa_adapters_cannot_be_combined_directly(two):
    base, model, X = two
    add_adapter(model, "p", LoraConfig(r=2, target_modules=["fc1"], variant="pissa"))
    with pytest.raises(ValueError, match="pissa_to_lora"):
        add_weighted_adapter(model, ["a", "p"], [1.0, 1.0], "mix", combination="svd", rank=2)
