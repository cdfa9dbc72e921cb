"""The low-rank maths behind the dashboards, and the dashboards themselves driven from code.

Dashboards are asserted on their kernel-side ``history`` (one record per redraw), exactly as the
notebooks do: setting ``slider.value`` fires the same callback as dragging the slider.
"""
import math

import pytest

from lora_np import backend
from lora_np.data import CharVocab, make_fruit_task, style_markers
from lora_np.experiments import (low_rank_approx, lowrank_error_curve, lowrank_param_count, pretrain,
                                 relative_error, singular_values, structured_matrix)
from lora_np.experiments.styles import lora_model_for, pretrain_lm, sample, train_style_adapters
from lora_np.models import TransformerConfig
from lora_np.nn import break_even_rank
from lora_np.widgets import lora_rank_explorer, lowrank_explorer, style_explorer

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
    with pytest.raises(ValueError, match=r"r=") as err:
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
    with pytest.raises(ValueError, match="r="):
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


def test_lora_rank_explorer_rejects_r_outside_ranks():
    task = make_fruit_task(n_pretrain=50, n_finetune=20, n_test=20)
    base, _ = pretrain(task, hidden=(8, 8), epochs=1)
    with pytest.raises(ValueError, match="r=3"):
        lora_rank_explorer(base, task, ranks=(1, 2), r=3)


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
        ("inventory", 1.0), ("inventory", 0.0), ("none", 0.0), ("none", 0.5), ("inventory", 0.5), ("inventory", 1.0)]
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
