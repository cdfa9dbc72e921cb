"""Notebook 05's rank-sweep dashboard: a slider over the swept ranks moves a marker along the
accuracy, loss and parameter-count curves (the sweep is trained once, so the slider is instant)."""
from __future__ import annotations

from ..viz.ranks import plot_planted_sweep
from .base import Dashboard, _choice_slider, _figure, _show


class RankSweepExplorer(Dashboard):
    """Moves ``r`` along a :class:`~lora_np.experiments.ranks.PlantedRankSweep`; prints its numbers."""

    def __init__(self, sweep, r: int | None = None):
        if not hasattr(sweep, "ranks") or not hasattr(sweep, "at"):
            raise TypeError(f"rank_sweep_explorer: sweep must be a PlantedRankSweep "
                            f"(lora_np.experiments.ranks.planted_rank_sweep), got {type(sweep).__name__}")
        slider = _choice_slider("rank_sweep_explorer", "r", sweep.k if r is None else r, sweep.ranks,
                                "sweep.ranks", "LoRA rank r")
        self.sweep = sweep
        super().__init__(slider, f"Rank sweep on a shift of planted rank k = {sweep.k}")
        self.redraw(slider.value)

    def _draw(self, r) -> dict:
        record = self.sweep.at(r)
        record["past_knee"] = r >= self.sweep.knee
        fig = _figure((14, 3.8))
        plot_planted_sweep(self.sweep, r=r, axes=fig.subplots(1, 3))
        _show(fig)
        full = self.sweep.full
        print(f"r = {r}: {record['trainable']:,} trainable parameters ({record['percent']:.2f}% of the "
              f"model), accuracy {record['accuracy']:.1%}, loss {record['val_loss']:.3f}"
              + (f"; full fine-tuning: {full.trainable:,} parameters, accuracy {full.accuracy:.1%}"
                 if full else ""))
        print("past the knee: a larger r buys almost nothing" if record["past_knee"]
              else f"below the knee (r = {self.sweep.knee}): the update cannot undo every direction of the "
                   "shift")
        return record


def rank_sweep_explorer(sweep, r: int | None = None) -> RankSweepExplorer:
    """A slider over ``sweep.ranks`` (starting at the planted rank k) marking r on the sweep's curves."""
    return RankSweepExplorer(sweep, r)
