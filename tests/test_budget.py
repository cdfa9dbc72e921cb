"""Notebook 05's budget: LoRA's parameter count against r, and training memory on real model sizes.

The arithmetic is checked against the figures people quote (13 GiB for a 7B model in fp16, 18.9M
trainable parameters and a ~35 MB checkpoint for GPT-3 with r = 4) and against our own MLP, whose
LoRA layers and Adam state are counted directly.
"""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from matplotlib.figure import Figure

from lora_np.experiments.budget import (
    MODEL_PRESETS,
    PRECISION_PRESETS,
    BreakEven,
    ModelPreset,
    PrecisionSpec,
    break_even,
    byte_unit,
    compare_memory,
    format_bytes,
    format_memory_table,
    full_finetune_memory,
    full_param_count,
    lora_memory,
    lora_param_count,
    lora_trainable_params,
    parameter_budget,
)
from lora_np.experiments.lowrank import lowrank_param_count
from lora_np.nn import break_even_rank
from lora_np.viz.budget import plot_memory, plot_parameter_budget
from lora_np.widgets.budget import memory_calculator, parameter_budget_explorer

GiB, MiB = 2 ** 30, 2 ** 20
MIXED_ADAM = "fp16 mixed precision + Adam"


def close(value, expected, rel=0.01):
    return abs(value - expected) <= rel * abs(expected)


# --------------------------------------------------------------------------- the quoted figures


@pytest.mark.host_only
def test_a_7b_model_needs_about_13_gib_for_its_fp16_weights_and_104_gib_for_full_adam_training():
    inference = full_finetune_memory("7B (nominal 7.0e9)", "fp16 inference")
    assert inference.weights == 7e9 * 2 and close(inference.weights / GiB, 13.04)
    assert inference.total == inference.weights                       # inference: weights only
    full, lora = compare_memory("7B (nominal 7.0e9)", MIXED_ADAM, r=8)
    assert full.total == 7e9 * (2 + 2 + 8 + 4) and close(full.total / GiB, 104.3)
    assert close(lora.weights / GiB, 13.04)                          # the frozen weights are still there ...
    assert lora.total - inference.weights < 100 * MiB              # ... plus a small adapter's training state
    assert full.total / lora.total > 7.9


@pytest.mark.host_only
@pytest.mark.parametrize("r, quoted", [(1, 4.7e6), (4, 18.9e6), (8, 37.7e6)])
def test_gpt3_lora_on_q_and_v_trains_the_papers_parameter_counts(r, quoted):
    trainable = lora_trainable_params("GPT-3 175B", r)                 # default targets: q and v
    assert trainable == 96 * 2 * r * (12288 + 12288)
    assert close(trainable, quoted)
    assert lora_trainable_params("GPT-3 175B", r, targets=("q", "v")) == trainable
    assert lora_memory("GPT-3 175B", MIXED_ADAM, r).trainable == trainable
    assert lora_trainable_params("GPT-3 175B", 4) == 18_874_368


@pytest.mark.host_only
def test_gpt3_checkpoint_shrinks_from_350_gb_to_about_35_mb():
    full, lora = compare_memory("GPT-3 175B", MIXED_ADAM, r=4)
    assert full.checkpoint == 350e9                                    # 175e9 × 2 B, exactly
    assert lora.checkpoint == 18_874_368 * 2
    assert close(lora.checkpoint, 37.7e6) and close(lora.checkpoint / MiB, 36.0)
    assert close(lora.checkpoint, 35e6, rel=0.10)                      # the paper's rounded "35 MB"
    assert 9_200 < full.checkpoint / lora.checkpoint < 9_350           # "roughly 10,000×"
    assert round(100 * lora.fraction, 2) == 0.01                       # ≈ 0.01% of the model
    assert close(lora.weights, 350e9, rel=0.001)                       # LoRA: the 350 GB of frozen weights


