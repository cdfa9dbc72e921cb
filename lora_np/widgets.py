"""ipywidgets dashboards for the notebooks: move a slider for the rank r, watch what changes.

Each dashboard is a ``VBox`` (so a notebook cell displays it by naming it) with three extras:

* ``.slider`` — the rank slider; setting ``.slider.value = k`` from code redraws exactly as a drag does;
* ``.output`` — the ``Output`` widget the figure and the printed numbers are drawn into;
* ``.history`` — a kernel-side list with one dict per redraw (r, parameter counts, error or accuracy).

Tests and notebook checks assert on ``.history``, never on the output area: an ``Output``
widget's contents reach the kernel only after the cell has finished.

The dashboards only call library functions (:mod:`lora_np.experiments`, :mod:`lora_np.viz`).
Figures are built as ``matplotlib.figure.Figure`` objects outside pyplot and shown as PNG
images, so none is registered with pyplot and none piles up or is shown twice by the inline
backend; nothing here needs a display to import or to run.
"""
from __future__ import annotations

import io

import ipywidgets as widgets
from IPython.display import Image, display

from . import backend, viz
from .experiments import finetune, low_rank_approx, lowrank_param_count, relative_error
from .experiments.finetune import DEFAULT_TARGETS


def _figure(figsize):
    """A Figure that pyplot knows nothing about (nothing to close, nothing shown twice)."""
    from matplotlib.figure import Figure
    return Figure(figsize=figsize)


def _show(fig, dpi: int = 90) -> None:
    """Display a Figure as a PNG image in the current output (an Output widget's, inside ``with``)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    display(Image(data=buf.getvalue(), format="png"))


class Dashboard(widgets.VBox):
    """A slider above an output area, plus the kernel-side ``history`` of every redraw."""

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
        """Recompute and redraw for rank ``r``; append the record to ``history`` and return it."""
        record = None
        with self.output:                # inside IPython, an error here is shown there and swallowed
            self.output.clear_output(wait=True)
            record = self._draw(r)
        if record is None:
            raise RuntimeError(f"{type(self).__name__}: redrawing at r={r!r} failed; "
                               "the traceback is shown in the dashboard's output area")
        self.history.append(record)
        return record

    def _draw(self, r) -> dict:
        raise NotImplementedError


class LowRankExplorer(Dashboard):
    """The matrix ``M``, its best rank-r approximation B·A and the error, for r on a slider."""

    def __init__(self, M, r: int = 1):
        if not backend.is_array(M) or M.ndim != 2:
            raise ValueError("lowrank_explorer: M must be a 2-D array (use lora_np.backend.asarray)")
        self.M = M
        self.m, self.n = M.shape
        k = min(self.m, self.n)
        if isinstance(r, bool) or not isinstance(r, int) or not 1 <= r <= k:
            raise ValueError(f"lowrank_explorer: r must be an integer in [1, min(m, n) = {k}], got r={r!r}")
        slider = widgets.IntSlider(value=r, min=1, max=k, step=1, description="rank r",
                                   continuous_update=False)
        super().__init__(slider, f"Best rank-r approximation of a {self.m}×{self.n} matrix")
        self.redraw(r)

    def _draw(self, r) -> dict:
        B, A = low_rank_approx(self.M, r)                      # (m, r), (r, n)
        approx = B @ A                                         # (m, n)
        err = relative_error(self.M, approx)
        record = {"r": int(r), "params": lowrank_param_count(self.m, self.n, r),
                  "full_params": self.m * self.n, "rel_error": err}
        fig = _figure((12, 3.6))
        viz.plot_lowrank(self.M, approx, r, axes=fig.subplots(1, 3))
        _show(fig)
        print(f"r = {r}: {record['params']:,} numbers in B and A vs {record['full_params']:,} in M "
              f"({record['params'] / record['full_params']:.1%}); relative error {err:.4f}")
        return record


def lowrank_explorer(M, r: int = 1) -> LowRankExplorer:
    """A slider for r (1..min(m, n)) redrawing ``M``, its best rank-r approximation and the error."""
    return LowRankExplorer(M, r)


class LoraRankExplorer(Dashboard):
    """Fine-tune a copy of ``base`` with LoRA at the rank on the slider; draw the loss curves.

    Each rank is trained once and cached (``.results[r]``), so moving back is instant; the plot
    shows every rank trained so far, the current one drawn thickest.
    """

    def __init__(self, base, task, ranks=(1, 2, 4, 8, 16), r: int = 4, epochs: int = 30, **finetune_kwargs):
        ranks = tuple(ranks)
        if not ranks or not all(isinstance(k, int) and not isinstance(k, bool) and k > 0 for k in ranks):
            raise ValueError(f"lora_rank_explorer: ranks must be positive integers, got {ranks!r}")
        if r not in ranks:
            raise ValueError(f"lora_rank_explorer: r={r!r} must be one of ranks={ranks}")
        self.base, self.task, self.epochs, self.kwargs = base, task, epochs, finetune_kwargs
        self.results = {}
        slider = widgets.SelectionSlider(options=ranks, value=r, description="LoRA rank r",
                                         continuous_update=False)
        targets = finetune_kwargs.get("target_modules", DEFAULT_TARGETS)
        super().__init__(slider, f"LoRA fine-tuning on the shifted fruit (adapting {', '.join(targets)})")
        self.redraw(r)

    def _draw(self, r) -> dict:
        cached = r in self.results
        if not cached:
            self.results[r] = finetune(self.base, self.task, r=r, epochs=self.epochs, **self.kwargs)
        res = self.results[r]
        record = {"r": int(r), "trainable": res.trainable, "total": res.total, "percent": res.percent,
                  "accuracy": res.accuracy, "grape_recall": res.grape_recall, "seconds": res.seconds,
                  "cached": cached}
        fig = _figure((7, 4))
        ax = fig.subplots()
        runs = [self.results[k] for k in sorted(self.results)]
        viz.plot_loss_curves(runs, ax=ax)
        for line, run in zip(ax.get_lines(), runs):
            line.set_linewidth(2.5 if run.r == r else 1.0)
            line.set_alpha(1.0 if run.r == r else 0.5)
        ax.set_title(f"Fine-tuning on the new harvest: LoRA r = {r} (other ranks tried: faded)")
        _show(fig)
        print(f"r = {r}: trainable parameters {res.trainable:,} of {res.total:,} ({res.percent:.2f}%)\n"
              f"shifted-fruit accuracy {res.accuracy:.1%}, grape recall {res.grape_recall:.1%}"
              f"  (trained in {res.seconds:.2f} s{', cached' if cached else ''})")
        return record


def lora_rank_explorer(base, task, ranks=(1, 2, 4, 8, 16), r: int = 4, epochs: int = 30,
                       **finetune_kwargs) -> LoraRankExplorer:
    """A slider over ``ranks`` that fine-tunes ``base`` on ``task`` with LoRA at rank r and redraws.

    ``epochs`` and any other keyword (``seed``, ``lr``, ``target_modules``, ...) go to
    :func:`lora_np.experiments.finetune`.
    """
    return LoraRankExplorer(base, task, ranks=ranks, r=r, epochs=epochs, **finetune_kwargs)
