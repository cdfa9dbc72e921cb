"""The figures of notebooks 01-04 and the demo: low rank, rank sweeps, styles, adapters.

Each function draws on an ``ax`` you pass (or a new figure) and returns the figure. ``_axes`` is
shared by the other figure modules of :mod:`lora_np.viz`.
"""
from __future__ import annotations

import numpy as _host_np  # plotting happens on the host

from .. import backend


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
    ax2.set_yscale("log")
    ax2.set_ylabel("trainable parameters (log scale)", color="C3")
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], loc="lower right", fontsize=8)
    ax.set_title("Accuracy and cost against the rank" +
                 (f"\n(full fine-tuning trains {full[0].trainable:,} parameters)" if full else ""))
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


# --------------------------------------------------------------------------- low-rank matrices


def plot_lowrank(M, approx, r: int, axes=None):
    """Three panels: the matrix ``M``, its rank-r approximation and the error ``M − approx``.

    ``axes``: three matplotlib axes (default: a new 1×3 figure). The title states the numbers
    stored, r·(m + n) against m·n, and the relative Frobenius error.
    """
    import matplotlib.pyplot as plt
    if axes is None:
        _, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    fig = axes[0].figure
    M, approx = backend.to_numpy(M), backend.to_numpy(approx)
    m, n = M.shape
    err = float(_host_np.linalg.norm(M - approx) / _host_np.linalg.norm(M))
    lim = float(_host_np.abs(M).max())
    diff = M - approx
    dlim = max(float(_host_np.abs(diff).max()), 1e-12)
    for ax, img, title, vlim, cmap in ((axes[0], M, f"M  ({m}×{n})", lim, "RdBu_r"),
                                       (axes[1], approx, f"best rank-{r} approximation B·A", lim, "RdBu_r"),
                                       (axes[2], diff, "error M − B·A (own colour scale)", dlim, "PuOr_r")):
        im = ax.imshow(img, cmap=cmap, vmin=-vlim, vmax=vlim, aspect="auto")
        ax.set_xlabel("column j")
        ax.set_title(title, fontsize=10)
        fig.colorbar(im, ax=ax, shrink=0.85, pad=0.03)
    axes[0].set_ylabel("row i")            # once: beside a colour bar's ticks it would collide with them
    for ax in axes[1:]:
        ax.tick_params(labelleft=False)    # the rows are the same in all three panels
    if fig.get_layout_engine() is None:
        fig.subplots_adjust(wspace=0.25)
    fig.suptitle(f"r = {r}: B and A store r·(m+n) = {r * (m + n):,} numbers vs m·n = {m * n:,} for M; "
                 f"relative Frobenius error {err:.3f}", fontsize=11, y=1.02)
    return fig


def plot_singular_values(S, ax=None):
    """The singular values σ₁ ≥ σ₂ ≥ ... on a log scale, against their index."""
    fig, ax = _axes(ax)
    S = backend.to_numpy(S)
    ax.semilogy(_host_np.arange(1, len(S) + 1), S, "o-", ms=3)
    ax.set_xlabel("index i")
    ax.set_ylabel("singular value σᵢ (log scale)")
    ax.set_title("Singular values: how much each rank-1 piece carries")
    return fig


def plot_lowrank_error_curve(ranks, errors, m: int, n: int, ax=None):
    """Relative error of the best rank-r approximation (left) and the numbers stored (right) against r.

    A dotted line marks the break-even rank m·n/(m+n), where B and A store as much as the matrix.
    """
    fig, ax = _axes(ax)
    ranks = _host_np.asarray(ranks)
    ax.plot(ranks, errors, "o-", ms=3, color="C0", label="relative error ‖M − B·A‖ / ‖M‖")
    ax.set_xlabel("rank r")
    ax.set_ylabel("relative Frobenius error", color="C0")
    ax.set_ylim(bottom=0)
    ax2 = ax.twinx()
    ax2.plot(ranks, ranks * (m + n), color="C3", label="numbers in B and A: r·(m+n)")
    ax2.axhline(m * n, color="C3", ls="--", label="numbers in M: m·n")
    ax2.set_ylabel("numbers stored", color="C3")
    ax2.set_ylim(bottom=0)
    be = m * n / (m + n)
    ax.axvline(be, color="gray", ls=":", label=f"break-even rank {be:.1f}")
    lines, lines2 = ax.get_legend_handles_labels(), ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], loc="upper center", bbox_to_anchor=(0.4, 1.0),
              fontsize=8)
    ax.set_title(f"Best rank-r approximation of a {m}×{n} matrix")
    return fig


