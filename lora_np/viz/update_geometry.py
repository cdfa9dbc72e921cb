"""Figures of notebook 06's update geometry: ΔW's energy spectrum, subspace similarity heatmaps,
amplification against r (:mod:`lora_np.experiments.update_geometry`)."""
from __future__ import annotations

import numpy as _host_np   # plotting happens on the host

from .figures import _axes


def plot_delta_spectra(spectra: dict, axes=None, k_max: int = 20):
    """One panel per layer: the share of ‖ΔW‖² in the top k directions, ΔW against a random matrix."""
    if axes is None:
        import matplotlib.pyplot as plt
        _, axes = plt.subplots(1, len(spectra), figsize=(4.6 * len(spectra), 3.6))
    axes = _host_np.atleast_1d(axes)
    for ax, (name, sp) in zip(axes, spectra.items()):
        k = min(k_max, len(sp.energy))
        ks = _host_np.arange(1, k + 1)
        ax.plot(ks, 100 * sp.energy[:k], "o-", ms=3, color="C0", label="ΔW from full fine-tuning")
        ax.plot(ks, 100 * sp.random_energy[:k], "s--", ms=3, color="gray", label="random, same shape and norm")
        ax.set_ylim(0, 102)
        ax.set_xlabel("k (top singular directions kept)")
        ax.set_ylabel("share of ‖ΔW‖²_F (%)")
        ax.set_title(f"{name}: ΔW {sp.shape[0]}×{sp.shape[1]}")
        ax.legend(fontsize=8, loc="lower right")
    fig = axes[0].figure
    fig.tight_layout()
    return fig


def plot_similarity(grids: dict, axes=None):
    """Heatmaps of φ(i, j) (rows i: the first adapter's top-i directions; columns j: the second's)."""
    if axes is None:
        import matplotlib.pyplot as plt
        _, axes = plt.subplots(1, len(grids), figsize=(5.2 * len(grids), 3.8))
    axes = _host_np.atleast_1d(axes)
    for ax, (label, phi) in zip(axes, grids.items()):
        im = ax.imshow(phi, vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto", interpolation="nearest",
                       extent=(0.5, phi.shape[1] + 0.5, phi.shape[0] + 0.5, 0.5))
        ax.set_xlabel("j (top-j directions of the second)")
        ax.set_ylabel("i (top-i directions of the first)")
        ax.set_title(f"φ(i, j): {label}", fontsize=10)
        ax.figure.colorbar(im, ax=ax, label="φ  (1: contained, 0: orthogonal)")
    fig = axes[0].figure
    fig.tight_layout()
    return fig


def plot_amplification(rows, ax=None):
    """‖·ᵀ W ·‖_F in ΔW's top-r directions, in W's own and in random ones, against r; the factor on the right."""
    fig, ax = _axes(ax, figsize=(7, 4))
    rs = [row["r"] for row in rows]
    ax.plot(rs, [row["W_top"] for row in rows], "o-", color="C2", label="W's own top-r directions")
    ax.plot(rs, [row["W_in_delta"] for row in rows], "o-", color="C0", label="ΔW's top-r directions")
    ax.plot(rs, [row["W_random"] for row in rows], "o--", color="gray", label="random directions")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(rs, [str(r) for r in rs])
    ax.set_xlabel("LoRA rank r")
    ax.set_ylabel("‖Uᵀ W V‖_F: how much of W lies there")
    ax2 = ax.twinx()
    ax2.plot(rs, [row["factor"] for row in rows], "D:", color="C3", label="amplification ‖ΔW‖_F / ‖UᵀWV‖_F")
    ax2.set_ylabel("amplification factor", color="C3")
    ax2.set_ylim(bottom=0)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=8, loc="lower right")
    ax.set_title("Does ΔW reinforce W's strong directions, or amplify weak ones?")
    return fig
