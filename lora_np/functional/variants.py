"""Forward/backward pairs for two LoRA variants from PEFT's feature set: DoRA and VeRA.

Same notation as ``dense``: ``G = dL/dy`` is the upstream gradient, ``N`` the number of rows
(leading axes are flattened for the weight gradients), ``s`` the adapter scale.
A and B follow the LoRA layout: ``A: (r, d_in)``, ``B: (d_out, r)``, W0 ``(d_out, d_in)``.
(PiSSA needs no pair of its own: it is LoRA with a different initialisation.)
"""
from __future__ import annotations

from ..backend import get_array_module
from .dense import _mm, _rows


def row_norms(V):
    """‖V_i‖₂ for every row i of a (d_out, d_in) matrix: PEFT's ``weight.norm(dim=1)``. -> (d_out,)"""
    xp = get_array_module(V)
    return xp.sqrt((V * V).sum(axis=1))            # (d_out,)


# --------------------------------------------------------------------------- DoRA

def dora_linear_forward(x, W0, b0, A, B, s, m):
    """DoRA (Liu et al., 2024): split the weight into a direction and a magnitude.

        V = W0 + s · B A            (d_out, d_in)   the LoRA-updated weight: the direction
        n = ‖V‖ per row             (d_out,)        n_i = √(Σ_j V_ij²), PEFT's norm(dim=1)
        y = (x Vᵀ) ⊙ (m / n) + b0   (..., d_out)    m: (d_out,) the trainable magnitude

    With m initialised to ‖W0‖ per row and B = 0, V = W0 and m / n = 1 exactly: DoRA starts
    at the base model. ``z = x Vᵀ`` is taken as ``x W0ᵀ + s (x Aᵀ) Bᵀ`` (PEFT's order; two thin
    matmuls for the adapter). V is still formed once, for its row norms: O(d_out · d_in) memory
    that plain LoRA does not need. A zero row of V (n_i = 0) gives a division by zero.
    """
    u = _mm(x, A.T)                                # (..., r)     the rank-r bottleneck
    z = _mm(x, W0.T) + s * _mm(u, B.T)             # (..., d_out) x Vᵀ
    V = W0 + s * (B @ A)                           # (d_out, d_in)
    n = row_norms(V)                               # (d_out,)
    c = m / n                                      # (d_out,)     the per-row rescaling
    y = z * c                                      # (..., d_out)
    if b0 is not None:
        y = y + b0                                 # (..., d_out)
    return y, (x, W0, A, B, s, m, u, z, V, n, c)


def dora_linear_backward(dy, cache, exact=True):
    """Gradients of DoRA with respect to x, A, B and m (W0 and b0 are frozen).

    Write G = dL/dy, c = m / n and g_c = Σ_rows G ⊙ z  (d_out,), the gradient reaching c.

    * Through ``y = z ⊙ c``:   dz = G ⊙ c,   dc = g_c.
    * Through ``c = m / n``:   dm = g_c / n,   dn = −g_c ⊙ m / n².
    * Through ``n_i = ‖V_i‖``: ∂n_i/∂V_i = V_i / n_i, so the norm adds (dn_i / n_i) V_i to row i.
    * Through ``z = x Vᵀ``:    dV gets dzᵀ x, and dx = dz V = dz W0 + s (dz B) A.

      exact=True :  dV = dzᵀ x − ((g_c ⊙ m / n²) / n) ⊙ V     (the second term row by row)
      exact=False:  dV = dzᵀ x                                 (the paper's gradient, §4.3)

    The paper (section 4.3) treats n = ‖V‖ as a constant in the backward pass — in PyTorch it is
    ``detach()``-ed — so that the graph of the norm need not be kept: this saves memory and,
    the authors report, costs no accuracy. It drops exactly the norm term, which is why dm and dx
    are identical in both modes (neither passes through n's dependence on V) while dA and dB differ.
    Then ``V = W0 + s B A`` gives  dA = s Bᵀ dV  and  dB = s dV Aᵀ.

    dV (d_out × d_in, the size of a full weight gradient) is never formed:
    with q = −(g_c ⊙ m / n²) / n  (d_out,) (zero when ``exact=False``),
        dA = s (dz B)ᵀ x + s (q ⊙ B)ᵀ V,     dB = s dzᵀ u + s q ⊙ (V Aᵀ),     u = x Aᵀ.
    """
    x, W0, A, B, s, m, u, z, V, n, c = cache
    dz = dy * c                                    # (..., d_out)
    g_c = _rows(dy * z).sum(axis=0)                # (d_out,)     dL/dc
    dm = g_c / n                                   # (d_out,)
    gB = _mm(dz, B)                                # (..., r)     dz B
    dx = _mm(dz, W0) + s * _mm(gB, A)              # (..., d_in)  dz V, never forming V's product
    dA = s * (_rows(gB).T @ _rows(x))              # (r, d_in)    s (dz B)ᵀ x
    dB = s * (_rows(dz).T @ _rows(u))              # (d_out, r)   s dzᵀ u
    if exact:
        q = -(g_c * m / (n * n)) / n               # (d_out,)     dn / n, the norm's share of dV
        dA = dA + s * ((B * q[:, None]).T @ V)     # (r, d_in)    s Bᵀ diag(q) V
        dB = dB + s * (q[:, None] * (V @ A.T))     # (d_out, r)   s diag(q) V Aᵀ
    return dx, dA, dB, dm


# --------------------------------------------------------------------------- VeRA

def vera_linear_forward(x, W0, b0, A, B, lambda_d, lambda_b, s=1.0):
    """VeRA (Kopiczko et al., 2024): frozen random A, B shared by all layers, two trainable vectors.

        ΔW = s · diag(λ_b) B diag(λ_d) A                     (d_out, d_in)
        y  = x W0ᵀ + b0 + s · (((x Aᵀ) ⊙ λ_d) Bᵀ) ⊙ λ_b        (..., d_out)

    A: (r, d_in) and B: (d_out, r) are this layer's slices ``A[:, :d_in]``, ``B[:d_out, :]`` of
    one shared pair; λ_d: (r,), λ_b: (d_out,). VeRA has no alpha: ``s`` is 1 (the strength knob).
    """
    u = _mm(x, A.T)                                # (..., r)     the shared random projection
    h = u * lambda_d                               # (..., r)     scaled per rank component
    v = _mm(h, B.T)                                # (..., d_out)
    y = _mm(x, W0.T) + s * (v * lambda_b)          # (..., d_out)
    if b0 is not None:
        y = y + b0                                 # (..., d_out)
    return y, (x, W0, A, B, lambda_d, lambda_b, s, u, v)


def vera_linear_backward(dy, cache):
    """With G = dL/dy, u = x Aᵀ, h = u ⊙ λ_d, v = h Bᵀ:

        dλ_b = s Σ_rows G ⊙ v,    dv = s G ⊙ λ_b,    dh = dv B,
        dλ_d = Σ_rows dh ⊙ u,     du = dh ⊙ λ_d,     dx = G W0 + du A.

    A and B are frozen (and shared), so their gradients are never formed. Returns dx, dλ_d, dλ_b.
    """
    x, W0, A, B, lambda_d, lambda_b, s, u, v = cache
    d_lambda_b = s * _rows(dy * v).sum(axis=0)     # (d_out,)
    dv = s * (dy * lambda_b)                       # (..., d_out)
    dh = _mm(dv, B)                                # (..., r)
    d_lambda_d = _rows(dh * u).sum(axis=0)         # (r,)
    dx = _mm(dy, W0) + _mm(dh * lambda_d, A)       # (..., d_in)
    return dx, d_lambda_d, d_lambda_b
