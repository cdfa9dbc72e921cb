"""Every notebook runs top to bottom in a fresh kernel (what ``pytest --nbmake notebooks`` does),
with a limit per cell and a fresh retry when the kernel stalls.

Why our own runner: on these machines a freshly started IPython kernel now and then never answered
before the first cell (both processes idle, no error) — an upstream problem reported with
ipykernel 7 and seen here with 6.31 too. A stalled start is retried in a new kernel, at most
twice; a cell that raises fails at once, and so does a cell over its time limit on the third try.
The notebook on disk is not modified.
"""
import pathlib

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

NOTEBOOKS = sorted((pathlib.Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
pytestmark = pytest.mark.host_only
CELL_TIMEOUT_S, ATTEMPTS = 180, 3


def run_notebook(path: pathlib.Path) -> None:
    last = None
    for _ in range(ATTEMPTS):
        nb = nbformat.read(path, as_version=4)
        client = NotebookClient(nb, timeout=CELL_TIMEOUT_S, startup_timeout=60, kernel_name="python3",
                                resources={"metadata": {"path": str(path.parent)}})
        try:
            client.execute()
            return
        except CellExecutionError:
            raise                                    # the notebook itself failed: no retry
        except (CellTimeoutError, DeadKernelError, RuntimeError, TimeoutError) as err:
            last = err                               # a stalled or lost kernel: start afresh
    raise AssertionError(f"{path.name}: the kernel stalled {ATTEMPTS} times; last error: {last}")


def test_notebooks_are_found():
    assert [p.name[:2] for p in NOTEBOOKS] == ["01", "02", "03", "04", "08"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_top_to_bottom(path):
    run_notebook(path)
