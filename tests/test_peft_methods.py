"""Adapters, prefix tuning and the comparison with LoRA: gradients, invariants, errors, structure.

Latency is measured in the notebook, never asserted here: the structural facts behind it are
(merged LoRA has the base model's shapes and matrix products, adapters add products to the
forward path, a prefix widens every score matrix from (T, T) to (T, T + p)).
"""
import copy

import pytest

from lora_np import backend
from lora_np import functional as F
from lora_np.data import make_image_task
from lora_np.experiments.peft_methods import (
    METHODS,
    compare_peft_methods,
    format_peft_table,
    forward_macs,
    forward_matmuls,
    keys_per_query,
    make_peft_model,
    measure_latencies,
    n_tokens,
    peft_costs,
    peft_param_count,
)
from lora_np.experiments.vit import pretrain_vit
from lora_np.functional.prefix import (
    prefix_attention_backward,
    prefix_attention_forward,
    prefix_causal_mask,
    prefix_concat_backward,
    prefix_concat_forward,
)
from lora_np.gradcheck import check_model_gradients, cross_entropy, numerical_gradient, rel_error
from lora_np.gradcheck import weighted_sum as scalar
from lora_np.lora import trainable_report
from lora_np.models import MLP, TransformerConfig, TransformerLM, ViTClassifier
from lora_np.nn import SoftmaxCrossEntropy
from lora_np.nn.attention import MultiHeadAttention
from lora_np.nn.bottleneck import BottleneckAdapter, bottleneck_adapters, insert_adapter_layers
from lora_np.nn.prefix import PrefixAttention, add_prefix_tuning, prefix_layers, set_prefix_enabled
from lora_np.optim import Adam
from lora_np.train import fit

OP_TOL, MODEL_TOL = 1e-7, 1e-6
TINY_VIT = dict(d_model=8, n_heads=2, n_layers=2, n_classes=3, image_size=8, patch_size=4)
TINY_LM = dict(d_model=16, n_heads=2, n_layers=2, context=6, vocab_size=11)


def _max_abs(a, b) -> float:
    return backend.to_float(abs(a - b).max())


# --------------------------------------------------------------------------- operations (float64)


def test_prefix_concat_gradient(rng, float64):
    x, P = rng.standard_normal((3, 4, 5)), rng.standard_normal((2, 5))
    y, p = prefix_concat_forward(x, P)
    assert tuple(y.shape) == (3, 6, 5) and p == 2
    G = rng.standard_normal(y.shape)
    dx, dP = prefix_concat_backward(G, p)

    def f():
        return scalar(prefix_concat_forward(x, P)[0], G)
    assert rel_error(numerical_gradient(f, x), dx) < OP_TOL
    assert rel_error(numerical_gradient(f, P), dP) < OP_TOL             # summed over the batch


@pytest.mark.parametrize("causal", [False, True])
def test_prefix_attention_gradient(rng, float64, causal):
    B, T, p, d, H = 2, 4, 3, 8, 2
    q, k, v = (rng.standard_normal((B, T, d)) for _ in range(3))
    Pk, Pv = rng.standard_normal((p, d)), rng.standard_normal((p, d))

    def fwd():
        return prefix_attention_forward(q, k, v, Pk, Pv, H, causal)

    def f():
        return scalar(fwd()[0], G)

    out, cache = fwd()
    G = rng.standard_normal(out.shape)
    grads = prefix_attention_backward(G, cache)
    for arr, g in zip((q, k, v, Pk, Pv), grads, strict=True):
        assert tuple(g.shape) == tuple(arr.shape)
        assert rel_error(numerical_gradient(f, arr), g) < OP_TOL


@pytest.mark.parametrize("causal", [False, True])
def test_prefix_of_length_zero_is_plain_attention_bit_for_bit(rng, causal):
    q, k, v = (rng.standard_normal((2, 5, 8)) for _ in range(3))
    plain, _ = F.attention_forward(q, k, v, 2, causal)
    with_empty, cache = prefix_attention_forward(q, k, v, k[0, :0], v[0, :0], 2, causal)
    assert bool((plain == with_empty).all())
    assert tuple(cache[3].shape) == (2, 2, 5, 5)


