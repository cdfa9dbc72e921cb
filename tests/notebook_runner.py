"""Run a notebook top to bottom in a fresh kernel, and optionally save what it showed into the file.

    python tests/notebook_runner.py notebooks/02_lora_on_fruit.ipynb ...     (what ``make notebooks`` does)

Why our own runner: on these machines nbclient's asynchronous client (under ``jupyter nbconvert
--execute`` and ``pytest --nbmake``) now and then waited forever for a kernel that was idle too,
while jupyter_client's blocking client, used here, started and ran the same kernels reliably.

Saving keeps what a reader of the committed notebook should see, as JupyterLab would show it:
every cell's outputs, and the widgets' state (``metadata.widgets``), with what a dashboard printed or
drew inside its ``ipywidgets.Output`` area stored in that widget rather than under the cell.
"""
from __future__ import annotations

import base64
import pathlib
import sys

import nbformat
from jupyter_client.manager import start_new_kernel

CELL_TIMEOUT_S = 240
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"


class NotebookError(AssertionError):
    """A cell raised: the message names the notebook and the cell and carries the traceback."""


class _Recorder:
    """Turns the kernel's iopub messages for one cell into nbformat outputs and widget state."""

    def __init__(self, widgets: dict):
        self.widgets, self.capturing = widgets, {}          # Output widget capturing a msg_id -> its id
        self.outputs, self.clear_next = [], {}

    def _target(self, msg) -> list:
        comm = self.capturing.get(msg["parent_header"].get("msg_id"))
        return self.widgets[comm]["state"].setdefault("outputs", []) if comm else self.outputs

    def __call__(self, msg) -> None:
        kind, content = msg["header"]["msg_type"], msg["content"]
        if kind.startswith("comm_"):
            return self._comm(kind, content, msg.get("buffers") or [])
        if kind == "clear_output":
            target = self._target(msg)
            if content.get("wait"):
                self.clear_next[id(target)] = True
            else:
                target.clear()
            return
        if kind not in ("stream", "display_data", "execute_result", "error"):
            return
        target = self._target(msg)
        if self.clear_next.pop(id(target), False):
            target.clear()
        if kind == "stream":
            if target and target[-1].get("output_type") == "stream" and target[-1]["name"] == content["name"]:
                target[-1]["text"] += content["text"]
                return
            out = nbformat.v4.new_output("stream", name=content["name"], text=content["text"])
        elif kind == "error":
            out = nbformat.v4.new_output("error", ename=content["ename"], evalue=content["evalue"],
                                         traceback=content["traceback"])
        else:
            out = nbformat.v4.new_output(kind, data=content["data"], metadata=content.get("metadata", {}),
                                         **({"execution_count": content["execution_count"]}
                                            if kind == "execute_result" else {}))
        target.append(out)

    def _comm(self, kind: str, content: dict, buffers: list) -> None:
        comm, data = content.get("comm_id"), content.get("data") or {}
        if kind == "comm_open" and content.get("target_name") == "jupyter.widget":
            state = dict(data.get("state", {}))
            self.widgets[comm] = {"model_name": state.get("_model_name"),
                                  "model_module": state.get("_model_module"),
                                  "model_module_version": state.get("_model_module_version"), "state": state}
            self._buffers(comm, data, buffers)
        elif kind == "comm_msg" and comm in self.widgets and data.get("method") in ("update", "echo_update"):
            self.widgets[comm]["state"].update(data.get("state", {}))
            self._buffers(comm, data, buffers)
            if self.widgets[comm]["model_name"] == "OutputModel" and "msg_id" in data.get("state", {}):
                self.capturing = {k: v for k, v in self.capturing.items() if v != comm}
                if data["state"]["msg_id"]:
                    self.capturing[data["state"]["msg_id"]] = comm
        elif kind == "comm_close":
            self.widgets.pop(comm, None)

    def _buffers(self, comm: str, data: dict, buffers: list) -> None:
        paths = data.get("buffer_paths") or []
        if not paths:
            return
        saved = {tuple(b["path"]): b for b in self.widgets[comm].get("buffers", [])}
        for path, buf in zip(paths, buffers, strict=True):
            saved[tuple(path)] = {"path": list(path), "encoding": "base64",
                                  "data": base64.b64encode(bytes(buf)).decode("ascii")}
        self.widgets[comm]["buffers"] = list(saved.values())


def execute(path, save: bool = False, timeout: int = CELL_TIMEOUT_S):
    """Run every code cell of ``path`` in a new kernel started in the notebook's folder.

    Raises :class:`NotebookError` at the first cell that raises, ``TimeoutError`` for a cell over
    ``timeout`` seconds. Returns the executed notebook, with this run's outputs, execution counts and
    widget state; with ``save``, also writes it back to ``path``.
    """
    path = pathlib.Path(path)
    nb = nbformat.read(path, as_version=4)
    km, kc = start_new_kernel(kernel_name="python3", startup_timeout=120, cwd=str(path.parent))
    widgets: dict = {}
    try:
        for i, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            if not cell.source.strip():
                cell.outputs, cell.execution_count = [], None
                continue
            record = _Recorder(widgets)
            reply = kc.execute_interactive(cell.source, timeout=timeout, output_hook=record,
                                           allow_stdin=False)
            content = reply["content"]
            if content["status"] != "ok":
                trace = "\n".join(content.get("traceback", []))
                raise NotebookError(f"{path.name}, cell {i}: {content.get('ename')}: "
                                    f"{content.get('evalue')}\n{trace}")
            cell.outputs, cell.execution_count = record.outputs, content.get("execution_count")
            cell.metadata.pop("execution", None)
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    nb.metadata.pop("widgets", None)                   # the state this run left, not the file's
    if widgets:
        nb.metadata["widgets"] = {WIDGET_STATE: {"state": widgets, "version_major": 2, "version_minor": 0}}
    if save:
        nbformat.write(nb, path)
    return nb


if __name__ == "__main__":
    for name in sys.argv[1:]:
        print(f"running {name}", flush=True)
        execute(name, save=True)
