"""Notebook 06's hands-on parts: the checker of φ by hand, the exercises, the slider that trains a d no
sweep covered, and the notebook's controls ending where its text says they start."""
import math
import re

import nbformat
import numpy as np
import pytest
from notebook_runner import WIDGET_STATE

from lora_np.course import EXERCISES, check_exercise, show_solution
from lora_np.course.notebook06 import EXERCISES_06, check_phi, li_d_int90, phi
from lora_np.data import make_fruit_task
from lora_np.experiments import IntrinsicSweep, d_int90, intrinsic_dimension_sweep, subspace_similarity
from lora_np.experiments.intrinsic import DIMS, subspace_finetune
from lora_np.models import MLP
from lora_np.widgets.intrinsic import EXPLORER_DIMS, intrinsic_dimension_explorer

pytestmark = pytest.mark.host_only
NOTEBOOK = "notebooks/06_intrinsic_dimension.ipynb"


# --------------------------------------------------------------------------- φ by hand

def _right_vectors(A):
    return np.linalg.svd(A, full_matrices=False)[2].T                     # (n, r)


def _left_vectors(A):
    return np.linalg.svd(A, full_matrices=False)[0]                       # (r, r)


def phi_left(A1, A2, i, j):
    return float(np.sum((_left_vectors(A1)[:, :i].T @ _left_vectors(A2)[:, :j]) ** 2) / min(i, j))


def phi_no_square(A1, A2, i, j):
    return float(np.linalg.norm(_right_vectors(A1)[:, :i].T @ _right_vectors(A2)[:, :j]) / min(i, j))


def phi_no_divide(A1, A2, i, j):
    return float(np.linalg.norm(_right_vectors(A1)[:, :i].T @ _right_vectors(A2)[:, :j]) ** 2)


def phi_max(A1, A2, i, j):
    return float(np.linalg.norm(_right_vectors(A1)[:, :i].T @ _right_vectors(A2)[:, :j]) ** 2 / max(i, j))


def phi_no_svd(A1, A2, i, j):
    return float(np.sum((A1[:i] @ A2[:j].T) ** 2) / min(i, j))


def phi_spectral(A1, A2, i, j):
    return float(np.linalg.norm(_right_vectors(A1)[:, :i].T @ _right_vectors(A2)[:, :j], 2) ** 2 / min(i, j))


def phi_cut(A1, A2, i, j):
    Vt1, Vt2 = _right_vectors(A1).T, _right_vectors(A2).T                 # (r, n) each, cut the wrong way
    return float(np.sum((Vt1[:, :i].T @ Vt2[:, :j]) ** 2) / min(i, j))


def phi_swapped(A1, A2, i, j):
    return float(np.sum((_right_vectors(A1)[:, :j].T @ _right_vectors(A2)[:, :i]) ** 2) / min(i, j))


def phi_grid_from_zero(A1, A2, i, j):
    return float(subspace_similarity(A1, A2)[i, j])


WRONG_PHI = {                      # a wrong φ -> words its feedback must contain
    "left": (phi_left, "LEFT singular vectors"),
    "no square": (phi_no_square, "not squared"),
    "no division": (phi_no_divide, "not divided by min(i, j)"),
    "max": (phi_max, "divided by max(i, j)"),
    "no SVD": (phi_no_svd, "without the SVD"),
    "spectral norm": (phi_spectral, "largest singular value"),
    "Vt cut the wrong way": (phi_cut, "first i columns of Vt"),
    "i and j swapped": (phi_swapped, "i and j are swapped"),
    "grid from zero": (phi_grid_from_zero, "φ(i + 1, j + 1)"),
}


def test_reference_phi_agrees_with_the_library_and_passes_the_checker():
    rng = np.random.default_rng(3)
    A1, A2 = rng.standard_normal((8, 30)), rng.standard_normal((5, 30))
    grid = subspace_similarity(A1, A2)
    assert all(phi(A1, A2, i, j) == pytest.approx(grid[i - 1, j - 1], abs=1e-12)
               for i in range(1, 9) for j in range(1, 6))
    fb = check_phi(phi)
    assert fb.passed and all(line.startswith("✓") for line in fb.lines if not line.startswith("  "))


