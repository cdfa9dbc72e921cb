"""Notebook 07: its exercises and its dashboard.

Every exercise accepts its right answer, rejects each common wrong one with a reason that does not
contain the answer, and has a placeholder cell and a worked solution. Run All, in a fresh kernel, must
leave the dashboard's slider where the text says it starts (the check cell moves it and puts it back).
"""
from __future__ import annotations

import math
import pathlib
import re

import nbformat
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
from lora_np.course import notebook07 as nb07

pytestmark = pytest.mark.host_only

NOTEBOOK = pathlib.Path(__file__).resolve().parents[1] / "notebooks" / "07_adapters_prefix_lora.ipynb"
NAMES = sorted(nb07.EXERCISES_07)


# ------------------------------------------------------------------ wrong answers, and what each must say

def unwritten(dK_full, p):
    raise NotImplementedError


def swapped(dK_full, p):
    return dK_full[:, :p].sum(axis=0), dK_full[:, p:]


def not_summed(dK_full, p):
    return dK_full[:, p:], dK_full[:, :p]


def averaged(dK_full, p):
    return dK_full[:, p:], dK_full[:, :p].mean(axis=0)


def wrong_end(dK_full, p):
    T = dK_full.shape[1] - p
    return dK_full[:, :T], dK_full[:, T:].sum(axis=0)


def prefix_kept(dK_full, p):
    return dK_full, dK_full[:, :p].sum(axis=0)


def one_array(dK_full, p):
    return dK_full[:, p:]


def broken(dK_full, p):
    return dK_full[:, p:], dK_full.no_such_method()


WRONG = {                                          # name -> [(wrong answer, words the reason must contain)]
    "predict_peft_costs": [("a", "not a multiply-add"), ("C", "T + k keys"), ("d", "at equal k the same"),
                           ("e", "answer one of"), (2, "answer one of")],
    "prefix_params_gpt2_small": [
        (nb07.GPT_P * nb07.GPT_D * nb07.GPT_L, "each layer learns both"),
        (2 * nb07.GPT_P * nb07.GPT_D, "one layer's count"),
        (nb07.GPT_P * nb07.GPT_D, "one P_k of one layer"),
        (2 * nb07.GPT_P * nb07.GPT_D * nb07.GPT_L * nb07.GPT_HEADS, "do not multiply"),
        (2 * nb07.GPT_P * nb07.GPT_L, "d-wide vector"),
        (10 ** 7, "too large"), (1000, "too small"), (1.5, "whole number"), ("many", "expected a number")],
    "attention_cost_factor": [(1.5625, "extends the queries too"), (0.25, "the increase, not the factor"),
                              (0.8, "old cost over the new"), (5, "divides by p"), (1.5, "too large"),
                              (1.1, "too small")],
    "merged_lora_latency_r64": [(True, "count its matrix products"), ("no", "answer True or False")],
    "prefix_grad_split": [(unwritten, "not written yet"), (swapped, "returned (dP_k, dK)"),
                          (not_summed, "one prefix, of shape (p, d)"), (averaged, "batch mean"),
                          (wrong_end, "wrong end"), (prefix_kept, "without the prefix's rows"),
                          (one_array, "two arrays"), (broken, "raised AttributeError"),
                          ((1, 2), "pass your function itself")],
}


def answer_forms(name: str) -> list[str]:
    """How the right answer could show up in a text."""
    answer = nb07.EXERCISES_07[name].answer
    if name == "predict_peft_costs":
        return [nb07.PREDICT_OPTIONS[answer], f"({answer})", f"'{answer}'", f'"{answer}"', "answer is"]
    if name == "prefix_grad_split":
        return ["[:, p:]", "[:, :p]", "sum(axis=0)", "def split_prefix_grad"]
    if isinstance(answer, bool):
        return [str(answer)]
    out = [str(answer), f"{answer:,}", str(round(answer))]
    if not float(answer).is_integer():
        out += [f"{answer:.1f}", f"{answer:.2f}"]
    return out


