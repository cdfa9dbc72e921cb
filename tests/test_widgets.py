"""The low-rank maths behind the dashboards, and the dashboards themselves driven from code.

Dashboards are asserted on their kernel-side ``history`` (one record per redraw), exactly as the
notebooks do: setting ``slider.value`` fires the same callback as dragging the slider.
"""
import dataclasses
import math

import pytest

from lora_np import backend, viz
from lora_np.data import CharVocab, make_fruit_task, style_markers
from lora_np.experiments import (
    VARIANT_RUNS,
    VariantRun,
    accuracy_table,
    blend_accuracy,
    compare_variants,
    dora_gradient_gap,
    finetune,
    finetune_variant,
    harvest_of,
    inference_latency,
    low_rank_approx,
    lowrank_error_curve,
    lowrank_param_count,
    make_harvest,
    pretrain,
    relative_error,
    singular_values,
    structured_matrix,
)
from lora_np.experiments.styles import lora_model_for, pretrain_lm, sample, train_style_adapters
from lora_np.lora import (
    LoraConfig,
    active_adapter,
    adapter_layers,
    add_adapter,
    inject_lora,
    list_adapters,
    set_adapter,
)
from lora_np.models import TransformerConfig
from lora_np.nn import break_even_rank
from lora_np.nn.variants import variant_trainable_count
from lora_np.optim import Adam
from lora_np.train import evaluate, fit
from lora_np.widgets import (
    adapter_explorer,
    blend_explorer,
    lora_rank_explorer,
    lowrank_explorer,
    style_explorer,
)

# --------------------------------------------------------------------------- the maths


@pytest.mark.parametrize("r", [1, 2, 3, 5])
def test_low_rank_approx_shapes_and_rank_at_most_r(rng, xp, r):
    M = rng.standard_normal((7, 9))
    B, A = low_rank_approx(M, r)
    assert tuple(B.shape) == (7, r) and tuple(A.shape) == (r, 9)
    assert type(B) is type(M) and B.dtype == M.dtype            # stays on M's device and dtype
    assert int(xp.linalg.matrix_rank(B @ A)) <= r


def test_rank_of_a_product_is_at_most_r_even_when_factors_are_degenerate(rng, xp):
    b = rng.standard_normal((6, 1))
    B = xp.concatenate([b, 2 * b], axis=1)                       # (6, 2) with rank 1
    A = rng.standard_normal((2, 5))
    assert int(xp.linalg.matrix_rank(B @ A)) == 1


def test_eckart_young_error_is_the_norm_of_the_discarded_singular_values(rng, xp, float64):
    M = rng.standard_normal((8, 6))
    S = singular_values(M)                                       # (6,)
    assert M.dtype == xp.float64
    ranks, curve = lowrank_error_curve(M)
    assert list(ranks) == [1, 2, 3, 4, 5, 6]
    norm_M = backend.to_float(xp.linalg.norm(M))
    for r in range(1, 7):
        B, A = low_rank_approx(M, r)
        err = backend.to_float(xp.linalg.norm(M - B @ A))
        discarded = backend.to_float(xp.sqrt((S[r:] ** 2).sum()))
        assert abs(err - discarded) < 1e-10 * norm_M
        assert abs(relative_error(M, B @ A) - curve[r - 1]) < 1e-10


def test_truncated_svd_beats_other_rank_r_products(rng, float64):
    M = rng.standard_normal((10, 7))
    B, A = low_rank_approx(M, 3)
    best = relative_error(M, B @ A)
    for _ in range(5):
        B2, A2 = rng.standard_normal((10, 3)), rng.standard_normal((3, 7))
        assert relative_error(M, B2 @ A2) >= best


def test_full_rank_reproduces_the_matrix(rng, xp, float64):
    M = rng.standard_normal((5, 9))
    B, A = low_rank_approx(M, 5)
    assert backend.to_float(xp.abs(B @ A - M).max()) < 1e-10


def test_structured_matrix_is_seeded_and_nearly_low_rank(xp):
    M = structured_matrix(40, 60, seed=0)
    assert tuple(M.shape) == (40, 60) and M.dtype == backend.default_dtype()
    assert bool(xp.all(M == structured_matrix(40, 60, seed=0)))
    _, errors = lowrank_error_curve(M)
    assert errors[5] < 0.1 < errors[0]                          # six ranks keep over 90% of it


