"""Notebook 06's checkers: the learner's subspace similarity φ (:func:`check_phi`) and the code exercise
Li et al.'s d_int90 (:func:`li_d_int90`, checked by :func:`check_li_answer`). Nothing the learner's code
does makes them raise; a scaffold that raises ``NotImplementedError`` is reported as "not written yet".
The exercises live in :mod:`lora_np.course.notebook06`.
"""
from __future__ import annotations

import math
import re

from .. import backend, validate
from ..backend import get_array_module
from ..experiments.intrinsic import IntrinsicSweep, d_int90
from ..experiments.update_geometry import subspace_similarity
from .feedback import Feedback

# ------------------------------------------------------------------ the checker of a learner's φ

N_IN = 16                          # the inputs both adapters read (n)
SHARED = 3                         # the adapters share 3 input directions, so φ is far from chance
MATCH = 1e-6                       # "the same value": relative to 1, the scale of φ
CASES = {(8, 4): ((1, 1), (2, 3), (3, 1), (5, 4), (8, 2), (8, 4)),     # ranks 8 and 4
         (4, 4): ((1, 1), (2, 3), (3, 2), (4, 4))}                     # equal ranks: more slips still run
SHAPES = ("U1[:, :i] must be (n, i) and U2[:, :j] (n, j), so that U1[:, :i].T @ U2[:, :j] is (i, j): "
          "U = Vt.T, the right-singular vectors as columns")


def _adapters(r1: int, r2: int, seed: int):
    """Two host float64 adapters A1: (r1, n), A2: (r2, n) that share a few input directions."""
    rng = backend.Rng(seed).host                                           # NumPy's generator, on the host
    shared = rng.standard_normal((SHARED, N_IN))                           # (3, n)
    A1 = rng.standard_normal((r1, SHARED)) @ shared + 0.5 * rng.standard_normal((r1, N_IN))   # (r1, n)
    A2 = rng.standard_normal((r2, SHARED)) @ shared + 0.5 * rng.standard_normal((r2, N_IN))   # (r2, n)
    return A1, A2


def _sq(M) -> float:
    return float((M ** 2).sum())


def _variants(A1, A2, i: int, j: int) -> dict:
    """{mistake: the value it gives, or None where it cannot run (its shapes do not fit)}."""
    xp = get_array_module(A1, A2)
    L1, _, Vt1 = xp.linalg.svd(A1, full_matrices=False)                   # L: (r, r), Vt: (r, n)
    L2, _, Vt2 = xp.linalg.svd(A2, full_matrices=False)
    r1, r2 = A1.shape[0], A2.shape[0]
    U1, U2 = Vt1.T, Vt2.T                                                  # (n, r1), (n, r2)
    M = U1[:, :i].T @ U2[:, :j]                                            # (i, j) the right overlap
    k = min(i, j)
    R1 = A1 / xp.linalg.norm(A1, axis=1, keepdims=True)                    # A's rows, made unit length
    R2 = A2 / xp.linalg.norm(A2, axis=1, keepdims=True)
    same = r1 == r2
    return {
        "left": _sq(L1[:, :i].T @ L2[:, :j]) / k if same else None,
        "cut": _sq(Vt1[:, :i].T @ Vt2[:, :j]) / k if same else None,
        "no_square": math.sqrt(_sq(M)) / k,
        "no_divide": _sq(M),
        "max": _sq(M) / max(i, j),
        "spectral": float(xp.linalg.norm(M, 2)) ** 2 / k,
        "no_svd": _sq(A1[:i] @ A2[:j].T) / k,
        "no_svd_unit": _sq(R1[:i] @ R2[:j].T) / k,
        "swapped": _sq(U1[:, :j].T @ U2[:, :i]) / k if j <= r1 and i <= r2 else None,
        "from_zero": (_sq(U1[:, :i + 1].T @ U2[:, :j + 1]) / min(i + 1, j + 1)
                      if i < r1 and j < r2 else None),
    }


