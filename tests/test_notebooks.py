"""Every notebook runs top to bottom in a fresh kernel and no cell raises, with a time limit per cell
(``tests/notebook_runner.py``, jupyter_client's blocking client: see there why not nbclient). A cell
over its limit gets one more try in a new kernel; a cell that raises fails at once, with the
notebook's traceback. The runner also re-executes and saves the committed notebooks
(``make notebooks``); a test here checks it records outputs and an Output widget's capture.
"""
import pathlib

import nbformat
import pytest
from notebook_runner import NotebookError, execute

NOTEBOOKS = sorted((pathlib.Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
pytestmark = pytest.mark.host_only
ATTEMPTS = 2


# Where each notebook's text says its controls start, which is where Run All must leave them:
# {notebook: {control's description: value}} (a selection slider's value is its label).
CONTROLS = {
    "01_rank_decomposition": {"rank r": 1},
    "02_lora_on_fruit": {"LoRA rank r": "4"},
    "03_lora_in_attention": {"adapter": "inventory", "strength": 1.0},
    "04_adapters_in_practice": {"adapter": "harvest_a", "strength": 1.0, "weight w": 0.5},
    "05_parameter_budget": {"d_in": 256, "d_out": 256, "rank r (one W)": 8,
                            "model": "7B (nominal 7.0e9)", "precision": "fp16 mixed precision + Adam",
                            "targets": "q, v (the LoRA paper)", "rank r (model)": "8", "LoRA rank r": "3"},
    "06_intrinsic_dimension": {"subspace d": "64"},
    "07_adapters_prefix_lora": {"size k": "4"},
}


def run_notebook(path: pathlib.Path):
    for attempt in range(ATTEMPTS):
        try:
            return execute(path)
        except TimeoutError:
            if attempt == ATTEMPTS - 1:
                raise


def control_values(nb) -> dict:
    """{description: value} of the notebook's sliders and dropdowns, from its saved widget state."""
    saved = nb.metadata.get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {})
    state = saved.get("state", {})
    values = {}
    for model in state.values():
        s = model["state"]
        if "description" not in s or not s["description"]:
            continue
        if "_options_labels" in s and s.get("index") is not None:
            values[s["description"]] = s["_options_labels"][s["index"]]
        elif "value" in s:
            values[s["description"]] = s["value"]
    return values


def test_notebooks_are_found():
    prefixes = [p.name.split("_")[0] for p in NOTEBOOKS]
    assert prefixes == ["00", "01", "02", "03", "04", "04b", "05", "06", "07", "08", "09"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_top_to_bottom_and_leaves_its_controls_where_the_text_starts_them(path):
    nb = run_notebook(path)
    values = control_values(nb)
    for control, expected in CONTROLS.get(path.stem, {}).items():
        assert values.get(control) == expected, f"{path.name}: {control!r} ends at {values.get(control)!r}"


def test_a_failing_cell_fails_the_run(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1"),
                                         nbformat.v4.new_code_cell("x / 0")])
    path = tmp_path / "broken.ipynb"
    nbformat.write(nb, path)
    with pytest.raises(NotebookError, match="cell 1: ZeroDivisionError"):
        run_notebook(path)


def test_saving_records_outputs_counts_and_what_an_output_widget_captured(tmp_path):
    cells = ["print('hello')\nprint('again')", "6 * 7",
             "import ipywidgets as w\nout = w.Output()\nwith out:\n    print('inside the widget')\nout",
             "import sys\nprint('to stderr', file=sys.stderr)"]
    path = tmp_path / "n.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells]), path)
    execute(path, save=True)
    nb = nbformat.read(path, as_version=4)
    first, second, third, fourth = nb.cells
    assert [o["text"] for o in first.outputs] == ["hello\nagain\n"]        # one stream, merged
    assert second.outputs[0]["data"]["text/plain"] == "42" and second.execution_count == 2
    assert [o["output_type"] for o in third.outputs] == ["execute_result"]  # only the widget's view
    state = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    captured = [m["state"]["outputs"] for m in state.values() if m["model_name"] == "OutputModel"]
    assert captured == [[{"output_type": "stream", "name": "stdout", "text": "inside the widget\n"}]]
    assert fourth.outputs[0]["name"] == "stderr"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_the_committed_notebook_was_run_top_to_bottom_with_its_outputs_and_widget_state(path):
    """As ``make notebooks`` saves it: every code cell run once, in order, none with an error, and the
    dashboards' state saved so GitHub, nbviewer and the website show their figures under the right cells."""
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code" and c.source.strip()]
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1)), f"{path.name}: not in order"
    assert all(o["output_type"] != "error" for c in code for o in c.outputs), f"{path.name}: an error output"
    assert sum(bool(c.outputs) for c in code) >= len(code) // 2, f"{path.name}: most cells have no output"
    if any("_explorer(" in c.source or "_calculator(" in c.source for c in code):
        assert nb.metadata.get("widgets", {}).get("application/vnd.jupyter.widget-state+json"), path.name