@pytest.mark.host_only
def test_the_presets_shapes_add_up_to_the_published_parameter_counts():
    """Matrices per layer, plus embeddings, norms and biases, give each model's exact size."""
    def per_layer(name):
        return sum(a * b for _, (a, b) in MODEL_PRESETS[name].matrices)
    llama7 = 32 * per_layer("LLaMA-7B") + 2 * 32000 * 4096 + (2 * 32 + 1) * 4096
    llama13 = 40 * per_layer("LLaMA-13B") + 2 * 32000 * 5120 + (2 * 40 + 1) * 5120
    gpt2_biases_and_norms = 3 * 768 + 768 + 3072 + 768 + 4 * 768   # per block: qkv, o, fc, proj, 2 LayerNorms
    gpt2 = (12 * (per_layer("GPT-2 small (124M)") + gpt2_biases_and_norms)
            + 50257 * 768 + 1024 * 768 + 2 * 768)                  # token and position embeddings, final norm
    assert (llama7, llama13, gpt2) == tuple(MODEL_PRESETS[n].n_params
                                            for n in ("LLaMA-7B", "LLaMA-13B", "GPT-2 small (124M)"))
    assert close(96 * per_layer("GPT-3 175B"), 175e9, rel=0.01)        # 12 d² per layer: 173.9e9
    for p in MODEL_PRESETS.values():
        assert p.d_model == p.shapes[p.default_targets[-1]][1]


def test_the_fruit_preset_is_our_mlp_and_its_lora_and_adam_state_are_counted_exactly(xp):
    from lora_np.lora import inject_lora, trainable_report
    from lora_np.models import MLP
    from lora_np.optim import Adam
    preset = MODEL_PRESETS["fruit MLP 20-256-256-10"]
    model = MLP(20, (256, 256), 10)
    assert sum(p.size for p in model.parameters()) == preset.n_params
    assert {n: tuple(getattr(model, n).weight.shape) for n in ("fc1", "fc2", "head")} == preset.shapes
    full = full_finetune_memory(preset, "fp32 + Adam")
    assert Adam(model).state_bytes() == full.optimizer == 8 * 73_738  # two float32 moments per parameter
    inject_lora(model, r=4, target_modules=["fc1", "fc2"])
    lora = lora_memory(preset, "fp32 + Adam", r=4)
    assert trainable_report(model).trainable == lora.trainable == 4 * (20 + 256) + 4 * (256 + 256)
    assert Adam(model).state_bytes() == lora.optimizer


# --------------------------------------------------------------------------- one weight matrix


@pytest.mark.host_only
def test_counts_and_break_even_on_small_weights():
    assert full_param_count(3, 3) == 9 and lora_param_count(3, 3, 1) == 6 and lora_param_count(3, 3, 2) == 12
    assert lora_param_count(40, 60, 24) == full_param_count(40, 60) == 2400      # exactly at break-even
    assert lora_param_count(20, 256, 4) == lowrank_param_count(256, 20, 4) == 4 * 276
    assert break_even(3, 3) == BreakEven(1.5, 1)
    assert break_even(40, 60) == (24.0, 23)                            # r = 24 ties, so 23 is the last saving
    assert break_even(1, 5).largest_saving_rank == 0                   # a 5×1 weight: no rank saves anything
    assert break_even(4096, 4096) == (2048.0, 2047)                    # square: d / 2
    assert break_even(20, 256).rank == break_even_rank(20, 256)


@pytest.mark.host_only
def test_parameter_budget_arrays_and_at():
    b = parameter_budget(4, 6)
    assert b.ranks.tolist() == [1, 2, 3, 4] and b.lora.tolist() == [10, 20, 30, 40] and b.full == 24
    assert b.fraction.tolist() == pytest.approx([10 / 24, 20 / 24, 30 / 24, 40 / 24])
    assert b.at(2) == {"d_in": 4, "d_out": 6, "r": 2, "lora": 20, "full": 24, "fraction": 20 / 24,
                       "break_even": 2.4, "largest_saving_rank": 2, "saves": True}
    assert b.at(3)["saves"] is False
    assert parameter_budget(4096, 4096, [1, 8, 64]).lora.tolist() == [8192, 65536, 524288]


