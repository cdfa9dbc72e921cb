"""Figures for the geometry of a fine-tuning update (:mod:`lora_np.experiments.geometry_studies`): ΔW's
spectrum beside a random matrix's, subspace-similarity heatmaps φ(i, j), amplification against r."""
from __future__ import annotations

import numpy as _host_np  # plotting happens on the host

from ..experiments.geometry_studies import DeltaSpectrum, SimilarityStudy
from .figures import _axes


def _grid_of_axes(axes, rows: int, cols: int, size):
    """``axes`` as a (rows, cols) array, made when None; a clear error when it has the wrong size."""
    if axes is None:
        import matplotlib.pyplot as plt
        _, axes = plt.subplots(rows, cols, figsize=(size[0] * cols, size[1] * rows), squeeze=False)
    axes = _host_np.asarray(axes, dtype=object)
    if axes.size != rows * cols:
        raise ValueError(f"axes must hold {rows}×{cols} = {rows * cols} Axes, got {axes.size}")
    return axes.reshape(rows, cols)


def plot_delta_spectra(spectra: dict, axes=None, k_max: int = 20, mark_k: int | None = None):
    """One column per layer. Top: σ_i / σ₁ (log scale); bottom: the cumulative energy E(k), in %.
    ΔW from full fine-tuning (solid) beside a Gaussian matrix of the same shape and norm (dashed).
    ``mark_k``: draw a vertical line at k (e.g. the task's shift rank)."""
    if not spectra or not all(isinstance(sp, DeltaSpectrum) for sp in spectra.values()):
        raise TypeError("plot_delta_spectra: spectra must be a non-empty {layer: DeltaSpectrum} dict "
                        "(delta_spectra())")
    axes = _grid_of_axes(axes, 2, len(spectra), (4.4, 3.2))
    for col, (name, sp) in enumerate(spectra.items()):
        k = min(k_max, len(sp.energy))
        ks = _host_np.arange(1, k + 1)
        top, low = axes[0, col], axes[1, col]
        top.semilogy(ks, sp.singular_values[:k] / sp.singular_values[0], "o-", ms=3, color="C0", label="ΔW")
        top.semilogy(ks, sp.random_singular_values[:k] / sp.random_singular_values[0], "s--", ms=3,
                     color="gray", label="random, same shape and norm")
        top.set_xlabel("index i")
        top.set_ylabel("σ_i / σ₁")
        top.set_title(f"{name}: ΔW {sp.shape[0]}×{sp.shape[1]}, ‖ΔW‖_F = {sp.norm:.2f}", fontsize=10)
        low.plot(ks, 100 * sp.energy[:k], "o-", ms=3, color="C0", label="ΔW")
        low.plot(ks, 100 * sp.random_energy[:k], "s--", ms=3, color="gray",
                 label="random, same shape and norm")
        low.set_ylim(0, 102)
        low.set_xlabel("k (top singular directions kept)")
        low.set_ylabel("energy E(k) (% of ‖ΔW‖²_F)")
        low.set_title(f"{name}: share of ‖ΔW‖² in the top k", fontsize=10)
        for ax in (top, low):
            if mark_k:
                ax.axvline(mark_k, color="C3", lw=1, ls=":", label=f"k = {mark_k}")
            ax.legend(fontsize=7)
    fig = axes[0, 0].figure
    fig.tight_layout()
    return fig


def plot_similarity(study, axes=None, max_dim: int | None = None, title: str = "φ(i, j)"):
    """Heatmaps of φ(i, j), one per comparison: rows i (the first matrix's top-i directions), columns j
    (the second's), colour from 0 (orthogonal) to 1 (contained). ``study``: a SimilarityStudy (its
    trained grids) or a ``{label: grid}`` dict such as ``study.init_grids``. ``max_dim`` crops i and j."""
    grids = study.grids if isinstance(study, SimilarityStudy) else study
    if not isinstance(grids, dict) or not grids:
        raise TypeError("plot_similarity: study must be a SimilarityStudy or a non-empty {label: φ grid} "
                        "dict")
    axes = _grid_of_axes(axes, 1, len(grids), (4.6, 3.8))[0]
    for ax, (label, phi) in zip(axes, grids.items(), strict=True):
        phi = _host_np.asarray(phi)[:max_dim, :max_dim]
        im = ax.imshow(phi, vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto", interpolation="nearest",
                       extent=(0.5, phi.shape[1] + 0.5, phi.shape[0] + 0.5, 0.5))
        ax.set_xlabel("j (top-j directions of the second)")
        ax.set_ylabel("i (top-i directions of the first)")
        ax.set_title(f"{title}: {label}", fontsize=10)
        ax.figure.colorbar(im, ax=ax, label="φ(i, j)")
    fig = axes[0].figure
    fig.tight_layout()
    return fig


def plot_amplification(rows, axes=None):
    """Left: ‖Uᵀ W V‖_F in ΔW's top-r directions, in W's own and in random ones, against r (log-log).
    Right: the amplification factor ‖ΔW‖_F / ‖Uᵀ W V‖_F against r."""
    if not rows or not all(isinstance(row, dict) and "W_in_delta" in row for row in rows):
        raise TypeError("plot_amplification: rows must be a non-empty list of amplification() dicts")
    if axes is None:
        import matplotlib.pyplot as plt
        _, axes = plt.subplots(1, 2, figsize=(11, 4))
    (fig, left), (_, right) = _axes(axes[0]), _axes(axes[1])
    rs = [row["r"] for row in rows]
    left.plot(rs, [row["W_top"] for row in rows], "o-", color="C2", label="W's own top-r directions")
    left.plot(rs, [row["W_in_delta"] for row in rows], "o-", color="C0", label="ΔW's top-r directions")
    left.plot(rs, [row["W_random"] for row in rows], "s--", color="gray", label="random directions (mean)")
    left.set_xscale("log", base=2)
    left.set_yscale("log")
    left.set_xticks(rs, [str(r) for r in rs])
    left.set_xlabel("LoRA rank r")
    left.set_ylabel("‖Uᵀ W V‖_F (how much of W lies there)")
    left.set_title("Where does ΔW point, relative to W?")
    left.legend(fontsize=8)
    right.plot(rs, [row["factor"] for row in rows], "D-", color="C3")
    right.set_xscale("log", base=2)
    right.set_xticks(rs, [str(r) for r in rs])
    right.set_ylim(bottom=0)
    right.set_xlabel("LoRA rank r")
    right.set_ylabel("amplification ‖ΔW‖_F / ‖Uᵀ W V‖_F")
    right.set_title("Amplification factor")
    fig.tight_layout()
    return fig
