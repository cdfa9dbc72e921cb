"""Notebooks 00 and 05: their exercises, their dashboards' starting values, and 05's memory chart.

* every exercise a notebook asks (its ``check_exercise(name, None)`` placeholders): wrong answers are
  rejected with a reason that does not give the right answer away, the right answer is accepted, and
  ``show_solution`` prints a worked solution;
* after Run All, every control of every dashboard is where the notebook's text says it starts
  (the "**Starts at** `description = value; ...`" line before each dashboard, in order);
* the memory chart draws the 24 GiB (RTX 4090) and 80 GiB (A100) lines, and the calculator saves its
  checkpoint in the chosen precision.
"""
import inspect
import math
import pathlib
import re

import nbformat
import pytest
from matplotlib.figure import Figure
from notebook_runner import execute

from lora_np.course import EXERCISES, check_exercise, notebook00, notebook05, show_solution
from lora_np.experiments.budget import MODEL_PRESETS, PRECISION_PRESETS, compare_memory
from lora_np.viz.budget import GPU_CARDS, plot_memory
from lora_np.widgets.budget import memory_calculator

pytestmark = pytest.mark.host_only

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = {"00": ROOT / "notebooks" / "00_start_here.ipynb",
             "05": ROOT / "notebooks" / "05_parameter_budget.ipynb"}
OWN = {"00": set(notebook00.EXERCISES_00),
       "05": set(notebook05.EXERCISES_05) | {"break_even_4096x11008", "fp16_13b_vs_24gb", "fits_24gb"}}
PLACEHOLDER = re.compile(r'check_exercise\("(\w+)", None\)')
GiB = 2 ** 30
MIXED_ADAM = "fp16 mixed precision + Adam"


def placeholders(key: str) -> list[str]:
    nb = nbformat.read(NOTEBOOKS[key], as_version=4)
    return [name for c in nb.cells if c.cell_type == "code" for name in PLACEHOLDER.findall(c.source)]


def asked() -> list[str]:
    return sorted({name for key in NOTEBOOKS for name in placeholders(key)})


# ------------------------------------------------------------------ wrong answers, by exercise
def _acc(model, X, y):
    return notebook00.accuracy(model, X, y)


def _raises(*args):
    raise ValueError("not written yet")


WRONG_ACCURACY = [lambda m, X, y: 100 * _acc(m, X, y),            # a percentage
                  lambda m, X, y: _acc(m, X, y) * len(y),         # a count
                  lambda m, X, y: 1 - _acc(m, X, y),              # the error rate
                  lambda m, X, y: 0.5,                            # a constant
                  lambda m, X, y: None,                           # no return
                  lambda m, X, y: "0.7",                          # not a number
                  _raises, 0.7]                                   # raises; not a function
WRONG_BYTES = [lambda N, T, w, g, o, m: T * (w + g + o + m),
               lambda N, T, w, g, o, m: N * (w + g + o + m),
               lambda N, T, w, g, o, m: (N + T) * (w + g + o + m),
               lambda N, T, w, g, o, m: N * w + T * (g + o + m),
               lambda N, T, w, g, o, m: (N + T) * w + T * (g + o),
               lambda N, T, w, g, o, m: (N + T) * w + T * (g + m),
               lambda N, T, w, g, o, m: (N + T) * w + T * (o + m),
               lambda N, T, w, g, o, m: ((N + T) * w + T * (g + o + m)) / GiB,
               lambda N, T, w, g, o, m: 1e9, lambda N, T, w, g, o, m: None, _raises, 42]
WRONG_ANSWERS = {
    "pretraining_curve": ["a", "c", "d"],
    "mlp_params_20_64_10": [1920, 1344, 650, 12800, 94, 2004, 5000, 100, 1994.5],
    "full_ft_gib_1b3": [20.8, 4.84, 9.69, 14.53, 2.42, 2.08e10, 19836, 50, 5],
    "inject_before_training": ["b", "c", "d"],
    "accuracy_function": WRONG_ACCURACY,
    "budget_thin_layer": ["a", "c", "d"],
    "memory_fits": ["a", "c", "d"],
    "knee_k3": ["a", "c", "d"],
    "scaling_fastest": ["a", "c"],
    "knee_k4": ["a", "c", "d"],
    "checkpoint_fp32_r8": [72, 150.99, 150_994_944, 147_456, 576, 1000, 10],
    "lora_training_bytes": WRONG_BYTES,
    "break_even_4096x11008": [4096 + 11008, 4096 * 11008, 4096, 5970, 100, 9000],
    "fp16_13b_vs_24gb": [26, 48.4, 12.1, 30, 6.05],
    "fits_24gb": [True],
}
NOT_ANSWERS = {"pretraining_curve": ["e", 2, None], "budget_thin_layer": ["bb", True], "fits_24gb": ["no", 0]}