def test_the_notebook_registers_its_exercises_and_every_one_has_wrong_answers_to_test():
    assert set(WRONG) == set(NAMES) and len(NAMES) >= 4
    assert all(EXERCISES[name] is nb07.EXERCISES_07[name] for name in NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_the_right_answer_is_accepted(name):
    assert_accepts(name, nb07.EXERCISES_07[name].answer)


@pytest.mark.parametrize("name", NAMES)
def test_a_wrong_answer_is_rejected_with_its_reason_and_without_the_answer(name):
    for wrong, words in WRONG[name]:                         # the listings: what every answer may be
        assert_rejects(name, wrong, answer_forms(name), words,
                       listings=("True or False", str(sorted(nb07.PREDICT_OPTIONS))))


def test_the_answers_are_what_the_formulas_give():
    ex = nb07.EXERCISES_07
    assert ex["prefix_params_gpt2_small"].answer == 2 * 20 * 768 * 12 == 368_640
    assert math.isclose(ex["attention_cost_factor"].answer, 64 * 80 / 64 ** 2)
    assert ex["merged_lora_latency_r64"].answer is False
    assert ex["predict_peft_costs"].answer == "b" and set(nb07.PREDICT_OPTIONS) == set("abcd")
    assert check_exercise("attention_cost_factor", 1.254).passed           # within 0.005
    assert check_exercise("predict_peft_costs", " B ").passed


def test_the_code_exercise_accepts_other_right_ways_and_judges_what_is_returned():
    def with_loops(dK_full, p):
        dP = dK_full[0, :p].copy()
        for example in dK_full[1:]:
            dP += example[:p]
        return dK_full[:, p:].copy(), dP

    def in_place(dK_full, p):
        dK_full[0] *= 100                           # scribbles on its input: the checker's copy
        return dK_full[:, p:], dK_full[:, :p].sum(axis=0)

    assert check_exercise("prefix_grad_split", with_loops).passed
    assert not check_exercise("prefix_grad_split", in_place).passed


@pytest.mark.parametrize("name", NAMES)
def test_show_solution_prints_the_worked_solution(capsys, name):
    show_solution(name)
    out = capsys.readouterr().out
    assert out.startswith(f"{name}: {nb07.EXERCISES_07[name].prompt}")
    assert nb07.EXERCISES_07[name].solution in out


# ------------------------------------------------------------------ the notebook, run top to bottom

@pytest.fixture(scope="module")
def ran():
    """Notebook 07 as committed: executed top to bottom by ``make notebooks`` (tests/notebook_runner.py).
    A fresh Run All, and where it leaves the controls, is tests/test_notebooks.py's job."""
    return nbformat.read(NOTEBOOK, as_version=4)


def test_every_exercise_has_a_placeholder_that_says_no_answer_yet(ran):
    assert_placeholders_say_no_answer_yet(ran, NAMES)


def test_the_prediction_comes_before_the_dashboard_with_every_option(ran):
    sources = [c.source for c in ran.cells]
    question = next(i for i, s in enumerate(sources) if 'check_exercise("predict_peft_costs", None)' in s)
    dashboard = next(i for i, s in enumerate(sources) if "peft_cost_explorer(" in s and "import" not in s)
    seen = next(i for i, s in enumerate(sources) if "What you should have seen" in s)
    assert question < dashboard < seen
    for option in nb07.PREDICT_OPTIONS.values():
        assert option in sources[question - 1]


def test_run_all_leaves_the_slider_where_the_text_says_it_starts(ran):
    (start,) = set(re.findall(r"starts at \$k = (\d+)\$", markdown(ran)))
    state = ran.metadata["widgets"][WIDGET_STATE]["state"]
    kinds = ("SliderModel", "DropdownModel", "ButtonsModel", "CheckboxModel")
    controls = [m["state"] for m in state.values() if m["model_name"].endswith(kinds)]
    assert len(controls) == 1, [m["model_name"] for m in state.values()]
    slider = controls[0]
    assert slider["description"] == "size k"
    assert slider["_options_labels"][slider["index"]] == start
    shown = [out for m in state.values() if m["model_name"] == "OutputModel" for out in m["state"]["outputs"]]
    printed = "".join(out.get("text", "") for out in shown)
    assert printed.startswith(f"k = {start}:"), printed[:80]          # the dashboard shows that k too


def test_the_context_share_is_computed_and_the_references_are_there(ran):
    outputs = "".join(text_output(c) for c in ran.cells if c.cell_type == "code")
    assert "8 of them the prefix's: 33% of the slots" in outputs
    assert f"{20 / 2048:.2%} of the context, and leaves 2028 for the text" in outputs
    text = markdown(ran)
    for arxiv in ("2106.09685", "1902.00751", "2101.00190", "2104.08691"):
        assert f"arXiv:{arxiv}" in text
    assert "## What this toy cannot show" in text
    assert "literature reports" not in text


def test_the_comparison_runs_three_seeds_without_plumbing_in_the_notebook(ran):
    sources = [c.source for c in ran.cells if c.cell_type == "code"]
    assert not any("__version__" in s for s in sources)                 # the versions cell lives in 00
    assert not any("clear_caches" in s or "xp.abs" in s or "to_float(" in s for s in sources)
    imports = [line for line in sources[0].splitlines() if line.startswith(("import ", "from "))]
    assert len(imports) <= 15, imports
    assert any("compare_peft_seeds(" in s and "seeds=(0, 1, 2)" in s for s in sources)
    outputs = "".join(text_output(c) for c in ran.cells if c.cell_type == "code")
    assert "accuracy, mean [min–max] of 3 seeds" in outputs
    assert "the prefix's best seed is below LoRA's and the adapters' worst: True" in outputs
