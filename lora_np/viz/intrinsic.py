"""Figures of notebook 06: accuracy against the subspace dimension d, and where it reaches 90%."""
from __future__ import annotations

import numpy as _host_np  # plotting happens on the host

from ..experiments.intrinsic import LEVEL, IntrinsicStudy, IntrinsicSweep, LoraComparison, StudySeeds
from .figures import _axes


def _check(obj, kind, where: str):
    if not isinstance(obj, kind):
        raise TypeError(f"{where}: expected a {kind.__name__} (lora_np.experiments.intrinsic), "
                        f"got {type(obj).__name__}")


def plot_intrinsic_sweep(sweep: IntrinsicSweep, ax=None, lora: LoraComparison | None = None,
                         current: int | None = None, level: float = LEVEL):
    """Shifted-test accuracy against d (log x) with chance, full fine-tuning, the untouched base
    model (d = 0), the level line chance + level·(full − chance) and d_int90 marked.

    ``lora``: LoRA's accuracy against its trainable count on the same axes (x = trained numbers).
    ``current``: one swept d circled (the dashboard's slider).
    """
    _check(sweep, IntrinsicSweep, "plot_intrinsic_sweep")
    fig, ax = _axes(ax, figsize=(7, 4.2))
    dims, acc = _host_np.asarray(sweep.dims), 100 * _host_np.asarray(sweep.accuracy)        # (k,), (k,)
    name = "SAID" if sweep.said else "random subspace"
    ax.plot(dims, acc, "o-", color="C0", label=f"{name}: θ = θ₀ + P z, z ∈ R^d")
    ax.axhline(100 * sweep.full_accuracy, color="C1", ls="--", label=f"full fine-tuning (D = {sweep.D:,})")
    ax.axhline(100 * sweep.before, color="gray", ls="-.", lw=1, label="base model, untouched (d = 0)")
    ax.axhline(100 * sweep.chance, color="gray", ls=":", label="chance (1 / classes)")
    bar = sweep.chance + level * (sweep.full_accuracy - sweep.chance)
    ax.axhline(100 * bar, color="C2", ls=":", lw=2, label=f"{level:.0%} of the way from chance to full")
    d90 = sweep.d_int90
    if d90 is not None:
        ax.axvline(d90, color="C3", lw=1.5, label=f"d_int90 ≈ {d90:.0f} ({d90 / sweep.D:.2%} of D)")
        ax.plot([d90], [100 * bar], "*", ms=14, color="C3")
    if lora is not None:
        _check(lora, LoraComparison, "plot_intrinsic_sweep(lora=...)")
        ax.plot(lora.trainable, 100 * _host_np.asarray(lora.accuracy), "s--", color="C4", alpha=0.8,
                label=f"LoRA on {', '.join(lora.target_modules)} (x = its trainable count), r = {lora.ranks}")
    if current is not None:
        point = sweep.at(current)                       # a clear error for a d that was not swept
        ax.plot([current], [100 * point["accuracy"]], "o", ms=14, mfc="none", mec="C3", mew=2.5,
                label=f"d = {current}: {point['accuracy']:.1%}")
    ax.set_xscale("log", base=2)
    ax.set_ylim(0, 100)
    ax.set_xlabel("trained numbers d (log scale)")
    ax.set_ylabel("accuracy on the shifted test fruit (%)")
    ax.set_title("Fine-tuning in a random d-dimensional subspace")
    ax.legend(fontsize=7, loc="lower right")
    return fig