def test_param_count_and_break_even():
    assert lowrank_param_count(3, 3, 1) == 6                     # fewer than the 9 entries
    assert lowrank_param_count(3, 3, 2) == 12                    # more than the 9 entries
    assert break_even_rank(3, 3) == 1.5
    assert lowrank_param_count(40, 60, 24) == 40 * 60            # exactly at break-even
    with pytest.raises(ValueError, match="r must be a positive integer"):
        lowrank_param_count(3, 3, 0)


@pytest.mark.parametrize("r", [0, -1, 7, 2.5, True, None])
def test_low_rank_approx_rejects_bad_r(rng, r):
    M = rng.standard_normal((6, 8))
    with pytest.raises(ValueError, match=r"low_rank_approx .*: r must be an integer in \[1, 6\]") as err:
        low_rank_approx(M, r)
    assert "min(m, n)" in str(err.value)


def test_low_rank_approx_rejects_non_matrices(rng):
    with pytest.raises(ValueError, match="2-D"):
        low_rank_approx(rng.standard_normal((6,)), 1)
    with pytest.raises(TypeError, match="asarray"):
        low_rank_approx([[1.0, 2.0], [3.0, 4.0]], 1)


# --------------------------------------------------------------------------- the dashboards


def _open_figures():
    import matplotlib.pyplot as plt
    return len(plt.get_fignums())


def test_lowrank_explorer_records_each_redraw():
    before = _open_figures()
    M = structured_matrix(6, 8, seed=1)
    dash = lowrank_explorer(M, r=1)
    assert dash.slider.min == 1 and dash.slider.max == 6
    assert [h["r"] for h in dash.history] == [1]
    dash.slider.value = 3
    rec = dash.history[-1]
    assert len(dash.history) == 2
    assert rec["r"] == 3 and rec["params"] == 3 * (6 + 8) and rec["full_params"] == 48
    assert rec["rel_error"] < dash.history[0]["rel_error"]
    B, A = low_rank_approx(M, 3)
    assert math.isclose(rec["rel_error"], relative_error(M, B @ A), rel_tol=1e-6)
    dash.slider.value = 6                                        # full rank: nothing left over
    assert dash.history[-1]["rel_error"] < 1e-5
    assert _open_figures() == before                             # no figure left behind


@pytest.mark.parametrize("r", [0, 7])
def test_lowrank_explorer_rejects_bad_r(r):
    with pytest.raises(ValueError, match=r"r must be an integer in \[1, 6\]"):
        lowrank_explorer(structured_matrix(6, 8), r=r)


def test_lora_rank_explorer_records_each_redraw():
    before = _open_figures()
    task = make_fruit_task(n_pretrain=200, n_finetune=40, n_test=60)
    base, _ = pretrain(task, hidden=(16, 16), epochs=1)
    dash = lora_rank_explorer(base, task, ranks=(1, 2), r=1, epochs=1)
    assert [h["r"] for h in dash.history] == [1]
    dash.slider.value = 2
    rec = dash.history[-1]
    expected = lowrank_param_count(16, 20, 2) + lowrank_param_count(16, 16, 2)   # fc1 and fc2 adapters
    assert rec["r"] == 2 and rec["trainable"] == expected == dash.results[2].trainable
    assert rec["total"] == base.num_parameters() + expected
    assert math.isclose(rec["percent"], 100 * expected / rec["total"])
    assert 0.0 <= rec["accuracy"] <= 1.0 and 0.0 <= rec["grape_recall"] <= 1.0
    assert not rec["cached"]
    dash.slider.value = 1                                        # trained before: taken from the cache
    assert dash.history[-1]["cached"] and dash.history[-1]["r"] == 1
    assert dash.history[-1]["trainable"] == dash.history[0]["trainable"]
    assert _open_figures() == before
    assert all(p.trainable for p in base.parameters())           # base untouched: finetune works on copies
    assert sum(1 for n, _ in base.named_parameters() if "lora" in n) == 0


