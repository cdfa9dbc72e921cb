"""Figures of the rank experiments: notebook 05's planted-rank knee and scaling rules, and what each
rank buys on held-out fruit (notebook 02's rank dashboard)."""
from __future__ import annotations

import numpy as _host_np  # plotting happens on the host

from .figures import smooth


def plot_planted_sweep(sweep, r: int | None = None, axes=None, before: float | None = None):
    """Three panels against the rank r: accuracy, validation loss and trainable parameters.

    The planted rank k is a vertical line, the knee found in the loss is circled, full fine-tuning
    is a dashed line and ``r`` (if given) is marked on every curve.
    """
    if axes is None:
        import matplotlib.pyplot as plt
        fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    fig = axes[0].figure
    rs = sweep.ranks
    curves = [(100 * _host_np.asarray(sweep.accuracy), "accuracy on the shifted test fruit (%)", "Accuracy"),
              (_host_np.asarray(sweep.val_loss), "loss on the shifted test fruit (log)", "Loss"),
              (_host_np.asarray(sweep.trainable), "trainable parameters", "Cost")]
    full = sweep.full
    refs = ([None] * 3 if full is None
            else [100 * full.accuracy, full.history.val_loss[-1], full.trainable])
    for ax, (values, ylabel, title), ref in zip(axes, curves, refs, strict=True):     # three panels
        ax.plot(rs, values, "o-", color="C0", label="LoRA on fc1")
        ax.axvline(sweep.k, color="C2", ls=":", lw=2, label=f"planted rank k = {sweep.k}")
        if ref is not None:
            ax.axhline(ref, color="C1", ls="--", label="full fine-tuning")
        if r is not None:
            i = rs.index(r)
            ax.plot([r], [values[i]], "o", ms=14, mfc="none", mec="C3", mew=2.5, label=f"r = {r}")
        ax.set_xticks(rs, [str(v) for v in rs])
        ax.set_xlabel("LoRA rank r")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
    i = rs.index(sweep.knee)
    axes[1].plot([sweep.knee], [sweep.val_loss[i]], "*", ms=16, color="C2", label=f"knee at r = {sweep.knee}")
    axes[1].set_yscale("log")
    axes[2].set_yscale("log")
    if before is not None:
        axes[0].axhline(100 * before, color="gray", ls=":", label="before fine-tuning")
    for ax in axes:
        ax.legend(fontsize=8)
    fig.suptitle(f"A shift of planted rank k = {sweep.k}: LoRA improves up to r = k, then hardly at all",
                 y=1.02)
    fig.tight_layout()
    return fig


