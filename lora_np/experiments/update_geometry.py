"""The geometry of a fine-tuning update, after the LoRA paper's §7 (Hu et al., 2021): the measurements.

Functions of matrices only; :mod:`.geometry_studies` trains the fruit MLP and applies them.

**1. How low-rank is an update?** Take ``ΔW = W_after − W0`` and its singular values σ₁ ≥ σ₂ ≥ … .
The *energy* in the top k directions,

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

>>> E = energy_spectrum(dW)[1]                  # cumulative energy of ΔW
>>> phi = subspace_similarity(A1, A2)           # (r₁, r₂) grid of φ(i, j)
>>> amplification(W0, dW, r=4)["factor"]
"""
from __future__ import annotations

import numpy as _host_np  # results are small host arrays, for tables and figures

from .. import backend
from ..backend import get_array_module
from ..data import FruitTask, shift_matrix
from ..validate import integer, positive_int

# --------------------------------------------------------------------------- argument checks


def _matrix(M, arg: str, where: str):
    """``M`` as a finite, non-zero, non-empty 2-D array, or a clear TypeError / ValueError."""
    if not backend.is_array(M):
        raise TypeError(f"{where}: {arg} must be an array (use lora_np.backend.asarray), "
                        f"got {type(M).__name__}")
    if M.ndim != 2 or 0 in M.shape:
        raise ValueError(f"{where}: {arg} must be a non-empty 2-D matrix, got shape {tuple(M.shape)}")
    xp = get_array_module(M)
    if not bool(xp.isfinite(M).all()):
        raise ValueError(f"{where}: {arg} contains NaN or inf")
    if not bool((M != 0).any()):
        raise ValueError(f"{where}: {arg} is all zeros, so it has no singular directions")
    return M



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
    host = _host_np.random.default_rng(seed).standard_normal(M.shape)             # (m, n) drawn on the host
    G = xp.asarray(host, dtype=M.dtype)                                              # (m, n) on M's device
    return G * (xp.linalg.norm(M) / xp.linalg.norm(G))                               # (m, n)


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
        raise ValueError(f"top_right_singular_vectors: A must be (r, n) with r <= n (an adapter's A is "
                         f"(r, d_in)), got shape {tuple(A.shape)}")
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
    overlap = top_right_singular_vectors(A1).T @ top_right_singular_vectors(A2)     # (r1, r2)  O = U₁ᵀ U₂
    block = xp.cumsum(xp.cumsum(overlap ** 2, axis=0), axis=1)                       # (r1, r2)
    i = _host_np.arange(1, overlap.shape[0] + 1)                                     # (r1,)
    j = _host_np.arange(1, overlap.shape[1] + 1)                                     # (r2,)
    return backend.to_numpy(block).astype(_host_np.float64) / _host_np.minimum.outer(i, j)   # (r1, r2)


def chance_similarity(r1: int, r2: int, n: int):
    """E φ(i, j) = max(i, j)/n for independent random subspaces of Rⁿ: an (r₁, r₂) host array."""
    n = positive_int(n, "n", "chance_similarity")
    r1 = integer(r1, "r1", "chance_similarity", low=1, high=n)
    r2 = integer(r2, "r2", "chance_similarity", low=1, high=n)
    return _host_np.maximum.outer(_host_np.arange(1, r1 + 1), _host_np.arange(1, r2 + 1)) / n   # (r1, r2)


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
    r = integer(r, "r", "amplification", low=1, high=min(m, n))
    n_random = integer(n_random, "n_random", "amplification", low=1, high=10_000)
    xp = get_array_module(W, dW)
    U, _, Vt = xp.linalg.svd(dW, full_matrices=False)                               # (m, q), (q,), (q, n)
    in_delta = backend.to_float(xp.linalg.norm(U[:, :r].T @ W @ Vt[:r].T))           # ‖(r, r)‖_F
    S_W = xp.linalg.svd(W, compute_uv=False)                                         # (q,)
    top = backend.to_float(xp.sqrt((S_W[:r] ** 2).sum()))
    rng = _host_np.random.default_rng(seed)
    rand = []
    for _ in range(n_random):
        Q, P = _random_orthonormal(xp, m, r, rng, W.dtype), _random_orthonormal(xp, n, r, rng, W.dtype)
        rand.append(backend.to_float(xp.linalg.norm(Q.T @ W @ P)))                  # ‖(r, m)(m, n)(n, r)‖_F
    W_norm, delta_norm = backend.to_float(xp.linalg.norm(W)), backend.to_float(xp.linalg.norm(dW))
    return {"r": r, "delta_norm": delta_norm, "W_in_delta": in_delta, "W_top": top,
            "W_random": float(_host_np.mean(rand)), "W_random_expected": r * W_norm / (m * n) ** 0.5,
            "W_norm": W_norm, "factor": delta_norm / max(in_delta, 1e-300)}


