"""The geometry of a fine-tuning update: how low-rank it is, which directions it uses (notebook 06).

Three questions the LoRA paper (Hu et al., 2021, §7) asks of ΔW, asked here of the fruit MLP:

1. **How low-rank is full fine-tuning's update?** Fine-tune every parameter, take
   ``ΔW = W_after − W0`` per layer and look at its singular values σ₁ ≥ σ₂ ≥ …: the *energy* in
   the top k directions is ``Σ_{i≤k} σ_i² / Σ σ_i²`` (the share of ‖ΔW‖²_F a rank-k matrix keeps).
   A Gaussian matrix of the same shape and norm spreads its energy over all directions.
2. **Subspace similarity** (§7.2). For adapters ``A₁: (r₁, d_in)`` and ``A₂: (r₂, d_in)``, let
   ``Uᵢ`` hold the top-i right-singular vectors of A (an orthonormal basis of the i most used
   input directions, as columns). Then

       φ(A₁, A₂, i, j) = ‖U₁ᵢᵀ U₂ⱼ‖²_F / min(i, j)  ∈ [0, 1]:

   1 when one subspace contains the other, 0 when they are orthogonal. For random subspaces of
   Rⁿ its expectation is ``max(i, j) / n``: that is the "no structure" baseline.
3. **Amplification** (§7.3). With ``U, V`` the top-r left/right singular vectors of ΔW, the
   part of W in ΔW's subspace is ``‖Uᵀ W V‖_F``. Compared with W's own top-r directions
   (``‖U_Wᵀ W V_W‖_F = √(Σ_{i≤r} σ_i(W)²)``) and with random directions, it says whether ΔW
   reinforces what W already does or amplifies directions W hardly uses; the *amplification
   factor* is ``‖ΔW‖_F / ‖Uᵀ W V‖_F``.

>>> task = make_fruit_task()
>>> base, _ = pretrain(task)
>>> spectra = delta_spectra(base, task)                     # {layer: DeltaSpectrum}
>>> spectra["fc1"].top_energy(2), spectra["fc1"].random_top_energy(2)
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as _host_np   # results are small host arrays, for tables and figures

from .. import backend
from ..backend import get_array_module
from ..data import FruitTask
from ..nn import Module
from .finetune import finetune

LAYERS = ("fc1", "fc2", "head")


def _matrix(M, arg: str, where: str):
    if not backend.is_array(M) or M.ndim != 2 or 0 in M.shape:
        raise ValueError(f"{where}: {arg} must be a non-empty 2-D array, got "
                         f"{'shape ' + str(tuple(M.shape)) if backend.is_array(M) else type(M).__name__}")
    return M


def _rank_arg(r, limit: int, where: str) -> int:
    if isinstance(r, bool) or not isinstance(r, int) or not 1 <= r <= limit:
        raise ValueError(f"{where}: r must be an integer in [1, {limit}], got {r!r}")
    return r


# --------------------------------------------------------------------------- 1. energy in the top directions

def energy_spectrum(M):
    """Singular values of ``M`` and the cumulative energy ``Σ_{i≤k} σ_i² / Σ σ_i²`` (host arrays, (min(m, n),))."""
    M = _matrix(M, "M", "energy_spectrum")
    S = backend.to_numpy(get_array_module(M).linalg.svd(M, compute_uv=False)).astype(float)   # (k,)
    energy = _host_np.cumsum(S ** 2) / max(float((S ** 2).sum()), 1e-300)                       # (k,)
    return S, energy


def random_like(M, seed: int = 0):
    """A Gaussian matrix of ``M``'s shape, dtype and device, scaled to ``M``'s Frobenius norm."""
    M = _matrix(M, "M", "random_like")
    xp = get_array_module(M)
    G = backend.Rng(seed).standard_normal(tuple(M.shape), dtype=M.dtype)                        # (m, n)
    return G * (xp.linalg.norm(M) / xp.linalg.norm(G))                                          # (m, n)


@dataclass
class DeltaSpectrum:
    """One layer's ΔW from full fine-tuning, beside a random matrix of the same shape and norm."""

    layer: str
    shape: tuple
    singular_values: object        # (k,) host, ΔW's
    energy: object                 # (k,) host, cumulative
    random_singular_values: object
    random_energy: object
    norm: float                    # ‖ΔW‖_F

    def top_energy(self, k: int) -> float:
        """Share of ‖ΔW‖²_F in its top ``k`` directions."""
        return float(self.energy[_rank_arg(k, len(self.energy), "DeltaSpectrum.top_energy") - 1])

    def random_top_energy(self, k: int) -> float:
        """The same share for the random matrix."""
        return float(self.random_energy[_rank_arg(k, len(self.random_energy), "DeltaSpectrum.random_top_energy") - 1])