def test_the_rank_outcomes_panel_shows_held_out_accuracy_and_recall_on_an_honest_axis():
    from types import SimpleNamespace

    import matplotlib.pyplot as plt
    runs = [SimpleNamespace(r=r, accuracy=a, grape_recall=g, trainable=t)
            for r, a, g, t in ((4, 0.93, 0.89, 3152), (1, 0.91, 0.80, 788), (16, 0.93, 0.82, 12608))]
    fig = viz.plot_rank_outcomes(runs, r=4, chance=0.1)
    ax = fig.axes[0]
    acc, recall = ax.get_lines()[:2]
    assert list(acc.get_xdata()) == [1, 4, 16] and list(recall.get_ydata()) == [80.0, 89.0, 82.0]
    assert ax.get_ylim() == (0, 105)                                  # from 0, not zoomed
    assert {t.get_text() for t in ax.texts} == {"788", "3,152", "12,608"}
    assert any(line.get_ydata()[0] == 10.0 for line in ax.get_lines())    # the chance floor
    plt.close(fig)


def test_lora_rank_explorer_rejects_r_outside_ranks():
    task = make_fruit_task(n_pretrain=50, n_finetune=20, n_test=20)
    base, _ = pretrain(task, hidden=(8, 8), epochs=1)
    with pytest.raises(ValueError, match="r=3"):
        lora_rank_explorer(base, task, ranks=(1, 2), r=3)
    with pytest.raises(ValueError, match="lora_rank_explorer: ranks must be a non-empty list of positive"):
        lora_rank_explorer(base, task, ranks=(1, 2.5), r=1)


@pytest.fixture
def tiny_styles():
    """A tiny character LM and one rank-2 inventory adapter, a few training steps each (~1 s)."""
    vocab = CharVocab()
    cfg = TransformerConfig(vocab_size=vocab.size, d_model=16, n_heads=2, n_layers=1, context=16)
    base, _ = pretrain_lm(vocab, n_lines=60, epochs=1, config=cfg)
    adapters = train_style_adapters(base, vocab, ("inventory",), r=2, n_lines=40, epochs=1)
    return vocab, base, adapters


def test_style_explorer_records_each_regeneration(tiny_styles):
    vocab, base, adapters = tiny_styles
    before = _open_figures()
    model = lora_model_for(base, r=2)
    dash = style_explorer(model, vocab, adapters, prompt="the ", n_chars=30, seed=3)
    assert dash.dropdown.options == ("none", "inventory") and dash.dropdown.value == "inventory"
    assert dash.slider.min == 0.0 and dash.slider.max == 1.0 and dash.slider.value == 1.0
    rec = dash.history[-1]
    assert rec["adapter"] == "inventory" and rec["strength"] == 1.0
    assert rec["text"].startswith("the ") and len(rec["text"]) == len("the ") + 30
    assert rec["markers"] == style_markers(rec["text"])
    assert rec["guess"] in ("plain", "inventory", "verse", "dialogue")

    dash.slider.value = 0.0                                      # strength 0: the adapter is off
    at_zero = dash.history[-1]
    assert at_zero["adapter"] == "inventory" and at_zero["strength"] == 0.0
    dash.dropdown.value = "none"                                 # no adapter: the same text, same seed
    assert dash.history[-1]["adapter"] == "none" and dash.history[-1]["text"] == at_zero["text"]
    assert at_zero["text"] == sample(base, vocab, "the ", 30, seed=3)       # ... and the base model's
    dash.slider.value = 0.5                                      # "none" ignores the strength
    assert dash.history[-1]["strength"] == 0.5 and dash.history[-1]["text"] == at_zero["text"]
    dash.dropdown.value = "inventory"
    dash.slider.value = 1.0                                      # back where it started: same seed, same text
    assert dash.history[-1]["text"] == rec["text"]
    assert [(h["adapter"], h["strength"]) for h in dash.history] == [
        ("inventory", 1.0), ("inventory", 0.0), ("none", 0.0), ("none", 0.5), ("inventory", 0.5),
        ("inventory", 1.0)]
    assert _open_figures() == before
    assert not any(name.endswith(("lora_A", "lora_B")) for name, _ in base.named_parameters())