# --------------------------------------------------------------------------- Transformer experiments


def plot_table5(results, ax=None, before: float | None = None, chance: float | None = None):
    """The LoRA paper's Table 5 in miniature: accuracy and grape recall per setting, as grouped bars.

    ``results``: FinetuneResults from :func:`lora_np.experiments.vit.table5` (labels such as
    "Wq,Wv r=4", then "full"), one or several seeds per label. A bar is the mean over the seeds, its
    error bar the min–max range, and a dot each seed. Each group is labelled with its trainable
    parameters; a dashed line marks 90% of full fine-tuning's mean accuracy, a dotted one ``before``
    (the pretrained model), a grey one ``chance`` (1 / number of classes).
    """
    fig, ax = _axes(ax, figsize=(8, 4.5))
    groups: dict = {}
    for res in results:
        groups.setdefault(res.label, []).append(res)
    x = _host_np.arange(len(groups))
    n_seeds = max(len(runs) for runs in groups.values())
    for shift, key, colour, name in ((-0.2, "accuracy", "C0", "accuracy"),
                                     (0.2, "grape_recall", "C2", "grape recall")):
        vals = [100 * _host_np.asarray([getattr(r, key) for r in runs]) for runs in groups.values()]
        mean = _host_np.asarray([v.mean() for v in vals])                         # (settings,)
        err = _host_np.asarray([[m - v.min() for v, m in zip(vals, mean, strict=True)],
                                [v.max() - m for v, m in zip(vals, mean, strict=True)]])   # (2, settings)
        ax.bar(x + shift, mean, 0.4, color=colour, alpha=0.8,
               label=f"{name}, mean" + (f" (min–max over {n_seeds} seeds)" if n_seeds > 1 else ""))
        if n_seeds > 1:
            ax.errorbar(x + shift, mean, yerr=err, fmt="none", ecolor="black", capsize=3, lw=1)
            for k, v in enumerate(vals):
                ax.plot(_host_np.full(len(v), x[k] + shift), v, "k.", ms=3)
        if key == "accuracy":
            for k, m in enumerate(mean):
                ax.text(x[k] + shift, m + err[1, k] + 1, f"{m:.1f}", ha="center", va="bottom", fontsize=8,
                        bbox=dict(facecolor="white", edgecolor="none", pad=0.5), zorder=3)
    full = groups.get("full")
    if full:
        ax.axhline(90 * sum(r.accuracy for r in full) / len(full), color="C0", ls="--", lw=1,
                   label="90% of full fine-tuning's accuracy")
    if before is not None:
        ax.axhline(100 * before, color="gray", ls=":", label="pretrained, before fine-tuning")
    if chance is not None:
        ax.axhline(100 * chance, color="gray", ls="-", lw=0.8, label="chance")
    ax.set_xticks(x, [f"{label}\n{runs[0].trainable:,} trained\n({runs[0].percent:.1f}%)"
                      for label, runs in groups.items()], fontsize=8)
    ax.set_ylim(0, 130)                                           # room for the legend above the bars
    ax.set_yticks(range(0, 101, 20))
    ax.set_xlabel("adapted projections and rank (equal budget for the LoRA runs)")
    ax.set_ylabel("on the shifted test images (%)")
    ax.set_title("Where to spend a fixed budget of trainable parameters")
    ax.legend(loc="upper center", ncol=2, fontsize=8)
    return fig


def plot_style_strength(strengths, values, ax=None, label: str = "marker", title: str | None = None):
    """A style marker against the adapter's strength: one faint line per seed, their mean in bold.

    ``values``: a list of per-seed lists, each with one value per strength.
    """
    fig, ax = _axes(ax, figsize=(5, 3.5))
    s = _host_np.asarray(strengths, dtype=float)
    v = _host_np.asarray(values, dtype=float)                     # (seeds, strengths)
    for row in v:
        ax.plot(s, row, "o-", color="C0", alpha=0.3, lw=1, ms=3)
    ax.plot(s, v.mean(axis=0), "o-", color="C0", lw=2.5, label=f"mean over {len(v)} samples")
    ax.set_xlabel("adapter strength (0 = base model, 1 = as trained)")
    ax.set_ylabel(label)
    ax.set_title(title or f"{label} against strength")
    ax.legend(fontsize=8)
    return fig


# --------------------------------------------------------------------------- several adapters, variants


