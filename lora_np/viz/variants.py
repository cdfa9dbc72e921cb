"""LoRA's variants over several seeds (notebook 04b): what each trains, and what it reaches,
as the mean over the seeds with min–max error bars and every seed's own point."""
from __future__ import annotations

import numpy as _host_np  # host arrays for matplotlib only (figures are drawn on the host)

CHANCE = 0.10                     # ten fruit classes: the accuracy of guessing


def plot_variant_spread(spreads, axes=None, before: float | None = None, chance: float = CHANCE):
    """Left: trainable parameters per variant. Right: grape recall and accuracy, each a bar at the
    mean over the seeds, an error bar from the lowest to the highest seed, and a dot per seed.

    ``spreads``: :class:`~lora_np.experiments.multi_adapter.VariantSpread` (from
    ``compare_variants_over_seeds``); ``before``: the pretrained model's accuracy (a dotted line).
    The percentage axis starts at ``chance`` (10 classes: 10 %), not at a zoomed-in value.
    """
    spreads = list(spreads)
    if not spreads:
        raise ValueError("plot_variant_spread: spreads must hold at least one VariantSpread")
    if axes is None:
        import matplotlib.pyplot as plt
        _, axes = plt.subplots(1, 2, figsize=(13, 4.8), gridspec_kw={"width_ratios": (1, 1.6)})
    ax1, ax2 = axes
    x = _host_np.arange(len(spreads))                                   # (V,)
    labels = [sp.label for sp in spreads]
    counts = [sp.trainable for sp in spreads]
    top = max(counts)
    bars = ax1.bar(x, counts, color="C3")
    for bar, n in zip(bars, counts, strict=True):
        ax1.text(bar.get_x() + bar.get_width() / 2, n + 0.01 * top, f"{n:,}", ha="center", va="bottom",
                 fontsize=8)
    ax1.set_ylim(0, 1.15 * top)
    ax1.set_ylabel("trainable parameters")
    ax1.set_title("What each variant trains")

    width = 0.38
    for k, (metric, name, color) in enumerate((("grape_recall", "grape recall", "C2"),
                                               ("accuracy", "accuracy", "C0"))):
        pos = x + (k - 0.5) * width                                     # (V,)
        mean = _host_np.array([100 * sp.mean(metric) for sp in spreads])
        low = _host_np.array([100 * sp.low(metric) for sp in spreads])
        high = _host_np.array([100 * sp.high(metric) for sp in spreads])
        base = 100 * chance
        ax2.bar(pos, mean - base, width, bottom=base, color=color, alpha=0.55,
                label=f"{name}: mean over {len(spreads[0].seeds)} seeds")
        yerr = _host_np.clip(_host_np.stack([mean - low, high - mean]), 0, None)   # (2, V)
        ax2.errorbar(pos, mean, yerr=yerr, fmt="none", ecolor="black", capsize=3, lw=1)
        for j, sp in enumerate(spreads):
            ax2.plot(_host_np.full(len(sp.seeds), pos[j]), [100 * v for v in sp.values(metric)], "o",
                     color="black", ms=2.5, label="one seed" if (k, j) == (1, 0) else None)
    if before is not None:
        ax2.axhline(100 * before, color="gray", ls=":",
                    label=f"pretrained accuracy, before fine-tuning ({before:.1%})")
    ax2.set_ylim(100 * chance, 118)                                     # room for the legend above the bars
    ax2.set_yticks(range(int(100 * chance), 101, 10))
    ax2.set_ylabel("on the shifted test fruit (%)\naxis starts at chance (10 classes)")
    ax2.set_title("What each variant reaches (error bars: min–max over the seeds)")
    ax2.legend(loc="upper center", ncol=2, fontsize=8)
    for ax in (ax1, ax2):
        ax.set_xticks(x, labels, rotation=30, ha="right", fontsize=8)
        ax.set_xlabel("variant")
    return ax1.figure