def full_finetune_deltas(base: Module, task: FruitTask, layers=LAYERS, epochs: int = 30, seed: int = 0) -> dict:
    """Fully fine-tune a copy of ``base`` on the new harvest; ``{layer: ΔW = W_after − W0}`` on the device."""
    tuned = finetune(base, task, r=None, epochs=epochs, seed=seed).model
    return {name: tuned.get_submodule(name).weight.data - base.get_submodule(name).weight.data for name in layers}


def delta_spectra(base: Module, task: FruitTask, layers=LAYERS, epochs: int = 30, seed: int = 0,
                  deltas: dict | None = None) -> dict:
    """:class:`DeltaSpectrum` per layer (pass ``deltas`` to reuse a fine-tuning run)."""
    deltas = full_finetune_deltas(base, task, layers, epochs, seed) if deltas is None else deltas
    out = {}
    for i, (name, dW) in enumerate(deltas.items()):
        S, energy = energy_spectrum(dW)
        S_r, energy_r = energy_spectrum(random_like(dW, seed=seed + 1000 + i))
        out[name] = DeltaSpectrum(name, tuple(dW.shape), S, energy, S_r, energy_r,
                                  backend.to_float(get_array_module(dW).linalg.norm(dW)))
    return out


# --------------------------------------------------------------------------- 2. subspace similarity

def right_singular_basis(A):
    """The right-singular vectors of ``A: (r, n)``, strongest first, as columns: (n, min(r, n)), host."""
    A = _matrix(A, "A", "right_singular_basis")
    _, _, Vt = get_array_module(A).linalg.svd(A, full_matrices=False)                          # Vt: (k, n)
    return backend.to_numpy(Vt).astype(float).T                                                # (n, k)


def subspace_similarity(A1, A2):
    """φ(A₁, A₂, i, j) = ‖U₁ᵢᵀ U₂ⱼ‖²_F / min(i, j) for every i ≤ r₁, j ≤ r₂: a (r₁, r₂) host array.

    With ``O = U₁ᵀ U₂`` (r₁, r₂) the overlaps of the singular directions, ‖U₁ᵢᵀ U₂ⱼ‖²_F is the sum of
    ``O²`` over the top-left i × j block: two cumulative sums, no loop over (i, j).
    """
    A1, A2 = _matrix(A1, "A1", "subspace_similarity"), _matrix(A2, "A2", "subspace_similarity")
    if A1.shape[1] != A2.shape[1]:
        raise ValueError(f"subspace_similarity: A1 and A2 must act on the same input space, got "
                         f"{tuple(A1.shape)} and {tuple(A2.shape)} (r, d_in)")
    U1, U2 = right_singular_basis(A1), right_singular_basis(A2)                                 # (n, k1), (n, k2)
    O2 = (U1.T @ U2) ** 2                                                                       # (k1, k2)
    block = O2.cumsum(axis=0).cumsum(axis=1)                                                    # (k1, k2)
    i, j = _host_np.arange(1, O2.shape[0] + 1), _host_np.arange(1, O2.shape[1] + 1)
    return block / _host_np.minimum.outer(i, j)                                                 # (k1, k2)


def adapter_A(base: Module, task: FruitTask, r: int, layer: str = "fc2", epochs: int = 30, seed: int = 0):
    """Train LoRA of rank ``r`` on ``layer`` alone and return its ``A: (r, d_in)`` (on the device)."""
    tuned = finetune(base, task, r=r, target_modules=(layer,), epochs=epochs, seed=seed).model
    return tuned.get_submodule(layer).lora_A.data


