"""Notebook 09 (GPT-2, the optional capstone): the Conv1D-merge checker of its your-turn cell, its
exercises, its helpers, and what the committed notebook says.

The checker passes the reference and other right ways, and names each deliberately wrong merge's mistake
(a forgotten transpose on a non-square AND on a square layer, a missing s, A B instead of B A, ...)
without showing the answer. Every exercise accepts its right answer, rejects each common wrong one with
a reason that does not contain the answer, and has a placeholder cell and a worked solution.
"""
from __future__ import annotations

import json
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

from lora_np.course import EXERCISES, check_exercise, show_solution
from lora_np.course import notebook09 as nb09

pytestmark = pytest.mark.host_only

NOTEBOOK = pathlib.Path(__file__).resolve().parents[1] / "notebooks" / "09_real_gpt2.ipynb"
NAMES = sorted(nb09.EXERCISES_09)


# ------------------------------------------------------------------ the your-turn cell: merge_conv1d

def unwritten(W0, A, B, s):
    raise NotImplementedError


def no_transpose(W0, A, B, s):
    return W0 + s * (B @ A)


def no_scale(W0, A, B, s):
    return W0 + (B @ A).T


def a_times_b(W0, A, B, s):
    return W0 + s * (A @ B)


def delta_only(W0, A, B, s):
    return s * (B @ A).T


def minus(W0, A, B, s):
    return W0 - s * (B @ A).T


def divided(W0, A, B, s):
    return W0 + (B @ A).T / s


def unchanged(W0, A, B, s):
    return W0


def linear_layout(W0, A, B, s):                     # the right values, returned in Linear's layout
    return (W0 + s * (B @ A).T).T


def returns_nothing(W0, A, B, s):
    W0 + s * (B @ A).T


def returns_a_pair(W0, A, B, s):
    return W0, s * (B @ A).T


def in_place(W0, A, B, s):                          # scribbles on W0: the checker passes copies
    W0 += s * A.T @ B.T
    return W0


def by_einsum(W0, A, B, s):
    return W0 + s * np.einsum("ri,or->io", A, B)


MERGE_WRONG = [                                     # (implementation, words the feedback must contain)
    (unwritten, "not written yet"),
    (no_transpose, "Linear's layout"),              # raises on the non-square layer
    (no_transpose, "not transposed"),               # silently wrong on the square one
    (no_scale, "the scale s is missing"),
    (a_times_b, "the inner sizes of a product must agree"),
    (a_times_b, "an (r, r) matrix is A B"),
    (delta_only, "that is ΔW alone"),
    (minus, "the sign is wrong"),
    (divided, "s divides instead of multiplying"),
    (unchanged, "W0 unchanged"),
    (linear_layout, "Linear's (d_out, d_in)"),
    (returns_nothing, "returned None"),
    (returns_a_pair, "return one array"),
]
ANSWER_FORMS = ["(B @ A).T", "A.T @ B.T", "s * (B @ A)", "W0 + s", "def merge_conv1d", "return W0 +"]


def test_the_reference_merge_passes_on_both_layers():
    fb = nb09.check_merge_conv1d(nb09.merge_conv1d)
    assert fb.passed, str(fb)
    assert sum(line.startswith("✓") for line in fb.lines) == 2
    assert "non-square" in str(fb) and "square" in str(fb) and "delta_weight" in str(fb)


@pytest.mark.parametrize("fn", [in_place, by_einsum, lambda W0, A, B, s: W0 + s * A.T @ B.T],
                         ids=["in_place", "einsum", "At_Bt"])
def test_other_right_ways_pass(fn):
    assert nb09.check_merge_conv1d(fn).passed


@pytest.mark.parametrize("fn, words", MERGE_WRONG,
                         ids=[f"{f.__name__}-{i}" for i, (f, _) in enumerate(MERGE_WRONG)])
def test_a_wrong_merge_is_rejected_the_mistake_named_and_the_answer_not_shown(fn, words):
    fb = nb09.check_merge_conv1d(fn)
    assert not fb.passed
    assert words in str(fb), str(fb)
    for form in ANSWER_FORMS:
        assert form not in str(fb), f"the feedback shows {form!r}:\n{fb}"


def test_the_square_layer_is_what_catches_a_missing_transpose():
    fb = nb09.check_merge_conv1d(no_transpose)
    square = [line for line in fb.lines if "a square layer" in line]
    assert len(square) == 1 and square[0].startswith("✗") and "not transposed" in square[0]


def test_the_checker_refuses_what_is_not_a_function_and_the_exercise_wraps_it():
    with pytest.raises(ValueError, match="fn"):
        nb09.check_merge_conv1d(np.ones((2, 2)))
    assert check_exercise("merge_conv1d", nb09.merge_conv1d).passed
    fb = check_exercise("merge_conv1d", no_scale)
    assert not fb.passed and "the scale s is missing" in str(fb)
    assert "pass your function itself" in str(check_exercise("merge_conv1d", 3.0))


# ------------------------------------------------------------------ the exercises

