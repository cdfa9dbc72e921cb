"""Low-rank matrices: why ΔW = B A is cheap, and how good the best rank-r approximation is.

A matrix ``M`` of shape ``(m, n)`` holds ``m·n`` numbers. A product ``B @ A`` with
``B: (m, r)`` and ``A: (r, n)`` has the same shape but is described by only ``r·(m + n)``
numbers, and its rank is at most ``r`` (every column of ``B A`` is a combination of the ``r``
columns of ``B``). LoRA writes the weight update this way: ``ΔW = s · B A`` with
``B: (d_out, r)`` and ``A: (r, d_in)``.

The *best* rank-r approximation of a given ``M`` comes from its singular value decomposition
``M = U Σ Vᵀ`` (singular values σ₁ ≥ σ₂ ≥ ... ≥ 0): keep the ``r`` largest,

    M_r = U_r Σ_r V_rᵀ,       ‖M − M_r‖_F = √(σ_{r+1}² + σ_{r+2}² + ...)

and no matrix of rank ≤ r is closer in the Frobenius norm (Eckart–Young–Mirsky, 1936).

>>> M = structured_matrix(40, 60, seed=0)
>>> B, A = low_rank_approx(M, r=5)             # B: (40, 5), A: (5, 60)
>>> lowrank_param_count(40, 60, 5)             # 5 · (40 + 60), against 40 · 60 = 2400
500
"""
from __future__ import annotations

import numpy as _host_np  # the example matrix is generated on the host, then moved to the device

from .. import backend
from ..validate import integer, number, positive_int


def lowrank_param_count(m: int, n: int, r: int) -> int:
    """Numbers stored by the factors ``B: (m, r)`` and ``A: (r, n)``: r·(m + n).

    It is smaller than m·n (the full matrix) exactly when r < m·n / (m + n), the break-even rank
    (:func:`lora_np.nn.break_even_rank`).
    """
    where = "lowrank_param_count"
    return positive_int(r, "r", where) * (positive_int(m, "m", where) + positive_int(n, "n", where))


def _check_matrix(M, where: str):
    if not backend.is_array(M):
        raise TypeError(f"{where}: M must be an array (use lora_np.backend.asarray), got {type(M).__name__}")
    if M.ndim != 2 or 0 in M.shape:
        raise ValueError(f"{where}: M must be a non-empty 2-D matrix (m, n), got shape {tuple(M.shape)}")


def low_rank_approx(M, r: int):
    """The best rank-r approximation of ``M``, as factors ``(B, A)`` with ``B @ A ≈ M``.

    Truncated SVD: ``M = U Σ Vᵀ``  ⇒  ``B = U_r Σ_r`` (m, r),  ``A = V_rᵀ`` (r, n), so that
    ``B A = U_r Σ_r V_rᵀ``. The rows of ``A`` are orthonormal; B carries the singular values.
    ``r`` must satisfy 1 ≤ r ≤ min(m, n); at r = min(m, n) the product reproduces ``M`` (up to rounding).
    """
    _check_matrix(M, "low_rank_approx")
    m, n = M.shape
    r = integer(r, "r", f"low_rank_approx (M: {m}×{n}, min(m, n) = {min(m, n)})", low=1, high=min(m, n))
    xp = backend.get_array_module(M)
    U, S, Vt = xp.linalg.svd(M, full_matrices=False)  # (m, k), (k,), (k, n)  with k = min(m, n)
    B = U[:, :r] * S[:r]                              # (m, r)  the columns of U_r scaled by σ₁..σ_r
    A = Vt[:r]                                        # (r, n)  the top r right singular vectors
    return B, A


def singular_values(M):
    """σ₁ ≥ σ₂ ≥ ... ≥ σ_k of ``M`` (k = min(m, n)), an array on M's device."""
    _check_matrix(M, "singular_values")
    xp = backend.get_array_module(M)
    return xp.linalg.svd(M, compute_uv=False)         # (k,)


def relative_error(M, approx) -> float:
    """‖M − approx‖_F / ‖M‖_F, a Python float."""
    xp = backend.get_array_module(M)
    return backend.to_float(xp.linalg.norm(M - approx) / xp.linalg.norm(M))


def lowrank_error_curve(M):
    """The relative error of the best rank-r approximation for every r = 1..min(m, n).

    From one SVD (Eckart–Young): ``err(r) = √(Σ_{i>r} σ_i²) / √(Σ_i σ_i²)``.
    Returns host arrays ``(ranks, errors)``, both of length min(m, n), for plotting.
    """
    S = backend.to_numpy(singular_values(M)).astype(_host_np.float64)   # (k,)
    tail = _host_np.cumsum((S ** 2)[::-1])[::-1]                         # (k,)  tail[i] = Σ_{j≥i} σ_j²
    errors = _host_np.sqrt(_host_np.append(tail[1:], 0.0) / tail[0])     # (k,)  err(r) for r = 1..k
    return _host_np.arange(1, len(S) + 1), errors


def structured_matrix(m: int = 40, n: int = 60, noise: float = 0.05, seed: int = 0, dtype=None):
    """A smooth, image-like ``(m, n)`` matrix plus Gaussian noise, on the current backend.

    The smooth part is a wave, a ramp and a round blob (each separable, so rank 1 or 2) plus a ring
    (not separable: its singular values decay gradually). The spectrum therefore falls fast, then
    slowly, then hits the floor set by the noise (std ``noise``), which has full rank.
    """
    m, n = positive_int(m, "m", "structured_matrix"), positive_int(n, "n", "structured_matrix")
    noise = number(noise, "noise", "structured_matrix", low=0)
    y = _host_np.linspace(0.0, 1.0, m)[:, None]                          # (m, 1)  row coordinate
    x = _host_np.linspace(0.0, 1.0, n)[None, :]                          # (1, n)  column coordinate
    smooth = (_host_np.sin(2 * _host_np.pi * x) * _host_np.cos(_host_np.pi * y)            # (m, n)
              + 0.6 * y * x ** 2                                                           # (m, n)
              + 1.2 * _host_np.exp(-((x - 0.65) ** 2 + (y - 0.4) ** 2) / 0.02)             # (m, n)
              + _host_np.exp(-(_host_np.hypot(x - 0.3, y - 0.6) - 0.2) ** 2 / 0.004))      # (m, n)
    rng = _host_np.random.default_rng(seed)
    return backend.asarray(smooth + noise * rng.standard_normal((m, n)), dtype=dtype)     # (m, n)
