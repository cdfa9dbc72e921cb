"""Notebook 01's checkers and exercises (lora_np.course.notebook01), and Run All leaving its slider at r = 1.

The reference counts pass ``check_lowrank_counts``; each common wrong count gets a ✗ line that names the
mistake; the scaffold gets "not written yet" without raising. Every exercise accepts its right answer and
rejects wrong ones with a reason that does not contain the answer.
"""
from __future__ import annotations

import math
import pathlib
import re

import numpy as np
import pytest
from exercise_checks import assert_accepts, assert_rejects
from notebook_runner import WIDGET_STATE

from lora_np.course import EXERCISES, check_exercise, notebook01_checks, show_solution
from lora_np.course.notebook01 import (
    EXERCISES_01,
    PREDICT_OPTIONS,
    break_even,
    check_lowrank,
    check_lowrank_counts,
    lowrank,
    lowrank_params,
)
from lora_np.experiments import break_even as library_break_even
from lora_np.experiments import lowrank_error_curve, lowrank_param_count, singular_values, structured_matrix
from lora_np.nn import break_even_rank

pytestmark = pytest.mark.host_only

NOTEBOOK = pathlib.Path(__file__).resolve().parents[1] / "notebooks" / "01_rank_decomposition.ipynb"


def failed_lines(fb) -> list[str]:
    return [line for line in fb.lines if line.startswith("✗")]


def the_line(fb, start: str) -> str:
    """The one ✗ line that starts with ``start`` (after the mark)."""
    found = [line for line in failed_lines(fb) if line[2:].startswith(start)]
    assert len(found) == 1, f"no single ✗ line for {start!r} in:\n{fb}"
    return found[0]


def scaffold(*args):
    raise NotImplementedError("fill in the TODOs")


# ------------------------------------------------------------------ your turn: the counts

def test_the_reference_counts_pass_and_agree_with_the_library():
    fb = check_lowrank_counts(lowrank_params, break_even)
    assert fb.passed, str(fb)
    assert fb.lines[0].startswith("✓ lowrank_params matches")
    assert fb.lines[1].startswith("✓ break_even matches")
    for d_in, d_out, r in notebook01_checks.COUNT_CASES:
        assert lowrank_params(d_in, d_out, r) == lowrank_param_count(d_out, d_in, r) == r * (d_in + d_out)
        assert math.isclose(break_even(d_in, d_out), library_break_even(d_in, d_out).rank)
        assert math.isclose(break_even(d_in, d_out), break_even_rank(d_in, d_out))


def test_the_cases_cover_non_square_shapes_and_r_at_and_above_break_even():
    cases = notebook01_checks.COUNT_CASES
    assert any(d_in != d_out for d_in, d_out, _ in cases)
    assert any((d_out, d_in, r) in cases for d_in, d_out, r in cases if d_in != d_out)   # both orientations
    assert any(r == break_even(d_in, d_out) for d_in, d_out, r in cases)
    assert any(r > break_even(d_in, d_out) for d_in, d_out, r in cases)


def test_the_scaffold_says_not_written_yet_without_raising():
    fb = check_lowrank_counts(scaffold, scaffold)
    assert not fb.passed
    assert "not written yet" in the_line(fb, "lowrank_params")
    assert "not written yet" in the_line(fb, "break_even")
    fb = check_lowrank_counts(lowrank_params, scaffold)                  # one written, one not
    assert fb.lines[0].startswith("✓ lowrank_params") and "not written yet" in the_line(fb, "break_even")


WRONG_PARAMS = {
    "only A": (lambda d_in, d_out, r: r * d_in, "counted only A"),
    "only B": (lambda d_in, d_out, r: d_out * r, "counted only B"),
    "the full matrix": (lambda d_in, d_out, r: d_in * d_out, "the count of the full matrix W"),
    "full plus r": (lambda d_in, d_out, r: d_in * d_out + r, "d_in·d_out + r: not a LoRA count"),
    "shapes multiplied": (lambda d_in, d_out, r: r * d_in * d_out, "their sizes add"),
    "precedence": (lambda d_in, d_out, r: r * d_in + d_out, "operator precedence"),
    "square only": (lambda d_in, d_out, r: 2 * r * d_in, "only for a square matrix"),
    "arguments in another order": (lambda r, d_in, d_out: r * (d_in + d_out),
                                   "in the order (d_in, d_out, r)"),
    "a bias counted": (lambda d_in, d_out, r: r * (d_in + d_out) + d_out, "bias stays frozen"),
    "unexplained": (lambda d_in, d_out, r: r * (d_in + d_out) + 1, "write the shapes down"),
}