def test_prefix_score_matrix_is_T_by_T_plus_p(rng):
    q, k, v = (rng.standard_normal((2, 5, 8)) for _ in range(3))
    _, cache = prefix_attention_forward(q, k, v, rng.standard_normal((3, 8)), rng.standard_normal((3, 8)), 2)
    assert tuple(cache[3].shape) == (2, 2, 5, 5 + 3)                    # (B, H, T, T + p)


def test_prefix_causal_mask_shows_every_prefix_slot_and_no_future(xp):
    mask = backend.to_numpy(prefix_causal_mask(4, 2, xp))               # (T, p + T)
    assert mask.shape == (4, 6)
    assert mask[:, :2].all()                                             # every query sees the prefix
    for i in range(4):
        assert mask[i, 2:2 + i + 1].all() and not mask[i, 2 + i + 1:].any()
    assert (backend.to_numpy(prefix_causal_mask(4, 0, xp)) == backend.to_numpy(F.causal_mask(4, xp))).all()


def test_bottleneck_adapter_gradient_every_entry(rng, float64):
    adapter = BottleneckAdapter(6, 3, rng=1)
    adapter.up.weight.data = 0.5 * rng.standard_normal(adapter.up.weight.shape)   # (d, m), not zero
    h = rng.standard_normal((2, 4, 6))
    G = rng.standard_normal((2, 4, 6))
    adapter.zero_grad()
    adapter(h)
    dh = adapter.backward(G)

    def f():
        return scalar(adapter(h), G)

    for name, p in adapter.named_parameters():
        assert rel_error(numerical_gradient(f, p.data), p.grad) < OP_TOL, name
    assert rel_error(numerical_gradient(f, h), dh) < OP_TOL


def test_adapter_starts_as_the_identity(rng):
    adapter = BottleneckAdapter(6, 2, rng=0)
    h = rng.standard_normal((3, 6))
    assert bool((adapter(h) == h).all())
    assert not bool((adapter.up.weight.data != 0).any()) and bool((adapter.down.weight.data != 0).any())


# --------------------------------------------------------------------------- whole models (float64)


def _tiny_vit():
    return ViTClassifier(TransformerConfig(**TINY_VIT))


def test_vit_with_adapters_gradient(float64):
    g = backend.Rng(3)
    model = insert_adapter_layers(_tiny_vit(), bottleneck=3, seed=1)
    for _, a in bottleneck_adapters(model):
        a.up.weight.data = 0.3 * g.standard_normal(a.up.weight.shape)   # so that W_down gets a gradient
    images, labels = g.random((2, 8, 8, 3)), g.integers(0, 3, (2,))
    errors = check_model_gradients(model, images, cross_entropy(labels))
    assert len(errors) == 2 * 2 * 4                                # 4 tensors per adapter, 2 per block
    assert max(errors.values()) < MODEL_TOL, errors


def test_vit_with_prefix_gradient(float64):
    g = backend.Rng(3)
    model = add_prefix_tuning(_tiny_vit(), n_prefix=3, std=0.3, seed=1)
    images, labels = g.random((2, 8, 8, 3)), g.integers(0, 3, (2,))
    errors = check_model_gradients(model, images, cross_entropy(labels))
    assert sorted(errors) == ["blocks.0.attn.prefix_key", "blocks.0.attn.prefix_value",
                              "blocks.1.attn.prefix_key", "blocks.1.attn.prefix_value"]
    assert max(errors.values()) < MODEL_TOL, errors


def test_causal_lm_with_prefix_gradient(float64):
    g = backend.Rng(5)
    model = add_prefix_tuning(TransformerLM(TransformerConfig(**TINY_LM)), n_prefix=2, std=0.3, seed=2)
    ids, targets = g.integers(0, 11, (2, 6)), g.integers(0, 11, (2, 6))
    errors = check_model_gradients(model, ids, cross_entropy(targets))
    assert len(errors) == 4 and max(errors.values()) < MODEL_TOL, errors


# --------------------------------------------------------------------------- invariants


