"""Notebook 01's checkers: the learner's two counts (:func:`check_lowrank_counts`) and the code exercise
``lowrank(M, r)`` (:func:`check_lowrank`). Nothing the learner's code does makes them raise; a scaffold that
raises ``NotImplementedError`` is reported as "not written yet". The exercises live in
:mod:`lora_np.course.notebook01`.
"""
from __future__ import annotations

import math

from .. import backend, validate
from ..experiments import break_even as library_break_even
from ..experiments import (
    low_rank_approx,
    lowrank_param_count,
    relative_error,
    singular_values,
    structured_matrix,
)
from ..gradcheck import rel_error_tensor
from .feedback import Feedback

MATCH = 1e-9                       # relative tolerance: "the same number" / "the same matrix"


# ------------------------------------------------------------------ helpers: the learner's code never raises

def _call(fn, args):
    """(result, None) or (None, the exception)."""
    try:
        return fn(*args), None
    except Exception as err:                           # any mistake in the learner's code is feedback
        return None, err


def _raised(what: str, err: Exception) -> str:
    if isinstance(err, NotImplementedError):
        return f"{what}: not written yet (it raises NotImplementedError): fill in the TODOs and run its cell"
    first = (str(err).splitlines() or [""])[0]
    return f"{what} raised {type(err).__name__}: {first}"


def _number(value, what: str):
    """(float, None) or (None, why) for what a counting function returned."""
    if value is None:
        return None, f"{what} returned None: end it with `return ...`"
    if backend.is_array(value) and value.ndim == 0:
        value = backend.to_float(value)
    if isinstance(value, tuple):
        return None, f"{what} returned a tuple of {len(value)}; return one number"
    if not validate.is_real(value):
        return None, f"{what} returned a {type(value).__name__}, not a number"
    if not math.isfinite(value):
        return None, f"{what} returned {value}"
    return float(value), None


def _same(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=MATCH, abs_tol=1e-12)


# ------------------------------------------------------------------ your turn: the two counts

# (d_in, d_out, r): square and not, both orientations, r below, at (40·60 / 100 = 24) and above r*
COUNT_CASES = ((3, 3, 1), (3, 3, 2), (20, 256, 4), (256, 20, 4), (60, 40, 24), (60, 40, 30),
               (20, 16, 9), (768, 3072, 8))
BREAK_EVEN_CASES = tuple(dict.fromkeys((d_in, d_out) for d_in, d_out, _ in COUNT_CASES))

PARAMS_MISTAKES = (     # (what the mistake computes, what it is): the first that explains every wrong value
    (lambda d_in, d_out, r: r * d_in,
     "counted only A (r × d_in); B (d_out × r) is trained too"),
    (lambda d_in, d_out, r: d_out * r,
     "counted only B (d_out × r); A (r × d_in) is trained too"),
    (lambda d_in, d_out, r: d_in * d_out,
     "that is d_in·d_out, the count of the full matrix W; count the factors A (r × d_in) and B (d_out × r)"),
    (lambda d_in, d_out, r: d_in * d_out + r,
     "d_in·d_out + r: not a LoRA count — W stays frozen and is not counted, and r is a shape, not a "
     "parameter: count A (r × d_in) and B (d_out × r)"),
    (lambda d_in, d_out, r: r * d_in * d_out,
     "r·d_in·d_out multiplies the shapes; A and B are two separate matrices, so their sizes add"),
    (lambda d_in, d_out, r: d_in + d_out,
     "that is what one rank costs, d_in + d_out; there are r of them"),
    (lambda d_in, d_out, r: r * d_in + d_out,
     "operator precedence: r*d_in + d_out multiplies only d_in by r; write r * (d_in + d_out)"),
    (lambda d_in, d_out, r: r * d_out + d_in,
     "operator precedence: r*d_out + d_in multiplies only d_out by r; write r * (d_in + d_out)"),
    (lambda d_in, d_out, r: 2 * r * d_in,
     "2·r·d_in holds only for a square matrix: A is (r, d_in) but B is (d_out, r)"),
    (lambda d_in, d_out, r: 2 * r * d_out,
     "2·r·d_out holds only for a square matrix: A is (r, d_in) but B is (d_out, r)"),
    (lambda d_in, d_out, r: d_in * (d_out + r),
     "the arguments come in the order (d_in, d_out, r): r is the last one"),
    (lambda d_in, d_out, r: r * (d_in + d_out) + d_out,
     "that adds a bias of d_out; the bias stays frozen: count only A and B"),
)
PARAMS_HINT = "write the shapes down: A is (r, d_in) and B is (d_out, r); count the entries of both"