MISTAKES = {
    "left": ("it uses the LEFT singular vectors (the U of np.linalg.svd, (r, r)): they combine A's rows, "
             "they are not directions in the n-dimensional input space; φ compares the RIGHT ones, the rows "
             "of Vt, as columns: U = Vt.T, (n, r)"),
    "cut": ("it keeps the first i columns of Vt, i.e. the first i coordinates of every direction; the "
            "directions are Vt's rows: take U = Vt.T, (n, r), then its first i columns"),
    "no_square": "the Frobenius norm is not squared: φ uses ‖U1ᵢᵀ U2ⱼ‖²_F, the sum of the squared entries",
    "no_divide": ("it is not divided by min(i, j): ‖U1ᵢᵀ U2ⱼ‖²_F can reach min(i, j), and the division "
                  "puts φ in [0, 1]"),
    "max": "it is divided by max(i, j); φ divides by min(i, j), the largest ‖U1ᵢᵀ U2ⱼ‖²_F can be",
    "spectral": ("it squares the largest singular value of the overlap (np.linalg.norm(M, 2)); the Frobenius "
                 "norm adds every squared entry: np.linalg.norm(M) or (M ** 2).sum() before the square root"),
    "no_svd": ("it uses A's rows directly, without the SVD: they are neither unit length nor orthogonal nor "
               "ordered by strength; U1 must hold A1's right-singular vectors, from np.linalg.svd(A1)"),
    "no_svd_unit": ("it uses A's rows made unit length, without the SVD: they are still not orthogonal nor "
                    "ordered by strength; U1 must hold A1's right-singular vectors, from np.linalg.svd(A1)"),
    "swapped": ("i and j are swapped: i counts A1's top directions (U1[:, :i]) and j A2's (U2[:, :j])"),
    "from_zero": ("it is φ(i + 1, j + 1), one direction too many on each side: i and j count from 1, "
                  "U1[:, :i] already holds the top i (a slice ends before i), and a grid's entry for (i, j) "
                  "is at [i - 1, j - 1]"),
}


def _call(fn, A1, A2, i, j):
    """(value, None) or (None, the exception): the learner's code never makes the checker raise."""
    try:
        return fn(A1.copy(), A2.copy(), i, j), None
    except Exception as err:                          # any mistake in the learner's code is feedback
        return None, err


def _number(value, i: int, j: int, r1: int, r2: int):
    """(float, None) or (None, why): φ is one real number."""
    if value is None:
        return None, "phi returned None: end it with `return` and the number"
    if isinstance(value, bool):
        return None, "phi returned True or False; it must return a number"
    if validate.is_real(value):
        return float(value), None
    try:
        a = backend.to_numpy(value)
    except Exception:                                 # not an array at all
        return None, f"phi returned a {type(value).__name__}; it must return one number"
    if a.dtype.kind not in "fiu":
        return None, f"phi returned a {type(value).__name__} of {a.dtype}; it must return one number"
    if a.size == 1:
        return float(a.reshape(())), None
    if a.shape == (i, j):
        return None, (f"phi returned an array of shape ({i}, {j}): that is the overlap "
                      f"U1[:, :i].T @ U2[:, :j]; φ is one number, its squared Frobenius norm divided by "
                      f"min(i, j)")
    if a.shape == (r1, r2):
        return None, "phi returned the whole (r1, r2) grid; it must return the one number φ(i, j)"
    return None, f"phi returned an array of shape {a.shape}; it must return one number"


def _raised(err: Exception, mistake: str | None) -> str:
    """What the learner's exception says, then the mistake when one is recognised, else a hint on shapes."""
    first = re.sub(r", with gufunc signature \S+", "", (str(err).splitlines() or [""])[0])
    text = f"raised {type(err).__name__}: {first}"
    if mistake:
        return f"{text} — {mistake}"
    if isinstance(err, ValueError) and any(w in first for w in ("matmul", "broadcast", "shapes", "align")):
        return f"{text} — the shapes do not fit: {SHAPES}"
    return text


def _close(a: float, b: float) -> bool:
    return math.isfinite(a) and abs(a - b) <= MATCH * max(1.0, abs(b))


def _diagnose(values: dict, variants: dict, right: dict) -> str | None:
    """The first mistake whose values match the learner's wherever both exist and that differs from the
    right values somewhere; None when none does."""
    for name in MISTAKES:
        pairs = [(values[c], variants[c][name], right[c]) for c in values if variants[c][name] is not None]
        if pairs and all(_close(v, w) for v, w, _ in pairs) and any(not _close(w, r) for _, w, r in pairs):
            return MISTAKES[name]
    return None


def _generic(value: float) -> str:
    if not 0.0 <= value <= 1.0 + MATCH:
        return ("φ must lie in [0, 1]: use orthonormal directions (the SVD's), square the Frobenius norm and "
                "divide by min(i, j)")
    return ("check each step: U = Vt.T from np.linalg.svd(A, full_matrices=False), its first i (or j) "
            "columns, the squared Frobenius norm of U1[:, :i].T @ U2[:, :j], divided by min(i, j)")


