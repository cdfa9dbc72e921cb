"""Notebook 03: the softmax-backward checker of its your-turn cell, its exercises, and its dashboard.

The checker passes the reference and names each deliberately wrong implementation's mistake. Every
exercise accepts its right answer, rejects each common wrong one with a reason that does not contain the
answer, and has a placeholder cell and a worked solution. Run All (the committed, executed notebook) leaves
the dashboard's controls where the text says they start.
"""
from __future__ import annotations

import pathlib

import nbformat
import numpy as np
import pytest
from exercise_checks import assert_accepts, assert_placeholders_say_no_answer_yet, assert_rejects, text_output
from notebook_runner import WIDGET_STATE

from lora_np import functional as F
from lora_np.course import EXERCISES, check_exercise, show_solution
from lora_np.course import notebook03 as nb03
from lora_np.data.text import fruit_mentions, generate_text

pytestmark = pytest.mark.host_only

NOTEBOOK = pathlib.Path(__file__).resolve().parents[1] / "notebooks" / "03_lora_in_attention.ipynb"
NAMES = sorted(nb03.EXERCISES_03)


# ------------------------------------------------------------------ the your-turn cell: softmax_backward

def unwritten(dp, p):
    raise NotImplementedError


def wrong_axis(dp, p):
    return p * (dp - (dp * p).sum(axis=-2, keepdims=True))


def first_axis(dp, p):
    return p * (dp - (dp * p).sum(axis=0, keepdims=True))


def missing_term(dp, p):
    return p * dp


def no_p(dp, p):
    return dp - (dp * p).sum(axis=-1, keepdims=True)


def sum_of_dp(dp, p):
    return p * (dp - dp.sum(axis=-1, keepdims=True))


def flipped(dp, p):
    return p * ((dp * p).sum(axis=-1, keepdims=True) - dp)


def transposed(dp, p):
    return np.swapaxes(p * (dp - (dp * p).sum(axis=-1, keepdims=True)), -1, -2)


def no_keepdims(dp, p):
    return p * (dp - (dp * p).sum(axis=-1))


def returns_nothing(dp, p):
    p * dp


def returns_a_pair(dp, p):
    return nb03.softmax_backward(dp, p), p


def in_place(dp, p):
    dp -= (dp * p).sum(axis=-1, keepdims=True)        # scribbles on its input: the checker passes copies
    dp *= p
    return dp


def by_the_jacobian(dp, p):
    """The long way, one row at a time: J = diag(p) − p pᵀ."""
    rows = p.reshape(-1, p.shape[-1])
    dps = dp.reshape(-1, p.shape[-1])
    out = [(np.diag(r) - np.outer(r, r)) @ g for r, g in zip(rows, dps, strict=True)]
    return np.stack(out).reshape(p.shape)


SOFTMAX_WRONG = [                                 # (implementation, words the feedback must contain)
    (unwritten, "not written yet"),
    (wrong_axis, "the sum runs over the wrong axis"),
    (first_axis, "the sum runs over the wrong axis (axis 0"),
    (missing_term, "missing the subtraction term: you returned p ⊙ dp"),
    (no_p, "missing the leading factor p"),
    (sum_of_dp, "weight dp by p"),
    (flipped, "the sign is flipped"),
    (transposed, "transposed"),
    (no_keepdims, "keepdims=True"),
    (returns_nothing, "returned None"),
    (returns_a_pair, "returned a tuple"),
]


def test_the_reference_softmax_backward_passes_against_the_library_and_central_differences():
    fb = nb03.check_softmax_backward(nb03.softmax_backward)
    assert fb.passed, str(fb)
    assert sum(line.startswith("✓") for line in fb.lines) == 2
    assert "central differences" in str(fb) and "rel_error_tensor" in str(fb)


@pytest.mark.parametrize("fn", [by_the_jacobian, in_place, lambda dp, p: F.softmax_backward(dp, p)],
                         ids=["jacobian", "in_place", "library"])
def test_other_right_ways_pass(fn):
    assert nb03.check_softmax_backward(fn).passed


@pytest.mark.parametrize("fn, words", SOFTMAX_WRONG, ids=[f.__name__ for f, _ in SOFTMAX_WRONG])
def test_a_wrong_softmax_backward_is_rejected_and_the_mistake_named(fn, words):
    fb = nb03.check_softmax_backward(fn)
    assert not fb.passed
    assert words in str(fb), str(fb)