def revealed(answer, text: str, name: str) -> list[str]:
    """The forms of the right answer that ``text`` shows."""
    if callable(answer):                                        # the reference's code, or a case's value
        body = [line.strip() for line in inspect.getsource(answer).splitlines()[1:]]
        found = [line for line in body
                 if len(line) > 12 and not line.startswith(('"""', "#")) and line in text]
        cases = {"accuracy_function": [f"{share:g}" for share, _, _ in notebook00.ACCURACY_CASES],
                 "lora_training_bytes": [f"{notebook05.lora_training_bytes(*c):.4g}"
                                         for c in notebook05.TRAINING_CASES]}[name]
        return found + [c for c in cases if re.search(rf"(?<![\d.]){re.escape(c)}(?![\d])", text)]
    if isinstance(answer, bool):
        return [str(answer)] if str(answer) in text else []
    if isinstance(answer, str):                                 # a letter: named as the answer?
        pattern = rf"\(\s*{answer}\s*\)|['\"]{answer}['\"]|\b(?:option|answer|letter|choice)\s+{answer}\b"
        return re.findall(pattern, text, flags=re.IGNORECASE)
    forms = {str(answer), str(round(answer))}
    if not float(answer).is_integer():
        forms |= {f"{answer:.1f}", f"{answer:.2f}", f"{answer:g}"}
    return [f for f in forms if re.search(rf"(?<![\d.]){re.escape(f)}(?![\d])", text)]


# ------------------------------------------------------------------ the exercises
def test_each_notebook_asks_its_own_exercises_and_only_registered_ones():
    for key in NOTEBOOKS:
        names = placeholders(key)
        assert OWN[key] <= set(names), f"{key}: not asked: {OWN[key] - set(names)}"
        assert set(names) <= set(EXERCISES) and len(names) == len(set(names)), names
    assert set(asked()) == set(WRONG_ANSWERS)


def test_the_multiple_choice_options_in_the_text_are_the_checkers():
    for key in NOTEBOOKS:
        nb = nbformat.read(NOTEBOOKS[key], as_version=4)
        text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
        for name in placeholders(key):
            if isinstance(EXERCISES[name].answer, str):
                for line in EXERCISES[name].prompt.splitlines()[1:]:
                    assert f"**{line[:3]}**{line[3:]}" in text, (key, name, line)


@pytest.mark.parametrize("name", asked())
def test_the_right_answer_is_accepted(name):
    fb = check_exercise(name, EXERCISES[name].answer)
    assert fb.passed and fb.lines[0].startswith(f"✓ {name}: right"), str(fb)


@pytest.mark.parametrize("name", asked())
def test_wrong_answers_are_rejected_with_a_reason_and_without_the_answer(name):
    answer = EXERCISES[name].answer
    reasons = set()
    for wrong in WRONG_ANSWERS[name] + NOT_ANSWERS.get(name, []):
        fb = check_exercise(name, wrong)
        assert not fb.passed, f"{name}: {wrong!r} accepted"
        if wrong is None:
            assert "no answer yet" in str(fb)
            continue
        reason = fb.lines[0].removeprefix(f"✗ {name}: ")
        assert len(reason) > 15 and "show_solution" in str(fb), str(fb)
        reasons.add(reason)
        text = re.sub(r"answer one of \[[^\]]*\]|answer True or False", "",       # a refusal lists them all
                      str(fb).replace(name, ""))
        assert not revealed(answer, text, name), f"{name}: {wrong!r} -> {fb}"
    assert len(reasons) >= min(3, len(WRONG_ANSWERS[name])), reasons      # mistakes are told apart


@pytest.mark.parametrize("name", asked())
def test_show_solution_prints_a_worked_solution(capsys, name):
    show_solution(name)
    out = capsys.readouterr().out
    assert out.startswith(f"{name}: {EXERCISES[name].prompt}") and EXERCISES[name].solution in out