@pytest.mark.host_only
@settings(max_examples=200, deadline=None)
@given(st.integers(1, 400), st.integers(1, 400), st.data())
def test_lora_saves_parameters_exactly_below_the_break_even_rank(d_in, d_out, data):
    r = data.draw(st.integers(1, min(d_in, d_out)))
    be = break_even(d_in, d_out)
    saves = lora_param_count(d_in, d_out, r) < full_param_count(d_in, d_out)
    assert saves == (r < be.rank) == (r <= be.largest_saving_rank)
    assert be.rank < min(d_in, d_out)                                  # so r ≤ min(d_in, d_out) can pass it
    assert parameter_budget(d_in, d_out, [r]).at(r)["saves"] == saves


# --------------------------------------------------------------------------- formatting


@pytest.mark.host_only
def test_format_bytes_in_binary_and_decimal_units():
    assert format_bytes(7e9 * 2) == "13.04 GiB" and format_bytes(7e9 * 2, binary=False) == "14.00 GB"
    assert format_bytes(350e9, binary=False) == "350.00 GB" and format_bytes(37_748_736) == "36.00 MiB"
    assert format_bytes(512) == "512 B" and format_bytes(1024) == "1.00 KiB" and format_bytes(0) == "0 B"
    assert format_bytes(1536, digits=1) == "1.5 KiB" and format_bytes(1500, binary=False) == "1.50 kB"
    assert byte_unit(3 * 2 ** 40) == ("TiB", 2 ** 40) and byte_unit(2e15, binary=False) == ("TB", 10 ** 12)
    table = format_memory_table(*compare_memory("GPT-3 175B", MIXED_ADAM, r=4), binary=False)
    for text in ("full fine-tuning", "LoRA r = 4", "optimizer state", "master copies", "18,874,368",
                 "350.00 GB", "37.75 MB", "0.0108%"):
        assert text in table


# --------------------------------------------------------------------------- bad arguments


@pytest.mark.host_only
@pytest.mark.parametrize("call, match", [
    (lambda: lora_param_count(0, 4, 1), "lora_param_count: d_in must be a positive integer, got 0"),
    (lambda: lora_param_count(4, 2.5, 1), "d_out must be a positive integer, got 2.5"),
    (lambda: lora_param_count(4, 4, True), "r must be a positive integer, got True"),
    (lambda: lora_param_count(4, 8, 5), r"r=5 is above min\(d_in, d_out\)"),
    (lambda: full_param_count(-1, 3), "full_param_count: d_in must be a positive integer"),
    (lambda: break_even("3", 4), "break_even: d_in must be a positive integer"),
    (lambda: parameter_budget(4, 4, []), "ranks must not be empty"),
    (lambda: parameter_budget(4, 4, [2, 1]), "strictly increasing"),
    (lambda: parameter_budget(4, 4, [1, 9]), "r=9 is above"),
    (lambda: parameter_budget(4, 4).at(7), r"ParameterBudget.at: r must be an integer in \[1, 4\], got 7"),
    (lambda: parameter_budget(4, 4).at("2"), r"r must be an integer in \[1, 4\], got '2'"),
    (lambda: parameter_budget(8, 8, [1, 8]).at(4), r"r must be one of the budget's ranks \[1, 8\], got 4"),
    (lambda: lora_trainable_params("GPT-4", 4), "model must be a ModelPreset or one of"),
    (lambda: lora_trainable_params("LLaMA-7B", 4, targets=("q", "w")), "targets must be a non-empty subset"),
    (lambda: lora_trainable_params("LLaMA-7B", 4, targets=()), "targets must be a non-empty subset"),
    (lambda: lora_trainable_params("fruit MLP 20-256-256-10", 32), r"r=32 is above min\(d_in, d_out\)"),
    (lambda: lora_memory("LLaMA-7B", "fp8 magic", 4), "precision must be a PrecisionSpec or one of"),
    (lambda: lora_memory("LLaMA-7B", MIXED_ADAM, 0), "r must be a positive integer"),
    (lambda: full_finetune_memory("LLaMA-7B", MIXED_ADAM, checkpoint_bytes=0),
     "full_finetune_memory: checkpoint_bytes must be a finite positive number"),
    (lambda: lora_memory("LLaMA-7B", MIXED_ADAM, 4, checkpoint_bytes=True),
     "lora_memory: checkpoint_bytes must be"),
    (lambda: PrecisionSpec("x", 2, -1, 0, 0), "grad_bytes must be a finite number >= 0"),
    (lambda: PrecisionSpec("x", 0, 0, 0, 0), "weight_bytes must be > 0"),
    (lambda: ModelPreset("x", 50, 1, 8, (("q", (8, 8)),), (("q", ("q",)),)),
     "64 parameters, more than n_params = 50"),
    (lambda: ModelPreset("x", 100, 1, 8, (("q", (8, 0)),), (("q", ("q",)),)), "the shape of 'q' must be"),
    (lambda: ModelPreset("x", 100, 1, 8, (("q", (8, 8)),), (("k", ("k",)),)), "targets must be a non-empty"),
    (lambda: ModelPreset("x", 0, 1, 8, (("q", (8, 8)),), ()), "n_params must be a positive integer"),
    (lambda: byte_unit(-1), "byte_unit: n must be a finite number >= 0, got -1"),
    (lambda: format_memory_table(), "one or more MemoryBreakdown"),
    (lambda: parameter_budget_explorer(8, 4, r=5), "r=5 is above"),
    (lambda: parameter_budget_explorer(8, 4, r=2, max_dim=4), "max_dim must be an integer >= 8, got 4"),
    (lambda: memory_calculator("LLaMA-7B", r=3), r"r=3 must be one of \(1, 2, 4"),
    (lambda: memory_calculator("fruit MLP 20-256-256-10", r=32), "r=32 is above"),
    (lambda: memory_calculator("LLaMA-7B", targets=("q",)), "must be one of the preset's target sets"),
    (lambda: memory_calculator("GPT-5"), "model must be a ModelPreset or one of"),
    (lambda: memory_calculator(MODEL_PRESETS["LLaMA-7B"]), "must be preset names"),
])
def test_bad_arguments_raise_clear_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.host_only
def test_figures_reject_what_they_cannot_draw():
    with pytest.raises(TypeError, match="budget must be a ParameterBudget"):
        plot_parameter_budget({"ranks": [1]})
    with pytest.raises(TypeError, match="must be MemoryBreakdown objects"):
        plot_memory(1.0, 2.0)
    with pytest.raises(ValueError, match=r"r must be an integer in \[1, 4\], got 9"):
        plot_parameter_budget(parameter_budget(4, 4), r=9, ax=Figure().subplots())


