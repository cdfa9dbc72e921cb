"""Matplotlib figures used by the demo and the notebooks. Every axis is labelled.

Each function draws on an ``ax`` you pass (or a new figure) and returns the figure, so a
notebook can place it in a grid and the demo can save it.
"""
from __future__ import annotations

import numpy as _host_np   # plotting happens on the host

from . import backend


def _axes(ax, figsize=(6, 4)):
    import matplotlib.pyplot as plt
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
    return ax.figure, ax


def smooth(values, window: int = 10):
    """A moving average (the first points average over what there is)."""
    v = _host_np.asarray(values, dtype=float)
    c = _host_np.cumsum(_host_np.insert(v, 0, 0.0))
    n = _host_np.minimum(_host_np.arange(1, len(v) + 1), window)
    return (c[1:] - c[_host_np.arange(1, len(v) + 1) - n]) / n      # mean of the last n values


def plot_loss_curves(results, ax=None, window: int = 10):
    """Training loss per step of each fine-tuning run (moving average over ``window`` steps)."""
    fig, ax = _axes(ax)
    for res in results:
        ax.plot(smooth(res.history.step_loss, window), label=res.label, lw=1.5,
                ls="--" if res.r is None else "-")
    ax.set_yscale("log")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(f"training loss (moving average of {window})")
    ax.set_title("Fine-tuning on the new harvest")
    ax.legend(title="run")
    return fig


def plot_rank_sweep(results, ax=None, before: float | None = None):
    """Accuracy (left axis) and trainable parameters (right axis, log) against the rank r.

    ``before``: the pretrained model's accuracy on the same data, drawn as a reference line.
    """
    fig, ax = _axes(ax)
    lora = [res for res in results if res.r is not None]
    full = [res for res in results if res.r is None]
    rs = [res.r for res in lora]
    ax.plot(rs, [100 * res.accuracy for res in lora], "o-", color="C0", label="LoRA accuracy")
    if full:
        ax.axhline(100 * full[0].accuracy, color="C0", ls="--", label="full fine-tuning accuracy")
    if before is not None:
        ax.axhline(100 * before, color="gray", ls=":", label="pretrained, before fine-tuning")
        ax.set_ylim(0, 100)
    ax.set_xscale("log", base=2)
    ax.set_xticks(rs, [str(r) for r in rs])
    ax.set_xlabel("LoRA rank r")
    ax.set_ylabel("accuracy on the shifted test fruit (%)", color="C0")
    ax2 = ax.twinx()
    ax2.plot(rs, [res.trainable for res in lora], "s-", color="C3", label="LoRA trainable parameters")
    if full:
        ax2.axhline(full[0].trainable, color="C3", ls="--", label="full fine-tuning parameters")
    ax2.set_yscale("log")
    ax2.set_ylabel("trainable parameters (log scale)", color="C3")
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], loc="lower right", fontsize=8)
    ax.set_title("Accuracy and cost against the rank")
    return fig


def plot_confusion(C, classes, ax=None, title="Confusion on the shifted fruit"):
    """A confusion matrix (rows: true class, columns: predicted class), counts written in."""
    fig, ax = _axes(ax, figsize=(6, 5))
    C = backend.to_numpy(C)
    ax.imshow(C, cmap="Blues")
    ax.set_xticks(range(len(classes)), classes, rotation=60, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(C.shape[0]):
        for j in range(C.shape[1]):
            if C[i, j]:
                ax.text(j, i, int(C[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if C[i, j] > C.max() / 2 else "black")
    ax.set_title(title)
    return fig