BREAK_EVEN_MISTAKES = (
    ((lambda d_in, d_out: (d_in + d_out) / (d_in * d_out),),
     "break-even flipped: that is (d_in + d_out) / (d_in·d_out); solve r·(d_in + d_out) = d_in·d_out for r, "
     "so d_in·d_out goes on top"),
    ((lambda d_in, d_out: d_in * d_out // (d_in + d_out),
      lambda d_in, d_out: (d_in * d_out - 1) // (d_in + d_out)),
     "rounded to a whole number: r* = d_in·d_out / (d_in + d_out) is a real number (1.5 for 3 × 3); "
     "use / rather than //, and do not round"),
    ((lambda d_in, d_out: 2 * d_out, lambda d_in, d_out: 2 * d_in),
     "operator precedence: d_in*d_out / d_in + d_out divides by d_in alone; "
     "write d_in*d_out / (d_in + d_out)"),
    ((lambda d_in, d_out: d_in / 2, lambda d_in, d_out: d_out / 2, lambda d_in, d_out: min(d_in, d_out) / 2),
     "d / 2 holds only for a square d × d matrix; solve r·(d_in + d_out) = d_in·d_out for r"),
    ((lambda d_in, d_out: 2 * d_in * d_out / (d_in + d_out),),
     "that is twice r* (the harmonic mean of d_in and d_out); solve r·(d_in + d_out) = d_in·d_out for r"),
    ((lambda d_in, d_out: d_in * d_out,),
     "that is d_in·d_out, the full count; divide it by what one rank costs, d_in + d_out"),
    ((lambda d_in, d_out: d_in + d_out,),
     "that is d_in + d_out, what one rank costs; r* divides the full count d_in·d_out by it"),
    ((lambda d_in, d_out: min(d_in, d_out),),
     "that is min(d_in, d_out), the largest rank W can have; the counts are equal well before it"),
)
BREAK_EVEN_HINT = "set the two counts equal, r·(d_in + d_out) = d_in·d_out, and solve for r"


def _named(wrong: list, mistakes, hint: str) -> str:
    """The first mistake that explains every wrong value in ``wrong`` ([(args, value)]), else ``hint``."""
    for formulas, why in mistakes:
        formulas = formulas if isinstance(formulas, tuple) else (formulas,)
        if any(all(_same(value, f(*args)) for args, value in wrong) for f in formulas):
            return why
    return hint


def _check_counting(fn, what: str, cases, library, mistakes, hint: str, fb: Feedback, ok: str) -> None:
    wrong = []
    for args in cases:
        result, err = _call(fn, args)
        if err is not None:
            fb.fail(_raised(f"{what}{args}" if not isinstance(err, NotImplementedError) else what, err))
            return
        value, why = _number(result, f"{what}{args}")
        if why:
            fb.fail(why)
            return
        if not _same(value, library(*args)):
            wrong.append((args, value))
    if not wrong:
        fb.ok(ok)
        return
    (args, value), n = wrong[0], len(wrong)
    shown = int(value) if float(value).is_integer() else round(value, 4)
    right = library(*args)
    right = int(right) if float(right).is_integer() else round(right, 4)
    fb.fail(f"{what}: wrong on {n} of {len(cases)} shapes, e.g. {what}{args} returned {shown}, the library "
            f"gives {right} — {_named(wrong, mistakes, hint)}")


def _library_count(d_in, d_out, r):
    return lowrank_param_count(d_out, d_in, r)           # B: (m, r), A: (r, n) with m = d_out, n = d_in


def _library_break_even(d_in, d_out):
    return library_break_even(d_in, d_out).rank              # the float r*, as nn.break_even_rank gives


def check_lowrank_counts(lowrank_params, break_even) -> Feedback:
    """Check a learner's ``lowrank_params(d_in, d_out, r)`` and ``break_even(d_in, d_out)`` against the
    library on the shapes of :data:`COUNT_CASES` (square and not, r below, at and above break-even).

    Returns a :class:`~lora_np.course.feedback.Feedback` with one ✓/✗ line per function; a ✗ shows one
    wrong value with the library's and names the mistake that explains every wrong value. Raises only
    when an argument is not a function at all.
    """
    for arg, fn in (("lowrank_params", lowrank_params), ("break_even", break_even)):
        if not callable(fn):
            raise ValueError(validate.message(arg, f"a function (pass {arg}, not {arg}(...))", fn,
                                              where="check_lowrank_counts"))
    fb = Feedback()
    _check_counting(lowrank_params, "lowrank_params", COUNT_CASES, _library_count, PARAMS_MISTAKES,
                    PARAMS_HINT, fb,
                    f"lowrank_params matches lowrank_param_count on {len(COUNT_CASES)} shapes "
                    f"(square and not, r below, at and above break-even)")
    _check_counting(break_even, "break_even", BREAK_EVEN_CASES, _library_break_even, BREAK_EVEN_MISTAKES,
                    BREAK_EVEN_HINT, fb,
                    f"break_even matches lora_np.experiments.break_even on {len(BREAK_EVEN_CASES)} shapes")
    if fb.passed:
        fb.note("both agree with the library: lowrank_param_count (m = d_out, n = d_in), "
                "experiments.break_even(d_in, d_out).rank and nn.break_even_rank")
    return fb


def check_counts_answer(answer) -> tuple[bool, str]:
    if not (isinstance(answer, (tuple, list)) and len(answer) == 2 and all(map(callable, answer))):
        return False, "pass your two functions themselves, as a pair: (lowrank_params, break_even)"
    fb = check_lowrank_counts(*answer)
    if fb.passed:
        return True, "right: both counts agree with the library on every shape"
    return False, "; ".join(line[2:] for line in fb.lines if line.startswith("✗"))


# ------------------------------------------------------------------ exercise: lowrank(M, r), a truncated SVD

def _problems():
    """(what, M, r): float64 matrices on the current backend, wide and tall, random and structured, r up to
    min(m, n)."""
    rng = backend.Rng(0)
    return (("a random 8 × 6 matrix", rng.standard_normal((8, 6), dtype="float64"), 3),
            ("a random 5 × 9 matrix", rng.standard_normal((5, 9), dtype="float64"), 2),
            ("the 40 × 60 test image", structured_matrix(40, 60, noise=0.05, seed=0, dtype="float64"), 5),
            ("a random 6 × 4 matrix at full rank", rng.standard_normal((6, 4), dtype="float64"), 4))


def _same_matrix(a, b) -> bool:
    return tuple(a.shape) == tuple(b.shape) and rel_error_tensor(a, b) < MATCH


def _product_mistake(P, M, r) -> str:
    """What a wrong product B·A is, among the common slips with the SVD's factors."""
    k = min(M.shape)
    S = singular_values(M)                             # (k,)
    US, Vt = low_rank_approx(M, k)                     # U Σ: (m, k), Vᵀ: (k, n)
    candidates = (
        ((US[:, :r] / S[:r]) @ Vt[:r],
         "B·A leaves out the singular values: scale the columns of U_r by σ₁..σ_r"),
        ((US[:, :r] * S[:r]) @ Vt[:r], "Σ_r enters twice: put the singular values in B or in A, not both"),
        (US[:, k - r:] @ Vt[k - r:], "it keeps the r smallest singular values: svd sorts them largest first"),
        (US[:, :r] @ Vt[:, :r].T if Vt.shape[0] == Vt.shape[1] else None,
         "A takes columns of Vᵀ: the right singular vectors are the rows of Vᵀ"),
    )
    for value, why in candidates:
        if value is not None and _same_matrix(P, value):
            return why
    return "B·A is not the truncated SVD U_r Σ_r V_rᵀ"


def _factors(result, what: str):
    """(B, A) as float64 arrays of the current backend, or (None, why)."""
    if not isinstance(result, (tuple, list)):
        return None, f"{what} returned one {type(result).__name__}; return the two factors: `return B, A`"
    if len(result) != 2:
        return None, f"{what} returned {len(result)} values; return the two factors: `return B, A`"
    for name, f in zip("BA", result, strict=True):
        if not backend.is_array(f):
            return None, f"{name} is a {type(f).__name__}, not an array: return the arrays B and A"
    return tuple(backend.asarray(f, dtype="float64") for f in result), None


def check_lowrank(lowrank) -> Feedback:
    """Check a learner's ``lowrank(M, r) -> (B, A)`` on four float64 matrices: the shapes (m, r) and (r, n),
    and B·A against the library's :func:`~lora_np.experiments.low_rank_approx` (the product, since the
    factors are unique only up to signs and how Σ is split). One ✓/✗ line; a ✗ names the first mistake.
    """
    if not callable(lowrank):
        raise ValueError(validate.message("lowrank", "a function (pass lowrank, not lowrank(...))", lowrank,
                                          where="check_lowrank"))
    fb = Feedback()
    problems = _problems()
    for what, M, r in problems:
        m, n = M.shape
        where = f"on {what} (m = {m}, n = {n}), r = {r}"
        result, err = _call(lowrank, (M.copy(), r))
        if err is not None:
            fb.fail(_raised("lowrank" if isinstance(err, NotImplementedError) else f"lowrank {where},", err))
            return fb
        factors, why = _factors(result, "lowrank")
        if why:
            fb.fail(why)
            return fb
        B, A = factors
        if tuple(B.shape) != (m, r):
            fb.fail(f"B has shape {tuple(B.shape)} {where}; it must be (m, r): the first r columns of U, "
                    f"scaled")
            return fb
        if tuple(A.shape) != (r, n):
            extra = ": the first r rows of Vᵀ, not its columns" if tuple(A.shape) == (n, r) else ""
            fb.fail(f"A has shape {tuple(A.shape)} {where}; it must be (r, n){extra}")
            return fb
        Bref, Aref = low_rank_approx(M, r)
        if not _same_matrix(B @ A, Bref @ Aref):
            fb.fail(f"B·A {where} differs from the best rank-r approximation (relative difference "
                    f"{relative_error(Bref @ Aref, B @ A):.2g}) — {_product_mistake(B @ A, M, r)}")
            return fb
    fb.ok(f"B·A matches low_rank_approx on {len(problems)} matrices (wide and tall, random and structured, "
          f"r up to min(m, n)), with B: (m, r) and A: (r, n)")
    return fb


def check_lowrank_answer(answer) -> tuple[bool, str]:
    if not callable(answer):
        return False, "pass your function itself, `lowrank`, without calling it"
    fb = check_lowrank(answer)
    if fb.passed:
        return True, ("right: B·A is the truncated SVD, the best rank-r approximation; the factors may "
                      "differ from low_rank_approx's by signs, their product does not")
    return False, "; ".join(line[2:] for line in fb.lines if line.startswith("✗"))