def test_style_explorer_rejects_bad_arguments(tiny_styles):
    vocab, base, adapters = tiny_styles
    model = lora_model_for(base, r=2)
    with pytest.raises(ValueError, match="no LoRA layers"):
        style_explorer(base, vocab, adapters)
    with pytest.raises(ValueError, match="adapter='verse'"):
        style_explorer(model, vocab, adapters, adapter="verse")
    with pytest.raises(ValueError, match="'none' is reserved"):
        style_explorer(model, vocab, {"none": adapters["inventory"]})
    with pytest.raises(ValueError, match="adapters must be a non-empty dict"):
        style_explorer(model, vocab, {})
    with pytest.raises(ValueError, match="strength must be a number in"):
        style_explorer(model, vocab, adapters, strength=1.5)
    with pytest.raises(ValueError, match="n_chars must be a positive integer"):
        style_explorer(model, vocab, adapters, n_chars=0)
    with pytest.raises(ValueError, match="prompt must be a non-empty string"):
        style_explorer(model, vocab, adapters, prompt="")
    with pytest.raises(ValueError, match="not in the vocabulary"):
        style_explorer(model, vocab, adapters, prompt="the #")


# --------------------------------------------------------------------------- several adapters on one base


@pytest.fixture
def two_harvests():
    """A tiny pretrained MLP (20 → 16 → 16 → 10) carrying adapters "harvest_a" and "harvest_b" (r = 2,
    s = 2), each trained for two epochs on its own harvest (~0.2 s)."""
    import copy
    task = make_fruit_task(n_pretrain=200, n_finetune=60, n_test=80)
    base, _ = pretrain(task, hidden=(16, 16), epochs=2)
    ha = harvest_of(task)
    hb = make_harvest("harvest_b", shift_seed=99, shift_rank=3, n_finetune=60, n_test=80, seed=1)
    model = copy.deepcopy(base)
    for i, h in enumerate((ha, hb)):
        config = LoraConfig(r=2, lora_alpha=4, target_modules=["fc1", "fc2"], seed=i)
        if i == 0:
            inject_lora(model, config, adapter_name=h.name)
        else:
            add_adapter(model, h.name, config)
        set_adapter(model, h.name)
        fit(model, Adam(model, lr=1e-2), *h.train, epochs=2, batch_size=16)
    return task, base, model, ha, hb


def test_make_harvest_defaults_are_the_tasks_shifted_splits(xp):
    task = make_fruit_task(n_pretrain=20, n_finetune=30, n_test=40, seed=2)
    h = make_harvest("h", n_finetune=30, n_test=40, seed=2)
    for mine, theirs in ((h.train, task.shift_train), (h.test, task.shift_test)):
        assert all(bool(xp.all(a == b)) for a, b in zip(mine, theirs, strict=True))
    other = make_harvest("other", shift_seed=99, n_finetune=30, n_test=40, seed=2)
    assert bool(xp.all(other.train[1] == h.train[1])) and not bool(xp.all(other.train[0] == h.train[0]))
    assert harvest_of(task).test is task.shift_test
    with pytest.raises(ValueError, match="shift_seed must be an integer"):
        make_harvest("h", shift_seed=1.5)
    with pytest.raises(ValueError, match="name must be a non-empty string"):
        make_harvest("")


def test_accuracy_table_has_the_base_and_each_adapter_and_restores_the_active_one(two_harvests):
    task, base, model, ha, hb = two_harvests
    set_adapter(model, "harvest_b")
    table = accuracy_table(model, ["harvest_a", "harvest_b"], [ha, hb])
    assert list(table) == ["base", "harvest_a", "harvest_b"]
    assert list(table["base"]) == ["harvest_a", "harvest_b"]
    assert table["base"]["harvest_a"] == evaluate(base, *ha.test)["accuracy"]    # disabled: the base, exactly
    assert active_adapter(model) == "harvest_b"
    assert table["harvest_b"]["harvest_b"] == evaluate(model, *hb.test)["accuracy"]
    with pytest.raises(ValueError, match="adapters must name adapters"):
        accuracy_table(model, ["nope"], [ha])


