"""lora_np.course: the checker of the learner's LoRA pair, the exercises and the solutions.

Each deliberately wrong pair must fail with a line that names the wrong output and the mistake;
the unfinished scaffold must give "not written yet" without raising; an exercise's feedback on a
wrong answer must not contain the right answer.
"""
from __future__ import annotations

import math

import pytest

from lora_np.course import (
    EXERCISES,
    Feedback,
    check_exercise,
    check_lora_pair,
    lora_backward,
    lora_forward,
    show_solution,
)

pytestmark = pytest.mark.host_only


def failed_lines(fb: Feedback) -> list[str]:
    return [line for line in fb.lines if line.startswith("✗")]


def the_line(fb: Feedback, start: str) -> str:
    """The one ✗ line that starts with ``start`` (after the mark)."""
    found = [line for line in failed_lines(fb) if line[2:].startswith(start)]
    assert len(found) == 1, f"no single ✗ line for {start!r} in:\n{fb}"
    return found[0]


# ------------------------------------------------------------------ the reference and the scaffold

@pytest.mark.parametrize("seed", [0, 1, 7])
def test_the_reference_pair_passes(seed):
    fb = check_lora_pair(lora_forward, lora_backward, seed=seed)
    assert fb.passed, str(fb)
    assert [line[:4] for line in fb.lines[:4]] == ["✓ y ", "✓ dx", "✓ dA", "✓ dB"]
    assert str(fb) == "\n".join(fb.lines) == repr(fb)


def scaffold_forward(x, W0, b0, A, B, s):
    raise NotImplementedError


def scaffold_backward(dy, cache):
    raise NotImplementedError


def test_the_unfinished_scaffold_says_not_written_yet_without_raising():
    fb = check_lora_pair(scaffold_forward, scaffold_backward)
    assert not fb.passed
    assert "not written yet" in the_line(fb, "lora_forward")
    fb = check_lora_pair(lora_forward, scaffold_backward)          # forward done, backward not yet
    assert not fb.passed
    assert fb.lines[0].startswith("✓ y")
    assert "not written yet" in the_line(fb, "lora_backward")


# ------------------------------------------------------------------ wrong backward passes

def backward_with(**formulas):
    """The reference backward with some of dx, dA, dB replaced by ``formula(dy, x, W0, A, B, s, u)``."""
    def backward(dy, cache):
        x, W0, A, B, s, u = cache
        grads = dict(zip(("dx", "dA", "dB"), lora_backward(dy, cache), strict=True))
        grads.update({name: f(dy, x, W0, A, B, s, u) for name, f in formulas.items()})
        return grads["dx"], grads["dA"], grads["dB"]
    return backward


WRONG_BACKWARDS = {
    "dA missing s": (backward_with(dA=lambda dy, x, W0, A, B, s, u: (dy @ B).T @ x),
                     "dA", ["off by the factor s = 1.5", "shape of A"]),
    "dB transposed": (backward_with(dB=lambda dy, x, W0, A, B, s, u: s * u.T @ dy),
                      "dB", ["shape (2, 3)", "B has (3, 2)", "transposed?"]),
    "dB off by s²": (backward_with(dB=lambda dy, x, W0, A, B, s, u: s * s * dy.T @ u),
                     "dB", ["s²", "off by the factor s = 1.5"]),
    "dx missing G W0": (backward_with(dx=lambda dy, x, W0, A, B, s, u: s * (dy @ B) @ A),
                        "dx", ["missing G W0"]),
    "dx missing the LoRA path": (backward_with(dx=lambda dy, x, W0, A, B, s, u: dy @ W0),
                                 "dx", ["missing the adapter's path s (G B) A"]),
    "dx LoRA path missing s": (backward_with(dx=lambda dy, x, W0, A, B, s, u: dy @ W0 + (dy @ B) @ A),
                               "dx", ["missing the factor s = 1.5"]),
}


@pytest.mark.parametrize("mistake", sorted(WRONG_BACKWARDS))
def test_a_wrong_backward_is_named(mistake):
    backward, name, hints = WRONG_BACKWARDS[mistake]
    fb = check_lora_pair(lora_forward, backward)
    assert not fb.passed
    assert len(failed_lines(fb)) == 1, str(fb)                     # only that gradient is wrong
    line = the_line(fb, name)
    for hint in hints:
        assert hint in line, line
    if "shape" not in line:
        assert "relative error" in line