def plot_normalized_sweeps(study: IntrinsicStudy, ax=None, level: float = LEVEL, title: str | None = None):
    """Normalised accuracy (chance → 0, full fine-tuning → 1) against d for each sweep of a study,
    the level line, and each sweep's d_int90 as a star on it."""
    _check(study, IntrinsicStudy, "plot_normalized_sweeps")
    fig, ax = _axes(ax, figsize=(7, 4.2))
    for i, (label, s) in enumerate(zip(study.labels, study.sweeps, strict=True)):
        d90 = s.d_int90
        ax.plot(s.dims, s.normalized(), "o-", color=f"C{i}",
                label=f"{label}: d_int90 ≈ {d90:.0f}" if d90 is not None
                else f"{label}: d_int90 > {s.dims[-1]}")
        if d90 is not None:
            ax.plot([d90], [level], "*", ms=13, color=f"C{i}", mec="black", mew=0.5)
    ax.axhline(level, color="gray", ls=":", lw=2,
               label=f"{level:.0%} of the way from chance to full fine-tuning")
    ax.axhline(1.0, color="gray", ls="--", lw=1)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("trained numbers d (log scale)")
    ax.set_ylabel("(accuracy − chance) / (full − chance)")
    ax.set_title(title or f"Intrinsic dimension by {study.what}")
    ax.legend(fontsize=8, loc="lower right")
    return fig


def _as_seeds(study, where: str) -> StudySeeds:
    """A StudySeeds: itself, or one IntrinsicStudy as a study of one seed."""
    if isinstance(study, IntrinsicStudy):
        return StudySeeds([None], [study])
    if not isinstance(study, StudySeeds):
        raise TypeError(f"{where}: expected an IntrinsicStudy or a StudySeeds "
                        f"(lora_np.experiments.intrinsic), got {type(study).__name__}")
    return study


def _spread_label(seeds: StudySeeds) -> str:
    n = len(seeds.seeds)
    return "" if n == 1 else f", mean; bar: min–max of {n} seeds"