def test_adapter_explorer_records_each_switch(two_harvests):
    task, base, model, ha, hb = two_harvests
    before = _open_figures()
    data = {"harvest_a": ha.test, "harvest_b": hb.test}
    dash = adapter_explorer(model, data)
    assert dash.dropdown.options == ("none", "harvest_a", "harvest_b") and dash.dropdown.value == "harvest_a"
    at_one = dash.history[-1]
    assert at_one["adapter"] == "harvest_a" and at_one["strength"] == 1.0
    assert list(at_one["accuracy"]) == list(data)
    dash.dropdown.value = "none"                                 # disabled: the base model exactly
    assert dash.history[-1]["accuracy"] == {k: evaluate(base, *d)["accuracy"] for k, d in data.items()}
    dash.dropdown.value = "harvest_a"
    dash.slider.value = 0.0                                      # strength 0: the base model exactly
    assert dash.history[-1]["accuracy"] == dash.history[1]["accuracy"]
    assert all(layer.strength == 0.0 for layer in adapter_layers(model, "harvest_a").values())
    dash.slider.value = 1.0                                      # strength 1: the adapter as trained
    assert dash.history[-1]["accuracy"] == at_one["accuracy"]
    assert [(h["adapter"], h["strength"]) for h in dash.history] == [
        ("harvest_a", 1.0), ("none", 1.0), ("harvest_a", 1.0), ("harvest_a", 0.0), ("harvest_a", 1.0)]
    assert _open_figures() == before


def test_adapter_explorer_rejects_bad_arguments(two_harvests):
    task, base, model, ha, hb = two_harvests
    with pytest.raises(ValueError, match="no adapters"):
        adapter_explorer(base, {"a": ha.test})
    with pytest.raises(ValueError, match="datasets must be a non-empty dict"):
        adapter_explorer(model, {"a": [1, 2]})
    with pytest.raises(ValueError, match="adapter='nope'"):
        adapter_explorer(model, {"a": ha.test}, adapter="nope")
    with pytest.raises(ValueError, match="strength must be a number in"):
        adapter_explorer(model, {"a": ha.test}, strength=2.0)


def _max_abs(xp, a, b):
    return backend.to_float(xp.abs(a - b).max())


def test_blend_explorer_records_each_blend_and_keeps_one_blend_adapter(two_harvests, xp):
    task, base, model, ha, hb = two_harvests
    before = _open_figures()
    dash = blend_explorer(model, "harvest_a", "harvest_b", ha.test, hb.test, w=0.5)
    rec = dash.history[-1]
    assert rec["w"] == 0.5 and rec["adapter"] == "blend"
    assert rec["combination"] == "linear" and rec["rank"] == 4
    assert active_adapter(model) == "blend" and list_adapters(model) == ["harvest_a", "harvest_b", "blend"]
    fa = adapter_layers(model, "harvest_a")["fc1"].delta_weight()
    fb = adapter_layers(model, "harvest_b")["fc1"].delta_weight()
    half = adapter_layers(model, "blend")["fc1"].delta_weight()
    assert _max_abs(xp, half, 0.5 * fa + 0.5 * fb) < 1e-5 * backend.to_float(xp.abs(fa).max())
    for w, name in ((1.0, "harvest_a"), (0.0, "harvest_b")):   # the ends are the adapters themselves
        dash.slider.value = w
        set_adapter(model, name)
        alone = (evaluate(model, *ha.test)["accuracy"], evaluate(model, *hb.test)["accuracy"])
        assert (dash.history[-1]["accuracy_a"], dash.history[-1]["accuracy_b"]) == alone
    assert [h["w"] for h in dash.history] == [0.5, 1.0, 0.0]
    assert sorted(dash.points) == [0.0, 0.5, 1.0]
    assert list_adapters(model) == ["harvest_a", "harvest_b", "blend"]          # replaced, never piled up
    assert _open_figures() == before


def test_blend_explorer_svd_at_full_rank_is_the_linear_blend(two_harvests, xp):
    task, base, model, ha, hb = two_harvests
    dash = blend_explorer(model, "harvest_a", "harvest_b", ha.test, hb.test, w=0.3, combination="svd", rank=4)
    svd = {p: layer.delta_weight() for p, layer in adapter_layers(model, "blend").items()}
    blend_accuracy(model, "harvest_a", "harvest_b", 0.3, {}, name="lin")
    for path, layer in adapter_layers(model, "lin").items():
        scale = backend.to_float(xp.abs(layer.delta_weight()).max())
        assert _max_abs(xp, svd[path], layer.delta_weight()) < 1e-5 * scale
    dash2 = blend_explorer(model, "harvest_a", "harvest_b", ha.test, hb.test, w=0.3, name="small",
                           combination="svd", rank=1)
    assert dash2.history[-1]["rank"] == 1 and dash.history[-1]["rank"] == 4


