"""``check_lora_pair``: the checker of the LoRA pair a learner writes in notebook 02.

The learner's ``lora_forward(x, W0, b0, A, B, s) -> (y, cache)`` and ``lora_backward(dy, cache) ->
(dx, dA, dB)`` run on a small random layer in float64 (N = 5, d_in = 4, d_out = 3, r = 2, B ≠ 0 and
s = 1.5, so that a missing s shows). Checked, one line each:

* y against the library's :func:`~lora_np.functional.lora_linear_forward`;
* dx, dA, dB against :func:`~lora_np.functional.lora_linear_backward` AND against central differences
  of the learner's OWN forward, L = Σ y ⊙ G: a gradient that matches the differences but not the
  library comes from a wrong forward; one that matches neither comes from a wrong backward.

Each ✗ says by how much (``rel_error``, CS231n's definition) and names the likely mistake
(:mod:`lora_np.course.diagnose`). Nothing the learner's code does makes the checker raise: a
scaffold that still raises ``NotImplementedError`` is reported as "not written yet".
"""
from __future__ import annotations

import itertools
import re

import numpy as np  # host-side by design: the learner's functions get plain float64 NumPy arrays

from .. import functional as F
from .. import validate
from ..gradcheck import numerical_gradient, rel_error, rel_error_tensor
from .diagnose import Problem, forward_mistake, gradient_mistake, shape_mistake, transposed_operands
from .feedback import Feedback

TOL = 1e-7                         # against the library: every operation below 1e-7 (DESIGN.md)
NUM_TOL = 1e-6                     # against central differences, relative to the tensor's largest entry
GRADS = ("dx", "dA", "dB")
SHAPES_FORWARD = "x (N, d_in), W0 (d_out, d_in), A (r, d_in), B (d_out, r): a weight enters as x @ W0.T"
SHAPES_BACKWARD = ("G (N, d_out), x (N, d_in), u (N, r), W0 (d_out, d_in), A (r, d_in), B (d_out, r): "
                   "write the shape under each factor")


def _e(err: float) -> str:
    return "0" if err == 0 else f"{err:.0e}"


def _call(fn, args):
    """(result, None) or (None, the exception): the learner's code never makes the checker raise."""
    try:
        return fn(*args), None
    except Exception as err:                           # any mistake in the learner's code is feedback
        return None, err


def _about_shapes(err: Exception) -> bool:
    """A product or a sum whose shapes do not fit (NumPy's ValueError from matmul or broadcasting)."""
    return isinstance(err, ValueError) and any(w in str(err) for w in ("matmul", "broadcast", "shapes"))


def _raised(what: str, err: Exception, hint: str | None) -> str:
    if isinstance(err, NotImplementedError):
        return f"{what}: not written yet (it raises NotImplementedError): fill in the TODOs and run its cell"
    first = re.sub(r", with gufunc signature \S+", "", (str(err).splitlines() or [""])[0])
    return f"{what} raised {type(err).__name__}: {first}" + (f" — {hint}" if hint else "")


def _unpack(result, names: tuple, what: str):
    """(values, None) or (None, why), for a function that must return ``names``."""
    want = f"return {', '.join(names)}"
    if result is None:
        return None, f"{what} returned None: end it with `{want}`"
    if not isinstance(result, (tuple, list)):
        kind = type(result).__name__
        return None, f"{what} returned one {kind}; it must return {len(names)} values: `{want}`"
    if len(result) != len(names):
        return None, f"{what} returned {len(result)} values; it must return {len(names)}: `{want}`"
    return tuple(result), None


def _array(value, name: str):
    """(float64 array, None) or (None, why)."""
    if value is None:
        return None, f"{name} is None: compute it and return it"
    try:
        a = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return None, f"{name} is of type {type(value).__name__}, not an array of numbers"
    if not np.all(np.isfinite(a)):
        return None, f"{name} contains NaN or inf"
    return a, None


def _numerical(forward, p: Problem):
    """{name: central-difference gradient of L = Σ forward(...)[0] ⊙ G}, or None if forward fails."""
    x, W0, b0, A, B, s = p.args()

    def loss():
        y = forward(x.copy(), W0.copy(), b0.copy(), A.copy(), B.copy(), s)[0]
        return float(np.sum(np.asarray(y, dtype=np.float64) * p.G))
    try:
        return {"dx": numerical_gradient(loss, x), "dA": numerical_gradient(loss, A),
                "dB": numerical_gradient(loss, B)}
    except Exception:                                  # e.g. a forward that depends on call order
        return None