@pytest.mark.parametrize("name", WRONG_PHI)
def test_each_wrong_phi_is_named(name):
    fn, words = WRONG_PHI[name]
    fb = check_phi(fn)
    assert not fb.passed
    assert words in str(fb), str(fb)


def test_the_phi_checker_never_raises_on_the_learners_mistakes():
    def scaffold(A1, A2, i, j):
        raise NotImplementedError("phi: fill in the TODOs")

    fb = check_phi(scaffold)
    assert not fb.passed and "not written yet" in str(fb) and len(fb.lines) == 1

    def crashes(A1, A2, i, j):
        return 1 / 0

    cases = {
        "returns None": (lambda A1, A2, i, j: None, "returned None"),
        "returns the overlap": (lambda A1, A2, i, j: np.zeros((i, j)), "that is the overlap"),
        "returns text": (lambda A1, A2, i, j: "0.5", "one number"),
        "returns a bool": (lambda A1, A2, i, j: True, "True or False"),
        "returns NaN": (lambda A1, A2, i, j: float("nan"), "is wrong"),
        "returns > 1": (lambda A1, A2, i, j: 2.0, "[0, 1]"),
        "raises": (crashes, "raised ZeroDivisionError"),
    }
    for name, (fn, words) in cases.items():
        fb = check_phi(fn)
        assert not fb.passed and words in str(fb), (name, str(fb))
    assert check_phi(lambda A1, A2, i, j: np.float32(phi(A1, A2, i, j))).passed      # float32 rounding: fine
    assert check_phi(lambda A1, A2, i, j: np.array(phi(A1, A2, i, j))).passed        # a 0-d array: fine
    with pytest.raises(ValueError, match="a function"):
        check_phi(phi(np.eye(2), np.eye(2), 1, 1))


def test_phi_by_hand_exercise_shows_the_reference_code(capsys):
    assert check_exercise("phi_by_hand", phi).passed
    assert not check_exercise("phi_by_hand", phi_left).passed
    assert "no answer yet" in str(check_exercise("phi_by_hand", None))
    show_solution("phi_by_hand")
    out = capsys.readouterr().out
    assert "def phi(A1, A2, i, j):" in out and "svd" in out


# --------------------------------------------------------------------------- the exercises

NUMERIC = ("phi_chance_overlap", "d_int90_interpolation")
CHOICE = ("predict_d_slider", "phi_invariance")


def test_every_exercise_of_the_notebook_is_registered_with_a_solution(capsys):
    assert set(EXERCISES_06) == {"phi_by_hand", "predict_d_slider", "phi_chance_overlap",
                                 "d_int90_interpolation", "phi_invariance", "li_d_int90"}
    for name in EXERCISES_06:
        assert EXERCISES[name] is EXERCISES_06[name]
        assert check_exercise(name, EXERCISES_06[name].answer).passed, name
        assert "no answer yet" in str(check_exercise(name, None))
        show_solution(name)
        assert capsys.readouterr().out.strip()


def _shows(text: str, number: float) -> bool:
    """Whether ``text`` writes ``number`` (to 1, 2 or 3 significant digits or decimals)."""
    forms = {f"{number:.{k}f}" for k in (1, 2, 3)} | {f"{number:.{k}g}" for k in (2, 3, 4)}
    return any(re.search(rf"(?<![\d.]){re.escape(f)}(?!\d|\.\d)", text) for f in forms)