def check_phi(fn, seed: int = 0) -> Feedback:
    """Check a learner's ``phi(A1, A2, i, j) -> float`` against the library's ``subspace_similarity``.

    Two pairs of random float64 adapters reading n = 16 inputs (ranks 8 and 4, then 4 and 4, sharing a
    few directions), at several (i, j). One ✓/✗ line per pair of adapters; a ✗ names the (i, j), the
    learner's value, and the mistake that explains all of the learner's values when one does. A scaffold
    that raises ``NotImplementedError`` is "not written yet". Raises only when ``fn`` is not a function.
    """
    if not callable(fn):
        raise ValueError(validate.message("fn", "a function (pass phi, not phi(...))", fn, where="check_phi"))
    seed = validate.integer(seed, "seed", where="check_phi", low=0)
    fb = Feedback()
    values, variants, right, errors = {}, {}, {}, {}
    for k, ((r1, r2), pairs) in enumerate(CASES.items()):
        A1, A2 = _adapters(r1, r2, seed + k)
        grid = subspace_similarity(A1, A2)                                 # (r1, r2) host, the library's
        for i, j in pairs:
            case = (r1, r2, i, j)
            right[case], variants[case] = float(grid[i - 1, j - 1]), _variants(A1, A2, i, j)
            result, err = _call(fn, A1, A2, i, j)
            if isinstance(err, NotImplementedError):
                fb.fail("phi: not written yet (it raises NotImplementedError): fill in the TODOs and run "
                        "its cell")
                return fb
            if err is None:
                result, why = _number(result, i, j, r1, r2)
                if why:
                    fb.fail(why)
                    return fb
                values[case] = result
            else:
                errors[case] = err
    mistake = _diagnose(values, variants, right) if values else None
    for r1, r2 in CASES:
        where = f"adapters of ranks {r1} and {r2} (n = {N_IN})"
        cases = [c for c in right if c[:2] == (r1, r2)]
        raised = [c for c in cases if c in errors]
        wrong = [c for c in cases if c in values and not _close(values[c], right[c])]
        if raised:
            c = raised[0]
            fb.fail(f"{where}: phi(A1, A2, i={c[2]}, j={c[3]}) {_raised(errors[c], mistake)}")
        elif wrong:
            c = wrong[0]
            fb.fail(f"{where}: φ({c[2]}, {c[3]}) = {values[c]:.4g} is wrong — "
                    f"{mistake or _generic(values[c])}")
        else:
            worst = max(abs(values[c] - right[c]) for c in cases)
            shown = ", ".join(f"({c[2]}, {c[3]})" for c in cases)
            fb.ok(f"{where}: φ(i, j) matches subspace_similarity at {shown} "
                  f"(largest difference {worst:.0e})")
    if fb.passed:
        fb.note("your phi agrees with lora_np.experiments.subspace_similarity, which computes every (i, j) "
                "at once with cumulative sums")
    return fb


def check_phi_answer(fn) -> tuple[bool, str]:
    if not callable(fn):
        return False, "pass your function itself: phi, not phi(...)"
    fb = check_phi(fn)
    return fb.passed, "\n" + str(fb)



# ------------------------------------------------------------------ code: Li et al.'s d_int90

def li_d_int90(dims, accuracy, full_accuracy, level=0.9):
    """Li et al.'s intrinsic dimension: the smallest d whose accuracy reaches level · full_accuracy.

    dims: the swept d, increasing; accuracy: the accuracy at each; full_accuracy: the baseline's (here
    full fine-tuning's). Between the last d below the threshold and the first at or above it, interpolate
    on a log-d axis; the first crossing counts. Returns None when no d reaches the threshold.
    """
    threshold = level * full_accuracy                  # 90% of the baseline's accuracy, not from chance
    for k, (d, acc) in enumerate(zip(dims, accuracy, strict=True)):
        if acc >= threshold:
            if k == 0:
                return float(d)                        # the first d already reaches it: d_int90 is at most d
            d0, a0 = dims[k - 1], accuracy[k - 1]
            t = (threshold - a0) / (acc - a0)          # how far between the two points the threshold lies
            return float(math.exp(math.log(d0) + t * (math.log(d) - math.log(d0))))
    return None


LI_CASES = (                         # (dims, accuracy, full_accuracy): chance is 0.1 in every one
    ((32, 64, 128), (0.50, 0.84, 0.90), 0.927),           # between Li's threshold and the one from chance
    ((16, 32, 64, 128, 256), (0.30, 0.50, 0.75, 0.88, 0.90), 0.93),
    ((8, 16), (0.95, 0.96), 0.95),                        # the first d already reaches it
    ((16, 32, 64), (0.20, 0.40, 0.60), 0.90),             # never reached
    ((16, 32, 64, 128), (0.20, 0.86, 0.70, 0.90), 0.90),  # not monotone: the first crossing counts
)
LI_CHANCE = 0.1


