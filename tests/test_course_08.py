"""Notebook 08 (the optional GPU track): its exercises, and what the committed notebook says.

Every exercise accepts its right answer, rejects each common wrong one with a reason that does not
contain the answer, and has a placeholder cell and a worked solution. The code exercise is judged on
NumPy and on the device-emulating backend, which refuses what CuPy refuses. Without a GPU, the
notebook must say so where it would otherwise claim GPU numbers.
"""
from __future__ import annotations

import math
import pathlib

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

from lora_np import backend
from lora_np.course import EXERCISES, check_exercise, show_solution
from lora_np.course import notebook08 as nb08

pytestmark = pytest.mark.host_only

NOTEBOOK = pathlib.Path(__file__).resolve().parents[1] / "notebooks" / "08_gpu_with_cupy.ipynb"
NAMES = sorted(nb08.EXERCISES_08)


# ------------------------------------------------------------------ wrong one-hots, and what each must say

def unwritten(y, n_classes):
    raise NotImplementedError


def host_zeros(y, n_classes):                      # np on the host, indexed by device labels
    out = np.zeros((y.shape[0], n_classes))
    out[np.arange(y.shape[0]), y] = 1
    return out


def back_to_host(y, n_classes):                    # right values, but the result leaves the device
    return np.eye(n_classes)[backend.to_numpy(y)]


def integers(y, n_classes):
    xp = backend.get_array_module(y)
    return xp.eye(n_classes, dtype="int64")[y]


def transposed(y, n_classes):
    xp = backend.get_array_module(y)
    return xp.eye(n_classes)[y].T


def off_by_one(y, n_classes):
    xp = backend.get_array_module(y)
    return xp.eye(n_classes)[(y + 1) % n_classes]


def no_return(y, n_classes):
    backend.get_array_module(y).eye(n_classes)[y]


def a_list(y, n_classes):
    return [[1.0]]


def broken(y, n_classes):
    return y.no_such_method()


WRONG = {                                          # name -> [(wrong answer, words the reason must contain)]
    "adapter_transfer_mib": [
        (nb08.ADAPTER_MIB / 2, "both factors (A and B), both projections"),
        (nb08.ADAPTER_MIB / nb08.LAYERS, "one layer's adapter"),
        (nb08.ADAPTER_PARAMS * 4 / 1e6, "in MB (10⁶ bytes)"),
        (nb08.ADAPTER_PARAMS * 4, "in bytes"),
        (nb08.ADAPTER_PARAMS / 2 ** 20, "one byte per number"),
        (nb08.LAYERS * 2 * 4096 * 4096 * 4 / 2 ** 20, "full q and v weights"),
        (1e5, "too large"), (1e-3, "too small"), ("16 MiB", "expected a number")],
    "predict_gpu_small_mlp": [("a", "a few million multiply-adds"), ("C", "before any arithmetic"),
                              ("d", "it runs"), ("e", "answer one of"), (2, "answer one of")],
    "predict_mixed_input": [("a", "refuses implicit conversions"), ("c", "nothing is copied"),
                            ("D", "weights live on the device"), ("yes", "answer one of")],
    "one_hot_any_backend": [(unwritten, "not written yet"), (host_zeros, "create arrays with xp"),
                            (back_to_host, "came back on the host"), (integers, "float array"),
                            (transposed, "not transposed"), (off_by_one, "not 1 at (i, y[i])"),
                            (no_return, "`return` missing"), (a_list, "return an array"),
                            (broken, "raised AttributeError"), (3, "pass your function itself")],
}


def answer_forms(name: str) -> list[str]:
    """How the right answer could show up in a text."""
    answer = nb08.EXERCISES_08[name].answer
    if name == "one_hot_any_backend":
        return ["xp.zeros((y.shape[0], n_classes)", "out[xp.arange(y.shape[0]), y] = 1", "def one_hot"]
    if isinstance(answer, str):
        options = {"predict_gpu_small_mlp": nb08.GPU_SMALL_OPTIONS,
                   "predict_mixed_input": nb08.MIX_OPTIONS}[name]
        return [options[answer], f"({answer})", f"'{answer}'", f'"{answer}"', "answer is"]
    return [f"{answer:g}", f"{answer:.1f}", f"{answer:.2f}", f"{answer:g} MiB"]