def test_gradients_in_the_wrong_order_are_recognised_and_then_checked():
    def backward(dy, cache):
        dx, dA, dB = lora_backward(dy, cache)
        return dA, dB, dx
    fb = check_lora_pair(lora_forward, backward)
    assert not fb.passed
    assert "returned (dA, dB, dx); it must return dx, dA, dB" in the_line(fb, "order")
    assert all(any(line.startswith(f"✓ {g} matches") for line in fb.lines) for g in ("dx", "dA", "dB"))


@pytest.mark.parametrize("returned, expected", [
    (None, "returned None"), ("array", "returned one ndarray"), ("two", "returned 2 values")])
def test_a_backward_that_returns_the_wrong_thing_is_told(returned, expected):
    def backward(dy, cache):
        dx, dA, dB = lora_backward(dy, cache)
        return {None: None, "array": dx, "two": (dA, dB)}[returned]
    fb = check_lora_pair(lora_forward, backward)
    assert not fb.passed
    assert expected in the_line(fb, "lora_backward")


# ------------------------------------------------------------------ wrong forward passes

def forward_missing_s(x, W0, b0, A, B, s):
    u = x @ A.T
    return x @ W0.T + b0 + u @ B.T, (x, W0, A, B, s, u)


def forward_missing_b0(x, W0, b0, A, B, s):
    u = x @ A.T
    return x @ W0.T + s * u @ B.T, (x, W0, A, B, s, u)


def forward_untransposed_W0(x, W0, b0, A, B, s):
    u = x @ A.T
    return x @ W0 + b0 + s * u @ B.T, (x, W0, A, B, s, u)


def test_forward_missing_s_is_named_and_the_right_backward_still_passes():
    fb = check_lora_pair(forward_missing_s, lora_backward)
    assert not fb.passed
    line = the_line(fb, "y:")
    assert "relative error" in line and "missing the scale s = 1.5" in line
    assert len(failed_lines(fb)) == 1                               # dx, dA, dB are the library's
    assert "not the gradient of your lora_forward" in fb.lines[2]


def test_forward_missing_b0_is_named():
    fb = check_lora_pair(forward_missing_b0, lora_backward)
    assert not fb.passed
    assert "missing the bias b0" in the_line(fb, "y:")


def test_a_backward_consistent_with_a_wrong_forward_points_at_the_forward():
    def backward_missing_s(dy, cache):
        x, W0, A, B, s, u = cache
        return dy @ W0 + (dy @ B) @ A, (dy @ B).T @ x, dy.T @ u
    fb = check_lora_pair(forward_missing_s, backward_missing_s)
    assert "missing the scale s" in the_line(fb, "y:")
    line = the_line(fb, "dA")
    assert "off by the factor s" in line and "the mistake is in y" in line


def test_forward_using_W0_instead_of_its_transpose_is_named_without_raising():
    fb = check_lora_pair(forward_untransposed_W0, lora_backward)
    assert not fb.passed
    line = the_line(fb, "lora_forward raised ValueError")
    assert "x @ W0 where it needs x @ W0.T" in line


def test_a_forward_that_returns_the_wrong_thing_is_told():
    fb = check_lora_pair(lambda *args: lora_forward(*args)[0], lora_backward)
    assert "it must return 2 values: `return y, cache`" in the_line(fb, "lora_forward returned")
    fb = check_lora_pair(lambda *args: None, lora_backward)
    assert "returned None: end it with `return y, cache`" in the_line(fb, "lora_forward returned")
    fb = check_lora_pair(lambda *args: (..., None), lora_backward)   # `y = ...` left in the scaffold
    assert "not an array" in the_line(fb, "y is")
    assert len(failed_lines(fb)) == 1                                # the backward waits for y


def test_not_a_function_is_a_clear_error():
    with pytest.raises(ValueError, match="check_lora_pair: forward must be a function"):
        check_lora_pair(None, lora_backward)


# ------------------------------------------------------------------ exercises

WRONG_ANSWERS = {
    "break_even_4096x11008": [4096 + 11008, 100, 9000],
    "fp16_13b_vs_24gb": [26, 48.4, 12.1, 30],
    "fits_24gb": [True],
    "lora_params_fc1_r4": [80, 1024, 5120, 1360, 999, 2000, 1104.5],
    "delta_w_rank": [256, 2, 8, 65536],
    "predict_r16_recall": ["a", "c"],
}                                       # shared and notebook 02; each notebook's test file checks its own


def forms(answer) -> list[str]:
    """How the right answer could show up in a text: as written, and rounded."""
    if isinstance(answer, bool):
        return [str(answer)]
    if isinstance(answer, str):                                     # a letter: quoted, or in parentheses
        return [f"'{answer}'", f"({answer})", f'"{answer}"']
    out = [str(answer), str(round(answer))]
    if not float(answer).is_integer():
        out += [f"{answer:.1f}", f"{answer:.2f}"]
    return out