def _library_d90(dims, accuracy, full, chance=0.0, level=0.9):
    """The library's d_int90 on a sweep with this chance level (0: Li et al.'s definition)."""
    sweep = IntrinsicSweep(list(dims), list(accuracy), D=10_000, full_accuracy=full, chance=chance,
                           before=0.0)
    return d_int90(sweep, level)


def _li_variant(dims, accuracy, full, kind: str):
    """What a common slip returns on one case."""
    threshold = 0.9 if kind == "raw" else 0.9 * full
    hits = [k for k, a in enumerate(accuracy) if a >= threshold]
    if kind == "last":
        below = [k for k in range(1, len(accuracy)) if accuracy[k] >= threshold > accuracy[k - 1]]
        hits = below[-1:] or hits[:1]
    if not hits:
        return None
    k = hits[0]
    if k == 0:
        return float(dims[0])
    d0, a0, d, a = dims[k - 1], accuracy[k - 1], dims[k], accuracy[k]
    t = (threshold - a0) / (a - a0)
    if kind == "first_d":
        return float(d)
    if kind == "linear":
        return float(d0 + t * (d - d0))
    return float(math.exp(math.log(d0) + t * (math.log(d) - math.log(d0))))


LI_MISTAKES = {
    "chance": ("it measures from chance, as the library's d_int90 does: Li et al.'s threshold is 0.9 times "
               "the baseline's accuracy, with no chance level in it"),
    "raw": "its threshold is an accuracy of 0.9 itself; Li et al.'s is 0.9 times the baseline's accuracy",
    "first_d": ("it returns the first d that reaches the threshold, without interpolating between it and the "
                "d before"),
    "linear": "it interpolates linearly in d; the sweep is spaced in powers of two, so interpolate in log d",
    "last": "it takes the last crossing of the threshold; the first one counts",
}


def _li_value(value):
    if value is None:
        return None, None
    if isinstance(value, bool) or not (validate.is_real(value) or getattr(value, "size", 0) == 1):
        return None, f"it returned a {type(value).__name__}: return a number, or None when no d reaches it"
    try:
        return float(value), None
    except (TypeError, ValueError):
        return None, f"it returned a {type(value).__name__}: return a number, or None when no d reaches it"


def _same(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return abs(a - b) <= 1e-6 * max(1.0, abs(b))


def check_li_answer(fn) -> tuple[bool, str]:
    if not callable(fn):
        return False, "pass your function itself: li_d_int90, not li_d_int90(...)"
    got = []
    for dims, acc, full in LI_CASES:
        try:
            value = fn(list(dims), list(acc), full)
        except NotImplementedError:
            return False, "li_d_int90: not written yet (it raises NotImplementedError): fill in the TODOs"
        except Exception as err:                     # any mistake in the learner's code is feedback
            return False, f"li_d_int90(dims={list(dims)}, ...) raised {type(err).__name__}: {err}"
        value, why = _li_value(value)
        if why:
            return False, why
        got.append(value)
    right = [_library_d90(*case) for case in LI_CASES]
    if all(_same(g, r) for g, r in zip(got, right, strict=True)):
        return True, ("right: Li et al.'s d_int90 is the library's with the chance level set to 0; on the "
                      "notebook's sweep it is at most the chance-normalised one")
    slips = {"chance": [_library_d90(*case, chance=LI_CHANCE) for case in LI_CASES],
             **{kind: [_li_variant(*case, kind) for case in LI_CASES] for kind in ("raw", "first_d", "linear",
                                                                                      "last")}}
    k = next(n for n, (g, r) in enumerate(zip(got, right, strict=True)) if not _same(g, r))
    dims, acc, full = LI_CASES[k]
    shown = "None" if got[k] is None else f"{got[k]:.4g}"
    where = f"on dims={list(dims)}, accuracy={list(acc)}, full_accuracy={full} it returned {shown}"
    for kind, values in slips.items():
        if all(_same(g, v) for g, v in zip(got, values, strict=True)):
            return False, f"{where}: {LI_MISTAKES[kind]}"
    if right[k] is None:
        return False, f"{where}: no d reaches 0.9 × full_accuracy there, so return None"
    if got[k] is None:
        return False, f"{where}: some d reaches 0.9 × full_accuracy there"
    return False, (f"{where}: find the first d at or above 0.9 × full_accuracy, then interpolate between "
                   f"it and the d before on a log-d axis (or return that d when it is the sweep's first)")


