"""lora_np.course: the checker of the learner's LoRA pair, the exercises and the solutions.

Each deliberately wrong pair must fail with a line that names the wrong output and the mistake;
the unfinished scaffold must give "not written yet" without raising; an exercise's feedback on a
wrong answer must not contain the right answer.
"""
from __future__ import annotations

import math
import re

import pytest
from exercise_checks import assert_accepts, assert_rejects

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
    "predict_fc1_only": ["a", "c", "d"],
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
    assert_accepts(name, EXERCISES[name].answer)


@pytest.mark.parametrize("name", sorted(WRONG_ANSWERS))
def test_a_wrong_answer_is_rejected_with_a_reason_and_without_the_answer(name):
    for wrong in WRONG_ANSWERS[name]:
        assert_rejects(name, wrong, forms(EXERCISES[name].answer))


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


# ------------------------------------------------------------------ notebook 02's code exercise: merging

def _merge_wrongs():
    return {
        "delta only": (lambda W0, A, B, s: s * B @ A, "ΔW = s·B·A alone"),
        "s missing": (lambda W0, A, B, s: W0 + B @ A, "the scale s is missing"),
        "minus": (lambda W0, A, B, s: W0 - s * B @ A, "the sign is wrong"),
        "W0 only": (lambda W0, A, B, s: W0, "the update s·B·A is missing"),
        "A @ B": (lambda W0, A, B, s: W0 + s * A @ B, "order of the product"),
        "transposed": (lambda W0, A, B, s: (W0 + s * B @ A).T, "W0's shape (d_out, d_in)"),
        "not written": (lambda W0, A, B, s: (_ for _ in ()).throw(NotImplementedError()), "not written yet"),
        "no return": (lambda W0, A, B, s: None, "`return` missing"),
        "wrong values": (lambda W0, A, B, s: W0 + 2 * s * B @ A, "not W0 plus the scaled product"),
        "a call": (3.0, "pass your function itself"),
    }


@pytest.mark.parametrize("mistake", sorted(_merge_wrongs()))
def test_a_wrong_merge_is_named_without_showing_the_reference(mistake):
    import inspect

    from lora_np.course import notebook02
    fn, expected = _merge_wrongs()[mistake]
    fb = check_exercise("merge_weight", fn)
    assert not fb.passed and expected in fb.lines[0], str(fb)
    assert "W0 + s * (B @ A)" not in str(fb)
    body = inspect.getsource(notebook02.merge_weight).splitlines()[-1].strip()
    assert body not in str(fb)


def test_the_reference_merge_passes_and_is_the_revealed_solution(capsys):
    from lora_np.course import notebook02
    assert check_exercise("merge_weight", notebook02.merge_weight).passed
    assert check_exercise("merge_weight", lambda W0, A, B, s: W0 + (s * B) @ A).passed     # another order
    show_solution("merge_weight")
    assert notebook02.MERGE_SOLUTION in capsys.readouterr().out


# ------------------------------------------------------------------ notebook 02's rank sweep over seeds

@pytest.fixture(scope="module")
def tiny_fruit():
    from lora_np.data import make_fruit_task
    from lora_np.experiments import pretrain
    task = make_fruit_task(n_pretrain=200, n_finetune=40, n_test=40)
    base, _ = pretrain(task, hidden=(16, 16), epochs=1)
    return base, task


def test_rank_sweep_without_seeds_is_one_sweep_as_before(tiny_fruit):
    from lora_np.experiments import finetune, rank_sweep
    base, task = tiny_fruit
    runs = rank_sweep(base, task, ranks=(1, 2), epochs=1, seed=3)
    assert [run.label for run in runs] == ["r=1", "r=2", "full"] and {run.seed for run in runs} == {3}
    assert runs[1].accuracy == finetune(base, task, r=2, epochs=1, seed=3).accuracy
    assert [run.seed for run in rank_sweep(base, task, ranks=(1,), epochs=1, include_full=False)] == [0]


def test_rank_sweep_over_seeds_repeats_every_run_and_the_summary_gives_mean_and_spread(tiny_fruit):
    from lora_np.experiments import finetune, rank_sweep
    from lora_np.experiments.finetune import format_summary, sweep_summary
    base, task = tiny_fruit
    runs = rank_sweep(base, task, ranks=(2, 1), epochs=1, seeds=(0, 5), alpha=4.0)
    assert [(run.seed, run.label) for run in runs] == [(0, "r=2"), (0, "r=1"), (0, "full"),
                                                       (5, "r=2"), (5, "r=1"), (5, "full")]
    assert runs[3].accuracy == finetune(base, task, r=2, alpha=4.0, epochs=1, seed=5).accuracy
    rows = sweep_summary(runs)
    assert [row["label"] for row in rows] == ["r=1", "r=2", "full"]          # by rank, full fine-tuning last
    row = rows[1]
    accs = [runs[0].accuracy, runs[3].accuracy]
    assert row["n_seeds"] == 2 and row["seeds"] == [0, 5] and row["trainable"] == runs[0].trainable
    assert math.isclose(row["accuracy"]["mean"], sum(accs) / 2)
    assert row["accuracy"]["min"] == min(accs) and row["accuracy"]["max"] == max(accs)
    assert math.isclose(row["accuracy"]["std"], abs(accs[0] - accs[1]) / 2)
    table = format_summary(rows)
    assert "mean [min, max]" in table and f"{100 * row['accuracy']['mean']:.1f}" in table