@pytest.mark.parametrize("name", NUMERIC)
def test_numeric_exercises_reject_wrong_answers_with_a_reason_and_never_show_the_answer(name):
    answer = EXERCISES_06[name].answer
    wrong = [answer * 1.5, answer / 1.5, "84", True]
    if name == "phi_chance_overlap":
        wrong += [answer / 8, 8 / 256, 8.0, 8 * 48 / 256 ** 2]
    else:
        wrong += [64 + 0.4 * 64, 128.0, 64 * 2 ** 0.6, 96.0]
    for value in wrong:
        fb = check_exercise(name, value)
        assert not fb.passed, (name, value)
        text = str(fb)
        assert len(fb.lines[0]) > len(name) + 10, text                    # a reason, not only ✗
        assert not _shows(text, answer), (value, text)
    assert check_exercise(name, answer * 1.001).passed


def test_the_numeric_answers_are_what_the_library_computes():
    d90 = d_int90(IntrinsicSweep([64, 128], [0.86, 0.96], D=6154, full_accuracy=1.0, chance=0.0, before=0.0))
    assert EXERCISES_06["d_int90_interpolation"].answer == pytest.approx(d90)
    rng = np.random.default_rng(0)                                     # E‖U1ᵀU2‖² = i·j/n, by sampling
    sq = [np.sum((np.linalg.qr(rng.standard_normal((256, 8)))[0].T
                  @ np.linalg.qr(rng.standard_normal((256, 48)))[0]) ** 2) for _ in range(300)]
    assert np.mean(sq) == pytest.approx(EXERCISES_06["phi_chance_overlap"].answer, rel=0.05)


@pytest.mark.parametrize("name", CHOICE)
def test_choice_exercises_reject_each_wrong_letter_with_a_reason_and_never_name_the_right_one(name):
    answer = EXERCISES_06[name].answer
    for letter in "abcd":
        fb = check_exercise(name, letter.upper())
        if letter == answer:
            assert fb.passed
            continue
        text = str(fb)
        assert not fb.passed and "no:" in text, text
        assert f"({answer})" not in text and f"'{answer}'" not in text and f'"{answer}"' not in text
        assert "right answer" not in text
    assert not check_exercise(name, "e").passed and not check_exercise(name, 2).passed


def test_phi_invariance_answer_holds_for_the_library():
    rng = np.random.default_rng(1)
    A1, A2 = rng.standard_normal((8, 256)), rng.standard_normal((64, 256))
    M = rng.standard_normal((64, 64))                                  # invertible (almost surely)
    before, after = subspace_similarity(A1, A2), subspace_similarity(A1, M @ A2)
    assert after[:, -1] == pytest.approx(before[:, -1], abs=1e-9)       # φ(i, 64): unchanged
    assert np.abs(after[:, :8] - before[:, :8]).max() > 1e-3           # φ(i, j < 64): not for a general M
    assert subspace_similarity(A1, 3 * A2) == pytest.approx(before, abs=1e-9)
    assert EXERCISES_06["phi_invariance"].answer == "b"


def _li_from_chance(dims, accuracy, full_accuracy, level=0.9):
    return d_int90(IntrinsicSweep(list(dims), list(accuracy), D=10_000, full_accuracy=full_accuracy,
                                  chance=0.1, before=0.0), level)


def _li_linear(dims, accuracy, full_accuracy, level=0.9):
    thr = level * full_accuracy
    for k, a in enumerate(accuracy):
        if a >= thr:
            if k == 0:
                return float(dims[0])
            t = (thr - accuracy[k - 1]) / (a - accuracy[k - 1])
            return dims[k - 1] + t * (dims[k] - dims[k - 1])
    return None


def _li_first_d(dims, accuracy, full_accuracy, level=0.9):
    return next((float(d) for d, a in zip(dims, accuracy, strict=True) if a >= level * full_accuracy), None)


def _li_raw(dims, accuracy, full_accuracy, level=0.9):
    return li_d_int90(dims, accuracy, 1.0, level)


def _li_raises(dims, accuracy, full_accuracy, level=0.9):
    raise NotImplementedError("li_d_int90: fill in the TODOs")