# --------------------------------------------------------------------------- figures


@pytest.mark.host_only
@pytest.mark.parametrize("d, r, xscale", [(32, 8, "linear"), (4096, 8, "log")])
def test_plot_parameter_budget_draws_both_counts_and_the_break_even_rank(d, r, xscale):
    ax = Figure().subplots()
    b = parameter_budget(d, d)
    fig = plot_parameter_budget(b, r=r, ax=ax)
    assert fig is ax.figure and ax.get_yscale() == "log" and ax.get_xscale() == xscale
    assert ax.get_xlabel().startswith("LoRA rank r") and "parameters" in ax.get_ylabel() and ax.get_title()
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any(f"{b.full:,}" in t for t in labels) and any(f"r* = {d / 2:.1f}" in t for t in labels)
    assert any(t.startswith(f"r = {r}: {r * 2 * d:,}") for t in labels)
    curve = ax.get_lines()[0]
    assert curve.get_ydata().tolist() == b.lora.tolist()


@pytest.mark.host_only
def test_plot_memory_stacks_the_four_parts_in_the_suitable_unit():
    ax = Figure().subplots()
    full, lora = compare_memory("7B (nominal 7.0e9)", MIXED_ADAM, r=8)
    plot_memory(full, lora, ax=ax)
    assert ax.get_ylabel() == "training memory (GiB)" and ax.get_title()
    bars = ax.patches                                                  # 4 parts × 2 bars, part by part
    assert len(bars) == 8
    tops = [max(p.get_y() + p.get_height() for p in bars[i::2]) for i in range(2)]
    assert tops == pytest.approx([full.total / GiB, lora.total / GiB])
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "weights", "gradients", "optimizer state", "master copies (fp32)"]
    small = Figure().subplots()
    plot_memory(*compare_memory("fruit MLP 20-256-256-10", "fp32 + Adam", r=4), ax=small)
    assert small.get_ylabel() == "training memory (MiB)"