WRONG = {                                           # name -> [(wrong answer, words the reason must contain)]
    "merge_conv1d": [(no_scale, "the scale s is missing"), (no_transpose, "not transposed"),
                     ("W0 + dW", "pass your function itself")],
    "predict_finetune_tiny": [("a", "ask what the frozen parts allow"), ("c", "the gradient of B is not"),
                              ("D", "lowers the loss of its batch"), ("e", "answer one of"),
                              (1, "answer one of")],
    "gpt2_c_attn_lora_params": [
        (8 * (768 + 2304), "one block's adapter"),
        (12 * 8 * 768, "only A"),
        (12 * 8 * 2304, "only B"),
        (3 * 12 * 8 * 2 * 768, "ONE pair A, B"),
        (12 * 768 * 2304, "full c_attn weights"),
        (12 * 8 * 2 * 768, "its output is 3d wide"),
        (10 ** 9, "too large"), (100, "too small"), (2.5, "whole number"), ("lots", "expected a number")],
    "adapter_mib_c_attn_r8": [
        (nb09.C_ATTN_PARAMS * 4, "in bytes"),
        (nb09.C_ATTN_PARAMS * 4 / 1e6, "in MB"),
        (nb09.C_ATTN_PARAMS / 2 ** 20, "one byte per number"),
        (nb09.C_ATTN_PARAMS * 2 / 2 ** 20, "float16"),
        (nb09.C_ATTN_MIB / 12, "one block's adapter"),
        (12 * 768 * 2304 * 4 / 2 ** 20, "full c_attn weights"),
        (500.0, "too large"), (0.01, "too small"), ("1 MiB", "expected a number")],
    "tied_wte_gradient": [("a", "linear in W's rows"), ("c", "not averaged"), ("d", "trainable flag"),
                          ("x", "answer one of")],
    "fan_in_fan_out_meaning": [("a", "the same shapes as on a Linear"), ("c", "a layout, not a place"),
                               ("d", "alpha / r"), ("yes", "answer one of")],
}
OPTIONS = {"predict_finetune_tiny": nb09.PREDICT_OPTIONS, "tied_wte_gradient": nb09.TIED_OPTIONS,
           "fan_in_fan_out_meaning": nb09.FAN_OPTIONS}


def answer_forms(name: str) -> list[str]:
    """How the right answer could show up in a text."""
    answer = nb09.EXERCISES_09[name].answer
    if name in OPTIONS:
        return [OPTIONS[name][answer], f"({answer})", f"'{answer}'", f'"{answer}"', "answer is"]
    if callable(answer):
        return ANSWER_FORMS
    return [f"{answer:g}", f"{answer:,}", f"{answer:.3f}", f"{answer:.2f}"]