def test_adapters_with_zero_up_projection_leave_the_model_unchanged(rng):
    base = _tiny_vit()
    images = rng.random((3, 8, 8, 3))
    for where in ("attn", "mlp", ("attn", "mlp")):
        model = insert_adapter_layers(copy.deepcopy(base), bottleneck=2, where=where)
        assert _max_abs(model(images), base(images)) == 0.0
    lm = TransformerLM(TransformerConfig(**TINY_LM))
    ids = rng.integers(0, 11, (2, 6))
    assert _max_abs(insert_adapter_layers(copy.deepcopy(lm), bottleneck=2)(ids), lm(ids)) == 0.0


def test_prefix_of_length_zero_or_disabled_is_the_base_model(rng):
    base = _tiny_vit()
    images = rng.random((3, 8, 8, 3))
    empty = add_prefix_tuning(copy.deepcopy(base), n_prefix=0)
    assert _max_abs(empty(images), base(images)) == 0.0
    model = add_prefix_tuning(copy.deepcopy(base), n_prefix=4, std=0.5)
    assert _max_abs(model(images), base(images)) > 1e-4                 # a prefix changes the attention
    set_prefix_enabled(model, False)
    assert _max_abs(model(images), base(images)) == 0.0
    set_prefix_enabled(model, True)
    model(images)
    T = n_tokens(base)                                                   # 4 patches + the class token
    assert all(layer.last_scores_shape == (3, 2, T, T + 4) for _, layer in prefix_layers(model))


def test_causal_prefix_is_seen_by_every_position_but_the_future_is_not(rng):
    lm = add_prefix_tuning(TransformerLM(TransformerConfig(**TINY_LM)), n_prefix=2, std=0.5)
    ids = rng.integers(0, 11, (1, 6))
    y = lm(ids)                                                          # (1, 6, V)
    later = ids.copy()
    later[0, 4] = (int(ids[0, 4]) + 1) % 11
    diff = backend.to_numpy(abs(lm(later) - y).max(axis=-1)[0])          # (6,)
    assert (diff[:4] == 0).all() and (diff[4:] > 0).all()               # positions 0-3 cannot see token 4
    layer = lm.blocks[0].attn
    layer.prefix_value.data = layer.prefix_value.data + 1.0             # change only what the prefix holds
    moved = backend.to_numpy(abs(lm(ids) - y).max(axis=-1)[0])
    lm.clear_caches()
    assert (moved > 0).all()                                             # position 0 included


def _train_briefly(model, rng):
    images, labels = rng.random((16, 8, 8, 3)), rng.integers(0, 3, (16,))
    fit(model, Adam(model, lr=1e-2), images, labels, epochs=2, batch_size=8)


@pytest.mark.parametrize("method", ["adapters", "prefix"])
def test_only_the_new_parameters_train_and_the_base_stays_bit_identical(rng, method):
    base = _tiny_vit()
    before = base.state_dict()
    model = (insert_adapter_layers(copy.deepcopy(base), bottleneck=2) if method == "adapters"
             else add_prefix_tuning(copy.deepcopy(base), n_prefix=2))
    new = {n for n, p in model.named_parameters() if p.trainable}
    marker = "adapter" if method == "adapters" else "prefix_"
    assert new and all(marker in n for n in new)
    start = model.state_dict()
    criterion = SoftmaxCrossEntropy()
    images, labels = rng.random((4, 8, 8, 3)), rng.integers(0, 3, (4,))
    model.zero_grad()
    criterion(model(images), labels)
    model.backward(criterion.backward())
    assert all((p.grad is not None) == p.trainable for p in model.parameters())
    _train_briefly(model, rng)
    after = model.state_dict()
    for name, value in after.items():
        plain = name.replace(".base_layer", "")
        if name in new:
            assert not (value == start[name]).all(), f"{name} did not train"
        else:
            assert (value == before[plain]).all(), f"{name} changed"


# --------------------------------------------------------------------------- bad arguments


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "4"])
def test_bad_bottleneck(bad):
    with pytest.raises(ValueError, match="bottleneck must be a positive integer"):
        insert_adapter_layers(_tiny_vit(), bottleneck=bad)


@pytest.mark.parametrize("bad", [-1, 1.5, False, None])
def test_bad_n_prefix(bad):
    with pytest.raises(ValueError, match="n_prefix must be a non-negative integer"):
        add_prefix_tuning(_tiny_vit(), n_prefix=bad)


