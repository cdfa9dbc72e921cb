"""The dashboard of notebook 07: one size knob for three methods, and what each one costs.

The slider sets k = LoRA's rank r = the adapters' bottleneck m = the prefix length p. Each redraw
builds the untrained models (:func:`lora_np.experiments.peft_methods.peft_costs`: no training,
so it answers in well under a second), measures their latency on the given input and draws
the trainable parameters and the latency side by side. Sizes already measured are remembered.
"""
from __future__ import annotations

from ..experiments.peft_methods import peft_costs
from ..viz.peft_methods import plot_peft_latency, plot_peft_params
from .base import Dashboard, _choice_slider, _figure, _show


class PeftCostExplorer(Dashboard):
    """A slider over ``sizes``; each redraw shows every method's trainable parameters and latency.

    Each ``history`` record holds ``size``, and per method (keys "base", "lora", "lora_merged",
    "adapters", "prefix") ``trainable``, ``latency`` (seconds), ``keys_per_query``, ``matmuls``
    and ``macs``, plus ``cached`` (whether the size had been measured before). ``base``, ``x`` and
    ``repeats`` are checked by :func:`~lora_np.experiments.peft_methods.peft_costs` at the first redraw.
    """

    def __init__(self, base, x, sizes=(1, 2, 4, 8, 16), size: int = 4, repeats: int = 150, **cost_kwargs):
        slider = _choice_slider("peft_cost_explorer", "size", size, sizes, "sizes", "size k")
        self.base, self.x, self.repeats, self.kwargs = base, x, repeats, cost_kwargs
        self.costs = {}
        super().__init__(slider, "LoRA rank r = adapter bottleneck m = prefix length p = k: "
                                 "what each method trains and what it costs per forward pass")
        self.redraw(size)

    def _draw(self, k) -> dict:
        cached = k in self.costs
        if not cached:
            self.costs[k] = peft_costs(self.base, k, self.x, repeats=self.repeats, **self.kwargs)
        rows = self.costs[k]
        record = {"size": int(k), "cached": cached}
        for field in ("trainable", "latency", "keys_per_query", "matmuls", "macs"):
            record[field] = {r.method: getattr(r, field) for r in rows}
        fig = _figure((13, 4.2))
        ax1, ax2 = fig.subplots(1, 2)
        plot_peft_params(rows, ax=ax1)
        ax1.set_title(f"Trainable parameters at k = {k}")
        plot_peft_latency(rows, ax=ax2)
        ax2.set_title(f"Latency per forward pass at k = {k} ({self.x.shape[0]} image(s) per call)")
        _show(fig)
        base_macs = record["macs"]["base"]
        print(f"k = {k}: " + "; ".join(
            f"{r.label} {r.trainable:,} trained, {1e3 * r.latency:.3f} ms, "
            f"{100 * (r.macs / base_macs - 1):+.1f}% multiply-adds" for r in rows if r.method != "base"))
        return record


def peft_cost_explorer(base, x, sizes=(1, 2, 4, 8, 16), size: int = 4, repeats: int = 150,
                       **cost_kwargs) -> PeftCostExplorer:
    """A slider over k (LoRA r = adapter m = prefix p) drawing trainable parameters and latency on ``x``.

    ``lora_targets``, ``adapter_where`` and ``seed`` go to
    :func:`lora_np.experiments.peft_methods.peft_costs`.
    """
    return PeftCostExplorer(base, x, sizes=sizes, size=size, repeats=repeats, **cost_kwargs)