WRONG_BREAK_EVEN = {
    "flipped": (lambda d_in, d_out: (d_in + d_out) / (d_in * d_out), "break-even flipped"),
    "floor division": (lambda d_in, d_out: d_in * d_out // (d_in + d_out), "rounded to a whole number"),
    "largest saving rank": (lambda d_in, d_out: library_break_even(d_in, d_out).largest_saving_rank,
                            "rounded to a whole number"),
    "precedence": (lambda d_in, d_out: d_in * d_out / d_in + d_out, "operator precedence"),
    "d / 2": (lambda d_in, d_out: d_in / 2, "only for a square"),
    "twice": (lambda d_in, d_out: 2 * d_in * d_out / (d_in + d_out), "twice r*"),
    "min": (lambda d_in, d_out: min(d_in, d_out), "the largest rank W can have"),
    "unexplained": (lambda d_in, d_out: d_in * d_out / (d_in + d_out) + 1, "solve for r"),
}


@pytest.mark.parametrize("mistake", sorted(WRONG_PARAMS))
def test_a_wrong_count_is_named(mistake):
    fn, hint = WRONG_PARAMS[mistake]
    fb = check_lowrank_counts(fn, break_even)
    assert not fb.passed
    assert len(failed_lines(fb)) == 1 and fb.lines[1].startswith("✓ break_even"), str(fb)
    line = the_line(fb, "lowrank_params: wrong on")
    assert hint in line and "the library gives" in line, line


@pytest.mark.parametrize("mistake", sorted(WRONG_BREAK_EVEN))
def test_a_wrong_break_even_is_named(mistake):
    fn, hint = WRONG_BREAK_EVEN[mistake]
    fb = check_lowrank_counts(lowrank_params, fn)
    assert not fb.passed
    assert len(failed_lines(fb)) == 1 and fb.lines[0].startswith("✓ lowrank_params"), str(fb)
    line = the_line(fb, "break_even: wrong on")
    assert hint in line, line


@pytest.mark.parametrize("returned, expected", [
    (lambda *a: None, "returned None"),
    (lambda *a: "6", "returned a str, not a number"),
    (lambda *a: (1.5, 1), "returned a tuple of 2; return one number"),
    (lambda *a: float("nan"), "returned nan"),
    (lambda *a: np.float64(1.5), "break_even: wrong on"),                  # a NumPy number is a number
])
def test_a_function_that_returns_the_wrong_thing_or_raises_is_told_without_raising(returned, expected):
    fb = check_lowrank_counts(lowrank_params, returned)
    assert not fb.passed and expected in failed_lines(fb)[0], str(fb)
    fb = check_lowrank_counts(lambda d_in, d_out, r: d_in / 0, break_even)
    line = the_line(fb, "lowrank_params")
    assert "lowrank_params(3, 3, 1) raised ZeroDivisionError: division by zero" in line
    fb = check_lowrank_counts(lambda d_in, d_out, r: np.int64(r * (d_in + d_out)), break_even)
    assert fb.passed, str(fb)


def test_not_a_function_is_a_clear_error():
    with pytest.raises(ValueError, match="check_lowrank_counts: lowrank_params must be a function"):
        check_lowrank_counts(lowrank_params(3, 3, 1), break_even)
    with pytest.raises(ValueError, match="check_lowrank: lowrank must be a function"):
        check_lowrank(None)


# ------------------------------------------------------------------ the code exercise: lowrank(M, r)

def _svd(M):
    return np.linalg.svd(np.asarray(M), full_matrices=False)


def no_sigma(M, r):
    U, S, Vt = _svd(M)
    return U[:, :r], Vt[:r]


def smallest(M, r):
    U, S, Vt = _svd(M)
    return U[:, -r:] * S[-r:], Vt[-r:]


def columns_of_vt(M, r):
    U, S, Vt = _svd(M)
    return U[:, :r] * S[:r], Vt[:, :r].T


def sigma_twice(M, r):
    U, S, Vt = _svd(M)
    return U[:, :r] * S[:r], S[:r, None] * Vt[:r]


def product(M, r):
    B, A = lowrank(M, r)
    return B @ A


def a_transposed(M, r):
    B, A = lowrank(M, r)
    return B, A.T


def split_sigma(M, r):                    # right too: Σ split between the factors, full_matrices=True
    U, S, Vt = np.linalg.svd(np.asarray(M), full_matrices=True)
    return U[:, :r] * np.sqrt(S[:r]), np.sqrt(S[:r, None]) * Vt[:r]


WRONG_LOWRANK = {
    "no Σ": (no_sigma, "leaves out the singular values"),
    "the smallest σ": (smallest, "keeps the r smallest singular values"),
    "columns of Vᵀ": (columns_of_vt, "the right singular vectors are the rows of Vᵀ"),
    "Σ twice": (sigma_twice, "Σ_r enters twice"),
    "the product": (product, "returned one ndarray; return the two factors"),
    "A transposed": (a_transposed, "the first r rows of Vᵀ, not its columns"),
    "the scaffold": (scaffold, "not written yet"),
    "a list": (lambda M, r: ([[1.0]], [[1.0]]), "not an array"),
}


def test_the_reference_lowrank_passes_and_so_does_another_split_of_sigma():
    assert check_lowrank(lowrank).passed
    assert check_lowrank(split_sigma).passed


@pytest.mark.parametrize("mistake", sorted(WRONG_LOWRANK))
def test_a_wrong_lowrank_is_named(mistake):
    fn, hint = WRONG_LOWRANK[mistake]
    fb = check_lowrank(fn)
    assert not fb.passed and len(failed_lines(fb)) == 1
    assert hint in failed_lines(fb)[0], str(fb)


# ------------------------------------------------------------------ exercises

RIGHT_ANSWERS_ARE = {
    "count_4096x4096_r8": 8 * (4096 + 4096),
    "fraction_4096x4096_r8": 8 * (4096 + 4096) / 4096 ** 2,
    "rank_B6x2_A2x5": 2,
    "saves_20x16_r8": 8 * (20 + 16) < 20 * 16,
    "predict_error_vs_r": "b",
}

WRONG_ANSWERS = {
    "lowrank_counts": [(WRONG_PARAMS["only A"][0], break_even),
                       (lowrank_params, WRONG_BREAK_EVEN["flipped"][0]),
                       (scaffold, scaffold), lowrank_params],
    "predict_error_vs_r": ["a", "c", "d"],
    "count_4096x4096_r8": [32768, 4096 ** 2, 4096 ** 2 + 8, 8 * 4096 ** 2, 8192, 70000, 60000, 65536.5],
    "fraction_4096x4096_r8": [0.390625, 1 / 512, 256, 0.5, 0.001],
    "rank_B6x2_A2x5": [5, 6, 30, 22, 4, 1, 2.5],
    "saves_20x16_r8": [False],
    "lowrank_svd": [no_sigma, product, scaffold, "lowrank(M, r)"],
}


def answer_forms(name: str, answer) -> list[str]:
    """How the right answer could show up in a feedback text."""
    if name == "predict_error_vs_r":
        return [PREDICT_OPTIONS[answer], f"({answer})"]
    if name == "lowrank_counts":
        return ["return r * d_in + d_out * r", "return d_in * d_out / (d_in + d_out)"]
    if name == "lowrank_svd":
        return ["U[:, :r] * S[:r]", "Vt[:r]"]
    if isinstance(answer, bool):
        return [str(answer)]
    if float(answer).is_integer():
        return [str(int(answer)), f"{int(answer):,}"]
    return [str(answer), f"{answer:.4f}", f"{answer:.3g}", f"{answer:.2%}", f"{answer:.1%}"]


def shows(form: str, text: str) -> bool:
    """``form`` in ``text``, a number only where it is not part of a longer number."""
    if re.fullmatch(r"[\d.,]+", form):
        return re.search(rf"(?<![\d.,]){re.escape(form)}(?![\d,]|\.\d)", text) is not None
    return form in text


def test_every_exercise_of_the_notebook_is_registered_and_tested():
    assert set(WRONG_ANSWERS) == set(EXERCISES_01)
    assert all(EXERCISES[name] is ex for name, ex in EXERCISES_01.items())
    for name, right in RIGHT_ANSWERS_ARE.items():
        assert EXERCISES_01[name].answer == right, name


@pytest.mark.parametrize("name", sorted(EXERCISES_01))
def test_an_exercise_accepts_the_right_answer(name):
    assert_accepts(name, EXERCISES_01[name].answer)


@pytest.mark.parametrize("name", sorted(EXERCISES_01))
def test_a_wrong_answer_is_rejected_with_a_reason_and_without_the_answer(name):
    for wrong in WRONG_ANSWERS[name]:
        assert_rejects(name, wrong, answer_forms(name, EXERCISES_01[name].answer), shows=shows)


def test_common_mistakes_in_the_exercises_are_named():
    assert "one factor only" in str(check_exercise("count_4096x4096_r8", 32768))
    assert "full matrix" in str(check_exercise("count_4096x4096_r8", 4096 ** 2 + 8))
    assert "percentage" in str(check_exercise("fraction_4096x4096_r8", 0.390625))
    assert "min(m, n)" in str(check_exercise("rank_B6x2_A2x5", 5))
    assert "entries of B·A" in str(check_exercise("rank_B6x2_A2x5", 30))
    assert "square matrices" in str(check_exercise("saves_20x16_r8", False))
    assert "answer True or False" in str(check_exercise("saves_20x16_r8", "yes"))
    assert "break-even rank is about counting" in str(check_exercise("predict_error_vs_r", "c"))
    assert "as a pair" in str(check_exercise("lowrank_counts", lowrank_params))
    assert "counted only A" in str(check_exercise("lowrank_counts", (WRONG_PARAMS["only A"][0], break_even)))
    assert "without calling it" in str(check_exercise("lowrank_svd", "lowrank(M, r)"))
    assert "no answer yet" in str(check_exercise("lowrank_svd", None))


@pytest.mark.parametrize("name", sorted(EXERCISES_01))
def test_show_solution_prints_the_worked_solution(capsys, name):
    show_solution(name)
    out = capsys.readouterr().out
    assert out.startswith(f"{name}: {EXERCISES_01[name].prompt}") and EXERCISES_01[name].solution in out


def test_the_reference_code_is_the_revealed_solution(capsys):
    show_solution("lowrank_counts")
    out = capsys.readouterr().out
    assert "def lowrank_params(d_in, d_out, r):" in out and "def break_even(d_in, d_out):" in out
    assert "return d_in * d_out / (d_in + d_out)" in out
    show_solution("lowrank_svd")
    assert "U[:, :r] * S[:r]" in capsys.readouterr().out


def test_the_numbers_in_the_prediction_solution_are_the_librarys():
    M = structured_matrix(40, 60, noise=0.05, seed=0)
    S = np.asarray(singular_values(M))
    _, errors = lowrank_error_curve(M)
    solution = EXERCISES_01["predict_error_vs_r"].solution
    assert f"({', '.join(f'{s:.1f}' for s in S[:6])})" in solution
    assert f"σ ≈ {S[6]:.2f}" in solution
    assert f"{errors[0]:.2f} at r = 1" in solution and f"{errors[5]:.2f} at r = 6" in solution
    assert 0.0015 < np.mean(-np.diff(errors[5:])) < 0.0025                  # "about 0.002 per rank"


# ------------------------------------------------------------------ the notebook

def sliders(nb) -> dict:
    """{description: value} of the notebook's sliders, from its saved widget state."""
    state = nb.metadata["widgets"][WIDGET_STATE]["state"]
    found = {}
    for model in state.values():
        s = model["state"]
        if model["model_name"] == "IntSliderModel":
            found[s["description"]] = s["value"]
        elif model["model_name"] == "SelectionSliderModel":
            found[s["description"]] = s["_options_labels"][s["index"]]
    return found


def dashboard_text(nb) -> str:
    state = nb.metadata["widgets"][WIDGET_STATE]["state"]
    return "".join(o.get("text", "") for m in state.values() if m["model_name"] == "OutputModel"
                   for o in m["state"].get("outputs", []))


def where_the_text_starts_the_slider(nb) -> int:
    """The r the notebook's text says the slider starts at (and the code that builds it agrees)."""
    said = [int(m) for c in nb.cells if c.cell_type == "markdown"
            for m in re.findall(r"The slider starts at \$r = (\d+)\$", c.source)]
    built = [int(m) for c in nb.cells if c.cell_type == "code"
             for m in re.findall(r"lowrank_explorer\(M, r=(\d+)\)", c.source)]
    assert len(said) == 1 and built == said, (said, built)
    return said[0]


def test_the_committed_notebook_shows_the_slider_where_the_text_starts_it():
    import nbformat
    nb = nbformat.read(NOTEBOOK, as_version=4)
    start = where_the_text_starts_the_slider(nb)
    assert sliders(nb) == {"rank r": start}
    assert dashboard_text(nb).startswith(f"r = {start}:")


def test_the_notebook_has_a_your_turn_a_prediction_and_exercises_in_order():
    import nbformat
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    where = {key: next(i for i, s in enumerate(code) if key in s) for key in (
        "def lowrank_params", "check_lowrank_counts(lowrank_params, break_even)",
        "inspect.getsource(lowrank_param_count)", 'check_exercise("predict_error_vs_r", None)',
        "lowrank_explorer(M, r=", "explorer.slider.value = 6")}
    assert list(where.values()) == sorted(where.values())
    scaffold_cell = code[where["def lowrank_params"]]
    assert scaffold_cell.count('raise NotImplementedError("') == 2 and "# TODO" in scaffold_cell
    assert not any("lowrank_param_count(" in s for s in code[:where["def lowrank_params"]])
    used = set(re.findall(r'check_exercise\("(\w+)", None\)', "\n".join(code)))
    assert used == set(EXERCISES_01) - {"lowrank_counts"}
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert "arXiv:2106.09685" in text and "Eckart" in text and "## What this toy cannot show" in text