def test_other_bad_arguments(rng):
    with pytest.raises(ValueError, match="where must name one or both"):
        insert_adapter_layers(_tiny_vit(), bottleneck=2, where=("attn", "ffn"))
    with pytest.raises(ValueError, match="activation must be one of"):
        BottleneckAdapter(4, 2, activation="swish")
    with pytest.raises(ValueError, match="no MultiHeadAttention"):
        add_prefix_tuning(MLP(4, (8,), 3), n_prefix=2)
    with pytest.raises(ValueError, match="no TransformerBlock"):
        insert_adapter_layers(MLP(4, (8,), 3), bottleneck=2)
    with pytest.raises(TypeError, match="wrap it as"):
        add_prefix_tuning(MultiHeadAttention(8, 2), n_prefix=2)
    with pytest.raises(ValueError, match="already has adapters"):
        insert_adapter_layers(insert_adapter_layers(_tiny_vit(), bottleneck=2), bottleneck=2)
    with pytest.raises(ValueError, match="already has prefix"):
        add_prefix_tuning(add_prefix_tuning(_tiny_vit(), n_prefix=2), n_prefix=2)
    with pytest.raises(ValueError, match="std must be a non-negative number"):
        PrefixAttention(MultiHeadAttention(8, 2), 2, std=-1.0)
    with pytest.raises(ValueError, match="no prefix attention layers"):
        set_prefix_enabled(_tiny_vit(), False)
    base = _tiny_vit()
    with pytest.raises(ValueError, match="method must be one of"):
        make_peft_model(base, "bitfit")
    with pytest.raises(ValueError, match="LoRA's rank r"):
        make_peft_model(base, "lora", 0)
    with pytest.raises(TypeError, match="base must be a ViTClassifier"):
        compare_peft_methods(MLP(4, (8,), 3), None)
    with pytest.raises(ValueError, match="already has PEFT layers"):
        peft_costs(add_prefix_tuning(copy.deepcopy(base), n_prefix=1), 2, rng.random((1, 8, 8, 3)))
    with pytest.raises(ValueError, match="lr must be None, a positive number or a dict"):
        compare_peft_methods(base, None, lr={"bitfit": 1e-3})
    with pytest.raises(ValueError, match="latency_batch must be a positive integer"):
        compare_peft_methods(base, None, latency_batch=0)
    with pytest.raises(ValueError, match="repeats must be a positive integer"):
        measure_latencies({"base": base}, rng.random((1, 8, 8, 3)), repeats=0)
    with pytest.raises(ValueError, match="method must be one of"):
        peft_param_count(8, 2, "full", 4)


# --------------------------------------------------------------------------- structure of the latency


def test_structural_costs_of_each_method(rng):
    base = _tiny_vit()
    T, d, L = n_tokens(base), 8, 2
    x = rng.random((1, 8, 8, 3))
    costs = {c.method: c for c in peft_costs(base, 2, x, repeats=3)}
    merged = make_peft_model(base, "lora_merged", 2)
    assert [(n, tuple(p.shape)) for n, p in merged.named_parameters()] == \
           [(n, tuple(p.shape)) for n, p in base.named_parameters()]       # merged LoRA: the base's shapes
    assert [type(m) for _, m in merged.named_modules()] == [type(m) for _, m in base.named_modules()]
    assert costs["lora_merged"].matmuls == costs["base"].matmuls == forward_matmuls(base)
    assert costs["lora_merged"].macs == costs["base"].macs
    assert costs["lora"].matmuls == costs["base"].matmuls + 2 * 2 * L     # x Aᵀ and u Bᵀ on q and v
    assert costs["adapters"].matmuls == costs["base"].matmuls + 2 * 2 * L  # two per adapter, two per block
    assert costs["prefix"].matmuls == costs["base"].matmuls
    assert costs["prefix"].keys_per_query == T + 2 and costs["base"].keys_per_query == T
    assert costs["prefix"].macs - costs["base"].macs == L * 2 * T * 2 * d   # Q K'ᵀ, P V' grow by T·p·d each
    assert costs["adapters"].macs - costs["base"].macs == 2 * L * T * 2 * 2 * d
    for c in costs.values():
        assert c.latency > 0
    for method in ("lora", "adapters", "prefix"):
        assert costs[method].trainable == peft_param_count(d, L, method, 2)
    assert costs["lora_merged"].trainable == costs["lora"].trainable       # it reports the adapter merged in


