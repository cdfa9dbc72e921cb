"""Notebooks 04 (adapters in practice) and 04b (LoRA's variants): exercises, dashboards, the seeds.

Every exercise accepts its right answer, rejects each common wrong one with a reason that does not
contain the answer, and has a placeholder cell and a worked solution. Run All leaves the switcher and the
blend slider where the text says they start (the check cells move them and put them back). The variants
are compared over 3 seeds, as mean and min–max.
"""
from __future__ import annotations

import dataclasses
import pathlib
import re

import matplotlib
import nbformat
import numpy as np
import pytest
from exercise_checks import (
    assert_accepts,
    assert_placeholders_say_no_answer_yet,
    assert_rejects,
    markdown,
    text_output,
)
from notebook_runner import WIDGET_STATE

from lora_np.course import EXERCISES, check_exercise, show_solution
from lora_np.course import notebook04 as nb04
from lora_np.course import notebook04b as nb04b

matplotlib.use("Agg")

pytestmark = pytest.mark.host_only

ROOT = pathlib.Path(__file__).resolve().parents[1] / "notebooks"
PRACTICE = ROOT / "04_adapters_in_practice.ipynb"
VARIANTS = ROOT / "04b_lora_variants.ipynb"
MODULE = {**{n: nb04 for n in nb04.EXERCISES_04}, **{n: nb04b for n in nb04b.EXERCISES_04B}}
NAMES = sorted(MODULE)
ALL = {**nb04.EXERCISES_04, **nb04b.EXERCISES_04B}


# ------------------------------------------------------------------ wrong code, and what the checker must say

def unwritten(*args):
    raise NotImplementedError


def stack_no_scale(A_a, B_a, s_a, A_b, B_b, s_b, w):
    return np.concatenate([A_a, A_b], axis=0), np.concatenate([w * B_a, (1 - w) * B_b], axis=1)


def stack_no_weight(A_a, B_a, s_a, A_b, B_b, s_b, w):
    return np.concatenate([A_a, A_b], axis=0), np.concatenate([s_a * B_a, s_b * B_b], axis=1)


def stack_twice(A_a, B_a, s_a, A_b, B_b, s_b, w):
    return (np.concatenate([w * A_a, (1 - w) * A_b], axis=0),
            np.concatenate([w * s_a * B_a, (1 - w) * s_b * B_b], axis=1))


def stack_swapped_w(A_a, B_a, s_a, A_b, B_b, s_b, w):
    return np.concatenate([A_a, A_b], axis=0), np.concatenate([(1 - w) * s_a * B_a, w * s_b * B_b], axis=1)


def stack_wrong_axis(A_a, B_a, s_a, A_b, B_b, s_b, w):
    return np.concatenate([A_a, A_b], axis=0).T, np.concatenate([w * s_a * B_a, (1 - w) * s_b * B_b], axis=1)


def stack_b_first(A_a, B_a, s_a, A_b, B_b, s_b, w):
    A, B = nb04.stack_blend(A_a, B_a, s_a, A_b, B_b, s_b, w)
    return B, A


def dora_columns(W0, A, B, m, s):
    V = W0 + s * B @ A
    return m[:, None] * V / np.linalg.norm(V, axis=0, keepdims=True)


def dora_frobenius(W0, A, B, m, s):
    V = W0 + s * B @ A
    return m[:, None] * V / np.linalg.norm(V)


def dora_no_s(W0, A, B, m, s):
    V = W0 + B @ A
    return m[:, None] * V / np.linalg.norm(V, axis=1, keepdims=True)


def dora_no_m(W0, A, B, m, s):
    V = W0 + s * B @ A
    return V / np.linalg.norm(V, axis=1, keepdims=True)


def dora_unnormalised(W0, A, B, m, s):
    return m[:, None] * (W0 + s * B @ A)


def dora_no_update(W0, A, B, m, s):
    return m[:, None] * W0 / np.linalg.norm(W0, axis=1, keepdims=True)