@pytest.mark.host_only
def test_figures_without_an_ax_make_their_own():
    import matplotlib.pyplot as plt
    for fig in (plot_parameter_budget(parameter_budget(8, 8)),
                plot_memory(*compare_memory("GPT-2 small (124M)", MIXED_ADAM, r=4))):
        assert fig.axes and fig.axes[0].get_title()
        plt.close(fig)


# --------------------------------------------------------------------------- dashboards


def _open_figures():
    import matplotlib.pyplot as plt
    return len(plt.get_fignums())


@pytest.mark.host_only
def test_parameter_budget_explorer_records_each_redraw():
    before = _open_figures()
    dash = parameter_budget_explorer(d_in=64, d_out=32, r=16)
    assert dash.history == [parameter_budget(64, 32).at(16)] and dash.slider.max == 32
    dash.slider.value = 24                                             # past r* = 21.3: LoRA saves nothing
    assert dash.history[-1]["lora"] == 24 * 96 and dash.history[-1]["saves"] is False
    dash.d_out_slider.value = 8                                 # r clamps to min(d_in, d_out) = 8, one redraw
    assert dash.slider.max == 8 and dash.slider.value == 8 and len(dash.history) == 3
    assert dash.history[-1] == parameter_budget(64, 8).at(8)
    dash.d_in_slider.value = 100
    assert dash.history[-1]["d_in"] == 100 and dash.history[-1]["largest_saving_rank"] == 7
    assert [(h["d_in"], h["d_out"], h["r"]) for h in dash.history] == [
        (64, 32, 16), (64, 32, 24), (64, 8, 8), (100, 8, 8)]
    assert _open_figures() == before


@pytest.mark.host_only
def test_memory_calculator_records_each_change_of_model_precision_targets_and_rank():
    before = _open_figures()
    dash = memory_calculator("GPT-3 175B", MIXED_ADAM, r=4)
    first = dash.history[-1]
    full, lora = compare_memory("GPT-3 175B", MIXED_ADAM, r=4)
    assert first["trainable"] == 18_874_368 and first["targets"] == ("q", "v")
    assert first["full"] == full.as_dict() and first["lora"] == lora.as_dict()
    assert first["full_checkpoint"] == 350e9 and first["ratio"] == full.total / lora.total
    dash.slider.value = 8
    assert dash.history[-1]["trainable"] == 37_748_736
    dash.precision_dropdown.value = "fp16 inference"                   # no training state at all
    rec = dash.history[-1]
    assert rec["lora"]["optimizer"] == 0 and rec["lora_total"] == rec["lora"]["weights"]
    dash.targets_dropdown.value = ("q", "k", "v", "o")
    assert dash.history[-1]["trainable"] == 2 * 37_748_736
    dash.slider.value = 256
    dash.dropdown.value = "fruit MLP 20-256-256-10"           # its own targets; r falls to the largest one
    rec = dash.history[-1]
    assert rec["model"] == "fruit MLP 20-256-256-10" and rec["targets"] == ("fc1", "fc2") and rec["r"] == 16
    assert dash.slider.options == (1, 2, 4, 8, 16) and rec["trainable"] == 16 * (276 + 512)
    dash.dropdown.value = "LLaMA-7B"                            # back to a transformer: every rank again
    assert dash.history[-1]["r"] == 16 and dash.slider.options[-1] == 256
    assert dash.targets_dropdown.options[-1][1] == ("q", "k", "v", "o", "gate", "up", "down")
    assert [(h["model"], h["r"]) for h in dash.history] == [
        ("GPT-3 175B", 4), ("GPT-3 175B", 8), ("GPT-3 175B", 8), ("GPT-3 175B", 8), ("GPT-3 175B", 256),
        ("fruit MLP 20-256-256-10", 16), ("LLaMA-7B", 16)]
    assert _open_figures() == before


@pytest.mark.host_only
def test_every_preset_works_in_the_calculator_at_its_default_targets():
    for name, preset in MODEL_PRESETS.items():
        for precision in PRECISION_PRESETS:
            full, lora = compare_memory(name, precision, r=4)
            assert lora.total < full.total or PRECISION_PRESETS[precision].grad_bytes == 0
            assert 0 < lora.fraction < 0.05 and lora.trainable == lora_trainable_params(preset, 4)
