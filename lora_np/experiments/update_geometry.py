"""The geometry of a fine-tuning update, after the LoRA paper's §7 (Hu et al., 2021), on the fruit MLP.

**1. How low-rank is full fine-tuning's update?** Train every parameter, take ``ΔW = W_after − W0``
per layer and its singular values σ₁ ≥ σ₂ ≥ … . The *energy* in the top k directions,

    E(k) = Σ_{i≤k} σ_i² / Σ_i σ_i²,

is the share of ‖ΔW‖²_F that the best rank-k matrix keeps (Eckart–Young). A Gaussian matrix of
the same shape and norm (:func:`random_like`) spreads its energy over all directions.

**2. Subspace similarity (§7.2).** For adapters ``A₁: (r₁, n)`` and ``A₂: (r₂, n)`` of one layer
(n = d_in) let ``U₁ᵢ`` hold the top-i right-singular vectors of ``A₁`` as columns (the i input
directions it reads most; rows of Vᵀ in ``A = U Σ Vᵀ``). Then

    φ(A₁, A₂, i, j) = ‖U₁ᵢᵀ U₂ⱼ‖²_F / min(i, j)  ∈ [0, 1]

is 1 when one subspace contains the other and 0 when they are orthogonal. With ``O = U₁ᵀ U₂``
the whole grid comes from one product and two cumulative sums: ‖U₁ᵢᵀ U₂ⱼ‖²_F = Σ_{a≤i, b≤j} O_ab².
For independent random subspaces E‖U₁ᵢᵀ U₂ⱼ‖²_F = i·j/n, so **E φ(i, j) = max(i, j)/n**: chance.

**3. Amplification (§7.3).** With ``U, V`` the top-r left/right singular vectors of ΔW = s·B·A,
``‖Uᵀ W V‖_F`` measures how much of the frozen ``W`` lies in ΔW's subspace. Two references: W's own
top r directions give the most any r directions can hold, ``‖U_Wᵀ W V_W‖_F = √(Σ_{i≤r} σ_i(W)²)``
(Ky Fan), and random orthonormal directions give on average ``√E‖Qᵀ W P‖²_F = r ‖W‖_F / √(m n)``.
The **amplification factor** ``‖ΔW‖_F / ‖Uᵀ W V‖_F`` says how strongly ΔW boosts those directions.

>>> task = make_fruit_task(shift_rank=2)
>>> base, _ = pretrain(task)
>>> spectra = delta_spectra(base, task)                # {"fc1": DeltaSpectrum, "fc2": ..., "head": ...}
>>> study = similarity_study(base, task)               # φ grids: r=8 vs r=64, two seeds, random
>>> print(format_amplification_table(amplification_table(base, task)))

**What the defaults measure** (make_fruit_task(shift_rank=2, seed=0), pretrain(seed=0): a
20 → 256 → 256 → 10 MLP; fine-tuning as :func:`~lora_np.experiments.finetune.finetune`: Adam,
30 epochs on the 500 shifted fruit, LoRA with s = 2 on one layer; seeds 1 and 2 in brackets):

* energy in the top 2 directions, ΔW against a random matrix: fc1 57% [57, 51] vs 16%, fc2 64% [64,
  57] vs 3%, head 60% [63, 58] vs 26%. fc1's update is *not* confined to the shift's k = 2 input
  directions V, as the exact fix is: 15% [19, 18] of its energy lies in span(V), where chance is 2/20 =
  10% (:func:`shift_alignment`). Full fine-tuning also changes fc2 and the head, and finds another,
  nearly low-rank, solution;
* φ(1, 1), chance 1/256: r = 8 vs r = 64 0.74 [0.59, 0.82]; r = 64, seed 0 vs 1: 0.87 [0.77, 0.85];
  random 0.005. The same adapter pairs before training: 0.00 (different seeds share no initial A);
* amplification on fc2 at r = 1 / 4 / 16 / 64: ‖UᵀWV‖_F = 1.6 / 2.1 / 3.5 / 6.5; W's top r 4.5 / 8.3
  / 11.4 / 13.2; random 0.04 / 0.24 / 0.90 / 3.6; factor 7.9 / 4.9 / 4.0 / 2.8 [6.1 / 5.3 / 3.8 / 3.3;
  6.5 / 6.3 / 4.3 / 3.2]. ΔW's directions hold ~40× more of W than random ones at r = 1 (2× at r = 64),
  yet 2-4× less than W's own top ones: ΔW favours directions W has but does not emphasise, less
  sharply than in the paper (GPT-3, r = 4: 16× random and 68× below W's top).

Runtimes on one core: delta_spectra ≈ 0.5 s, similarity_study ≈ 1.4 s, amplification_table ≈ 2.6 s
(pretrain ≈ 0.9 s).
"""
from __future__ import annotations