# --------------------------------------------------------------------------- the comparison, small


@pytest.fixture(scope="module")
def small_run():
    """A small seeded image task and ViT (8×8 images, one block): ~1 s on NumPy."""
    cache = {}

    def get(backend_name):
        if backend_name not in cache:
            task = make_image_task(n_pretrain=1000, n_finetune=200, n_test=300, size=8, seed=0)
            cfg = TransformerConfig(d_model=24, n_heads=2, n_layers=1, patch_size=4, image_size=8,
                                    n_classes=10, pooling="mean")
            base, _ = pretrain_vit(task, config=cfg, epochs=15, lr=3e-3)
            rows = compare_peft_methods(base, task, lora_r=2, bottleneck=2, n_prefix=4, epochs=8,
                                        latency_repeats=6)
            cache[backend_name] = (task, base, rows)
        return cache[backend_name]
    return get


def test_compare_peft_methods_small(small_run, backend_name):
    task, base, rows = small_run(backend_name)
    by = {r.method: r for r in rows}
    assert [r.method for r in rows] == list(METHODS)
    d, L = 24, 1
    assert by["base"].trainable == 0
    assert (by["lora"].trainable == by["lora_merged"].trainable == peft_param_count(d, L, "lora", 2)
            == 2 * 2 * 2 * d)
    assert by["adapters"].trainable == peft_param_count(d, L, "adapters", 2) == 2 * (2 * 2 * d + 2 + d)
    assert by["prefix"].trainable == peft_param_count(d, L, "prefix", 4) == 2 * 4 * d
    assert by["full"].trainable == by["full"].total == base.num_parameters()
    for r in rows:
        if r.method not in ("base", "full"):
            trained = by["lora" if r.method == "lora_merged" else r.method].model
            assert r.trainable == trainable_report(trained).trainable
    # each method fixes a good part of the shift (the base model: ~58% on this small task)
    for m in ("lora", "adapters", "prefix", "full"):
        assert by[m].accuracy > by["base"].accuracy + 0.08, (m, by[m].accuracy, by["base"].accuracy)
        assert by[m].grape_recall > by["base"].grape_recall
    assert abs(by["lora_merged"].accuracy - by["lora"].accuracy) < 0.01
    assert keys_per_query(by["prefix"].model) == n_tokens(base) + 4
    assert forward_macs(by["lora_merged"].model) == forward_macs(base)
    table = format_peft_table(rows)
    assert "LoRA (merged)" in table and "keys/query" in table and len(table.splitlines()) == 2 + len(rows)


# --------------------------------------------------------------------------- figures and the dashboard


@pytest.mark.host_only
def test_figures_are_labelled(small_run, backend_name):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lora_np.viz.peft_methods import plot_peft_comparison, plot_peft_latency, plot_peft_params
    _, _, rows = small_run(backend_name)
    fig = plot_peft_comparison(rows)
    ax1, ax2 = fig.axes[:2]
    for ax in (ax1, ax2):
        assert ax.get_xlabel() and ax.get_ylabel() and ax.get_title()
    assert any("base model" in t.get_text() for t in ax2.get_legend().get_texts())   # the reference line
    assert len(ax2.patches) == len(rows)
    ticks = [t.get_text() for t in ax1.get_xticklabels()]          # one column per method: no overlap
    assert len(ticks) == len(rows) - 2 and ticks[0].startswith("LoRA (unmerged) (= merged)\n")
    assert ax1.get_ylim()[0] == 0
    fig2 = plot_peft_params(rows)
    assert fig2.axes[0].get_ylabel() == "trainable parameters"
    fig3 = plot_peft_latency(rows[:2])
    assert len(fig3.axes[0].patches) == 2
    plt.close("all")