def plot_width_study(study, ax=None):
    """d_int90 against the model's size D (log–log): flat means 'the task, not the model, sets it'.

    ``study``: an :class:`IntrinsicStudy` or a :class:`StudySeeds` (the mean, and min–max error bars).
    A dashed line d ∝ D through the smallest model shows what a fixed *fraction* of D would need.
    Each point's label sits alternately above and below it, so that neighbours do not overlap.
    """
    seeds = _as_seeds(study, "plot_width_study")
    fig, ax = _axes(ax, figsize=(7, 4.2))
    pts = [(D, st, label) for D, st, label in zip(seeds.D, seeds.d_int90_stats(), seeds.labels, strict=True)
           if st["n"]]
    if not pts:
        raise ValueError("plot_width_study: no sweep of the study reached the level; widen its dims")
    Ds = _host_np.array([p[0] for p in pts], float)                                  # (k,)
    ds = _host_np.array([p[1]["mean"] for p in pts], float)                          # (k,)
    lo = _host_np.array([p[1]["min"] for p in pts], float)                           # (k,)
    hi = _host_np.array([p[1]["max"] for p in pts], float)                           # (k,)
    ax.errorbar(Ds, ds, yerr=[ds - lo, hi - ds], fmt="o-", color="C0", ms=8, capsize=4,
                label="measured d_int90" + _spread_label(seeds))
    ax.plot(Ds, ds[0] * Ds / Ds[0], "--", color="gray", label="a fixed fraction of D (d ∝ D)")
    for i, (D, st, label) in enumerate(pts):
        below = i % 2 == 0                       # alternate, beyond the error bar's end; above the d ∝ D line
        text = f"hidden {label}\nd_int90 ≈ {st['mean']:.0f} = {st['mean'] / D:.2%} of D"
        ax.annotate(text, (D, st["min"] if below else st["max"]), textcoords="offset points",
                    xytext=(0, -8 if below else 8), ha="center", va="top" if below else "bottom", fontsize=8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(Ds, [f"{D:,.0f}" for D in Ds])                    # the models' sizes, not powers of ten
    ax.set_xticks([], minor=True)
    ax.set_xlim(Ds[0] / 2.2, Ds[-1] * 2.2)
    ax.set_ylim(lo.min() / 2.5, max(hi.max(), ds[0] * Ds[-1] / Ds[0]) * 1.5)
    low, high = ax.get_ylim()
    ticks = [t for t in (10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000) if low <= t <= high]
    ax.set_yticks(ticks, [str(t) for t in ticks])
    ax.set_yticks([], minor=True)
    ax.set_xlabel("parameters of the model D (log scale)")
    ax.set_ylabel("intrinsic dimension d_int90 (log scale)")
    ax.set_title("Wider models, (almost) the same intrinsic dimension")
    ax.legend(fontsize=8, loc="upper left")
    return fig


def plot_pretraining_study(study, axes=None):
    """Two panels: the normalised sweeps per pretraining level, and d_int90 per level (bars).

    ``study``: an :class:`IntrinsicStudy` or a :class:`StudySeeds`: then the curves are the means over
    the seeds with a min–max band, and the bars the mean d_int90 with min–max error bars.
    """
    seeds = _as_seeds(study, "plot_pretraining_study")
    if axes is None:
        import matplotlib.pyplot as plt
        _, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    fig = axes[0].figure
    if len(seeds.seeds) == 1:
        plot_normalized_sweeps(seeds.studies[0], ax=axes[0], title="Normalised accuracy from each start")
    else:
        ax = axes[0]
        for i, (label, st) in enumerate(zip(seeds.labels, seeds.d_int90_stats(), strict=True)):
            dims, mean, lo, hi = seeds.normalized_stats(i)
            d90 = f"d_int90 ≈ {st['mean']:.0f}" if st["n"] else f"d_int90 > {dims[-1]}"
            ax.plot(dims, mean, "o-", color=f"C{i}", label=f"{label}: {d90}")
            ax.fill_between(dims, lo, hi, color=f"C{i}", alpha=0.15, lw=0)
        ax.axhline(LEVEL, color="gray", ls=":", lw=2,
                   label=f"{LEVEL:.0%} of the way from chance to full fine-tuning")
        ax.axhline(1.0, color="gray", ls="--", lw=1)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("trained numbers d (log scale)")
        ax.set_ylabel("(accuracy − chance) / (full − chance)")
        ax.set_title(f"Normalised accuracy from each start (mean; band: min–max of {len(seeds.seeds)} seeds)",
                     fontsize=10)
        ax.legend(fontsize=8, loc="lower right")
    stats = seeds.d_int90_stats()
    top = max(s.dims[-1] for s in seeds.studies[0].sweeps)
    heights = [top if st["n"] == 0 else st["mean"] for st in stats]
    err = [[0 if st["n"] == 0 else st["mean"] - st["min"] for st in stats],
           [0 if st["n"] == 0 else st["max"] - st["mean"] for st in stats]]
    bars = axes[1].bar(seeds.labels, heights, color=[f"C{i}" for i in range(len(stats))],
                       yerr=err if len(seeds.seeds) > 1 else None, capsize=5)
    for i, (bar, st) in enumerate(zip(bars, stats, strict=True)):
        before = sum(s.sweeps[i].before for s in seeds.studies) / len(seeds.studies)
        text = "not reached" if st["n"] == 0 else f"{st['mean']:.0f}"
        tip = bar.get_height() + (err[1][i] if len(seeds.seeds) > 1 else 0)
        axes[1].annotate(f"{text}\n(base: {before:.0%})", (bar.get_x() + bar.get_width() / 2, tip),
                         ha="center", va="bottom", fontsize=8, xytext=(0, 2), textcoords="offset points")
    axes[1].set_ylim(0, 1.3 * max(h + e for h, e in zip(heights, err[1], strict=True)))
    axes[1].set_xlabel("pretraining on the source fruit")
    axes[1].set_ylabel("intrinsic dimension d_int90" + (" (mean, min–max)" if len(seeds.seeds) > 1 else ""))
    axes[1].set_title("More pretraining, fewer directions needed")
    return fig