def test_the_notebook_registers_its_exercises_and_every_one_has_wrong_answers_to_test():
    assert set(WRONG) == set(NAMES) and len(NAMES) >= 5
    assert all(EXERCISES[name] is nb09.EXERCISES_09[name] for name in NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_the_right_answer_is_accepted(name):
    assert_accepts(name, nb09.EXERCISES_09[name].answer)


@pytest.mark.parametrize("name", NAMES)
def test_a_wrong_answer_is_rejected_with_its_reason_and_without_the_answer(name):
    listings = ("['a', 'b', 'c', 'd']",)
    for wrong, words in WRONG[name]:
        assert_rejects(name, wrong, answer_forms(name), words, listings=listings, words_anywhere=True)


def test_the_answers_are_what_the_formulas_give():
    ex = nb09.EXERCISES_09
    assert ex["gpt2_c_attn_lora_params"].answer == 12 * 8 * (768 + 3 * 768) == 294_912
    assert ex["adapter_mib_c_attn_r8"].answer == 294_912 * 4 / 2 ** 20 == 1.125
    assert check_exercise("adapter_mib_c_attn_r8", 1.13).passed                   # within 1 %
    assert not check_exercise("adapter_mib_c_attn_r8", 1.2).passed
    assert {ex[n].answer for n in OPTIONS} == {"b"}
    assert all(set(options) == set("abcd") for options in OPTIONS.values())


def test_the_c_attn_count_is_what_inject_lora_trains_on_gpt2_small():
    from lora_np.gpt2 import GPT2Config
    from lora_np.lora import LoraConfig, find_target_layers
    from lora_np.nn import Conv1D
    cfg = GPT2Config()                                          # GPT-2 small's sizes, built without weights
    assert (cfg.n_layer, cfg.n_embd) == (nb09.GPT2_LAYERS, nb09.GPT2_D)
    count = cfg.n_layer * 8 * (cfg.n_embd + 3 * cfg.n_embd)
    assert count == nb09.C_ATTN_PARAMS
    assert LoraConfig and find_target_layers and Conv1D         # the names the solution cites exist


@pytest.mark.parametrize("name", NAMES)
def test_show_solution_prints_the_worked_solution(capsys, name):
    show_solution(name)
    out = capsys.readouterr().out
    assert out.startswith(f"{name}: {nb09.EXERCISES_09[name].prompt}")
    assert nb09.EXERCISES_09[name].solution in out


# ------------------------------------------------------------------ the helpers

def test_checkpoint_folder_defaults_to_the_tiny_checkpoint_and_names_what_is_missing(tmp_path, monkeypatch):
    monkeypatch.delenv("LORA_NP_GPT2_DIR", raising=False)
    assert nb09.checkpoint_folder() == nb09.TINY_CHECKPOINT
    monkeypatch.setenv("LORA_NP_GPT2_DIR", str(nb09.TINY_CHECKPOINT))
    assert nb09.checkpoint_folder() == nb09.TINY_CHECKPOINT
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError,
                       match="lacks model.safetensors, vocab.json, merges.txt.*huggingface-cli"):
        nb09.checkpoint_folder(tmp_path)
    monkeypatch.setenv("LORA_NP_GPT2_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="GPT2_DIR"):
        nb09.checkpoint_folder()


def test_the_committed_cost_is_read_or_said_to_be_missing(tmp_path):
    assert nb09.committed_cost(tmp_path / "none.json") is None
    assert "not measured yet" in nb09.format_committed_cost(None)
    cost = {"date": "2026-01-01", "machine": {"cpu": "x", "cores": 2}, "model": "GPT-2 small", "batch": 2,
            "tokens": 128, "rows": [
                {"mode": "full", "seconds_per_step": 2.0, "peak_MiB": 800.0, "params_MiB": 474.7,
                 "grads_MiB": 474.7, "optimizer_MiB": 949.4, "trainable": 124439808},
                {"mode": "lora", "seconds_per_step": 1.0, "peak_MiB": 200.0, "params_MiB": 475.8,
                 "grads_MiB": 1.1, "optimizer_MiB": 2.2, "trainable": 294912}]}
    path = tmp_path / "cost.json"
    path.write_text(json.dumps(cost))
    text = nb09.format_committed_cost(nb09.committed_cost(path))
    assert "cpu x, cores 2" in text and "124,439,808" in text and "time per step 50%" in text
    assert "peak of the step 25%" in text and "PyTorch" not in text
    cost["torch"] = {"torch": "2.13.0"}
    cost["rows"][0]["torch_seconds_per_step"], cost["rows"][1]["torch_seconds_per_step"] = 2.5, 1.25
    path.write_text(json.dumps(cost))
    text = nb09.format_committed_cost(nb09.committed_cost(path))
    assert "the same step in PyTorch (torch 2.13.0): full 2.50 s, lora 1.25 s" in text


# ------------------------------------------------------------------ the notebook, as committed (executed)

@pytest.fixture(scope="module")
def ran():
    """Notebook 09 as committed: executed top to bottom by tests/notebook_runner.py."""
    return nbformat.read(NOTEBOOK, as_version=4)


def outputs(nb) -> str:
    return "".join(text_output(c) for c in nb.cells if c.cell_type == "code")


def test_every_exercise_has_a_placeholder_that_says_no_answer_yet(ran):
    assert_placeholders_say_no_answer_yet(ran, [name for name in NAMES if name != "merge_conv1d"])
    (turn,) = [c for c in ran.cells
               if c.cell_type == "code" and "check_merge_conv1d(merge_conv1d)" in c.source]
    assert "not written yet" in text_output(turn)


def test_the_prediction_comes_before_the_fine_tune_with_every_option(ran):
    sources = [c.source for c in ran.cells]
    question = next(i for i, s in enumerate(sources) if 'check_exercise("predict_finetune_tiny", None)' in s)
    train = next(i for i, s in enumerate(sources) if "finetune(" in s and "import" not in s)
    assert question < train
    for line in nb09.PREDICT_OPTIONS.values():
        assert f"**{line[:3]}**{line[3:]}" in sources[question - 1], line


def test_the_notebook_says_the_tiny_checkpoint_is_random_and_how_to_get_gpt2_small(ran):
    text = " ".join(markdown(ran).split())
    assert "has **random weights: it is not pretrained**" in text
    assert "huggingface-cli download openai-community/gpt2" in text and "LORA_NP_GPT2_DIR" in text
    assert 'GPT2_DIR = None' in "".join(c.source for c in ran.cells if c.cell_type == "code")
    assert "weights: RANDOM, not pretrained" in outputs(ran)


def test_the_figure_is_drawn_and_the_committed_cost_cell_ran(ran):
    code = [c for c in ran.cells if c.cell_type == "code"]
    assert any("image/png" in o.get("data", {}) for c in code for o in c.outputs)
    out = outputs(ran)
    assert "GPT-2 small: not measured yet" in out or "LoRA against full fine-tuning" in out
    assert "max |logits merged - unmerged|" in out and "fan_in_fan_out': True" in out


def test_the_references_and_the_limits_are_there(ran):
    text = " ".join(markdown(ran).split())
    for ref in ("arXiv:2106.09685", "arXiv:1508.07909", "Language Models are Unsupervised Multitask Learners",
                "github.com/huggingface/peft"):
        assert ref in text
    assert "## What this toy cannot show" in text and "## References" in text
    assert "from peft import PeftModel" in text and "model = PeftModel.from_pretrained(base, " in text