def plot_scaling(sweeps: dict, axes=None, window: int = 10, epoch: int = 1):
    """One panel per scaling rule (training loss per step, a curve per rank), and a last panel with
    the mean loss during epoch ``epoch`` against r for every rule: flat means "speed independent of r"."""
    rules = list(sweeps)
    if axes is None:
        import matplotlib.pyplot as plt
        fig, axes = plt.subplots(1, len(rules) + 1, figsize=(5 * (len(rules) + 1), 3.8))
    fig = axes[0].figure
    top = max(max(max(losses) for losses in sw.step_loss) for sw in sweeps.values())
    for ax, rule in zip(axes, rules, strict=False):                    # the last axis is drawn below
        sw = sweeps[rule]
        for j, (r, s, losses) in enumerate(zip(sw.ranks, sw.scales, sw.step_loss, strict=True)):
            ax.plot(smooth(losses, window), color=f"C{j}", label=f"r = {r} (s = {s:.3g})")
        ax.set_yscale("log")
        ax.set_ylim(top=1.2 * top)
        ax.set_xlabel("optimizer step")
        ax.set_ylabel(f"training loss (moving average of {window})")
        ax.set_title(f"s = {rule}, alpha = {sw.alpha:g}, lr = {sw.lr:g}")
        ax.legend(fontsize=8)
    ax = axes[len(rules)]
    for j, rule in enumerate(rules):
        sw = sweeps[rule]
        ax.plot(sw.ranks, sw.loss_after(epoch), "o-", color=f"C{j + 5}", label=f"s = {rule}")
    ranks = sweeps[rules[0]].ranks
    ax.set_xscale("log", base=2)
    ax.set_xticks(ranks, [str(v) for v in ranks])
    ax.set_xlabel("LoRA rank r")
    ax.set_ylabel(f"mean training loss in epoch {epoch}")
    ax.set_title("Learning speed against r")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_rank_outcomes(runs, r: int | None = None, ax=None, chance: float | None = None,
                       before: dict | None = None):
    """What a rank buys on held-out data: accuracy and grape recall against r, for the runs so far.

    ``runs``: fine-tuning results with ``.r``, ``.accuracy``, ``.grape_recall`` and ``.trainable``;
    each point is labelled with its trainable count. Several runs at one r (seeds) are drawn as
    their mean with min–max error bars. ``r`` is circled; ``chance`` (a fraction) is drawn as a floor
    line, ``before`` (``{"accuracy", "grape_recall"}``, the model before fine-tuning) as two more.
    The axis runs from 0 to 100%, so a few points' difference looks its size.
    """
    if ax is None:
        import matplotlib.pyplot as plt
        ax = plt.subplots(figsize=(6, 4))[1]
    groups = {}
    for run in runs:
        if run.r is not None:
            groups.setdefault(run.r, []).append(run)
    rs = sorted(groups)
    n_seeds = max((len(g) for g in groups.values()), default=1)

    def stats(field):                                     # (mean, below, above) in %, one per rank
        vals = [[100 * getattr(run, field) for run in groups[k]] for k in rs]
        mean = _host_np.array([sum(v) / len(v) for v in vals])
        return mean, mean - [min(v) for v in vals], [max(v) for v in vals] - mean

    acc, acc_lo, acc_hi = stats("accuracy")
    recall, rec_lo, rec_hi = stats("grape_recall")
    ax.plot(rs, acc, "o-", color="C0", label="accuracy (held-out new harvest)")
    ax.plot(rs, recall, "s-", color="C2", label="grape recall (held-out)")
    if n_seeds > 1:
        ax.errorbar(rs, acc, yerr=[acc_lo, acc_hi], fmt="none", ecolor="C0", capsize=4)
        ax.errorbar(rs, recall, yerr=[rec_lo, rec_hi], fmt="none", ecolor="C2", capsize=4)
    for k, a in zip(rs, acc, strict=True):
        ax.annotate(f"{groups[k][0].trainable:,}", (k, a), textcoords="offset points", xytext=(0, 9),
                    ha="center", fontsize=7, color="C0")
    if r in rs:
        i = rs.index(r)
        ax.plot([r, r], [acc[i], recall[i]], "o", ms=13, mfc="none", mec="k", label=f"r = {r} (the slider)")
    if chance is not None:
        ax.axhline(100 * chance, color="gray", ls=":", label="chance")
    if before is not None:
        ax.axhline(100 * before["accuracy"], color="C0", ls="--", lw=1, label="accuracy before fine-tuning")
        ax.axhline(100 * before["grape_recall"], color="C2", ls="--", lw=1,
                   label="grape recall before fine-tuning")
    ax.set_xscale("log", base=2)
    ax.set_xticks(rs, [str(k) for k in rs])
    ax.set_ylim(0, 105)
    ax.set_xlabel("LoRA rank r (numbers above the points: trainable parameters)")
    ax.set_ylabel("% on the held-out new harvest")
    ax.set_title("What each rank buys on held-out fruit"
                 + (f"\n(mean of {n_seeds} seeds; bars: min–max)" if n_seeds > 1 else ""))
    ax.legend(loc="lower right", bbox_to_anchor=(1, 0.12), fontsize=8)   # above the chance line, below 40%
    return ax.figure
