"""What every dashboard shares: :class:`Dashboard` (a slider, an output area, a kernel-side history),
the selection slider over checked options, and figures drawn outside pyplot (see :mod:`lora_np.widgets`).
"""
from __future__ import annotations

import io

import ipywidgets as widgets
from IPython.display import Image, display

from ..validate import int_list


def _figure(figsize):
    """A Figure that pyplot knows nothing about (nothing to close, nothing shown twice)."""
    from matplotlib.figure import Figure
    return Figure(figsize=figsize)


def _show(fig, dpi: int = 90) -> None:
    """Display a Figure as a PNG image in the current output (an Output widget's, inside ``with``)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    display(Image(data=buf.getvalue(), format="png"))


def _choice_slider(where: str, arg: str, value, options, name: str, description: str):
    """A ``SelectionSlider`` over positive integer ``options`` (a list or tuple; shown in increasing
    order) starting at ``value``; both are checked with errors that name the dashboard (``where``)
    and the argument."""
    options = tuple(sorted(set(int_list(options, name, where))))
    if value not in options:
        raise ValueError(f"{where}: {arg}={value!r} must be one of {name}={options}")
    return widgets.SelectionSlider(options=options, value=value, description=description,
                                   continuous_update=False)


class Dashboard(widgets.VBox):
    """A slider above an output area, plus the kernel-side ``history`` of every redraw.

    Subclasses check only what the library does not (e.g. a slider's options) and let the library
    functions their ``_draw`` calls raise for everything else: :meth:`redraw` passes those errors on.
    """

    def __init__(self, slider, description: str = ""):
        self.slider = slider
        self.output = widgets.Output()
        self.history = []
        header = [widgets.HTML(f"<b>{description}</b>")] if description else []
        super().__init__(header + [slider, self.output])
        slider.observe(self._on_change, names="value")

    def _on_change(self, change) -> None:
        self.redraw(change["new"])

    def redraw(self, r) -> dict:
        """Recompute and redraw for rank ``r``; append the record to ``history`` and return it.

        An error is raised here with its own message (a library function's, naming the bad argument);
        inside IPython the ``Output`` widget also shows its traceback in the dashboard.
        """
        record, error = None, None
        with self.output:
            self.output.clear_output(wait=True)
            try:
                record = self._draw(r)
            except Exception as exc:     # inside IPython the Output widget shows it and swallows it ...
                error = exc
                raise
        if error is not None:            # ... so it is raised again here
            raise error
        self.history.append(record)
        return record

    def _draw(self, r) -> dict:
        raise NotImplementedError
