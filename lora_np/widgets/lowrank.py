"""The rank r on a slider, in notebooks 01 and 02: the best rank-r approximation of a matrix, then
LoRA at rank r fine-tuning the fruit MLP (see :mod:`lora_np.widgets`)."""
from __future__ import annotations

import ipywidgets as widgets

from .. import viz
from ..experiments import finetune, low_rank_approx, lowrank_param_count, relative_error
from ..experiments.finetune import DEFAULT_TARGETS
from .base import Dashboard, _choice_slider, _figure, _show


class LowRankExplorer(Dashboard):
    """The matrix ``M``, its best rank-r approximation B·A and the error, for r on a slider."""

    def __init__(self, M, r: int = 1):
        low_rank_approx(M, r)                                  # the library's errors for a bad M or r
        self.M = M
        self.m, self.n = M.shape
        slider = widgets.IntSlider(value=r, min=1, max=min(self.m, self.n), step=1, description="rank r",
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
    """Fine-tune a copy of ``base`` with LoRA at the rank on the slider; draw what it buys and how it
    trained: held-out accuracy and grape recall against r (with the trainable counts), beside the
    training loss curves (a larger r always lowers the training loss; the held-out panel shows
    whether that helps).

    Each rank is trained once and cached (``.results[r]``), so moving back is instant; the plots
    show every rank trained so far, the current one marked. ``results``: runs already trained with
    the same settings (a :func:`~lora_np.experiments.rank_sweep`'s), which fill the cache.
    """

    def __init__(self, base, task, ranks=(1, 2, 4, 8, 16), r: int = 4, epochs: int = 30, results=(),
                 **finetune_kwargs):
        slider = _choice_slider("lora_rank_explorer", "r", r, ranks, "ranks", "LoRA rank r")
        self.base, self.task, self.epochs, self.kwargs = base, task, epochs, finetune_kwargs
        if not all(hasattr(run, "r") and hasattr(run, "history") for run in results):
            raise TypeError("lora_rank_explorer: results must be fine-tuning results (rank_sweep's), "
                            f"got {[type(run).__name__ for run in results]}")
        self.results = {run.r: run for run in results if run.r in slider.options}
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
        fig = _figure((13, 4))
        ax_outcome, ax = fig.subplots(1, 2)
        runs = [self.results[k] for k in sorted(self.results)]
        viz.plot_rank_outcomes(runs, r=r, ax=ax_outcome, chance=1.0 / self.task.n_classes)
        viz.plot_loss_curves(runs, ax=ax)
        for line, run in zip(ax.get_lines(), runs, strict=True):      # one line per run
            line.set_linewidth(2.5 if run.r == r else 1.0)
            line.set_alpha(1.0 if run.r == r else 0.5)
        ax.set_title(f"Training loss: LoRA r = {r} (other ranks tried: faded)")
        _show(fig)
        print(f"r = {r}: trainable parameters {res.trainable:,} of {res.total:,} ({res.percent:.2f}%)\n"
              f"shifted-fruit accuracy {res.accuracy:.1%}, grape recall {res.grape_recall:.1%}"
              f"  (trained in {res.seconds:.2f} s{', cached' if cached else ''})")
        return record


def lora_rank_explorer(base, task, ranks=(1, 2, 4, 8, 16), r: int = 4, epochs: int = 30, results=(),
                       **finetune_kwargs) -> LoraRankExplorer:
    """A slider over ``ranks`` that fine-tunes ``base`` on ``task`` with LoRA at rank r and redraws.

    ``epochs`` and any other keyword (``seed``, ``lr``, ``target_modules``, ...) go to
    :func:`lora_np.experiments.finetune`. ``results``: runs of the same settings already trained
    (e.g. one seed of a rank sweep): the slider shows them without training again.
    """
    return LoraRankExplorer(base, task, ranks=ranks, r=r, epochs=epochs, results=results, **finetune_kwargs)