WRONG_LI = {
    "measured from chance": (_li_from_chance, "measures from chance"),
    "linear in d": (_li_linear, "linearly in d"),
    "no interpolation": (_li_first_d, "without interpolating"),
    "threshold 0.9": (_li_raw, "an accuracy of 0.9 itself"),
    "not written": (_li_raises, "not written yet"),
    "always None": (lambda dims, accuracy, full_accuracy, level=0.9: None, "some d reaches"),
    "a list": (lambda dims, accuracy, full_accuracy, level=0.9: [1.0], "return a number"),
}


@pytest.mark.parametrize("name", WRONG_LI)
def test_li_d_int90_exercise_names_each_mistake_without_the_answer(name):
    fn, words = WRONG_LI[name]
    fb = check_exercise("li_d_int90", fn)
    text = str(fb)
    assert not fb.passed and words in text, text
    assert "def li_d_int90" not in text and "math.exp" not in text
    first = li_d_int90((32, 64, 128), (0.50, 0.84, 0.90), 0.927)          # the first case's right value
    assert not _shows(text, first), text


def test_li_d_int90_is_the_library_with_chance_zero_and_at_most_the_notebooks():
    dims, acc, full = [16, 32, 64, 128, 256], [0.53, 0.55, 0.81, 0.90, 0.88], 0.927
    lib = d_int90(IntrinsicSweep(dims, acc, D=6154, full_accuracy=full, chance=0.0, before=0.0))
    assert li_d_int90(dims, acc, full) == pytest.approx(lib)
    assert li_d_int90(dims, acc, full) <= _li_from_chance(dims, acc, full)
    assert li_d_int90([8, 16], [0.2, 0.3], 0.9) is None and li_d_int90([8, 16], [0.9, 0.95], 0.9) == 8.0
    assert math.isfinite(li_d_int90(dims, np.array(acc), full))


# --------------------------------------------------------------------------- the slider

def test_the_slider_trains_a_d_the_sweep_did_not_cover_then_caches_it():
    assert set(DIMS) < set(EXPLORER_DIMS)
    new = sorted(set(EXPLORER_DIMS) - set(DIMS))
    assert new and all(d < min(DIMS) or any(a < d < b for a, b in zip(DIMS[:-1], DIMS[1:], strict=True))
                       for d in new)
    task = make_fruit_task(n_pretrain=300, n_finetune=200, n_test=200)
    base = MLP(task.d_in, (32,), task.n_classes)                        # D = 1,002 >= 512
    sweep = intrinsic_dimension_sweep(base, task, dims=(16, 64, 256), full_accuracy=0.8, epochs=2)
    dash = intrinsic_dimension_explorer(base, task, d=64, sweep=sweep, epochs=2)
    assert tuple(dash.slider.options) == EXPLORER_DIMS
    assert dash.history[-1]["cached"] and dash.history[-1]["tried"] == [16, 64, 256]
    dash.slider.value = 96                                              # not in the sweep
    rec = dash.history[-1]
    assert rec["d"] == 96 and not rec["cached"] and rec["seconds"] > 0
    assert rec["accuracy"] == subspace_finetune(base, task, 96, epochs=2, keep_model=False).accuracy
    assert dash.results[96] == rec["accuracy"] and rec["tried"] == [16, 64, 96, 256]
    dash.slider.value = 64
    dash.slider.value = 96
    assert dash.history[-1]["cached"] and [h["d"] for h in dash.history] == [64, 96, 64, 96]


# --------------------------------------------------------------------------- the notebook

def _slider_values(nb) -> list:
    state = nb.metadata["widgets"][WIDGET_STATE]["state"]
    return [m["state"]["_options_labels"][m["state"]["index"]] for m in state.values()
            if m["model_name"] == "SelectionSliderModel"]


