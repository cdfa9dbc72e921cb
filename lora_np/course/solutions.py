"""Reference solutions: the LoRA pair a learner writes in notebook 02, and ``show_solution``.

The pair is :func:`lora_np.functional.lora_linear_forward` / ``lora_linear_backward`` without
dropout and without extra leading axes: plain NumPy on ``x: (N, d_in)``, written to be read.
Conventions (loralib, PEFT): ``A`` is ``(r, d_in)``, ``B`` is ``(d_out, r)``, ``s = alpha / r``.
"""
from __future__ import annotations

import inspect

from .. import validate
from .exercises import EXERCISES


def lora_forward(x, W0, b0, A, B, s):
    """y = x W0ᵀ + b0 + s · (x Aᵀ) Bᵀ, without ever forming ΔW = B A.

    x: (N, d_in)   W0: (d_out, d_in) frozen   b0: (d_out,) frozen   A: (r, d_in)   B: (d_out, r)
    s: the scale alpha / r.  Two thin products through the rank-r bottleneck u = x Aᵀ cost
    O(N r (d_in + d_out)) instead of the O(d_out d_in) of forming B A.
    Returns y: (N, d_out) and the cache that ``lora_backward`` needs.
    """
    u = x @ A.T                          # (N, r)      the rank-r bottleneck
    y = x @ W0.T + b0 + s * (u @ B.T)    # (N, d_out)  frozen path + bias + scaled adapter path
    return y, (x, W0, A, B, s, u)


def lora_backward(dy, cache):
    """With G = dL/dy: (N, d_out) and u = x Aᵀ, so that y = x W0ᵀ + b0 + s u Bᵀ:

        dB = s Gᵀ u              (∂L/∂B_ij = s Σ_n G_ni u_nj)
        dA = s (G B)ᵀ x          (the gradient at u is s G B, and u = x Aᵀ)
        dx = G W0 + s (G B) A    (two paths into x: the frozen weight and the adapter)

    Returns (dx, dA, dB): each has the shape of its variable. No dW0 and no db0: W0 and b0 are frozen.
    """
    x, W0, A, B, s, u = cache
    gu = s * (dy @ B)                    # (N, r)      s G B, the gradient at the bottleneck u
    dA = gu.T @ x                        # (r, d_in)
    dB = s * (dy.T @ u)                  # (d_out, r)
    dx = dy @ W0 + gu @ A                # (N, d_in)   frozen path + adapter path
    return dx, dA, dB




def show_solution(name: str) -> None:
    """Print the worked solution of ``name``: ``"lora_pair"`` (the code of the two reference
    functions) or an exercise of :data:`~lora_np.course.exercises.EXERCISES`.

    Printing works the same in JupyterLab, in a terminal and in an executed notebook.
    """
    name = validate.choice(name, "name", ("lora_pair", *EXERCISES), where="show_solution")
    if name == "lora_pair":
        print("# Reference solution (lora_np/course/solutions.py)\n")
        print(inspect.getsource(lora_forward))
        print(inspect.getsource(lora_backward), end="")
        return
    ex = EXERCISES[name]
    print(f"{name}: {ex.prompt}\n\n{ex.solution}")
