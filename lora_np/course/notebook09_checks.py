"""Notebook 09's your-turn checker: merging LoRA into a GPT-2 ``Conv1D`` weight, stored (d_in, d_out).

:func:`check_merge_conv1d` runs a learner's ``merge_conv1d(W0, A, B, s)`` in float64 on a non-square and a
square layer, compares it with ``W0 + LoRAConv1D.delta_weight()`` and with the unmerged layer's output,
and names the mistake (the transpose, s, B A's order, the sign, ...) without showing the answer. It never
raises on the learner's code; a scaffold that raises ``NotImplementedError`` is "not written yet". The
exercises live in :mod:`lora_np.course.notebook09`.

The merge: a Conv1D computes y = x W0 + b; the adapter adds s (x Aᵀ) Bᵀ = x · s (B A)ᵀ, so the merged
weight in the checkpoint's layout is W = W0 + s (B A)ᵀ, which is what PEFT's ``fan_in_fan_out=True`` asks for.
"""
from __future__ import annotations

import inspect

import numpy as np  # noqa: TID251  host-side by design: the learner gets plain float64 NumPy arrays

from .. import backend, validate
from ..gradcheck import rel_error_tensor
from ..nn import Conv1D, LoRAConv1D
from .feedback import Feedback

__all__ = ["merge_conv1d", "check_merge_conv1d", "merge_answer", "MERGE_SOLUTION"]

TOL = 1e-10


# ------------------------------------------------------------------ the reference merge

def merge_conv1d(W0, A, B, s):
    """W = W0 + s (B A)ᵀ.   W0: (d_in, d_out)  A: (r, d_in)  B: (d_out, r)  ->  W: (d_in, d_out)."""
    return W0 + s * (B @ A).T            # (d_in, d_out): ΔW = s B A is (d_out, d_in), the checkpoint's is not


MERGE_SOLUTION = inspect.getsource(merge_conv1d)

CASES = (                                 # (what, d_in, d_out, r, s)
    ("a non-square layer (d_in 6 → d_out 10, like c_attn's d → 3d), r = 2, s = 1.5", 6, 10, 2, 1.5),
    ("a square layer (d_in = d_out = 8, like c_proj), r = 3, s = 0.5", 8, 8, 3, 0.5),
)


def _library(W0, A, B, s, x):
    """W0 + LoRAConv1D.delta_weight() and the unmerged layer's output on x, in float64 (host)."""
    with backend.use_backend("numpy", dtype="float64"):
        base = Conv1D(*W0.shape, rng=0)
        base.weight.data = W0.copy()                                             # (d_in, d_out)
        layer = LoRAConv1D(base, r=A.shape[0], alpha=s * A.shape[0], rng=0)
        layer.lora_A.data, layer.lora_B.data = A.copy(), B.copy()                # (r, d_in), (d_out, r)
        merged = W0 + layer.delta_weight()                                       # (d_in, d_out)
        y = layer(x)                                                             # (N, d_out) unmerged
    return merged, y


def _close(a, b) -> bool:
    return a.shape == b.shape and rel_error_tensor(a, b) < TOL


def _mistake(got, W0, A, B, s):
    """The name of the slip that explains ``got``, or None."""
    BA = B @ A                                                                   # (d_out, d_in)
    slips = [
        (W0 + s * BA if BA.shape == W0.shape else None,
         "not transposed: s·B·A is (d_out, d_in), Linear's layout; the checkpoint stores (d_in, d_out), "
         "so add the transpose of the update"),
        (W0 + BA.T, "the scale s is missing: the adapter adds s times the product, not the product alone"),
        (s * BA.T, "that is ΔW alone; the merged weight is W0 plus it"),
        (W0 - s * BA.T, "the sign is wrong: merging adds the update to W0"),
        (W0, "W0 unchanged: the update is missing"),
        (W0 + BA.T / s if s else None, "s divides instead of multiplying: ΔW = s·(B A)ᵀ"),
    ]
    return next((why for value, why in slips if value is not None and _close(got, value)), None)