def test_the_committed_notebook_starts_its_slider_where_the_text_says():
    """The notebook as committed (executed by ``make notebooks``); a fresh Run All, and where it
    leaves the slider, is tests/test_notebooks.py's job (its CONTROLS)."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    said = re.findall(r"slider starts at \*\*d = (\d+)\*\*", text)
    assert said == ["64"], said
    assert _slider_values(nb) == [said[0]]
    outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "d = 96:" in outputs and "trained now in" in outputs        # the uncovered d was trained
    feedback = [c for c in nb.cells if c.cell_type == "code" and c.source.startswith("feedback = ")
                and "check_phi(phi)" in c.source]
    assert "not written yet" in feedback[0].outputs[0]["text"]          # the scaffold, as shipped


# --------------------------------------------------------------------------- the studies over seeds, drawn

def _fake_sweep(dims, accuracy, D, before=0.5, full=0.9):
    return IntrinsicSweep(list(dims), list(accuracy), D, full, 0.1, before)


def _fake_studies():
    """Two seeds of a width study and a pretraining study, built from hand-made sweeps (no training)."""
    from lora_np.experiments.intrinsic import IntrinsicStudy, StudySeeds
    dims = (16, 32, 64, 128, 256, 512)
    width_runs, level_runs = [], []
    for shift in (0.0, 0.04):                                      # the second seed is a little worse
        def curve(lift, shift=shift):
            return [min(0.9, 0.1 + (0.55 + lift - shift) * k / 6) for k in range(1, 7)]
        width_runs.append(IntrinsicStudy("width", ["(32, 32)", "(64, 64)", "(128, 128)"], [1, 2, 3],
                                         [_fake_sweep(dims, curve(0.4), D) for D in (2058, 6154, 20490)]))
        level_runs.append(IntrinsicStudy("pretraining", ["random init", "1 epoch", "15 epochs"], [0, 1, 15],
                                         [_fake_sweep(dims, curve(lift), 6154) for lift in (0.1, 0.2, 0.4)]))
    return StudySeeds([0, 1], width_runs), StudySeeds([0, 1], level_runs)


def _overlaps(fig, texts):
    """Pairs of the given text artists whose drawn boxes intersect."""
    fig.canvas.draw()
    boxes = [(t.get_text(), t.get_window_extent()) for t in texts if t.get_text()]
    return [(a, b) for i, (a, box_a) in enumerate(boxes) for b, box_b in boxes[i + 1:]
            if box_a.overlaps(box_b)]


def test_studies_over_seeds_give_mean_and_min_max():
    widths, levels = _fake_studies()
    stats = widths.d_int90_stats()
    for i, st in enumerate(stats):
        values = widths.d_int90_values(i)
        assert st["n"] == 2 and st["min"] == min(values) and st["max"] == max(values) < float("inf")
        assert st["mean"] == pytest.approx(sum(values) / 2) and st["min"] < st["max"]
    dims, mean, lo, hi = levels.normalized_stats(0)
    assert len(dims) == len(mean) == 6 and all(a <= m <= b for a, m, b in zip(lo, mean, hi, strict=True))
    assert "min–max" in widths.table() and len(widths.table().splitlines()) == 2 + 3


def test_the_width_panel_labels_do_not_overlap():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lora_np.viz.intrinsic import plot_pretraining_study, plot_width_study
    widths, levels = _fake_studies()
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.4))
    plot_width_study(widths, ax=axes[0])
    plot_pretraining_study(levels, axes=axes[1:])
    fig.tight_layout()
    assert not _overlaps(fig, axes[0].texts)
    assert not _overlaps(fig, axes[2].texts)
    assert any("2 seeds" in t.get_text() for t in axes[0].get_legend().get_texts())
    assert len(axes[0].lines) >= 2 and axes[0].collections                            # mean line, error bars
    plt.close("all")


def test_the_studies_run_three_seeds_without_plumbing_in_the_notebook():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    sources = [c.source for c in nb.cells if c.cell_type == "code"]
    assert not any("__version__" in s for s in sources)                 # the versions cell lives in 00
    assert not any("clear_caches" in s or "xp.abs" in s or "to_float(" in s for s in sources)
    assert any("studies_over_seeds(" in s and "seeds=(0, 1, 2)" in s for s in sources)
    outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "d_int90 mean [min–max]" in outputs