def test_the_shared_and_notebook_02_exercises_are_registered():
    assert set(WRONG_ANSWERS) <= set(EXERCISES)


@pytest.mark.parametrize("name", sorted(WRONG_ANSWERS))
def test_an_exercise_accepts_the_right_answer(name):
    answer = EXERCISES[name].answer
    fb = check_exercise(name, answer)
    assert fb.passed and fb.lines[0].startswith(f"✓ {name}: right"), str(fb)


@pytest.mark.parametrize("name", sorted(WRONG_ANSWERS))
def test_a_wrong_answer_is_rejected_with_a_reason_and_without_the_answer(name):
    answer = EXERCISES[name].answer
    for wrong in WRONG_ANSWERS[name]:
        fb = check_exercise(name, wrong)
        assert not fb.passed
        reason = fb.lines[0].removeprefix(f"✗ {name}: ")
        assert len(reason) > 15, reason
        text = str(fb).replace(name, "")                            # the name is part of the question
        for form in forms(answer):
            assert form not in text, f"{name}: {wrong!r} -> feedback shows {form!r}:\n{fb}"


def test_the_exercises_answers_are_what_the_formulas_give():
    assert math.isclose(EXERCISES["break_even_4096x11008"].answer, 4096 * 11008 / (4096 + 11008))
    assert math.isclose(EXERCISES["fp16_13b_vs_24gb"].answer, 13e9 * 2 / 2 ** 30)
    assert EXERCISES["fits_24gb"].answer is False
    assert EXERCISES["lora_params_fc1_r4"].answer == 4 * (20 + 256)
    assert EXERCISES["delta_w_rank"].answer == 4


def test_tolerances_and_common_mistakes():
    answer = EXERCISES["break_even_4096x11008"].answer
    assert check_exercise("break_even_4096x11008", round(answer)).passed           # within 0.5
    assert not check_exercise("break_even_4096x11008", answer + 0.6).passed
    assert check_exercise("fp16_13b_vs_24gb", EXERCISES["fp16_13b_vs_24gb"].answer * 1.009).passed
    assert "GB (10⁹ bytes)" in str(check_exercise("fp16_13b_vs_24gb", 26))
    assert "too large: the count of one adapted matrix is r·(d_in + d_out)" in str(
        check_exercise("lora_params_fc1_r4", 2000))
    assert "only A" in str(check_exercise("lora_params_fc1_r4", 80))
    assert "answer True or False" in str(check_exercise("fits_24gb", 0))
    with pytest.raises(ValueError, match="exercise: name must be one of"):
        check_exercise("no_such_exercise", 1)


# ------------------------------------------------------------------ solutions

def test_show_solution_prints_the_reference_pair(capsys):
    show_solution("lora_pair")
    out = capsys.readouterr().out
    assert "def lora_forward(x, W0, b0, A, B, s):" in out and "def lora_backward(dy, cache):" in out
    assert "# (N, r)" in out and "dA = s (G B)ᵀ x" in out


@pytest.mark.parametrize("name", sorted(EXERCISES))
def test_show_solution_prints_an_exercise_solution(capsys, name):
    show_solution(name)
    out = capsys.readouterr().out
    assert out.startswith(f"{name}: {EXERCISES[name].prompt}")
    assert EXERCISES[name].solution in out


def test_show_solution_refuses_an_unknown_name():
    with pytest.raises(ValueError, match="show_solution: name must be one of"):
        show_solution("lora_par")


def test_the_notebooks_placeholder_says_no_answer_yet():
    feedback = check_exercise("delta_w_rank", None)
    assert not feedback.passed and "no answer yet" in str(feedback)


def test_notebooks_register_their_exercises_once_and_choice_questions_explain_wrong_options():
    from lora_np.course.exercises import EXERCISES, Exercise, choice_of, register
    check = choice_of("b", options={"a": "no: r bounds the rank", "b": "", "c": "no: ΔW starts at zero"},
                      right="yes: rank(B A) ≤ r")
    assert check("B") == (True, "yes: rank(B A) ≤ r") and check("a") == (False, "no: r bounds the rank")
    assert check("d")[0] is False and check(2)[0] is False
    name = "test_only_choice"
    register({name: Exercise("Which?", "b", check, "Because.")})
    try:
        assert check_exercise(name, "b").passed and not check_exercise(name, "c").passed
        with pytest.raises(ValueError, match="are taken"):
            register({name: EXERCISES[name]})
    finally:
        del EXERCISES[name]