def check_merge_conv1d(fn, seed: int = 0) -> Feedback:
    """Check a learner's ``merge_conv1d(W0, A, B, s)`` on a non-square and a square layer, in float64.

    One ✓/✗ line per layer: ✓ when the result equals W0 + ``LoRAConv1D.delta_weight()`` (relative error
    below 1e-10) and the merged layer x W gives the unmerged adapter's output x W0 + s (x Aᵀ) Bᵀ. A ✗
    names the mistake (the transpose, s, B A's order, ...) without showing the answer. Raises only
    when ``fn`` is not a function.
    """
    if not callable(fn):
        raise ValueError(validate.message("fn", "a function (pass merge_conv1d, not its result)", fn,
                                          where="check_merge_conv1d"))
    seed = validate.integer(seed, "seed", where="check_merge_conv1d", low=0)
    g = np.random.default_rng(seed)
    fb = Feedback()
    for what, d_in, d_out, r, s in CASES:
        W0 = g.standard_normal((d_in, d_out))                                    # (d_in, d_out)
        A, B = g.standard_normal((r, d_in)), g.standard_normal((d_out, r))       # (r, d_in), (d_out, r)
        x = g.standard_normal((4, d_in))                                         # (N, d_in)
        want, y_unmerged = _library(W0, A, B, s, x)
        try:
            got = fn(W0.copy(), A.copy(), B.copy(), s)
        except NotImplementedError:
            fb.fail("merge_conv1d: not written yet (it raises NotImplementedError): fill in the TODO and run "
                    "its cell")
            return fb
        except Exception as err:                                                # the learner's code
            first = (str(err).splitlines() or [""])[0].strip()
            hint = ""
            if isinstance(err, ValueError) and f"({r},{r})" in first.replace(" ", ""):
                hint = (" — an (r, r) matrix is A B; the update is the product the other way round, "
                        "(d_out, r)(r, d_in)")
            elif isinstance(err, ValueError) and "broadcast" in first:
                hint = (" — the update's shape is not W0's (d_in, d_out): a product of B (d_out, r) and "
                        "A (r, d_in) is (d_out, d_in), Linear's layout, not the checkpoint's")
            elif isinstance(err, ValueError) and ("matmul" in first or "align" in first):
                hint = (" — the inner sizes of a product must agree: A is (r, d_in) and B is (d_out, r), so "
                        "only one order of the two factors meets at r")
            fb.fail(f"{what}: merge_conv1d raised {type(err).__name__}: {first}{hint}")
            continue
        if got is None:
            fb.fail(f"{what}: merge_conv1d returned None: end it with `return W`")
            continue
        if isinstance(got, (tuple, list)):
            fb.fail(f"{what}: merge_conv1d returned a {type(got).__name__} of {len(got)}; return one "
                    "array, W")
            continue
        try:
            got = np.asarray(backend.to_numpy(got), dtype=np.float64)
        except (TypeError, ValueError):
            fb.fail(f"{what}: merge_conv1d returned a {type(got).__name__}; return one array, W")
            continue
        if got.shape != want.shape:
            if got.shape == want.shape[::-1]:
                fb.fail(f"{what}: W has shape {got.shape}, Linear's (d_out, d_in); the checkpoint stores "
                        f"Conv1D weights as (d_in, d_out) = {want.shape}, W0's shape: transpose the update")
            elif got.shape == (r, r):
                fb.fail(f"{what}: W has shape {got.shape}, (r, r): that is A B; the update is the product "
                        "the other way round, (d_out, r)(r, d_in)")
            else:
                fb.fail(f"{what}: W has shape {got.shape}; the merged weight has W0's shape {want.shape}")
            continue
        why = _mistake(got, W0, A, B, s)
        err = rel_error_tensor(got, want)
        err_y = rel_error_tensor(x @ got, y_unmerged)                            # the bias is 0 here
        if why is None and err < TOL and err_y < TOL:
            fb.ok(f"{what}: W matches W0 + LoRAConv1D.delta_weight() (error {err:.0e}), and x W gives the "
                  f"unmerged adapter's output ({err_y:.0e})")
            continue
        fb.fail(f"{what}: W is wrong (error {err:.2g} against W0 + LoRAConv1D.delta_weight()) — "
                + (why or "check each factor of the update: its scale, the order of the product, its layout"))
    if fb.passed:
        fb.note("error: rel_error_tensor, max |a − b| / max(|a| + |b|) over the matrix. The square layer is "
                "there because a missing transpose keeps the shape right there, and only the values tell")
    return fb


def merge_answer(fn) -> tuple[bool, str]:
    if not callable(fn):
        return False, "pass your function itself: merge_conv1d, not merge_conv1d(...)"
    fb = check_merge_conv1d(fn)
    return fb.passed, ("right: " if fb.passed else "not yet: ") + "one line per layer below\n" + str(fb)
