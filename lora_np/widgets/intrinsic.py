"""Notebook 06's dashboard: a slider for the subspace dimension d; each new d is trained (seeded,
about 0.1-0.3 s) and cached, and the accuracy-against-d curve grows as the learner explores.

By default the slider offers :data:`EXPLORER_DIMS`: the sweep's d (:data:`DIMS`, cached when a sweep is
passed) and the d between them, which no sweep covered and which are trained when first chosen."""
from __future__ import annotations

from ..experiments.finetune import finetune
from ..experiments.intrinsic import DIMS, LEVEL, IntrinsicSweep, subspace_finetune
from ..train import evaluate
from ..viz.intrinsic import plot_intrinsic_sweep
from .base import Dashboard, _choice_slider, _figure, _show

# DIMS (16 ... 512, doubling) and a point between each two, plus 8 below: d the default sweep never trains
EXPLORER_DIMS = tuple(sorted({8, *DIMS, *(3 * d // 2 for d in DIMS[:-1])}))


class IntrinsicDimensionExplorer(Dashboard):
    """Train ``base`` in a random d-dimensional subspace for the d on the slider; draw every d so far.

    ``.results[d]`` caches each run; ``.sweep`` is an :class:`IntrinsicSweep` of the d tried so far
    (so its ``d_int90`` is interpolated between those). A ``sweep`` passed in seeds the cache (and
    its full fine-tuning accuracy is reused); otherwise full fine-tuning is run once here. A d on the
    slider that is not in the cache is trained with :func:`subspace_finetune` when it is chosen, then
    cached; each record says which (``cached``, and ``seconds`` of training).
    """

    def __init__(self, base, task, dims=EXPLORER_DIMS, d: int = 64, said: bool = False, seed: int = 0,
                 sweep: IntrinsicSweep | None = None, **subspace_kwargs):
        slider = _choice_slider("intrinsic_dimension_explorer", "d", d, dims, "dims", "subspace d")
        dims = slider.options
        if sweep is not None and not isinstance(sweep, IntrinsicSweep):
            raise TypeError(f"intrinsic_dimension_explorer: sweep must be an IntrinsicSweep or None, "
                            f"got {type(sweep).__name__}")
        self.base, self.task, self.said, self.seed, self.kwargs = base, task, said, seed, subspace_kwargs
        self.D = sum(p.size for p in base.parameters())
        if max(dims) > self.D:
            raise ValueError(f"intrinsic_dimension_explorer: every d must be at most D = {self.D:,}, "
                             f"got {max(dims)}")
        m = len(base.parameters())
        if said and min(dims) <= m:
            raise ValueError(f"intrinsic_dimension_explorer: with said=True every d must exceed the {m} "
                             f"per-tensor scales it includes, got {min(dims)}")
        self.results = {}                                               # d -> accuracy
        if sweep is not None and sweep.said == said:
            self.results.update(zip(sweep.dims, sweep.accuracy, strict=True))
        self.full_accuracy = (sweep.full_accuracy if sweep is not None
                              else finetune(base, task, r=None, seed=seed).accuracy)
        self.before = evaluate(base, *task.shift_test)["accuracy"]
        kind = "SAID (a learned scale per tensor)" if said else "random subspace"
        super().__init__(slider, f"Fine-tuning with d trained numbers: θ = θ₀ + P z ({kind}, D = {self.D:,})")
        self.redraw(d)

    @property
    def sweep(self) -> IntrinsicSweep:
        dims = sorted(self.results)
        return IntrinsicSweep(dims, [self.results[k] for k in dims], self.D, self.full_accuracy,
                              1.0 / self.task.n_classes, self.before, self.said,
                              tuple(getattr(self.base, "hidden", ())))

    def _draw(self, d) -> dict:
        cached = d in self.results
        seconds = 0.0
        if not cached:
            res = subspace_finetune(self.base, self.task, d, said=self.said, seed=self.seed, keep_model=False,
                                    **self.kwargs)
            self.results[d], seconds = res.accuracy, res.seconds
        sweep = self.sweep
        point = sweep.at(d)
        record = {**point, "cached": cached, "seconds": seconds, "d_int90": sweep.d_int90, "said": self.said,
                  "full_accuracy": self.full_accuracy, "tried": list(sweep.dims)}
        fig = _figure((7.5, 4.4))
        plot_intrinsic_sweep(sweep, ax=fig.subplots(), current=d)
        _show(fig)
        d90 = record["d_int90"]
        print(f"d = {d}: {d:,} trained numbers of D = {self.D:,} ({point['fraction']:.2%}); "
              f"shifted-fruit accuracy {point['accuracy']:.1%}, normalised {point['normalized']:.2f} "
              f"(0 = chance, 1 = full fine-tuning {self.full_accuracy:.1%})"
              + (f"  [trained in {seconds:.2f} s]" if not cached else "  [cached]"))
        first = sweep.normalized()[0] >= LEVEL                   # the smallest d tried already reaches it
        print("d_int90 from the d tried so far: " + ("not reached yet" if d90 is None else
                                                     f"≤ {d90:.0f}" if first else f"≈ {d90:.0f}")
              + "  (try more values of d)")
        return record


def intrinsic_dimension_explorer(base, task, dims=EXPLORER_DIMS, d: int = 64, said: bool = False,
                                 seed: int = 0, sweep: IntrinsicSweep | None = None,
                                 **subspace_kwargs) -> IntrinsicDimensionExplorer:
    """A slider over ``dims`` that fine-tunes ``base`` on ``task`` in a random d-dimensional subspace
    and redraws.

    ``dims``: the slider's d (default :data:`EXPLORER_DIMS`: 8 to 512, the default sweep's d and the d
    between them, so that some are always new). ``sweep``: an :func:`intrinsic_dimension_sweep` of the
    same base and task to start from (its points are shown at once, the other d are trained when
    chosen). ``epochs``, ``lr`` and ``batch_size`` go to :func:`subspace_finetune`.
    """
    return IntrinsicDimensionExplorer(base, task, dims=dims, d=d, said=said, seed=seed, sweep=sweep,
                                      **subspace_kwargs)
