"""Notebook 01's your-turn checker and exercises (registered with :func:`lora_np.course.exercises.register`).

The learner writes, for a weight ``W: (d_out, d_in)`` factorised as ``B: (d_out, r)`` times ``A: (r, d_in)``:

* ``lowrank_params(d_in, d_out, r)``: the numbers B and A hold, |A| + |B| = r·d_in + d_out·r
  = r·(d_in + d_out);
* ``break_even(d_in, d_out)``: the rank where that equals W's d_in·d_out, r* = d_in·d_out / (d_in + d_out).

:func:`check_lowrank_counts` compares both with the library (:func:`~lora_np.experiments.lowrank_param_count`,
:func:`~lora_np.experiments.break_even`, which agrees with :func:`~lora_np.nn.break_even_rank`) on several
shapes, square and not, with r below, at and above r*, naming a common mistake when one explains every wrong
value. Nothing the learner's code does makes the checker raise; a scaffold that raises
``NotImplementedError`` is reported as "not written yet". The code exercise ``lowrank(M, r)`` (a truncated
SVD) is checked by :func:`check_lowrank`.

Every right answer of an exercise is computed here from the quantities in its question.
"""
from __future__ import annotations

import inspect
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
from .exercises import Exercise, choice_of, numeric, register, yes_no
from .feedback import Feedback

MATCH = 1e-9                       # relative tolerance: "the same number" / "the same matrix"


# ------------------------------------------------------------------ the reference solutions

def lowrank_params(d_in, d_out, r):
    """Numbers held by the factors of W: (d_out, d_in) at rank r: A is (r, d_in), B is (d_out, r)."""
    return r * d_in + d_out * r          # |A| + |B| = r·(d_in + d_out)


def break_even(d_in, d_out):
    """The rank r* at which the factors hold as many numbers as W: r*·(d_in + d_out) = d_in·d_out."""
    return d_in * d_out / (d_in + d_out)


def lowrank(M, r):
    """The best rank-r approximation of M: (m, n) as factors B: (m, r), A: (r, n) (truncated SVD)."""
    xp = backend.get_array_module(M)                   # NumPy here (CuPy for an array on a GPU)
    U, S, Vt = xp.linalg.svd(M, full_matrices=False)   # (m, k), (k,), (k, n), σ sorted largest first
    B = U[:, :r] * S[:r]                               # (m, r)  the first r columns of U, times σ₁..σ_r
    A = Vt[:r]                                         # (r, n)  the first r rows of Vᵀ
    return B, A


def _source(*functions) -> str:
    return "\n\n".join(inspect.getsource(f).rstrip() for f in functions)


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


def _check_counts_exercise(answer) -> tuple[bool, str]:
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


def _check_lowrank_exercise(answer) -> tuple[bool, str]:
    if not callable(answer):
        return False, "pass your function itself, `lowrank`, without calling it"
    fb = check_lowrank(answer)
    if fb.passed:
        return True, ("right: B·A is the truncated SVD, the best rank-r approximation; the factors may "
                      "differ from low_rank_approx's by signs, their product does not")
    return False, "; ".join(line[2:] for line in fb.lines if line.startswith("✗"))


# ------------------------------------------------------------------ before the slider: a prediction
PREDICT_OPTIONS = {
    "a": "(a) by about the same amount at every step, in a straight line down to 0 at r = 40;",
    "b": "(b) fast over the first few ranks, then slowly, a little at each further rank;",
    "c": "(c) slowly at first, then fast near the break-even rank 24;",
    "d": "(d) fast over the first few ranks, then not at all: the rest is noise, which no low-rank "
         "product can fit.",
}
PREDICT_ANSWER = "b"

# ------------------------------------------------------------------ a 4096 × 4096 projection at r = 8
PROJ_D, PROJ_R = 4096, 8
PROJ_PARAMS = PROJ_R * (PROJ_D + PROJ_D)
PROJ_FULL = PROJ_D * PROJ_D
PROJ_FRACTION = PROJ_PARAMS / PROJ_FULL

# ------------------------------------------------------------------ the rank of a product
PROD_M, PROD_R, PROD_N = 6, 2, 5                   # B: (6, 2), A: (2, 5)
PROD_RANK = min(PROD_M, PROD_R, PROD_N)

# ------------------------------------------------------------------ a small non-square layer
SMALL_IN, SMALL_OUT, SMALL_R = 20, 16, 8
SMALL_SAVES = SMALL_R * (SMALL_IN + SMALL_OUT) < SMALL_IN * SMALL_OUT

