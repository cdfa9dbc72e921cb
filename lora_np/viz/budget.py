"""Figures of notebook 05's budget: parameters against the rank, and training memory by part."""
from __future__ import annotations

import numpy as _host_np  # plotting happens on the host

from ..experiments.budget import MemoryBreakdown, ParameterBudget
from ..tables import byte_unit, format_bytes
from .figures import _axes

_PART_LABELS = {"weights": "weights", "gradients": "gradients", "optimizer": "optimizer state",
                "master": "master copies (fp32)"}


def plot_parameter_budget(budget: ParameterBudget, r: int | None = None, ax=None):
    """Trainable parameters of one ``(d_out, d_in)`` weight against the rank r (log y).

    LoRA's r·(d_in + d_out) is a straight line in r; full fine-tuning's d_in·d_out is a horizontal
    line; they cross at the break-even rank r* = d_in·d_out / (d_in + d_out), beyond which (shaded)
    LoRA saves nothing. ``r`` (one of ``budget.ranks``) is circled, with its fraction. Past
    r = 64 the r axis is logarithmic too, so that small ranks stay visible.
    """
    if not isinstance(budget, ParameterBudget):
        raise TypeError(f"plot_parameter_budget: budget must be a ParameterBudget "
                        f"(lora_np.experiments.budget.parameter_budget), got {type(budget).__name__}")
    point = None if r is None else budget.at(r)                      # a clear error for a rank not in it
    fig, ax = _axes(ax, figsize=(7, 4.2))
    ranks = _host_np.asarray(budget.ranks)                          # (k,)
    lora = _host_np.asarray(budget.lora)                            # (k,)
    ax.plot(ranks, lora, "o-" if len(ranks) <= 32 else "-", ms=4, color="C0", label="LoRA: r·(d_in + d_out)")
    ax.axhline(budget.full, color="C1", ls="--", label=f"full fine-tuning: d_in·d_out = {budget.full:,}")
    be = budget.break_even
    ax.axvline(be.rank, color="C2", ls=":", lw=2,
               label=f"break-even r* = {be.rank:.1f} (largest saving r = {be.largest_saving_rank})")
    ax.axvspan(be.rank, max(float(ranks[-1]), be.rank) + 0.5, color="C3", alpha=0.08,
               label="LoRA saves nothing")
    if point is not None:
        ax.plot([point["r"]], [point["lora"]], "o", ms=13, mfc="none", mec="C3", mew=2.5,
                label=f"r = {point['r']}: {point['lora']:,} ({point['fraction']:.2%} of full)")
    ax.set_yscale("log")
    if ranks[-1] > 64:                                              # wide weights: small r would vanish
        ax.set_xscale("log", base=2)
        ax.set_xlim(0.8, 1.25 * float(ranks[-1]))
        ax.set_xlabel("LoRA rank r (log scale)")
    else:
        ax.set_xlim(0.5, float(ranks[-1]) + 0.5)
        ax.set_xlabel("LoRA rank r")
    ax.set_ylabel("trainable parameters (log scale)")
    ax.set_title(f"Trainable parameters of one {budget.d_out}×{budget.d_in} weight")
    ax.legend(fontsize=8, loc="lower right")
    return fig


def plot_memory(breakdown_full: MemoryBreakdown, breakdown_lora: MemoryBreakdown, ax=None,
                binary: bool = True):
    """Stacked bars of training memory (weights / gradients / optimizer state / master copies).

    The unit (GiB for real models, KiB for the fruit MLP) is the one that suits the larger total;
    each bar carries its total and the title the ratio between them.
    """
    bars = (breakdown_full, breakdown_lora)
    if not all(isinstance(b, MemoryBreakdown) for b in bars):
        raise TypeError("plot_memory: breakdown_full and breakdown_lora must be MemoryBreakdown objects "
                        "(lora_np.experiments.budget.compare_memory)")
    fig, ax = _axes(ax, figsize=(6, 4.5))
    unit, size = byte_unit(max(b.total for b in bars), binary)
    x = _host_np.arange(len(bars))                                  # (2,)
    bottom = _host_np.zeros(len(bars))                              # (2,)
    for i, part in enumerate(MemoryBreakdown.PARTS):
        height = _host_np.array([getattr(b, part) for b in bars]) / size      # (2,)
        ax.bar(x, height, bottom=bottom, width=0.55, color=f"C{i}", label=_PART_LABELS[part])
        bottom = bottom + height                                             # (2,)
    for xi, b, top in zip(x, bars, bottom, strict=True):
        ax.text(xi, top, format_bytes(b.total, binary), ha="center", va="bottom", fontsize=9)
    ax.set_xticks(x, [f"{b.label}\n{b.trainable:,} trained" for b in bars])
    ax.set_ylim(0, 1.15 * float(bottom.max()))
    ax.set_ylabel(f"training memory ({unit})")
    ax.set_title(f"Full fine-tuning needs {breakdown_full.total / breakdown_lora.total:.1f}× LoRA's memory\n"
                 "(activations not counted)", fontsize=10)
    ax.legend(fontsize=8, loc="upper right")
    return fig