def plot_blend(weights, acc_a, acc_b, ax=None, names=("harvest_a", "harvest_b"),
               current: float | None = None):
    """Accuracy on two harvests against the blend weight w of w·ΔW_a + (1 − w)·ΔW_b.

    ``current``: a weight to mark with a vertical line (the slider's position).
    """
    fig, ax = _axes(ax, figsize=(6, 4))
    w = _host_np.asarray(weights, dtype=float)
    order = _host_np.argsort(w)
    for acc, name, color in ((acc_a, names[0], "C0"), (acc_b, names[1], "C1")):
        ax.plot(w[order], 100 * _host_np.asarray(acc, dtype=float)[order], "o-", color=color,
                label=f"on {name}")
    if current is not None:
        ax.axvline(current, color="gray", ls=":", label=f"w = {current:.2f}")
    ax.set_xlim(-0.03, 1.03)
    ax.set_xlabel(f"blend weight w   (0: only {names[1]}, 1: only {names[0]})")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"w·ΔW({names[0]}) + (1 − w)·ΔW({names[1]})")
    ax.legend(fontsize=8)
    return fig


def plot_blend_rank(ranks, acc_a, acc_b, ax=None, names=("harvest_a", "harvest_b"), linear=None):
    """Accuracy on two harvests of an SVD-compressed blend against its rank.

    ``linear``: the exact (linear) blend's two accuracies, drawn as dashed reference lines.
    """
    fig, ax = _axes(ax, figsize=(6, 4))
    for i, (acc, name) in enumerate(((acc_a, names[0]), (acc_b, names[1]))):
        ax.plot(ranks, [100 * a for a in acc], "o-", color=f"C{i}", label=f"on {name}")
        if linear is not None:
            ax.axhline(100 * linear[i], color=f"C{i}", ls="--", lw=1, label=f"linear blend, on {name}")
    ax.set_xticks(list(ranks))
    ax.set_xlabel("rank of the SVD-compressed blend")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Compressing a blend: accuracy against rank")
    ax.legend(fontsize=8)
    return fig


def plot_variants(results, axes=None, before: float | None = None):
    """LoRA variants side by side: trainable parameters (left) and accuracy (right), one bar each.

    ``results``: FinetuneResults (e.g. :func:`lora_np.experiments.compare_variants`);
    ``before``: the pretrained model's accuracy, drawn as a dotted line.
    """
    if axes is None:
        import matplotlib.pyplot as plt
        fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    ax1, ax2 = axes
    x = _host_np.arange(len(results))
    labels = [res.label for res in results]
    top = max(res.trainable for res in results)
    bars = ax1.bar(x, [res.trainable for res in results], color="C3")
    for bar, res in zip(bars, results, strict=True):
        ax1.text(bar.get_x() + bar.get_width() / 2, res.trainable + 0.01 * top,
                 f"{res.trainable:,}\n({res.percent:.2f}%)", ha="center", va="bottom", fontsize=8)
    ax1.set_ylim(0, 1.2 * top)
    ax1.set_ylabel("trainable parameters")
    ax1.set_title("What each variant trains (share of the model in brackets)")
    acc = [100 * res.accuracy for res in results]
    bars = ax2.bar(x, acc, color="C0", label="accuracy")
    for bar, a in zip(bars, acc, strict=True):
        ax2.text(bar.get_x() + bar.get_width() / 2, a + 1, f"{a:.1f}", ha="center", va="bottom", fontsize=8)
    if before is not None:
        ax2.axhline(100 * before, color="gray", ls=":", label="pretrained, before fine-tuning")
    ax2.set_ylim(0, 125)                                          # room for the legend above the bars
    ax2.set_yticks(range(0, 101, 20))
    ax2.set_ylabel("accuracy on the shifted test fruit (%)")
    ax2.set_title("What each variant reaches")
    ax2.legend(loc="upper center", ncol=2, fontsize=8)
    for ax in (ax1, ax2):
        ax.set_xticks(x, labels, rotation=30, ha="right", fontsize=8)
        ax.set_xlabel("variant")
    return ax1.figure


def plot_harvest_accuracy(accuracies: dict, ax=None, title: str = "Accuracy on each harvest"):
    """One bar per data set: ``accuracies = {harvest name: accuracy in [0, 1]}``."""
    fig, ax = _axes(ax, figsize=(5, 3.5))
    names = list(accuracies)
    vals = [100 * accuracies[n] for n in names]
    bars = ax.bar(range(len(names)), vals, color=[f"C{i}" for i in range(len(names))])
    for bar, v in zip(bars, vals, strict=True):
        ax.text(bar.get_x() + bar.get_width() / 2, v + 1, f"{v:.1f}", ha="center", va="bottom", fontsize=9)
    ax.set_xticks(range(len(names)), names)
    ax.set_ylim(0, 110)
    ax.set_xlabel("test data")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title)
    return fig