def test_blend_explorer_rejects_bad_arguments(two_harvests):
    task, base, model, ha, hb = two_harvests
    with pytest.raises(ValueError, match="adapter_b='nope'"):
        blend_explorer(model, "harvest_a", "nope", ha.test, hb.test)
    with pytest.raises(ValueError, match="must differ"):
        blend_explorer(model, "harvest_a", "harvest_a", ha.test, hb.test)
    with pytest.raises(ValueError, match="adapter_a='blend'"):
        blend_explorer(model, "blend", "harvest_b", ha.test, hb.test)
    with pytest.raises(ValueError, match="w must be a number in"):
        blend_explorer(model, "harvest_a", "harvest_b", ha.test, hb.test, w=1.5)
    with pytest.raises(ValueError, match="combination='svd': rank must be a positive integer"):
        blend_explorer(model, "harvest_a", "harvest_b", ha.test, hb.test, combination="svd")
    with pytest.raises(ValueError, match="data_a must be a pair"):
        blend_explorer(model, "harvest_a", "harvest_b", ha.test[0], hb.test)


def test_inference_latency_is_a_positive_median_and_checks_its_arguments(two_harvests):
    task, base, model, ha, hb = two_harvests
    t = inference_latency(model, ha.test[0][:1], repeats=5, warmup=1)
    assert isinstance(t, float) and t > 0
    assert all(m._cache is None for _, m in model.named_modules() if hasattr(m, "_cache"))
    with pytest.raises(ValueError, match="repeats must be a positive integer"):
        inference_latency(model, ha.test[0][:1], repeats=0)
    with pytest.raises(TypeError, match="x must be an array"):
        inference_latency(model, [[0.0] * 20])


def test_finetune_variant_matches_finetune_and_counts_every_variant():
    task = make_fruit_task(n_pretrain=100, n_finetune=40, n_test=40)
    base, _ = pretrain(task, hidden=(16, 16), epochs=1)
    plain = finetune(base, task, r=2, epochs=1)
    mine = finetune_variant(base, task, VariantRun("LoRA", r=2), epochs=1)
    assert mine.history.step_loss == plain.history.step_loss and mine.accuracy == plain.accuracy
    small = [dataclasses.replace(run, r=4 if run.variant == "vera" else 2) for run in VARIANT_RUNS]
    runs = compare_variants(base, task, small, epochs=1)
    assert [res.label for res in runs] == [run.label for run in VARIANT_RUNS]
    for res, run in zip(runs, small, strict=True):
        expected = sum(variant_trainable_count(run.variant, d_in, 16, res.r) for d_in in (20, 16))
        assert res.trainable == expected, res.label
    with pytest.raises(TypeError, match="run must be a VariantRun"):
        finetune_variant(base, task, {"variant": "lora"})


def test_dora_gradient_gap_differs_for_A_and_B_only():
    task = make_fruit_task(n_pretrain=100, n_finetune=40, n_test=40)
    base, _ = pretrain(task, hidden=(16, 16), epochs=1)
    res = finetune_variant(base, task, VariantRun("DoRA", "dora", r=2), epochs=2)
    X, y = task.shift_train
    gap = dora_gradient_gap(res.model, X, y, "fc1")
    assert set(gap) == {"lora_A", "lora_B", "lora_magnitude"}
    assert gap["lora_magnitude"]["rel_diff"] == 0.0                   # dm does not pass through ‖V‖
    assert gap["lora_A"]["rel_diff"] > 0 and gap["lora_B"]["rel_diff"] > 0
    assert all(-1.0 - 1e-6 <= g["cosine"] <= 1.0 + 1e-6 for g in gap.values())
    assert res.model.fc1.exact_grad is True and all(p.grad is None for p in res.model.parameters())
    with pytest.raises(TypeError, match="must be a DoRA layer"):
        dora_gradient_gap(res.model, X, y, "head")