def similarity_study(base: Module, task: FruitTask, ranks=(8, 64), layer: str = "fc2", seeds=(0, 1),
                     epochs: int = 30) -> dict:
    """The LoRA paper's comparisons as φ grids (host arrays), keyed by a label:

    * ``"r=8 vs r=64"``: the two ranks, same seed (does the small adapter's subspace sit in the big one's?);
    * ``"r=64: seed 0 vs seed 1"``: the same rank from two seeds (which directions recur?);
    * ``"random: r=8 vs r=64"``: Gaussian matrices of the same shapes (the baseline, ≈ max(i, j)/n).
    """
    (r_small, r_big), (s0, s1) = ranks, seeds
    A_small = adapter_A(base, task, r_small, layer, epochs, s0)
    A_big = adapter_A(base, task, r_big, layer, epochs, s0)
    A_big_other = adapter_A(base, task, r_big, layer, epochs, s1)
    rng = backend.Rng(12345)
    R_small, R_big = rng.standard_normal(tuple(A_small.shape)), rng.standard_normal(tuple(A_big.shape))
    return {f"r={r_small} vs r={r_big}": subspace_similarity(A_small, A_big),
            f"r={r_big}: seed {s0} vs seed {s1}": subspace_similarity(A_big, A_big_other),
            f"random: r={r_small} vs r={r_big}": subspace_similarity(R_small, R_big)}


# --------------------------------------------------------------------------- 3. amplification

def _orthonormal(n: int, r: int, rng):
    Q, _ = _host_np.linalg.qr(rng.standard_normal((n, r)))
    return Q                                                                                    # (n, r)


def amplification(W, dW, r: int, seed: int = 0) -> dict:
    """How much of ``W`` lies in ``ΔW``'s top-r directions, against W's own and random ones.

    Returns ``‖ΔW‖_F``, ``‖Uᵀ W V‖_F`` (U, V: ΔW's top-r singular vectors), ``‖U_Wᵀ W V_W‖_F``
    (W's top r), the mean over random orthonormal U, V, and ``factor = ‖ΔW‖_F / ‖Uᵀ W V‖_F``.
    """
    W, dW = _matrix(W, "W", "amplification"), _matrix(dW, "dW", "amplification")
    if tuple(W.shape) != tuple(dW.shape):
        raise ValueError(f"amplification: W and dW must have one shape, got {tuple(W.shape)} and {tuple(dW.shape)}")
    r = _rank_arg(r, min(W.shape), "amplification")
    Wh, dWh = backend.to_numpy(W).astype(float), backend.to_numpy(dW).astype(float)             # (m, n) host
    U, _, Vt = _host_np.linalg.svd(dWh, full_matrices=False)                                    # ΔW's directions
    Uw, Sw, _ = _host_np.linalg.svd(Wh, full_matrices=False)
    delta = _host_np.linalg.norm(U[:, :r].T @ Wh @ Vt[:r].T)                                    # ‖Uᵀ W V‖_F, (r, r)
    rng = _host_np.random.default_rng(seed)
    rand = _host_np.mean([_host_np.linalg.norm(_orthonormal(Wh.shape[0], r, rng).T @ Wh @ _orthonormal(Wh.shape[1], r, rng))
                          for _ in range(10)])
    dnorm = float(_host_np.linalg.norm(dWh))
    return {"r": r, "delta_norm": dnorm, "W_in_delta": float(delta), "W_top": float(_host_np.sqrt((Sw[:r] ** 2).sum())),
            "W_random": float(rand), "W_norm": float(_host_np.linalg.norm(Wh)), "factor": dnorm / max(float(delta), 1e-300)}


def amplification_table(base: Module, task: FruitTask, ranks=(1, 2, 4, 8, 16, 64), layer: str = "fc2",
                        epochs: int = 30, seed: int = 0) -> list:
    """Train LoRA at each rank on ``layer``; one :func:`amplification` row per rank (ΔW = s B A)."""
    rows = []
    for r in ranks:
        tuned = finetune(base, task, r=r, target_modules=(layer,), epochs=epochs, seed=seed).model
        lora = tuned.get_submodule(layer)
        rows.append(amplification(lora.weight.data, lora.delta_weight(), r, seed=seed))
    return rows


def format_amplification_table(rows) -> str:
    """One line per rank: ‖ΔW‖, then ‖·ᵀ W ·‖ in ΔW's, W's own and random directions, and the factor."""
    head = f"{'r':>3} {'‖ΔW‖_F':>8} {'‖UᵀWV‖ ΔW dirs':>16} {'W top-r dirs':>13} {'random dirs':>12} {'factor':>7}"
    lines = [head, "-" * len(head)]
    for row in rows:
        lines.append(f"{row['r']:>3} {row['delta_norm']:>8.3f} {row['W_in_delta']:>16.3f} {row['W_top']:>13.3f} "
                     f"{row['W_random']:>12.3f} {row['factor']:>7.2f}")
    return "\n".join(lines)