def _check_forward(forward, p: Problem, y_ref, seed: int, fb: Feedback):
    """Check y; returns (cache, whether y has the right shape), or None when there is no cache."""
    result, err = _call(forward, p.args())
    if err is not None:
        fb.fail(_raised("lora_forward", err, (transposed_operands(forward, seed) or SHAPES_FORWARD)
                        if _about_shapes(err) else None))
        return None
    out, why = _unpack(result, ("y", "cache"), "lora_forward")
    if why:
        fb.fail(why)
        return None
    y, why = _array(out[0], "y")
    if why:
        fb.fail(why)
        return None
    if y.shape != y_ref.shape:
        fb.fail(shape_mistake("y", y, y_ref))
        return out[1], False
    err = rel_error(y, y_ref)
    if err < TOL:
        fb.ok(f"y matches (relative error {_e(err)})")
    else:
        fb.fail(f"y: relative error {err:.2g} — {forward_mistake(y, p, y_ref)}")
    return out[1], True


def _order(grads, refs, fb: Feedback):
    """Put gradients returned in another order (recognised by their shapes) back as (dx, dA, dB)."""
    expected = [refs[name].shape for name in GRADS]
    if [g.shape for g in grads] == expected:
        return grads
    for perm in itertools.permutations(range(3)):
        if perm != (0, 1, 2) and all(grads[i].shape == expected[k] for k, i in enumerate(perm)):
            returned = ", ".join(GRADS[perm.index(j)] for j in range(3))
            fb.fail(f"order: lora_backward returned ({returned}); it must return dx, dA, dB — the "
                    f"input's gradient first, then A's, then B's (checked below in that order)")
            return [grads[i] for i in perm]
    return grads


def _check_gradients(grads, refs, numerical, p: Problem, fb: Feedback):
    for name, g in zip(GRADS, grads, strict=True):
        right = refs[name]
        if g.shape != right.shape:
            fb.fail(shape_mistake(name, g, right))
            continue
        err = rel_error(g, right)
        err_num = rel_error_tensor(g, numerical[name]) if numerical is not None else None
        if err < TOL:
            if err_num is None:
                fb.ok(f"{name} matches (relative error {_e(err)})")
            elif err_num < NUM_TOL:
                fb.ok(f"{name} matches (relative error {_e(err)}; central differences of your "
                      f"lora_forward agree to {_e(err_num)})")
            else:
                fb.ok(f"{name} matches (relative error {_e(err)}); it is not the gradient of your "
                      f"lora_forward, whose y is wrong: fix y, and this stays right")
            continue
        why = gradient_mistake(name, g, p, right)
        if err_num is not None and err_num < NUM_TOL:
            why += ("; yet it is the gradient of your own lora_forward (central differences agree), "
                    "so the mistake is in y: fix lora_forward first")
        fb.fail(f"{name}: relative error {err:.2g} — {why}")


def check_lora_pair(forward, backward, seed: int = 0) -> Feedback:
    """Check a learner's ``forward(x, W0, b0, A, B, s) -> (y, cache)`` and ``backward(dy, cache) ->
    (dx, dA, dB)`` against the library and against central differences of ``forward`` itself.

    ``seed`` draws the random layer. Returns a :class:`~lora_np.course.feedback.Feedback`: ``passed``
    and one ✓/✗ line per check (y, dx, dA, dB), each ✗ with its relative error and a hint.
    Raises only when ``forward`` or ``backward`` is not a function at all.
    """
    for arg, fn in (("forward", forward), ("backward", backward)):
        if not callable(fn):
            raise ValueError(validate.message(arg, "a function (pass lora_forward, not lora_forward(...))",
                                              fn, where="check_lora_pair"))
    seed = validate.integer(seed, "seed", where="check_lora_pair", low=0)
    p = Problem.random(seed)
    y_ref, cache_ref = F.lora_linear_forward(*p.args())
    refs = dict(zip(GRADS, F.lora_linear_backward(p.G.copy(), cache_ref), strict=True))
    fb = Feedback()
    checked = _check_forward(forward, p, y_ref, seed, fb)
    if checked is None:
        fb.note("lora_backward is checked once lora_forward returns (y, cache)")
        return fb
    cache, y_shape_ok = checked
    result, err = _call(backward, (p.G.copy(), cache))
    if err is not None:
        fb.fail(_raised("lora_backward", err, SHAPES_BACKWARD if _about_shapes(err) else None))
        return fb
    values, why = _unpack(result, GRADS, "lora_backward")
    if why:
        fb.fail(why)
        return fb
    grads = []
    for name, value in zip(GRADS, values, strict=True):
        g, why = _array(value, name)
        if why:
            fb.fail(why)
            return fb
        grads.append(g)
    grads = _order(grads, refs, fb)
    _check_gradients(grads, refs, _numerical(forward, p) if y_shape_ok else None, p, fb)
    if fb.passed:
        fb.note("your pair agrees with lora_np.functional's lora_linear_forward/_backward and with "
                "central differences of your own forward")
    return fb