def test_the_checker_refuses_what_is_not_a_function_and_the_exercise_wraps_it():
    with pytest.raises(ValueError, match="fn"):
        nb03.check_softmax_backward(nb03.softmax_backward(np.ones((1, 2)), np.ones((1, 2)) / 2))
    assert check_exercise("softmax_backward", nb03.softmax_backward).passed
    fb = check_exercise("softmax_backward", missing_term)
    assert not fb.passed and "missing the subtraction term" in str(fb)
    assert "pass your function itself" in str(check_exercise("softmax_backward", 3.0))


# ------------------------------------------------------------------ the exercises

def causal_unwritten(S):
    raise NotImplementedError


def _mask(S, k):
    T = S.shape[-1]
    return np.triu(np.ones((T, T), dtype=bool), k=k)


def past_masked(S):
    hide = np.tril(np.ones(S.shape[-2:], dtype=bool), k=-1)
    return F.softmax(np.where(hide, -np.inf, S))


def zero_not_inf(S):
    return F.softmax(np.where(_mask(S, 1), 0.0, S))


def zeroed_after(S):
    return np.where(_mask(S, 1), 0.0, F.softmax(S))


def causal_transposed(S):
    return np.swapaxes(nb03.causal_softmax(S), -1, -2)


def diagonal_masked(S):
    with np.errstate(invalid="ignore"):               # the first row is all −∞: NaN, then 0
        P = F.softmax(np.where(_mask(S, 0), -np.inf, S))
    return np.nan_to_num(P)


def causal_nan(S):
    return np.full(S.shape, np.nan)