EXERCISES_01: dict[str, Exercise] = {
    "lowrank_counts": Exercise(
        prompt=("Write lowrank_params(d_in, d_out, r), the numbers held by A: (r, d_in) and B: (d_out, r), "
                "and break_even(d_in, d_out), the rank at which that equals d_in·d_out; "
                "check them with check_lowrank_counts(lowrank_params, break_even)."),
        answer=(lowrank_params, break_even),
        check=_check_counts_exercise,
        solution=("# Reference solution (lora_np/course/notebook01.py)\n\n"
                  + _source(lowrank_params, break_even)
                  + "\n\n# r·(d_in + d_out) = d_in·d_out  ⇔  r = d_in·d_out / (d_in + d_out)"),
    ),
    "predict_error_vs_r": Exercise(
        prompt=("You will move the slider from r = 1 upward, on the 40 × 60 test matrix. How will the "
                "relative error ‖M − B·A‖ / ‖M‖ fall?\n" + "\n".join(PREDICT_OPTIONS.values())),
        answer=PREDICT_ANSWER,
        check=choice_of(PREDICT_ANSWER, options={
            "a": ("no: each rank removes one σ² from the squared error, and the singular values are far from "
                  "equal: look again at the singular values plotted in section 3"),
            "b": "",
            "c": ("no: the break-even rank is about counting parameters, not about the matrix; the error "
                  "depends only on the singular values left out, and the largest ones go first"),
            "d": ("no: the noise has full rank, so each further rank still fits a piece of it; look at the "
                  "tail of the singular values in section 3: small, but not zero"),
        }, right=("right: the structure sits in a handful of large singular values; after them each rank "
                  "removes only one small σ of the ring's detail and the noise")),
        solution=("(b). By Eckart–Young the squared error at rank r is the sum of the discarded σᵢ², over "
                  "the sum of all of them. The wave, ramp and blob are rank 1 or 2 each, so their energy "
                  "sits in the first few σ (24.6, 18.3, 7.1, 3.4, 2.3, 1.1): the error falls from about "
                  "0.63 at r = 1 to about 0.07 at r = 6. The rest of the spectrum is a long, flat tail (the "
                  "ring's detail and the full-rank noise, σ ≈ 0.66 and below): each further rank removes "
                  "about 0.002 of error, down to 0 at r = 40, where B·A is M itself. The break-even rank 24 "
                  "only marks where the factors stop saving numbers."),
    ),
    "count_4096x4096_r8": Exercise(
        prompt=(f"A LoRA adapter of rank r = {PROJ_R} on a {PROJ_D} × {PROJ_D} attention projection: how "
                f"many parameters does it train?"),
        answer=PROJ_PARAMS,
        check=numeric(PROJ_PARAMS, integer=True, mistakes=[
            (PROJ_R * PROJ_D, "that counts one factor only; A (r × d_in) and B (d_out × r) are both trained"),
            (PROJ_FULL, "that is about the full matrix's count d_in·d_out; W stays frozen: count A and B"),
            (PROJ_R * PROJ_FULL, "r·d_in·d_out multiplies the shapes; the two factors' sizes add"),
            (2 * PROJ_D, "that is what one rank costs, d_in + d_out; there are r of them"),
        ], too_large="count the entries of A (r × d_in) and of B (d_out × r)",
           too_small="both A (r × d_in) and B (d_out × r) are trained: r·(d_in + d_out)",
           right="right: r·(d_in + d_out), for one matrix of one layer"),
        solution=(f"A is (r, d_in) = ({PROJ_R}, {PROJ_D}): {PROJ_R * PROJ_D:,} numbers; B is (d_out, r) = "
                  f"({PROJ_D}, {PROJ_R}): {PROJ_R * PROJ_D:,}.\n"
                  f"Together r·(d_in + d_out) = {PROJ_R}·({PROJ_D} + {PROJ_D}) = {PROJ_PARAMS:,}."),
    ),
    "fraction_4096x4096_r8": Exercise(
        prompt=(f"What fraction of the {PROJ_D} × {PROJ_D} matrix's own parameter count is that adapter's "
                f"count? (a number between 0 and 1, within 1 %)"),
        answer=PROJ_FRACTION,
        check=numeric(PROJ_FRACTION, rel_tol=0.01, mistakes=[
            (100 * PROJ_FRACTION, "that looks like a percentage; the question asks for a fraction "
                                  "(divide by 100)"),
            (PROJ_FRACTION / 2, "that counts one factor only; A and B are both trained"),
            (1 / PROJ_FRACTION, "that is the matrix's count over the adapter's; divide the adapter's by the "
                                "matrix's"),
        ], too_large="divide r·(d_in + d_out) by d_in·d_out",
           too_small="divide r·(d_in + d_out) by d_in·d_out",
           right="right: for a square d × d matrix the fraction is 2r/d"),
        solution=(f"{PROJ_PARAMS:,} / ({PROJ_D}·{PROJ_D}) = {PROJ_PARAMS:,} / {PROJ_FULL:,} = "
                  f"{PROJ_FRACTION:.6g} ({PROJ_FRACTION:.2%}); for a square d × d matrix, "
                  f"2r/d = {2 * PROJ_R}/{PROJ_D}."),
    ),
    "rank_B6x2_A2x5": Exercise(
        prompt=(f"B is {PROD_M} × {PROD_R} and A is {PROD_R} × {PROD_N}, both drawn at random. What is the "
                f"rank of the {PROD_M} × {PROD_N} product B·A?"),
        answer=PROD_RANK,
        check=numeric(PROD_RANK, integer=True, mistakes=[
            (min(PROD_M, PROD_N), "that is min(m, n), the largest rank any 6 × 5 matrix can have; B·A passes "
                                  "through the bottleneck between B and A"),
            (PROD_M, "a 6 × 5 matrix cannot have a rank above 5, and B·A is more special still"),
            (PROD_M * PROD_N, "that is the number of entries of B·A, not its rank"),
            (PROD_M * PROD_R + PROD_R * PROD_N,
             "that is the number of entries of B and A together, not a rank"),
            (2 * PROD_R, "ranks do not add: every column of B·A is a combination of the columns of B"),
        ], too_large="every column of B·A is a combination of the columns of B: count them",
           too_small="random factors have full rank, and then rank(B·A) reaches its bound",
           right="right: rank(B·A) ≤ min(rank B, rank A), reached by random factors"),
        solution=(f"Every column of B·A is B times a column of A: a combination of B's {PROD_R} columns. "
                  f"So\n  rank(B·A) ≤ min(rank B, rank A) ≤ {PROD_R},\nand random factors reach it: rank "
                  f"{PROD_RANK}, whatever the outer sizes {PROD_M} and {PROD_N}. (With parallel columns in "
                  f"B, as in the notebook's check, it drops below.)"),
    ),
    "saves_20x16_r8": Exercise(
        prompt=(f"A layer maps d_in = {SMALL_IN} to d_out = {SMALL_OUT}. Do rank-{SMALL_R} factors "
                f"(A: {SMALL_R} × {SMALL_IN}, B: {SMALL_OUT} × {SMALL_R}) hold fewer numbers than the "
                f"{SMALL_OUT} × {SMALL_IN} matrix? Answer True or False."),
        answer=SMALL_SAVES,
        check=yes_no(SMALL_SAVES,
                     right=(f"right: {SMALL_R * (SMALL_IN + SMALL_OUT)} < {SMALL_IN * SMALL_OUT}, just: the "
                            f"break-even rank {SMALL_IN * SMALL_OUT / (SMALL_IN + SMALL_OUT):.2f} is above "
                            f"{SMALL_R}"),
                     wrong=("not quite: the rule r < d/2 is for square matrices; count both sides, "
                            "r·(d_in + d_out) against d_in·d_out, or compare r with "
                            "d_in·d_out / (d_in + d_out)")),
        solution=(f"The factors hold r·(d_in + d_out) = {SMALL_R}·({SMALL_IN} + {SMALL_OUT}) = "
                  f"{SMALL_R * (SMALL_IN + SMALL_OUT)}, the matrix {SMALL_IN}·{SMALL_OUT} = "
                  f"{SMALL_IN * SMALL_OUT}: {'True' if SMALL_SAVES else 'False'}. The break-even rank is "
                  f"{SMALL_IN}·{SMALL_OUT} / {SMALL_IN + SMALL_OUT} ≈ "
                  f"{SMALL_IN * SMALL_OUT / (SMALL_IN + SMALL_OUT):.2f}, above {SMALL_OUT}/2 = "
                  f"{SMALL_OUT // 2}: for a non-square matrix it lies between min/2 and min(d_in, d_out)."),
    ),
    "lowrank_svd": Exercise(
        prompt=("Write lowrank(M, r) -> (B, A) with xp.linalg.svd (np.linalg.svd on the CPU): B: (m, r) and "
                "A: (r, n), with B·A the best rank-r approximation of M, as low_rank_approx(M, r) gives."),
        answer=lowrank,
        check=_check_lowrank_exercise,
        solution=("# Reference solution (lora_np/course/notebook01.py)\n\n" + _source(lowrank)
                  + "\n\n# Eckart–Young: no matrix of rank ≤ r is closer to M (in the Frobenius norm)."),
    ),
}

register(EXERCISES_01)
