"""Every notebook runs top to bottom in a fresh kernel and no cell raises, with a time limit per cell.

Why our own runner: on these machines nbclient's asynchronous client now and then waited forever
for a kernel that was idle too (no error, no timeout firing), while jupyter_client's blocking
client, used here, started and ran the same kernels reliably. A cell over its limit gets one more
try in a new kernel; a cell that raises fails at once, with the notebook's traceback.
"""
import pathlib

import nbformat
import pytest
from jupyter_client.manager import start_new_kernel

NOTEBOOKS = sorted((pathlib.Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
pytestmark = pytest.mark.host_only
CELL_TIMEOUT_S, ATTEMPTS = 240, 2


class NotebookError(AssertionError):
    pass


def run_cells(path: pathlib.Path) -> None:
    """Execute every code cell of ``path`` in a new kernel started in the notebook's folder."""
    nb = nbformat.read(path, as_version=4)
    km, kc = start_new_kernel(kernel_name="python3", startup_timeout=120, cwd=str(path.parent))
    try:
        for i, cell in enumerate(nb.cells):
            if cell.cell_type != "code" or not cell.source.strip():
                continue
            reply = kc.execute_interactive(cell.source, timeout=CELL_TIMEOUT_S, output_hook=lambda msg: None,
                                           allow_stdin=False)
            content = reply["content"]
            if content["status"] != "ok":
                trace = "\n".join(content.get("traceback", []))
                raise NotebookError(f"{path.name}, cell {i}: {content.get('ename')}: "
                                    f"{content.get('evalue')}\n{trace}")
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def run_notebook(path: pathlib.Path) -> None:
    for attempt in range(ATTEMPTS):
        try:
            return run_cells(path)
        except TimeoutError:
            if attempt == ATTEMPTS - 1:
                raise


def test_notebooks_are_found():
    assert [p.name[:2] for p in NOTEBOOKS] == ["00", "01", "02", "03", "04", "05", "06", "07", "08"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_top_to_bottom(path):
    run_notebook(path)


def test_a_failing_cell_fails_the_run(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1"),
                                         nbformat.v4.new_code_cell("x / 0")])
    path = tmp_path / "broken.ipynb"
    nbformat.write(nb, path)
    with pytest.raises(NotebookError, match="cell 1: ZeroDivisionError"):
        run_notebook(path)