WRONG = {                                          # name -> [(wrong answer, words the reason must contain)]
    "softmax_backward": [(missing_term, "missing the subtraction term"), (wrong_axis, "wrong axis"),
                         (7, "pass your function itself")],
    "predict_strength_zero": [("a", "multiplied by 0"), ("c", "frozen W0"), ("D", "one adapter is loaded"),
                              ("e", "answer one of"), (0, "answer one of")],
    "predict_causal_last": [("a", "positions ≤ t only"), ("c", "computed FROM the last input"),
                            ("d", "opposite of the mask"), ("z", "answer one of")],
    "lora_all_four_params": [
        (nb03.ALL4_PARAMS // 2, "A (r, d) AND B (d, r)"),
        (nb03.ALL4_PARAMS // 12, "one block's count"),
        (nb03.ALL4_PARAMS // 4, "one projection's count"),
        (4 * 768 * 768 * 12, "full fine-tuning"),
        (4 * 4 * 4 * 12, "not r × r"),
        (10 ** 8, "too large"), (1000, "too small"), (2.5, "whole number"), ("many", "expected a number")],
    "causal_softmax": [(causal_unwritten, "not written yet"), (past_masked, "hides the past"),
                       (zero_not_inf, "set to 0, not −∞"), (zeroed_after, "after the softmax"),
                       (causal_transposed, "transposed"), (diagonal_masked, "diagonal is masked"),
                       (causal_nan, "NaN"), (lambda S: S[0], "shape"), ((1, 2), "pass your function itself")],
}


def answer_forms(name: str) -> list[str]:
    """How the right answer could show up in a text."""
    answer = nb03.EXERCISES_03[name].answer
    if name == "predict_strength_zero":
        return [nb03.STRENGTH_OPTIONS[answer], f"({answer})", f"'{answer}'", f'"{answer}"', "answer is"]
    if name == "predict_causal_last":
        return [nb03.CAUSAL_OPTIONS[answer], f"({answer})", f"'{answer}'", f'"{answer}"', "answer is"]
    if callable(answer):
        return ["def " + answer.__name__, "keepdims=True)", "np.triu(np.ones"]
    return [str(answer), f"{answer:,}"]


def test_the_notebook_registers_its_exercises_and_every_one_has_wrong_answers_to_test():
    assert set(WRONG) == set(NAMES) and len(NAMES) >= 4
    assert all(EXERCISES[name] is nb03.EXERCISES_03[name] for name in NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_the_right_answer_is_accepted(name):
    assert_accepts(name, nb03.EXERCISES_03[name].answer)


@pytest.mark.parametrize("name", NAMES)
def test_a_wrong_answer_is_rejected_with_its_reason_and_without_the_answer(name):
    listings = tuple(str(sorted(options)) for options in (nb03.STRENGTH_OPTIONS, nb03.CAUSAL_OPTIONS))
    for wrong, words in WRONG[name]:
        assert_rejects(name, wrong, answer_forms(name), words, listings=listings, words_anywhere=True)


def test_the_answers_are_what_the_formulas_give():
    assert nb03.EXERCISES_03["lora_all_four_params"].answer == 4 * 2 * 4 * 768 * 12 == 294_912
    P = nb03.causal_softmax(np.random.default_rng(0).standard_normal((3, 6, 6)))
    assert np.allclose(P.sum(axis=-1), 1.0) and not P[..., _mask(P, 1)].any()
    assert check_exercise("predict_causal_last", " B ").passed


@pytest.mark.parametrize("name", NAMES)
def test_show_solution_prints_the_worked_solution(capsys, name):
    show_solution(name)
    out = capsys.readouterr().out
    assert out.startswith(f"{name}: {nb03.EXERCISES_03[name].prompt}")
    assert nb03.EXERCISES_03[name].solution in out


def test_fruit_mentions_reads_every_style_of_the_grammar_as_about_fruit():
    for style in ("plain", "inventory", "verse", "dialogue"):
        assert fruit_mentions(generate_text(style, 40, seed=1))["per_100"] > 1.0
    m = fruit_mentions("GRAPES x2; cherries, a cherry and blueberry.")
    assert m["counts"]["grape"] == 1 and m["counts"]["cherry"] == 2 and m["counts"]["blueberry"] == 1
    assert fruit_mentions("xqz rrr")["per_100"] == 0.0
    with pytest.raises(ValueError, match="text"):
        fruit_mentions(3)


# ------------------------------------------------------------------ the notebook, as committed (executed)

@pytest.fixture(scope="module")
def ran():
    """Notebook 03 as committed: executed top to bottom by tests/notebook_runner.py."""
    return nbformat.read(NOTEBOOK, as_version=4)


def test_every_exercise_has_a_placeholder_that_says_no_answer_yet(ran):
    # the your-turn cell calls its checker directly
    assert_placeholders_say_no_answer_yet(ran, [name for name in NAMES if name != "softmax_backward"])
    (turn,) = [c for c in ran.cells
               if c.cell_type == "code" and "check_softmax_backward(softmax_backward)" in c.source]
    assert "not written yet" in text_output(turn)


def test_the_prediction_comes_before_the_dashboard_with_every_option(ran):
    sources = [c.source for c in ran.cells]
    question = next(i for i, s in enumerate(sources) if 'check_exercise("predict_strength_zero", None)' in s)
    dashboard = next(i for i, s in enumerate(sources) if "style_explorer(" in s and "import" not in s)
    seen = next(i for i, s in enumerate(sources) if "What you should have seen" in s)
    assert question < dashboard < seen
    for option in nb03.STRENGTH_OPTIONS.values():
        assert option in sources[question - 1]


def test_run_all_leaves_the_controls_where_the_text_says_they_start(ran):
    text = "\n".join(c.source for c in ran.cells if c.cell_type == "markdown")
    assert "starts at the inventory adapter, strength 1.0" in text
    state = ran.metadata["widgets"][WIDGET_STATE]["state"]
    controls = {m["state"]["description"]: m["state"] for m in state.values()
                if m["model_name"].endswith(("SliderModel", "DropdownModel"))}
    assert set(controls) == {"adapter", "strength"}
    dropdown = controls["adapter"]
    assert dropdown["_options_labels"][dropdown["index"]] == "inventory"
    assert controls["strength"]["value"] == 1.0


def test_the_stale_text_is_gone_and_the_references_are_there(ran):
    text = " ".join("\n".join(c.source for c in ran.cells if c.cell_type == "markdown").split())
    assert "seed below (4)" not in text and "is not special" not in text
    assert "not what it writes about" not in text.replace("not what it writes about\" is **not**", "")
    assert "several matrices at a low rank beat one" in text and "does **not** show" in text
    for arxiv in ("2106.09685", "1706.03762", "2010.11929"):
        assert f"arXiv:{arxiv}" in text
    assert "## What this toy cannot show" in text and "## References" in text
    assert not any("lora_np.__version__" in c.source for c in ran.cells)