def test_the_common_mistakes_are_named():
    assert "percentage" in str(check_exercise("accuracy_function", WRONG_ACCURACY[0]))
    assert "share of wrong answers" in str(check_exercise("accuracy_function", WRONG_ACCURACY[2]))
    assert "raised ValueError" in str(check_exercise("accuracy_function", _raises))
    assert "frozen weights are still stored" in str(check_exercise("lora_training_bytes", WRONG_BYTES[0]))
    assert "full fine-tuning" in str(check_exercise("lora_training_bytes", WRONG_BYTES[1]))
    assert "adapter's own T weights" in str(check_exercise("lora_training_bytes", WRONG_BYTES[3]))
    assert "in GB (10⁹ bytes)" in str(check_exercise("full_ft_gib_1b3", 20.8))
    assert "fp16" in str(check_exercise("checkpoint_fp32_r8", 72))


def test_the_answers_are_what_the_library_computes():
    assert EXERCISES["mlp_params_20_64_10"].answer == 20 * 64 + 64 + 64 * 10 + 10
    assert math.isclose(EXERCISES["full_ft_gib_1b3"].answer, 1.3e9 * 16 / GiB)
    from lora_np.experiments.budget import lora_trainable_params
    n = lora_trainable_params("GPT-3 175B", 8)
    assert math.isclose(EXERCISES["checkpoint_fp32_r8"].answer, n * 4 / 2 ** 20)
    settings = (("7B (nominal 7.0e9)", MIXED_ADAM, 8), ("GPT-2 small (124M)", "fp32 + Adam", 4),
                ("LLaMA-7B", "fp16 mixed precision + SGD", 16))
    for preset, precision, r in settings:
        _, lora = compare_memory(preset, precision, r)
        spec = PRECISION_PRESETS[precision]
        got = notebook05.lora_training_bytes(MODEL_PRESETS[preset].n_params, lora.trainable,
                                             spec.weight_bytes, spec.grad_bytes, spec.optimizer_bytes,
                                             spec.master_bytes)
        assert math.isclose(got, lora.total)
    full, lora = compare_memory("7B (nominal 7.0e9)", MIXED_ADAM, r=8)       # "memory_fits": (b)
    assert lora.total < 24 * GiB < 80 * GiB < full.total
    assert round(16 * 256 / (16 + 256)) == 15                                 # "budget_thin_layer": (b)


def test_the_knee_moves_with_the_planted_rank():                      # "knee_k4": (b), as its solution says
    from lora_np.experiments import pretrain
    from lora_np.experiments.ranks import planted_rank_sweep, planted_rank_task
    task = planted_rank_task(4, seed=0)
    base, _ = pretrain(task, seed=0)
    assert planted_rank_sweep(base, task, ranks=(1, 2, 3, 4, 5, 6, 8), include_full=False).knee == 4


# ------------------------------------------------------------------ Run All: controls where the text says
STARTS_AT = re.compile(r"\*\*Starts at\*\*\s*`([^`]*)`")


def said_starts(nb) -> list[dict]:
    """Each "**Starts at** `d = v; ...`" of the markdown, in order, as {description: value}."""
    out = []
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for spec in STARTS_AT.findall(cell.source):
                pairs = [part.split("=", 1) for part in " ".join(spec.split()).split(";")]
                out.append({d.strip(): v.strip() for d, v in pairs})
    return out


def control_values(nb) -> list[dict]:
    """Each dashboard shown by a code cell, in order: {description: value} of its sliders and dropdowns."""
    state = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"] \
        if "widgets" in nb.metadata else {}

    def value(model):
        s = model["state"]
        if "_options_labels" in s:                                 # SelectionSlider, Dropdown
            return s["_options_labels"][s["index"]]
        return str(s["value"])

    out = []
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            view = o.get("data", {}).get("application/vnd.jupyter.widget-view+json")
            if view:
                box = state[view["model_id"]]["state"]
                children = [c.removeprefix("IPY_MODEL_") for c in box["children"]]
                out.append({state[c]["state"]["description"]: value(state[c]) for c in children
                            if state[c]["model_name"] in ("IntSliderModel", "SelectionSliderModel",
                                                          "DropdownModel")})
    return out


@pytest.fixture(scope="module", params=sorted(NOTEBOOKS))
def executed(request):                     # tests using it are marked "notebook": make test-min skips them
    return request.param, execute(NOTEBOOKS[request.param])


@pytest.mark.notebook
def test_run_all_leaves_every_control_where_the_text_says_it_starts(executed):
    key, nb = executed
    said, shown = said_starts(nb), control_values(nb)
    assert len(said) == len(shown), f"{key}: {len(said)} 'Starts at' lines for {len(shown)} dashboards"
    for text, controls in zip(said, shown, strict=True):
        assert controls == text, f"{key}: the text says {text}, the controls are at {controls}"
    if key == "05":
        assert shown[0] == {"rank r (one W)": "8", "d_in": "256", "d_out": "256"}  # moved, then put back
        assert shown[1]["rank r (model)"] == "8" and shown[2] == {"LoRA rank r": "3"}
        assert len(shown) == 3
        names = [name for controls in shown for name in controls]
        assert len(names) == len(set(names)), f"05: two controls share a description: {names}"