WRONG = {                                          # name -> [(wrong answer, words the reason must contain)]
    "predict_switch_strength0": [("a", "W0 alone"), ("c", "strength 0.5"), ("d", "active adapter only"),
                                 ("e", "answer one of"), (1, "answer one of")],
    "predict_blend_half": [("a", "does not cancel"), ("c", "not linear"), ("D", "less well")],
    "lora_file_mib_7b": [(nb04.ADAPTER_MIB_7B / 2, "that is half of it"), (nb04.ADAPTER_MIB_7B * 2, "fp32"),
                         (nb04.ADAPTER_MIB_7B / 32, "one block"),
                         (nb04.ADAPTER_NUMBERS_7B * 2 / 1e6, "in MB"),
                         (32 * 2 * 4096 * 4096 * 2 / 2 ** 20, "projections W0 themselves"),
                         (100, "too large"), (1, "too small"), ("big", "expected a number")],
    "merged_accuracy_changes": [(True, "gap between a fruit's two largest logits"), ("no", "True or False")],
    "stack_blend": [(unwritten, "not written yet"), (stack_no_scale, "scales s_a and s_b are missing"),
                    (stack_no_weight, "weights w and 1 − w are missing"), (stack_twice, "applied twice"),
                    (stack_swapped_w, "swapped"), (stack_wrong_axis, "stack the rows"),
                    (stack_b_first, "returned (B, A)"), ((1, 2), "pass your function itself")],
    "predict_variant_spread": [("a", "far fewer numbers"), ("b", "next to the spread"),
                               ("d", "tenths of a point"), ("z", "answer one of")],
    "vera_params_7b": [(32 * 2 * 256 * 8192, "LoRA's count"), (2 * (256 + 4096), "one block"),
                       (32 * (256 + 4096), "one projection per block"), (32 * 2 * 4096, "only λ_b"),
                       (32 * 2 * 256, "only λ_d"), (nb04b.VERA_PARAMS_7B + 256 * 8192, "frozen"),
                       (10 ** 9, "too large"), (10, "too small"), (1.5, "whole number")],
    "rslora_scale_ratio": [(64, "that is r"), (0.125, "LoRA's scale over rsLoRA's"),
                           (2, "rsLoRA's scale itself"), (0.25, "LoRA's scale itself"), (20, "too large"),
                           (3, "too small")],
    "dora_weight": [(unwritten, "not written yet"), (dora_columns, "column norms"),
                    (dora_frobenius, "one norm of the whole matrix"), (dora_no_s, "scale s is missing"),
                    (dora_no_m, "length 1"), (dora_unnormalised, "not normalised"),
                    (dora_no_update, "update s·B·A is missing"), ("f", "pass your function itself")],
}


def answer_forms(name: str) -> list[str]:
    """How the right answer could show up in a text."""
    answer = ALL[name].answer
    if name.startswith("predict_"):
        options = {"predict_switch_strength0": nb04.SWITCH_OPTIONS, "predict_blend_half": nb04.BLEND_OPTIONS,
                   "predict_variant_spread": nb04b.PREDICT_OPTIONS}[name]
        return [options[answer], f"({answer})", f"'{answer}'", f'"{answer}"', "answer is"]
    if name == "stack_blend":
        return ["concatenate", "def stack_blend", "w * s_a"]
    if name == "dora_weight":
        return ["axis=1, keepdims", "def dora_weight", "m[:, None] * V"]
    if isinstance(answer, bool):
        return [str(answer)]
    out = [f"{answer:,}", f"{answer:g}"]
    if not float(answer).is_integer():
        out += [f"{answer:.1f}", f"{answer:.2f}"]
    return out


