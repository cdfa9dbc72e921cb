"""Figures of notebook 07: adapters, LoRA and prefix tuning side by side.

``rows`` are :class:`lora_np.experiments.peft_methods.PeftRow` (trained, with accuracy) or
:class:`~lora_np.experiments.peft_methods.PeftCost` (costs only). Every function draws on the
``ax`` (or ``axes``) you pass, or a new figure, and returns the figure.
"""
from __future__ import annotations

import numpy as _host_np  # plotting happens on the host

from .figures import _axes

COLORS = {"base": "0.5", "lora": "C0", "lora_merged": "C9", "adapters": "C1", "prefix": "C2", "full": "C3"}


def _color(row) -> str:
    return COLORS.get(row.method, "C4")


def _reference(rows):
    """The base model's row (the reference for latency and accuracy), or None."""
    return next((r for r in rows if r.method == "base"), None)


def _rows_and_seeds(rows):
    """``(rows, seeds)``: a :class:`~lora_np.experiments.peft_methods.PeftSeeds` gives its first seed's
    rows and itself; a list of rows gives the rows and None."""
    if hasattr(rows, "runs") and hasattr(rows, "stats"):
        return list(rows.rows), rows
    return list(rows), None


def plot_peft_tradeoff(rows, ax=None):
    """Accuracy (filled) and grape recall (hollow) on the shifted test images, one column per method,
    labelled with what it trains; the base model trains nothing and is drawn as dotted lines. Merged
    LoRA is not drawn: it predicts what unmerged LoRA predicts.

    ``rows``: the rows of one run, or a :class:`~lora_np.experiments.peft_methods.PeftSeeds`: then
    each marker is the mean over the seeds, its error bar spans min to max, and its number is the mean.
    The y axis starts at 0, where the base model's grape recall lies.
    """
    fig, ax = _axes(ax, figsize=(7, 4.5))
    rows, seeds = _rows_and_seeds(rows)
    base = _reference(rows)
    shown = [r for r in rows if r.method not in ("base", "lora_merged")]
    x = _host_np.arange(len(shown))
    for i, r in enumerate(shown):
        for field, dx, filled in (("accuracy", -0.12, True), ("grape_recall", 0.12, False)):
            if seeds is None:
                mean, err = 100 * getattr(r, field), None
            else:
                st = seeds.stats(r.method, field)
                mean = 100 * st["mean"]
                err = [[mean - 100 * st["min"]], [100 * st["max"] - mean]]
            ax.errorbar([i + dx], [mean], yerr=err, fmt="o", ms=9, color=_color(r), capsize=4,
                        mfc=_color(r) if filled else "none", mew=2)
            ax.annotate(f"{mean:.1f}%" if filled else f"{mean:.0f}%", (i + dx, mean),
                        textcoords="offset points", xytext=(-8 if filled else 8, 0),
                        ha="right" if filled else "left", va="center", fontsize=8, color=_color(r))
    if base is not None:
        ax.axhline(100 * base.accuracy, color="0.5", ls=":",
                   label=f"base model accuracy ({100 * base.accuracy:.1f}%)")
        ax.axhline(100 * base.grape_recall, color="0.5", ls="--", lw=1,
                   label=f"base model grape recall ({100 * base.grape_recall:.0f}%)")
    ax.plot([], [], "o", color="k", label="filled: accuracy")
    ax.plot([], [], "o", mfc="none", mew=2, color="k", label="hollow: grape recall")
    if seeds is not None:
        ax.errorbar([], [], yerr=[], fmt="none", color="k", capsize=4,
                    label=f"mean, bar: min–max of {len(seeds.seeds)} seeds")
    ticks = []
    for r in shown:
        same = r.method == "lora" and any(q.method == "lora_merged" for q in rows)
        ticks.append(f"{r.label}{' (= merged)' if same else ''}\n{r.trainable:,} trained\n({r.percent:.1f}%)")
    ax.set_xticks(x, ticks, fontsize=7)
    ax.set_xlim(-0.6, len(shown) - 0.4)
    ax.set_ylim(0, 112)
    ax.set_xlabel("method (trainable parameters, share of the model)")
    ax.set_ylabel("accuracy, grape recall on shifted images (%)")
    ax.set_title("What each method trains, and what it reaches")
    ax.legend(fontsize=7, loc="lower center", ncol=2)
    return fig


def _labelled_bars(ax, x, values, rows, texts, lift: float) -> None:
    """One bar per method in its colour, its text just above it."""
    for bar, v, text in zip(ax.bar(x, values, color=[_color(r) for r in rows]), values, texts, strict=True):
        ax.text(bar.get_x() + bar.get_width() / 2, v + lift, text, ha="center", va="bottom", fontsize=8)


def plot_peft_latency(rows, ax=None):
    """Forward-pass latency per method (bars, in ms), the base model's as a dashed reference line.

    Each bar is labelled with its ratio to the base model; each tick with the matrix products per
    forward pass and the keys every query scores (T, or T + p with a prefix).
    """
    fig, ax = _axes(ax, figsize=(7, 4.5))
    rows = list(rows)
    base = _reference(rows)
    ref = base.latency if base is not None else rows[0].latency
    x = _host_np.arange(len(rows))
    ms = [1e3 * r.latency for r in rows]
    texts = [f"{v:.3f} ms\n×{r.latency / ref:.2f}" for r, v in zip(rows, ms, strict=True)]
    _labelled_bars(ax, x, ms, rows, texts, 0.01 * max(ms))
    ax.axhline(1e3 * ref, color="k", ls="--", lw=1, label=f"base model: {1e3 * ref:.3f} ms")
    ax.set_xticks(x, [f"{r.label}\n{r.matmuls} matmuls\n{r.keys_per_query} keys/query" for r in rows],
                  fontsize=7)
    ax.set_ylim(0, 1.3 * max(ms))
    ax.set_xlabel("method (matrix products per forward pass, keys each query scores)")
    ax.set_ylabel("latency per forward pass (ms, median)")
    ax.set_title("Inference latency: who adds travel to every input")
    ax.legend(fontsize=8, loc="upper left")
    return fig


def plot_peft_params(rows, ax=None):
    """Trainable parameters per method (bars, labelled with their share of the model)."""
    fig, ax = _axes(ax, figsize=(6, 4))
    rows = list(rows)
    x = _host_np.arange(len(rows))
    top = max([r.trainable for r in rows] + [1])
    _labelled_bars(ax, x, [r.trainable for r in rows], rows,
                   [f"{r.trainable:,}\n({r.percent:.2f}%)" for r in rows], 0.01 * top)
    ax.set_ylim(0, 1.25 * top)
    ax.set_xticks(x, [r.label for r in rows], rotation=20, ha="right", fontsize=8)
    ax.set_xlabel("method")
    ax.set_ylabel("trainable parameters")
    ax.set_title("Trainable parameters (share of the model)")
    return fig


def plot_peft_comparison(rows, axes=None):
    """The comparison in two panels: :func:`plot_peft_tradeoff` (left), :func:`plot_peft_latency` (right).

    ``rows``: one run's rows, or a :class:`~lora_np.experiments.peft_methods.PeftSeeds` (accuracy over
    its seeds on the left; the latency, measured once, on the right)."""
    if axes is None:
        import matplotlib.pyplot as plt
        _, axes = plt.subplots(1, 2, figsize=(14, 4.8))
    plot_peft_tradeoff(rows, ax=axes[0])
    plot_peft_latency(_rows_and_seeds(rows)[0], ax=axes[1])
    return axes[0].figure