@pytest.mark.host_only
def test_peft_cost_explorer_history():
    from lora_np.widgets.peft_methods import peft_cost_explorer
    base = _tiny_vit()
    x = backend.Rng(0).random((1, 8, 8, 3))
    explorer = peft_cost_explorer(base, x, sizes=(1, 2, 3), size=2, repeats=3)
    explorer.slider.value = 3
    explorer.slider.value = 2
    sizes = [rec["size"] for rec in explorer.history]
    assert sizes == [2, 3, 2] and [rec["cached"] for rec in explorer.history] == [False, False, True]
    rec = explorer.history[1]
    T = n_tokens(base)
    assert rec["keys_per_query"]["prefix"] == T + 3 and rec["keys_per_query"]["lora"] == T
    assert rec["matmuls"]["lora_merged"] == rec["matmuls"]["base"] < rec["matmuls"]["adapters"]
    assert rec["trainable"]["prefix"] == peft_param_count(8, 2, "prefix", 3)
    assert rec["trainable"]["adapters"] > explorer.history[0]["trainable"]["adapters"]
    with pytest.raises(ValueError, match="size=3 must be one of"):
        peft_cost_explorer(base, x, sizes=(1, 2), size=3)
    with pytest.raises(ValueError, match="peft_cost_explorer: sizes must be a non-empty list of positive"):
        peft_cost_explorer(base, x, sizes=(1, 0), size=1)
    with pytest.raises(TypeError, match="base must be a ViTClassifier"):
        peft_cost_explorer(MLP(4, (8,), 3), x)


@pytest.mark.host_only
def test_adapted_models_move_to_a_device_whole(rng):
    """model.to(...) finds the adapters and prefixes: the moved model computes the same outputs."""
    images = rng.random((2, 8, 8, 3))
    adapted = (insert_adapter_layers(_tiny_vit(), bottleneck=2), add_prefix_tuning(_tiny_vit(), n_prefix=2))
    for model in adapted:
        expected = backend.to_numpy(model(images))
        model.to("emulated")
        assert all(type(p.data) is backend.DeviceArray for p in model.parameters())
        got = backend.to_numpy(model(backend.to_device(images, "emulated")))
        assert (got == expected).all()


def test_head_is_frozen_for_every_method_unless_asked():
    base = _tiny_vit()
    for method in ("lora", "adapters", "prefix"):
        assert not any(p.trainable for p in make_peft_model(base, method, 2).head.parameters())
        with_head = make_peft_model(base, method, 2, train_head=True)
        assert all(p.trainable for p in with_head.head.parameters())
        assert trainable_report(with_head).trainable == peft_param_count(8, 2, method, 2) + 8 * 3 + 3
    assert make_peft_model(base, "full").num_parameters(trainable_only=True) == base.num_parameters()
    assert make_peft_model(base, "base").num_parameters(trainable_only=True) == 0
    assert all(p.trainable for p in base.parameters())                   # the base itself is never touched


def test_peft_seeds_mean_and_spread(small_run, backend_name):
    import dataclasses

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lora_np.experiments.peft_methods import PeftSeeds
    from lora_np.viz.peft_methods import plot_peft_comparison
    _, _, rows = small_run(backend_name)
    worse = [dataclasses.replace(r, accuracy=r.accuracy - 0.1) for r in rows]   # a second "seed"
    runs = PeftSeeds([0, 1], [rows, worse])
    st = runs.stats("lora", "accuracy")
    assert st["max"] == rows[1].accuracy and st["min"] == pytest.approx(rows[1].accuracy - 0.1)
    assert st["mean"] == pytest.approx(rows[1].accuracy - 0.05) and st["std"] == pytest.approx(0.05)
    assert runs.rows is rows and runs.methods == list(METHODS)
    assert "min–max" in runs.table() and len(runs.table().splitlines()) == 2 + len(rows)
    with pytest.raises(ValueError, match="method"):
        runs.values("bitfit")
    fig = plot_peft_comparison(runs)
    ax = fig.axes[0]
    assert any("2 seeds" in t.get_text() for t in ax.get_legend().get_texts())
    fig.canvas.draw()                                   # the numbers beside the markers do not overlap
    boxes = [t.get_window_extent() for t in ax.texts]
    assert len(boxes) == 2 * (len(rows) - 2)
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
    plt.close("all")