@pytest.mark.notebook
def test_run_all_leaves_every_exercise_unanswered(executed):
    key, nb = executed
    for cell in nb.cells:
        if cell.cell_type == "code" and PLACEHOLDER.search(cell.source):
            text = "".join(o.get("data", {}).get("text/plain", "") for o in cell.outputs)
            assert "no answer yet" in text, (key, cell.source)


# ------------------------------------------------------------------ the memory chart and the calculator
def card_lines(ax) -> list[float]:
    """The y values of the horizontal lines drawn across the axes."""
    return sorted(line.get_ydata()[0] for line in ax.get_lines() if len(set(line.get_ydata())) == 1)


def test_the_memory_chart_draws_the_24_and_80_gib_cards():
    assert [(name, size / GiB) for name, size in GPU_CARDS] == [("RTX 4090", 24), ("A100", 80)]
    ax = Figure().subplots()
    plot_memory(*compare_memory("7B (nominal 7.0e9)", MIXED_ADAM, r=8), ax=ax)
    assert ax.get_ylabel() == "training memory (GiB)" and card_lines(ax) == [24, 80]
    assert {"RTX 4090: 24 GiB", "A100: 80 GiB"} <= {t.get_text() for t in ax.texts}
    assert ax.get_ylim()[1] > 104                                       # the full bar and both lines show
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "weights", "gradients", "optimizer state", "master copies (fp32)"]          # lines are not parts
    decimal = Figure().subplots()
    plot_memory(*compare_memory("7B (nominal 7.0e9)", MIXED_ADAM, r=8), ax=decimal, binary=False)
    assert card_lines(decimal) == pytest.approx([24 * GiB / 1e9, 80 * GiB / 1e9])


def test_the_card_lines_only_where_they_mean_something():
    small = Figure().subplots()                                          # the fruit MLP: KiB, no card
    plot_memory(*compare_memory("fruit MLP 20-256-256-10", "fp32 + Adam", r=4), ax=small)
    assert card_lines(small) == []
    inference = Figure().subplots()                                      # 13 GiB: the first card above it
    plot_memory(*compare_memory("7B (nominal 7.0e9)", "fp16 inference", r=8), ax=inference)
    assert card_lines(inference) == [24]
    huge = Figure().subplots()                                           # 2.55 TiB: both, in TiB
    plot_memory(*compare_memory("GPT-3 175B", MIXED_ADAM, r=4), ax=huge)
    assert card_lines(huge) == pytest.approx([24 / 1024, 80 / 1024])
    assert any("RTX 4090: 24 GiB" in t.get_text() and "A100: 80 GiB" in t.get_text() for t in huge.texts)


def test_the_calculator_saves_the_checkpoint_in_the_chosen_precision():
    dash = memory_calculator("7B (nominal 7.0e9)", MIXED_ADAM, r=8)
    first = dash.history[-1]
    assert first["checkpoint_bytes"] == 2 and first["lora_checkpoint"] == 2 * first["trainable"]
    dash.precision_dropdown.value = "fp32 + Adam"
    rec = dash.history[-1]
    assert rec["checkpoint_bytes"] == 4 and rec["lora_checkpoint"] == 4 * rec["trainable"]
    assert rec["full_checkpoint"] == 4 * 7e9
    fixed = memory_calculator("7B (nominal 7.0e9)", "fp32 + Adam", r=8, checkpoint_bytes=2)
    assert fixed.history[-1]["checkpoint_bytes"] == 2


def test_05_has_no_plumbing_and_its_rank_sliders_have_distinct_descriptions():
    from lora_np.widgets.budget import BUDGET_RANK, MEMORY_RANK
    nb = nbformat.read(NOTEBOOKS["05"], as_version=4)
    sources = [c.source for c in nb.cells if c.cell_type == "code"]
    assert not any("__version__" in s for s in sources)                 # the versions cell lives in 00
    assert not any("clear_caches" in s or "xp.abs" in s or "to_float(" in s for s in sources)
    assert len({BUDGET_RANK, MEMORY_RANK, "LoRA rank r"}) == 3          # "LoRA rank r": the sweep
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert f"{BUDGET_RANK} = 8`" in text and f"{MEMORY_RANK} = 8`" in text and "`LoRA rank r = 3`" in text
    assert memory_calculator().slider.description == MEMORY_RANK