def test_the_notebook_registers_its_exercises_and_every_one_has_wrong_answers_to_test():
    assert set(WRONG) == set(NAMES) and len(NAMES) >= 3
    assert all(EXERCISES[name] is nb08.EXERCISES_08[name] for name in NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_the_right_answer_is_accepted(name):
    assert_accepts(name, nb08.EXERCISES_08[name].answer)


@pytest.mark.parametrize("name", NAMES)
def test_a_wrong_answer_is_rejected_with_its_reason_and_without_the_answer(name):
    for wrong, words in WRONG[name]:
        assert_rejects(name, wrong, answer_forms(name), words, listings=("['a', 'b', 'c', 'd']",))


def test_the_answers_are_what_the_formulas_give():
    ex = nb08.EXERCISES_08
    assert ex["adapter_transfer_mib"].answer == 32 * 2 * 8 * (4096 + 4096) * 4 / 2 ** 20 == 16.0
    assert check_exercise("adapter_transfer_mib", 16.1).passed             # within 1 %
    assert not check_exercise("adapter_transfer_mib", 16.2).passed
    assert ex["predict_gpu_small_mlp"].answer == "b" and ex["predict_mixed_input"].answer == "b"
    assert set(nb08.GPU_SMALL_OPTIONS) == set(nb08.MIX_OPTIONS) == set("abcd")


def test_the_mixed_input_prediction_is_what_the_emulated_device_does():
    from lora_np.models import MLP
    model = MLP(20, (8,), 3).to("emulated")
    with backend.use_backend("emulated"), pytest.raises(TypeError, match="host"):
        model(np.ones((2, 20), dtype="float32"))


def test_the_code_exercise_accepts_other_right_ways():
    def with_eye(y, n_classes):
        xp = backend.get_array_module(y)
        return xp.eye(n_classes, dtype=backend.default_dtype())[y]

    def with_comparison(y, n_classes):
        xp = backend.get_array_module(y)
        return (y.reshape(-1, 1) == xp.arange(n_classes)).astype("float64")

    assert check_exercise("one_hot_any_backend", with_eye).passed
    assert check_exercise("one_hot_any_backend", with_comparison).passed


@pytest.mark.parametrize("name", NAMES)
def test_show_solution_prints_the_worked_solution(capsys, name):
    show_solution(name)
    out = capsys.readouterr().out
    assert out.startswith(f"{name}: {nb08.EXERCISES_08[name].prompt}")
    assert nb08.EXERCISES_08[name].solution in out
    assert math.isfinite(nb08.ADAPTER_MIB)


# ------------------------------------------------------------------ the notebook, as committed

@pytest.fixture(scope="module")
def ran():
    """Notebook 08 as committed: executed top to bottom by ``make notebooks`` (tests/notebook_runner.py)."""
    return nbformat.read(NOTEBOOK, as_version=4)


def test_every_exercise_has_a_placeholder_that_says_no_answer_yet(ran):
    assert_placeholders_say_no_answer_yet(ran, NAMES)


def test_the_prediction_options_in_the_text_are_the_checkers(ran):
    text = markdown(ran)
    for options in (nb08.GPU_SMALL_OPTIONS, nb08.MIX_OPTIONS):
        for line in options.values():
            assert f"**{line[:3]}**{line[3:]}" in text, line


def test_no_versions_cell_and_the_backend_is_printed_as_part_of_the_lesson(ran):
    code = [c for c in ran.cells if c.cell_type == "code"]
    assert not any("__version__" in c.source for c in code)
    outputs = "".join(text_output(c) for c in code)
    assert "backend at start:" in outputs and "CuPy installed:" in outputs
    assert "GPU used in this run:" in outputs


def test_without_a_gpu_the_notebook_says_that_its_gpu_statements_were_not_measured(ran):
    outputs = "".join(text_output(c) for c in ran.cells if c.cell_type == "code")
    if "GPU used in this run: False" not in outputs:
        pytest.skip("the committed notebook ran on a GPU")
    text = markdown(ran)
    assert "**not measured here**" in text and "## What this toy cannot show" in text
    for arxiv in ("2106.09685", "2305.14314", "2311.03285"):
        assert f"arXiv:{arxiv}" in text