import copy
import numbers
from dataclasses import dataclass, field

import numpy as _host_np   # results are small host arrays, for tables and figures

from .. import backend
from ..backend import get_array_module
from ..data import FruitTask, shift_matrix
from ..lora import LoraConfig, inject_lora
from ..nn import Module
from .finetune import finetune

LAYERS = ("fc1", "fc2", "head")
TOP_K = (1, 2, 4, 8)

# --------------------------------------------------------------------------- argument checks


def _matrix(M, arg: str, where: str):
    """``M`` as a finite, non-zero, non-empty 2-D array, or a clear TypeError / ValueError."""
    if not backend.is_array(M):
        raise TypeError(f"{where}: {arg} must be an array (use lora_np.backend.asarray), got {type(M).__name__}")
    if M.ndim != 2 or 0 in M.shape:
        raise ValueError(f"{where}: {arg} must be a non-empty 2-D matrix, got shape {tuple(M.shape)}")
    xp = get_array_module(M)
    if not bool(xp.isfinite(M).all()):
        raise ValueError(f"{where}: {arg} contains NaN or inf")
    if not bool((M != 0).any()):
        raise ValueError(f"{where}: {arg} is all zeros, so it has no singular directions")
    return M


def _int_in(value, low: int, high: int, arg: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not low <= value <= high:
        raise ValueError(f"{where}: {arg} must be an integer in [{low}, {high}], got {value!r}")
    return int(value)


def _weight(model: Module, layer: str, where: str):
    """The weight matrix (on the device) of the Linear (or LoRALinear) called ``layer``."""
    modules = dict(model.named_modules())
    if layer not in modules or getattr(getattr(modules[layer], "weight", None), "data", None) is None:
        names = sorted(k for k, m in modules.items() if getattr(m, "weight", None) is not None)
        raise ValueError(f"{where}: layer must name a Linear layer of the model, one of {names}; got {layer!r}")
    return modules[layer].weight.data                                                # (d_out, d_in)


def _check_inputs(base, task, where: str) -> None:
    if not isinstance(base, Module):
        raise TypeError(f"{where}: base must be a lora_np Module (the pretrained MLP), got {type(base).__name__}")
    if not isinstance(task, FruitTask):
        raise TypeError(f"{where}: task must be a FruitTask (make_fruit_task()), got {type(task).__name__}")


# --------------------------------------------------------------------------- 1. energy in the top directions

def energy_spectrum(M):
    """σ₁ ≥ … ≥ σ_q of ``M`` and its cumulative energy ``E(k) = Σ_{i≤k} σ_i² / Σ σ_i²``.

    Returns two host float64 arrays of length q = min(m, n); ``E`` rises to 1 (at k = rank M).
    """
    M = _matrix(M, "M", "energy_spectrum")
    S = get_array_module(M).linalg.svd(M, compute_uv=False)                          # (q,) on the device
    S = backend.to_numpy(S).astype(_host_np.float64)                                 # (q,) host
    energy = _host_np.cumsum(S ** 2) / (S ** 2).sum()                                # (q,)
    return S, energy


def random_like(M, seed: int = 0):
    """A Gaussian matrix of ``M``'s shape, dtype and device, scaled to ``M``'s Frobenius norm."""
    M = _matrix(M, "M", "random_like")
    xp = get_array_module(M)
    G = xp.asarray(_host_np.random.default_rng(seed).standard_normal(M.shape), dtype=M.dtype)   # (m, n), M's device
    return G * (xp.linalg.norm(M) / xp.linalg.norm(G))                               # (m, n)


@dataclass
class DeltaSpectrum:
    """One layer's ΔW from full fine-tuning, beside a random matrix of the same shape and norm."""

    layer: str
    shape: tuple
    norm: float                    # ‖ΔW‖_F
    singular_values: object        # (q,) host, ΔW's
    energy: object                 # (q,) host, cumulative E(k)
    random_singular_values: object
    random_energy: object
    top_k: dict = field(default_factory=dict)          # {k: E(k)} of ΔW
    random_top_k: dict = field(default_factory=dict)   # {k: E(k)} of the random matrix

    def top_energy(self, k: int) -> float:
        """Share of ‖ΔW‖²_F in its top ``k`` directions."""
        return float(self.energy[_int_in(k, 1, len(self.energy), "k", "DeltaSpectrum.top_energy") - 1])

    def random_top_energy(self, k: int) -> float:
        """The same share for the random matrix."""
        return float(self.random_energy[_int_in(k, 1, len(self.energy), "k", "DeltaSpectrum.random_top_energy") - 1])


def full_finetune_deltas(base: Module, task: FruitTask, epochs: int = 30, seed: int = 0, layers=LAYERS) -> dict:
    """Fully fine-tune a copy of ``base`` on the shifted fruit; ``{layer: ΔW = W_after − W0}`` (device arrays)."""
    _check_inputs(base, task, "full_finetune_deltas")
    before = {name: _weight(base, name, "full_finetune_deltas") for name in layers}
    tuned = finetune(base, task, r=None, epochs=epochs, seed=seed).model
    return {name: tuned.get_submodule(name).weight.data - W0 for name, W0 in before.items()}   # (d_out, d_in) each


def delta_spectra(base: Module, task: FruitTask, epochs: int = 30, seed: int = 0, layers=LAYERS, ks=TOP_K,
                  deltas: dict | None = None) -> dict:
    """``{layer: DeltaSpectrum}``: ΔW's spectrum and a random matrix's, with E(k) for each k in ``ks``.

    Pass ``deltas`` (from :func:`full_finetune_deltas`) to reuse one fine-tuning run. k larger than
    a layer's q = min(d_out, d_in) is left out of its ``top_k``.
    """
    deltas = full_finetune_deltas(base, task, epochs, seed, layers) if deltas is None else deltas
    out = {}
    for i, (name, dW) in enumerate(deltas.items()):
        S, energy = energy_spectrum(dW)
        S_rand, energy_rand = energy_spectrum(random_like(dW, seed=seed + 1000 + i))
        keep = [k for k in ks if k <= len(S)]
        out[name] = DeltaSpectrum(name, tuple(dW.shape), backend.to_float(get_array_module(dW).linalg.norm(dW)),
                                  S, energy, S_rand, energy_rand, {k: float(energy[k - 1]) for k in keep},
                                  {k: float(energy_rand[k - 1]) for k in keep})
    return out


def shift_alignment(dW, task: FruitTask) -> dict:
    """Does a first-layer update use the shift's input directions V (x' = (I + U Vᵀ) x, V: (d, k))?

    The exact fix ``W0 (I + U Vᵀ)⁻¹ − W0 = −W0 U (I + VᵀU)⁻¹ Vᵀ`` has row space span(V). Returns
    ``energy_in_shift`` = ‖ΔW Q‖²_F / ‖ΔW‖²_F (Q: an orthonormal basis of span V), ``phi`` =
    φ(ΔW's top-k right-singular vectors, V) and ``chance`` = k/d, the value of both for a random ΔW.
    """
    dW = _matrix(dW, "dW", "shift_alignment")
    k, d = task.shift_rank, len(task.features)
    if k == 0 or dW.shape[1] != d:
        raise ValueError(f"shift_alignment: needs a task with shift_rank >= 1 and dW of shape (d_out, {d}) "
                         f"(the first layer), got shift_rank={k} and shape {tuple(dW.shape)}")
    _, _, V = shift_matrix(k, strength=task.shift_strength)                          # (d, k) host
    Q, _ = _host_np.linalg.qr(V)                                                     # (d, k) orthonormal
    xp = get_array_module(dW)
    Qd = xp.asarray(Q, dtype=dW.dtype)                                               # (d, k) on dW's device
    share = backend.to_float(xp.linalg.norm(dW @ Qd) ** 2 / xp.linalg.norm(dW) ** 2)
    _, _, Vt = xp.linalg.svd(dW, full_matrices=False)                                # (q, d)
    phi = subspace_similarity(Vt[:k], Qd.T)                                          # (k, k) host
    return {"k": k, "energy_in_shift": share, "phi": float(phi[-1, -1]), "chance": k / d}


# --------------------------------------------------------------------------- 2. subspace similarity

def top_right_singular_vectors(A):
    """The right-singular vectors of ``A: (r, n)``, strongest first, as the columns of an (n, r) array."""
    A = _matrix(A, "A", "top_right_singular_vectors")
    if A.shape[0] > A.shape[1]:
        raise ValueError(f"top_right_singular_vectors: A must be (r, n) with r <= n (an adapter's A is (r, d_in)), "
                         f"got shape {tuple(A.shape)}")
    _, _, Vt = get_array_module(A).linalg.svd(A, full_matrices=False)               # Vt: (r, n)
    return Vt.T                                                                      # (n, r)


def subspace_similarity(A1, A2):
    """φ(A₁, A₂, i, j) = ‖U₁ᵢᵀ U₂ⱼ‖²_F / min(i, j) for all i ≤ r₁, j ≤ r₂: an (r₁, r₂) host array.

    ``A1: (r₁, n)``, ``A2: (r₂, n)``, both with r ≤ n. It depends only on each matrix's ordered
    singular directions: scaling A or rotating its rows (A → Q A) changes nothing, and any
    invertible M keeps the last row φ(r₁, j) (M A has the same row space). Directions past the
    rank of A are arbitrary (their singular values are 0).
    """
    A1, A2 = _matrix(A1, "A1", "subspace_similarity"), _matrix(A2, "A2", "subspace_similarity")
    if A1.shape[1] != A2.shape[1]:
        raise ValueError(f"subspace_similarity: A1 and A2 must read the same input space (same number of "
                         f"columns), got shapes {tuple(A1.shape)} and {tuple(A2.shape)}")
    xp = get_array_module(A1, A2)
    O = top_right_singular_vectors(A1).T @ top_right_singular_vectors(A2)           # (r1, r2) overlaps
    block = xp.cumsum(xp.cumsum(O ** 2, axis=0), axis=1)                             # (r1, r2)
    i = _host_np.arange(1, O.shape[0] + 1)                                           # (r1,)
    j = _host_np.arange(1, O.shape[1] + 1)                                           # (r2,)
    return backend.to_numpy(block).astype(_host_np.float64) / _host_np.minimum.outer(i, j)   # (r1, r2)


def chance_similarity(r1: int, r2: int, n: int):
    """E φ(i, j) = max(i, j)/n for independent random subspaces of Rⁿ: an (r₁, r₂) host array."""
    for arg, v in (("r1", r1), ("r2", r2)):
        _int_in(v, 1, n, arg, "chance_similarity")
    return _host_np.maximum.outer(_host_np.arange(1, r1 + 1), _host_np.arange(1, r2 + 1)) / n   # (r1, r2)


def train_adapter(base: Module, task: FruitTask, r: int, layer: str = "fc2", seed: int = 0, epochs: int = 30):
    """Fine-tune LoRA of rank ``r`` on ``layer`` alone (a copy of ``base``); return the trained LoRALinear."""
    _check_inputs(base, task, "train_adapter")
    _weight(base, layer, "train_adapter")
    tuned = finetune(base, task, r=r, target_modules=(layer,), epochs=epochs, seed=seed).model
    return tuned.get_submodule(layer)


def train_adapter_A(base: Module, task: FruitTask, r: int, layer: str = "fc2", seed: int = 0, epochs: int = 30):
    """The trained adapter's ``A: (r, d_in)`` (on the device)."""
    return train_adapter(base, task, r, layer, seed, epochs).lora_A.data             # (r, d_in)


def initial_adapter_A(base: Module, r: int, layer: str = "fc2", seed: int = 0):
    """``A: (r, d_in)`` as :func:`train_adapter` initialises it (same seed), before any training."""
    model = inject_lora(copy.deepcopy(base), LoraConfig(r=r, lora_alpha=2.0 * r, target_modules=[layer], seed=seed))
    return model.get_submodule(layer).lora_A.data                                   # (r, d_in)


@dataclass
class SimilarityStudy:
    """φ grids of the §7.2 comparisons on one layer (host arrays keyed by a label)."""

    layer: str
    n: int                         # the layer's d_in: chance is φ(i, j) ≈ max(i, j)/n
    grids: dict                    # trained adapters, and random Gaussian matrices of the same shapes
    init_grids: dict               # the same adapter pairs at initialisation, before training

    def chance(self, i: int, j: int) -> float:
        return max(i, j) / self.n


def similarity_study(base: Module, task: FruitTask, ranks=(8, 64), layer: str = "fc2", seeds=(0, 1),
                     epochs: int = 30, random_seed: int = 12345) -> SimilarityStudy:
    """Train three adapters on ``layer`` and compare their A's row spaces (the LoRA paper's Figures 3-4):

    * ``"r=8 vs r=64"``: r₁ = ranks[0] (seed seeds[0]) against r₂ = ranks[1] (seed seeds[1]);
    * ``"r=64: seed 0 vs seed 1"``: the larger rank from both seeds;
    * ``"random r=8 vs r=64"``: Gaussian matrices of the same shapes: φ ≈ max(i, j)/n.

    The two ranks come from *different* seeds on purpose: with one seed the (8, n) initial A is the
    first 8 rows of the (64, n) one (one random stream), so their row spaces overlap before any
    training. ``init_grids`` holds the trained pairs' φ at initialisation, to show this is ≈ chance.
    """
    _check_inputs(base, task, "similarity_study")
    n = int(_weight(base, layer, "similarity_study").shape[1])
    if len(tuple(ranks)) != 2 or len(tuple(seeds)) != 2 or seeds[0] == seeds[1]:
        raise ValueError(f"similarity_study: ranks must be two ranks (r1, r2) and seeds two different seeds, "
                         f"got ranks={ranks!r}, seeds={seeds!r}")
    (r1, r2), (s0, s1) = ranks, seeds
    for arg, r in (("ranks[0]", r1), ("ranks[1]", r2)):
        _int_in(r, 1, n, arg, f"similarity_study (layer {layer!r} has d_in = {n})")
    pairs = {f"r={r1} vs r={r2}": ((r1, s0), (r2, s1)), f"r={r2}: seed {s0} vs seed {s1}": ((r2, s0), (r2, s1))}
    keys = sorted({key for pair in pairs.values() for key in pair})
    trained = {key: train_adapter_A(base, task, key[0], layer, key[1], epochs) for key in keys}
    initial = {key: initial_adapter_A(base, key[0], layer, key[1]) for key in keys}
    grids = {label: subspace_similarity(trained[a], trained[b]) for label, (a, b) in pairs.items()}
    init_grids = {label: subspace_similarity(initial[a], initial[b]) for label, (a, b) in pairs.items()}
    some = trained[keys[0]]
    xp, rng = get_array_module(some), _host_np.random.default_rng(random_seed)
    grids[f"random r={r1} vs r={r2}"] = subspace_similarity(xp.asarray(rng.standard_normal((r1, n)), dtype=some.dtype),
                                                            xp.asarray(rng.standard_normal((r2, n)), dtype=some.dtype))
    return SimilarityStudy(layer, n, grids, init_grids)


# --------------------------------------------------------------------------- 3. amplification

def _random_orthonormal(xp, n: int, r: int, rng, dtype):
    """An (n, r) frame with QᵀQ = I, uniformly random (QR of a Gaussian drawn by the host ``rng``)."""
    Q, _ = xp.linalg.qr(xp.asarray(rng.standard_normal((n, r)), dtype=dtype))       # (n, r)
    return Q


def amplification(W, dW, r: int, seed: int = 0, n_random: int = 8) -> dict:
    """How much of ``W: (m, n)`` lies in the top-r directions of ``dW``, of W itself, and random ones.

    With ``dW = U Σ Vᵀ``: ``W_in_delta = ‖U_rᵀ W V_r‖_F``; ``W_top = √(Σ_{i≤r} σ_i(W)²)`` (the
    maximum over all orthonormal r-frames, so W_top ≥ W_in_delta ≥ 0); ``W_random`` the mean of
    ‖Qᵀ W P‖_F over ``n_random`` seeded random orthonormal frames, ``W_random_expected`` =
    r ‖W‖_F / √(m n) (the root of its mean square); ``factor`` = ‖dW‖_F / W_in_delta.
    Also ``delta_norm`` = ‖dW‖_F and ``W_norm`` = ‖W‖_F. Floats; computed on W's device.
    """
    W, dW = _matrix(W, "W", "amplification"), _matrix(dW, "dW", "amplification")
    if tuple(W.shape) != tuple(dW.shape):
        raise ValueError(f"amplification: W and dW must have the same shape, got {tuple(W.shape)} and "
                         f"{tuple(dW.shape)}")
    m, n = W.shape
    r = _int_in(r, 1, min(m, n), "r", "amplification")
    n_random = _int_in(n_random, 1, 10_000, "n_random", "amplification")
    xp = get_array_module(W, dW)
    U, _, Vt = xp.linalg.svd(dW, full_matrices=False)                               # (m, q), (q,), (q, n)
    in_delta = backend.to_float(xp.linalg.norm(U[:, :r].T @ W @ Vt[:r].T))           # ‖(r, r)‖_F
    S_W = xp.linalg.svd(W, compute_uv=False)                                         # (q,)
    top = backend.to_float(xp.sqrt((S_W[:r] ** 2).sum()))
    rng = _host_np.random.default_rng(seed)
    rand = [backend.to_float(xp.linalg.norm(_random_orthonormal(xp, m, r, rng, W.dtype).T @ W   # (r, m) @ (m, n)
                                            @ _random_orthonormal(xp, n, r, rng, W.dtype)))    # @ (n, r)
            for _ in range(n_random)]
    W_norm, delta_norm = backend.to_float(xp.linalg.norm(W)), backend.to_float(xp.linalg.norm(dW))
    return {"r": r, "delta_norm": delta_norm, "W_in_delta": in_delta, "W_top": top,
            "W_random": float(_host_np.mean(rand)), "W_random_expected": r * W_norm / (m * n) ** 0.5,
            "W_norm": W_norm, "factor": delta_norm / max(in_delta, 1e-300)}


def amplification_table(base: Module, task: FruitTask, ranks=(1, 2, 4, 8, 16, 64), layer: str = "fc2",
                        epochs: int = 30, seed: int = 0) -> list:
    """Train LoRA at each rank on ``layer`` alone; one :func:`amplification` row (W = W0, ΔW = s B A) per rank."""
    if not ranks:
        raise ValueError("amplification_table: ranks must name at least one rank, got an empty sequence")
    rows = []
    for r in ranks:
        lora = train_adapter(base, task, r, layer, seed, epochs)
        rows.append(amplification(lora.weight.data, lora.delta_weight(), r, seed=seed))
    return rows


def format_amplification_table(rows) -> str:
    """One line per rank: ‖ΔW‖_F; ‖·ᵀ W ·‖_F in ΔW's, W's own and random top-r directions; the factor."""
    head = f"{'r':>3} {'‖ΔW‖_F':>8} {'ΔW dirs':>9} {'W top-r':>9} {'random':>8} {'factor':>7}"
    lines = [head, "-" * len(head)]
    for row in rows:
        lines.append(f"{row['r']:>3} {row['delta_norm']:>8.3f} {row['W_in_delta']:>9.3f} {row['W_top']:>9.3f} "
                     f"{row['W_random']:>8.3f} {row['factor']:>7.2f}")
    return "\n".join(lines)