def test_the_notebooks_register_their_exercises_and_every_one_has_wrong_answers_to_test():
    assert set(WRONG) == set(NAMES) and len(nb04.EXERCISES_04) >= 3 and len(nb04b.EXERCISES_04B) >= 3
    assert all(EXERCISES[name] is ALL[name] for name in NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_the_right_answer_is_accepted(name):
    assert_accepts(name, ALL[name].answer)


@pytest.mark.parametrize("name", NAMES)
def test_a_wrong_answer_is_rejected_with_its_reason_and_without_the_answer(name):
    options = {"predict_switch_strength0": nb04.SWITCH_OPTIONS, "predict_blend_half": nb04.BLEND_OPTIONS,
               "predict_variant_spread": nb04b.PREDICT_OPTIONS}.get(name, {})
    listings = ("True or False", str(sorted(options)))       # what every answer may be
    for wrong, words in WRONG[name]:
        assert_rejects(name, wrong, answer_forms(name), words, listings=listings)


def test_the_answers_are_what_the_formulas_give():
    assert nb04.ADAPTER_NUMBERS_7B == 32 * 2 * 8 * 8192 == 4_194_304
    assert nb04.ADAPTER_MIB_7B == 8.0
    assert nb04b.VERA_PARAMS_7B == 32 * 2 * (256 + 4096) == 278_528
    assert nb04b.RS_RATIO == pytest.approx(8.0)
    assert check_exercise("lora_file_mib_7b", 8.05).passed                   # within 1 %
    assert check_exercise("predict_blend_half", " B ").passed


def test_the_code_exercises_accept_other_right_ways():
    def stack_on_a(A_a, B_a, s_a, A_b, B_b, s_b, w):                        # the factors on A instead
        A = np.concatenate([w * s_a * A_a, (1 - w) * s_b * A_b], axis=0)
        return A, np.concatenate([B_a, B_b], axis=1)

    def dora_loop(W0, A, B, m, s):
        V = W0 + s * (B @ A)
        return np.stack([m[i] * V[i] / np.sqrt((V[i] ** 2).sum()) for i in range(V.shape[0])])

    assert check_exercise("stack_blend", stack_on_a).passed
    assert check_exercise("dora_weight", dora_loop).passed


@pytest.mark.parametrize("name", NAMES)
def test_show_solution_prints_the_worked_solution(capsys, name):
    show_solution(name)
    out = capsys.readouterr().out
    assert out.startswith(f"{name}: {ALL[name].prompt}") and ALL[name].solution in out


# ------------------------------------------------------------------ the variants over seeds (library)

@pytest.fixture(scope="module")
def small_spreads():
    from lora_np.data import make_fruit_task
    from lora_np.experiments import VARIANT_RUNS, compare_variants_over_seeds, pretrain
    task = make_fruit_task(n_pretrain=600, n_finetune=100, n_test=200, seed=0)
    base, _ = pretrain(task, epochs=1, seed=0)
    runs = [dataclasses.replace(run, r=4 if run.variant == "vera" else 2) for run in VARIANT_RUNS[:5]]
    return task, base, runs, compare_variants_over_seeds(base, task, seeds=(0, 1, 2), runs=runs, epochs=1)


def test_compare_variants_over_seeds_keeps_every_seed_and_its_spread(small_spreads):
    from lora_np.experiments import compare_variants, format_variant_spread
    task, base, runs, spreads = small_spreads
    assert [sp.label for sp in spreads] == [run.label for run in runs]
    for sp in spreads:
        assert sp.seeds == (0, 1, 2) and len(sp.results) == 3
        accs = sp.values("accuracy")
        assert sp.low("accuracy") == min(accs) <= sp.mean("accuracy") <= max(accs) == sp.high("accuracy")
        assert len({res.trainable for res in sp.results}) == 1 == len({res.label for res in sp.results})
    again = compare_variants(base, task, runs, epochs=1, seed=1)          # the seed's own run, reproduced
    assert [res.accuracy for res in again] == [sp.results[1].accuracy for sp in spreads]
    table = format_variant_spread(spreads)
    assert "min–max of 3" in table and f"{spreads[0].mean('accuracy'):.1%} [" in table


def test_compare_variants_over_seeds_rejects_bad_seeds(small_spreads):
    from lora_np.experiments import compare_variants_over_seeds
    task, base, runs, spreads = small_spreads
    for seeds in ((), (1, 1), 3, ("a",)):
        with pytest.raises((ValueError, TypeError), match="seeds"):
            compare_variants_over_seeds(base, task, seeds=seeds, runs=runs[:1], epochs=1)
    with pytest.raises(ValueError, match="seeds="):
        compare_variants_over_seeds(base, task, seeds=(0,), runs=runs[:1], epochs=1, seed=3)
    with pytest.raises(ValueError, match="metric"):
        spreads[0].values("loss")


def test_plot_variant_spread_draws_error_bars_from_chance(small_spreads):
    import matplotlib.pyplot as plt

    from lora_np.viz import plot_variant_spread
    *_, spreads = small_spreads
    fig = plot_variant_spread(spreads, before=0.5)
    ax = fig.axes[1]
    assert ax.get_ylim()[0] == pytest.approx(10.0)                     # the axis starts at chance
    assert len(ax.containers) >= 4                                      # 2 bar groups, 2 error-bar groups
    plt.close(fig)
    with pytest.raises(ValueError, match="spreads"):
        plot_variant_spread([])


# ------------------------------------------------------------------ the notebooks, as committed (executed)

@pytest.fixture(scope="module")
def practice():
    return nbformat.read(PRACTICE, as_version=4)


@pytest.fixture(scope="module")
def variants():
    return nbformat.read(VARIANTS, as_version=4)


def controls(nb) -> dict:
    state = nb.metadata["widgets"][WIDGET_STATE]["state"]
    kinds = ("SliderModel", "DropdownModel")
    out = {}
    for m in state.values():
        if m["model_name"].endswith(kinds):
            s = m["state"]
            out[s["description"]] = s["_options_labels"][s["index"]] if "_options_labels" in s else s["value"]
    return out


@pytest.mark.parametrize("which, names", [("practice", nb04.EXERCISES_04), ("variants", nb04b.EXERCISES_04B)])
def test_every_exercise_has_a_placeholder_that_says_no_answer_yet(which, names, request):
    assert_placeholders_say_no_answer_yet(request.getfixturevalue(which), names)


def test_each_dashboard_comes_after_its_question_and_before_what_you_should_have_seen(practice):
    sources = [c.source for c in practice.cells]
    pairs = (("predict_switch_strength0", "adapter_explorer(", nb04.SWITCH_OPTIONS),
             ("predict_blend_half", "blend_explorer(", nb04.BLEND_OPTIONS))
    for question, dashboard, options in pairs:
        q = next(i for i, s in enumerate(sources) if f'check_exercise("{question}", None)' in s)
        d = next(i for i, s in enumerate(sources) if dashboard in s and "import" not in s)
        seen = next(i for i, s in enumerate(sources) if i > d and "What you should have seen" in s)
        assert q < d < seen, question
        for option in options.values():
            assert option in sources[q - 1]


def test_run_all_leaves_the_controls_where_the_text_says_they_start(practice):
    text = markdown(practice)
    assert "starts at adapter **harvest_a**, strength **1.00**" in text and "starting at **w = 0.50**" in text
    assert controls(practice) == {"adapter": "harvest_a", "strength": 1.0, "weight w": 0.5}


def test_the_practice_notebook_keeps_its_corrected_claims(practice):
    text = markdown(practice)
    assert "10-150 MB" in text and "own free weight" in text
    blend = next(c for c in practice.cells if c.cell_type == "code" and "viz.plot_blend(" in c.source)
    assert 'table["base"][harvest]' in blend.source                   # each harvest's own base line
    assert "set_ylim(10, 100)" in blend.source
    for gone in ("clear_caches()", "def outputs", "lora_np.__version__", "to_float(xp.abs"):
        assert all(gone not in c.source for c in practice.cells if c.cell_type == "code"), gone


def test_the_variants_are_compared_over_three_seeds_with_their_spread(variants):
    code = [c for c in variants.cells if c.cell_type == "code"]
    run = next(c for c in code if "compare_variants_over_seeds(" in c.source)
    assert re.search(r"SEEDS = \(0, 1, 2\)", run.source)
    out = text_output(run)
    assert "accuracy, mean [min–max of 3]" in out
    assert any("image/png" in o.get("data", {}) for o in run.outputs)
    reading = next(c for c in code if "verdict = {}" in c.source)
    assert "accuracy below LoRA's whole range: ['VeRA r=16'" in text_output(reading)
    assert "no ranking" in markdown(variants) and "min–max over the 3 seeds" in markdown(variants)


@pytest.mark.parametrize("which, arxiv", [
    ("practice", ("2106.09685",)),
    ("variants", ("2106.09685", "2312.03732", "2402.09353", "2310.11454", "2404.02948", "2402.12354"))])
def test_references_and_limitations_close_each_notebook(which, arxiv, request):
    text = markdown(request.getfixturevalue(which))
    for a in arxiv:
        assert f"arXiv:{a}" in text
    assert "## What this toy cannot show" in text and "## References" in text
