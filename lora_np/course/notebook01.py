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

from .. import backend
from .exercises import Exercise, choice_of, numeric, register, yes_no
from .notebook01_checks import check_counts_answer, check_lowrank, check_lowrank_answer, check_lowrank_counts

__all__ = ["check_lowrank_counts", "check_lowrank", "lowrank_params", "break_even", "lowrank", "EXERCISES_01"]

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
        check=check_counts_answer,
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
        check=check_lowrank_answer,
        solution=("# Reference solution (lora_np/course/notebook01.py)\n\n" + _source(lowrank)
                  + "\n\n# Eckart–Young: no matrix of rank ≤ r is closer to M (in the Frobenius norm)."),
    ),
}

register(EXERCISES_01)
