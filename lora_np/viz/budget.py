"""Figures of notebook 05's budget: parameters against the rank, and training memory by part."""
from __future__ import annotations

import numpy as _host_np  # plotting happens on the host

from ..experiments.budget import MemoryBreakdown, ParameterBudget
from ..tables import byte_unit, format_bytes
from .figures import _axes

_PART_LABELS = {"weights": "weights", "gradients": "gradients", "optimizer": "optimizer state",
                "master": "master copies (fp32)"}
GIB = 2 ** 30
# GPU memory, (name, bytes): a "24 GB" RTX 4090 holds 24 GiB, an "80 GB" A100 80 GiB (24,576 and 81,920 MiB)
GPU_CARDS = (("RTX 4090", 24 * GIB), ("A100", 80 * GIB))


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


def _cards_to_draw(cards, top: float) -> list:
    """The cards worth a line next to bars up to ``top`` bytes: none for a model under 1 GiB; else every
    card smaller than ``top`` and the smallest one above it (the first that would hold the taller bar)."""
    if top < GIB:
        return []
    cards = sorted(cards, key=lambda card: card[1])
    above = [card for card in cards if card[1] >= top]
    return [card for card in cards if card[1] < top] + above[:1]


def plot_memory(breakdown_full: MemoryBreakdown, breakdown_lora: MemoryBreakdown, ax=None,
                binary: bool = True, cards=GPU_CARDS):
    """Stacked bars of training memory (weights / gradients / optimizer state / master copies), with a
    horizontal line for each GPU's memory in ``cards`` (``(name, bytes)`` pairs; default an RTX 4090's
    24 GiB and an A100's 80 GiB).

    The unit (GiB for real models, KiB for the fruit MLP) is the one that suits the larger total;
    each bar carries its total and the title the ratio between them. The card lines are drawn for
    models of 1 GiB or more: every card below the taller bar, and the smallest card above it.
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
    drawn = [(capacity / size, f"{name}: {format_bytes(capacity, binary, digits=0)}")
             for name, capacity in _cards_to_draw(cards, max(b.total for b in bars))]
    ceiling = max([float(bottom.max())] + [level for level, _ in drawn])
    labels = []                                                     # [level, text]; near lines share one
    for level, text in drawn:
        ax.axhline(level, color="0.3", ls="--", lw=1)               # a line, not a legend entry
        if labels and level - labels[-1][0] < 0.06 * ceiling:
            labels[-1] = [level, f"{labels[-1][1]}, {text}"]
        else:
            labels.append([level, text])
    for level, text in labels:                                      # at the right, past the bars
        ax.text(0.99, level, text, ha="right", va="bottom", fontsize=8, color="0.2",
                transform=ax.get_yaxis_transform(),
                bbox={"fc": "white", "ec": "none", "alpha": 0.7, "pad": 1})
    ax.set_xticks(x, [f"{b.label}\n{b.trainable:,} trained" for b in bars])
    ax.set_xlim(-0.5, len(bars) - 0.5 + (0.6 if drawn else 0))                      # room for the labels
    ax.set_ylim(0, 1.15 * ceiling)
    ax.set_ylabel(f"training memory ({unit})")
    ax.set_title(f"Full fine-tuning needs {breakdown_full.total / breakdown_lora.total:.1f}× LoRA's memory\n"
                 "(activations not counted)", fontsize=10)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))              # clear of the lines
    return fig