def test_rank_sweep_refuses_bad_seeds(tiny_fruit):
    from lora_np.experiments import rank_sweep
    base, task = tiny_fruit
    with pytest.raises(ValueError, match="rank_sweep: seeds must be a non-empty list of non-negative"):
        rank_sweep(base, task, ranks=(1,), seeds=())
    with pytest.raises(ValueError, match="rank_sweep: seeds must be"):
        rank_sweep(base, task, ranks=(1,), seeds=(0, 1.5))
    with pytest.raises(ValueError, match="rank_sweep: give seed or seeds, not both"):
        rank_sweep(base, task, ranks=(1,), seeds=(0, 1), seed=2)


def test_the_outcomes_panel_draws_the_mean_with_min_max_bars_over_seeds():
    from types import SimpleNamespace

    import matplotlib.pyplot as plt

    from lora_np import viz
    runs = [SimpleNamespace(r=r, accuracy=a, grape_recall=g, trainable=100 * (r or 0))
            for r, a, g in ((1, 0.90, 0.80), (1, 0.92, 0.84), (1, 0.94, 0.86), (4, 0.93, 0.88),
                            (4, 0.93, 0.90), (4, 0.93, 0.86), (None, 0.5, 0.5))]
    fig = viz.plot_rank_outcomes(runs, chance=0.1, before={"accuracy": 0.495, "grape_recall": 0.03})
    ax = fig.axes[0]
    acc, recall = ax.get_lines()[:2]
    assert list(acc.get_xdata()) == [1, 4]
    assert [round(v, 6) for v in acc.get_ydata()] == [92.0, 93.0]
    assert [round(v, 6) for v in recall.get_ydata()] == [round(250 / 3, 6), 88.0]
    bars = [c for c in ax.containers if type(c).__name__ == "ErrorbarContainer"]
    assert len(bars) == 2                                              # accuracy and recall
    segments = bars[1].lines[2][0].get_segments()                      # recall's bars: min to max
    assert [(round(s[0][1], 6), round(s[1][1], 6)) for s in segments] == [(80.0, 86.0), (86.0, 90.0)]
    assert "mean of 3 seeds; bars: min–max" in ax.get_title()
    assert ax.get_ylim() == (0, 105) and {t.get_text() for t in ax.texts} == {"100", "400"}
    flat = sorted(round(line.get_ydata()[0], 6) for line in ax.get_lines()[2:]
                  if len(set(line.get_ydata())) == 1 and len(line.get_ydata()) == 2)
    assert {3.0, 10.0, 49.5} <= set(flat)                              # before fine-tuning, chance
    plt.close(fig)


def test_the_rank_explorer_starts_from_runs_already_trained(tiny_fruit):
    from lora_np.experiments import finetune
    from lora_np.widgets import lora_rank_explorer
    base, task = tiny_fruit
    done = finetune(base, task, r=2, epochs=1, seed=0)
    dash = lora_rank_explorer(base, task, ranks=(1, 2), r=2, epochs=1, seed=0, results=[done])
    assert dash.history[-1]["cached"] and dash.results[2] is done              # nothing trained again
    dash.slider.value = 1
    assert not dash.history[-1]["cached"]
    with pytest.raises(TypeError, match="lora_rank_explorer: results must be fine-tuning results"):
        lora_rank_explorer(base, task, ranks=(1, 2), r=2, results=[1, 2])


def test_finetune_without_tracking_the_held_out_fruit_trains_the_same(tiny_fruit):
    from lora_np.experiments import finetune
    base, task = tiny_fruit
    tracked, quick = (finetune(base, task, r=2, epochs=2, seed=1, track_val=t) for t in (True, False))
    assert quick.history.step_loss == tracked.history.step_loss
    assert (quick.accuracy, quick.grape_recall) == (tracked.accuracy, tracked.grape_recall)
    assert len(tracked.history.val_accuracy) == 2 and quick.history.val_accuracy == []


# ------------------------------------------------------------------ notebook 02, as committed

def test_notebook_02_predicts_before_its_dashboard_and_ends_with_exercises_references_and_limits():
    import pathlib

    import nbformat
    path = pathlib.Path(__file__).resolve().parents[1] / "notebooks" / "02_lora_on_fruit.ipynb"
    nb = nbformat.read(path, as_version=4)
    sources = [c.source for c in nb.cells]
    first = {key: next(i for i, s in enumerate(sources) if key in s) for key in (
        'check_exercise("predict_r16_recall", None)', "lora_rank_explorer(base", "What you should have seen",
        "seeds=SEEDS", 'check_exercise("predict_fc1_only", None)', 'check_exercise("merge_weight", None)',
        "## References", "## What this toy cannot show")}
    assert list(first.values()) == sorted(first.values()), first
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert not any("__version__" in c.source or "clear_caches" in c.source for c in code)
    for c in code:
        if re.search(r'check_exercise\("\w+", None\)', c.source):
            assert "no answer yet" in "".join(o.get("text", "") or o.get("data", {}).get("text/plain", "")
                                              for o in c.outputs), c.source
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert "**Starts at** `LoRA rank r = 4`" in text and "min–max" in text
    for arxiv in ("2106.09685", "1412.6980", "2405.09673"):
        assert f"arXiv:{arxiv}" in text
