"""The notebooks' exercises: a registry of named questions, each with a checker and a worked solution.

``check_exercise(name, answer)`` says right or wrong and why, without giving the answer away; the
worked solution is revealed with ``show_solution(name)`` (:mod:`lora_np.course.solutions`).

Every right answer is computed here from the quantities in its question, never typed in:

* break-even rank of a d_in × d_out matrix: r·(d_in + d_out) = d_in·d_out ⇒ r* = d_in·d_out / (d_in + d_out);
* fp16 weight memory: n_params · 2 bytes / 2³⁰ bytes per GiB;
* trainable parameters of one adapter: |A| + |B| = r·d_in + d_out·r = r·(d_in + d_out);
* rank(ΔW) = rank(B A) ≤ min(rank B, rank A) ≤ min(r, d_in, d_out).

To add exercises, a notebook's module (``lora_np/course/notebook01.py``, say) builds
:class:`Exercise` objects (:func:`numeric` builds the checker of a number with its common wrong
values, :func:`yes_no` and :func:`choice_of` those of a question) and calls :func:`register`;
``lora_np/course/__init__.py`` imports every such module.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from .. import backend, validate
from .feedback import Feedback

GIB = 2 ** 30                      # bytes in a GiB
FP16_BYTES = 2                     # bytes per parameter in fp16 / bf16


@dataclass(frozen=True)
class Exercise:
    """One question: ``check(answer) -> (right, why)``; ``answer`` is the right answer (for tests)."""
    prompt: str
    answer: object
    check: Callable[[object], tuple[bool, str]] = field(repr=False)
    solution: str = field(repr=False)


def numeric(answer: float, *, abs_tol: float = 0.0, rel_tol: float = 0.0, integer: bool = False,
            mistakes=(), too_large: str, too_small: str, right: str) -> Callable:
    """The checker of a number: right within ``abs_tol`` or ``rel_tol``; else the hint of the first
    common mistake in ``mistakes`` (``(value, why)`` pairs, matched within 1 %) or "too large"/"too small".
    ``integer``: only whole numbers are accepted (a count). No message contains the right answer.
    """
    def close(a, b, rel=rel_tol):
        return math.isclose(a, b, rel_tol=rel, abs_tol=abs_tol)

    def check(value):
        if not validate.is_real(value) or not math.isfinite(value):
            return False, f"expected a number, got {type(value).__name__}"
        if integer and value != int(value):
            return False, "a count of parameters or a rank is a whole number"
        if close(value, answer):
            return True, right
        for wrong, why in mistakes:
            if math.isclose(value, wrong, rel_tol=0.01):
                return False, why
        return False, f"too large: {too_large}" if value > answer else f"too small: {too_small}"
    return check


def yes_no(answer: bool, *, right: str, wrong: str) -> Callable:
    """The checker of a True/False question (anything else is refused: "yes" is not an answer here)."""
    def check(value):
        if not isinstance(value, bool):
            return False, f"answer True or False, not a {type(value).__name__}"
        return (True, right) if value == answer else (False, wrong)
    return check


def call_for_number(fn, args, what: str = "one number"):
    """``(value, None)`` with the float that the learner's ``fn(*args)`` returned, or ``(None, why)``:
    whatever the learner's code does (raise, return None, a string, an array of several numbers) is
    feedback, never an exception of the checker's."""
    try:
        value = fn(*args)
    except Exception as exc:                                        # the learner's code: report, don't raise
        return None, f"your function raised {type(exc).__name__}: {exc}"
    if value is None:
        return None, "your function returned None: is the `return` missing?"
    try:
        if isinstance(value, (str, bytes)):
            raise TypeError(type(value).__name__)
        return float(backend.to_numpy(value)), None
    except (TypeError, ValueError):
        return None, f"your function returned a {type(value).__name__}; return {what}"


def choice_of(answer: str, *, options: dict, right: str) -> Callable:
    """The checker of a multiple-choice question: ``options`` maps each letter to the reason that
    option is wrong (the right letter's entry is unused); an unknown letter is refused."""
    def check(value):
        if not isinstance(value, str) or value.strip().lower() not in options:
            return False, f"answer one of {sorted(options)}, as a string"
        value = value.strip().lower()
        return (True, right) if value == answer else (False, options[value])
    return check


# ------------------------------------------------------------------ break-even rank
D_IN, D_OUT = 4096, 11008          # LLaMA-7B's MLP up-projection
BREAK_EVEN = D_IN * D_OUT / (D_IN + D_OUT)

# ------------------------------------------------------------------ a 13-billion-parameter model
N_PARAMS_13B = 13e9
FP16_GIB = N_PARAMS_13B * FP16_BYTES / GIB
CARD_GB = 24                       # a "24 GB" card holds 24 GiB (24576 MiB)
FITS_24GB = N_PARAMS_13B * FP16_BYTES <= CARD_GB * GIB

# ------------------------------------------------------------------ the fruit MLP's first layer
R, FC1_IN, FC1_OUT = 4, 20, 256
FC1_LORA_PARAMS = R * (FC1_IN + FC1_OUT)
SQUARE = 256
DELTA_W_RANK = min(R, SQUARE, SQUARE)

EXERCISES: dict[str, Exercise] = {
    "break_even_4096x11008": Exercise(
        prompt=(f"An adapter of rank r on a {D_IN} × {D_OUT} projection trains r·(d_in + d_out) parameters; "
                f"fine-tuning the whole matrix trains d_in·d_out. At which rank r are the two counts equal? "
                f"(a number, within 0.5)"),
        answer=BREAK_EVEN,
        check=numeric(BREAK_EVEN, abs_tol=0.5, mistakes=[
            (D_IN + D_OUT, "that is d_in + d_out, what one rank costs; the break-even rank divides the "
                           "full count d_in·d_out by it"),
            (D_IN * D_OUT, "that is the full count d_in·d_out; divide it by what one rank costs"),
            (min(D_IN, D_OUT), "that is the largest rank the matrix can have, min(d_in, d_out); the counts "
                               "are equal well before it: solve r·(d_in + d_out) = d_in·d_out"),
            (2 * BREAK_EVEN, "that is twice the break-even rank (the harmonic mean of d_in and d_out); "
                             "solve r·(d_in + d_out) = d_in·d_out for r"),
        ], too_large="at that rank the adapter trains more than the whole matrix; solve "
                     "r·(d_in + d_out) = d_in·d_out for r",
           too_small="at that rank the adapter is still cheaper than the whole matrix; solve "
                     "r·(d_in + d_out) = d_in·d_out for r",
           right="right: below that rank the adapter is cheaper; the ranks used in practice (8 to 64) "
                 "are a small fraction of it"),
        solution=(f"Set r·(d_in + d_out) = d_in·d_out and solve for r:\n"
                  f"  r* = d_in·d_out / (d_in + d_out) = {D_IN}·{D_OUT} / ({D_IN} + {D_OUT})\n"
                  f"     = {D_IN * D_OUT} / {D_IN + D_OUT} ≈ {BREAK_EVEN:.2f}.\n"
                  f"Half the harmonic mean of d_in and d_out, below min(d_in, d_out) = {min(D_IN, D_OUT)}. "
                  f"At r = 16 the adapter trains {16 * (D_IN + D_OUT) / (D_IN * D_OUT):.2%} of the matrix."),
    ),
    "fp16_13b_vs_24gb": Exercise(
        prompt=("How much memory do the weights of a 13-billion-parameter model take in fp16 (2 bytes per "
                "parameter)? Answer in GiB (2³⁰ bytes), within 1 %."),
        answer=FP16_GIB,
        check=numeric(FP16_GIB, rel_tol=0.01, mistakes=[
            (N_PARAMS_13B * FP16_BYTES / 1e9, "that is in GB (10⁹ bytes); the question asks for GiB, "
                                              "2³⁰ bytes each"),
            (N_PARAMS_13B * 4 / GIB, "that is 4 bytes per parameter (fp32); fp16 stores 2 bytes"),
            (N_PARAMS_13B * 4 / 1e9, "that is 4 bytes per parameter (fp32) and in GB (10⁹ bytes); "
                                     "fp16 stores 2 bytes, and a GiB is 2³⁰ bytes"),
            (N_PARAMS_13B / GIB, "that is 1 byte per parameter (int8); fp16 stores 2 bytes"),
            (N_PARAMS_13B * FP16_BYTES, "that is in bytes; divide by 2³⁰ bytes per GiB"),
            (N_PARAMS_13B * FP16_BYTES / 2 ** 20, "that is in MiB; a GiB is 2¹⁰ MiB"),
        ], too_large="count the bytes (parameters × bytes per parameter), then divide by 2³⁰ bytes per GiB",
           too_small="count the bytes (parameters × bytes per parameter), then divide by 2³⁰ bytes per GiB",
           right="right: the weights alone, before any activation, gradient or optimizer state"),
        solution=(f"bytes = {N_PARAMS_13B / 1e9:.0f}·10⁹ parameters × {FP16_BYTES} bytes = "
                  f"{N_PARAMS_13B * FP16_BYTES:.2e} bytes;\n"
                  f"GiB = bytes / 2³⁰ = {N_PARAMS_13B * FP16_BYTES:.2e} / {GIB} ≈ {FP16_GIB:.2f} GiB "
                  f"(≈ {N_PARAMS_13B * FP16_BYTES / 1e9:.0f} GB in powers of ten)."),
    ),
    "fits_24gb": Exercise(
        prompt=(f"Do those fp16 weights alone fit on a {CARD_GB} GB card ({CARD_GB} GiB)? "
                "Answer True or False."),
        answer=FITS_24GB,
        check=yes_no(FITS_24GB,
                     right="right: and a card also holds the CUDA context and the activations, so even a "
                           "little under the limit would not be enough",
                     wrong="not quite: put both in the same unit (the weights in GiB from the exercise "
                           "before, the card in GiB) and remember that the card also holds the CUDA "
                           "context and the activations"),
        solution=(f"The weights take ≈ {FP16_GIB:.2f} GiB and the card holds {CARD_GB} GiB "
                  f"({CARD_GB * GIB / 1e9:.1f} GB): {'they fit' if FITS_24GB else 'they do not fit'}, even "
                  f"before the CUDA context (~0.3-0.5 GiB) and any activation. This is why a 13B model is "
                  f"fine-tuned on such a card with quantised base weights (QLoRA: 4 bits per weight) and "
                  f"LoRA adapters, whose own memory is tiny."),
    ),
    "lora_params_fc1_r4": Exercise(
        prompt=(f"How many parameters does a LoRA adapter of rank r = {R} train on a {FC1_IN} → {FC1_OUT} "
                f"linear layer (d_in = {FC1_IN}, d_out = {FC1_OUT})?"),
        answer=FC1_LORA_PARAMS,
        check=numeric(FC1_LORA_PARAMS, integer=True, mistakes=[
            (R * FC1_IN, "that counts only A (r × d_in); B (d_out × r) is trained too"),
            (R * FC1_OUT, "that counts only B (d_out × r); A (r × d_in) is trained too"),
            (FC1_IN * FC1_OUT, "that is W0's count, d_out × d_in, and W0 stays frozen"),
            (FC1_LORA_PARAMS + FC1_OUT, "the bias b0 stays frozen in LoRA: count only A and B"),
            (R * FC1_IN * FC1_OUT, "that is r · d_in · d_out; A and B are two thin matrices, "
                                   "so their counts add: r × d_in plus d_out × r"),
        ], too_large="the count of one adapted matrix is r·(d_in + d_out)",
           too_small="both A (r × d_in) and B (d_out × r) are trained: r·(d_in + d_out)",
           right="right: r·(d_in + d_out), a fraction of the layer's d_in·d_out"),
        solution=(f"A is (r, d_in) = ({R}, {FC1_IN}): {R * FC1_IN} parameters; B is (d_out, r) = "
                  f"({FC1_OUT}, {R}): {R * FC1_OUT}.\n"
                  f"Together r·(d_in + d_out) = {R}·({FC1_IN} + {FC1_OUT}) = {FC1_LORA_PARAMS}, "
                  f"against {FC1_IN * FC1_OUT} for W0 "
                  f"({FC1_LORA_PARAMS / (FC1_IN * FC1_OUT):.1%})."),
    ),
    "delta_w_rank": Exercise(
        prompt=(f"With r = {R} on a {SQUARE} × {SQUARE} layer, what is the largest possible rank of "
                f"ΔW = B A?"),
        answer=DELTA_W_RANK,
        check=numeric(DELTA_W_RANK, integer=True, mistakes=[
            (SQUARE, "that is the largest rank of W0 (or of a full update); ΔW = B A passes through "
                     "the r-dimensional bottleneck"),
            (SQUARE * SQUARE, "that is the number of entries of ΔW, not its rank"),
            (2 * R, "ranks do not add up here: rank(B A) ≤ min(rank B, rank A)"),
        ], too_large="every column of ΔW = B A is a combination of the r columns of B, so rank(ΔW) ≤ r",
           too_small="after training, B and A have full rank r in general, and then so does B A",
           right="right: ΔW = B A has rank at most r, reached when B and A both have full rank"),
        solution=(f"Every column of ΔW = B A is a combination of B's r columns, so\n"
                  f"  rank(B A) ≤ min(rank B, rank A) ≤ min(r, d_out, d_in) = min({R}, {SQUARE}, {SQUARE}) "
                  f"= {DELTA_W_RANK}.\nWith random A and a trained B of full rank, the maximum is reached. "
                  f"At initialisation B = 0, so ΔW = 0 has rank 0."),
    ),
}


def register(exercises: dict) -> None:
    """Add a notebook's exercises (``{name: Exercise}``) to :data:`EXERCISES`; a name is used once."""
    taken = sorted(set(exercises) & set(EXERCISES))
    if taken:
        raise ValueError(f"register: exercise names {taken} are taken")
    if not all(isinstance(e, Exercise) for e in exercises.values()):
        raise ValueError("register: exercises must map names to Exercise objects")
    EXERCISES.update(exercises)


def exercise(name: str) -> Exercise:
    """The exercise called ``name`` (a ``ValueError`` lists the names when there is none)."""
    return EXERCISES[validate.choice(name, "name", EXERCISES, where="exercise")]


def check_exercise(name: str, answer) -> Feedback:
    """Right or wrong, and why, for the exercise called ``name``; the right answer is never shown.

    ``answer=None`` (the notebooks' placeholder) says that no answer was given yet.
    """
    feedback = Feedback()
    if answer is None:
        feedback.fail(f"{name}: no answer yet: replace None by your answer and run the cell again")
        return feedback
    right, why = exercise(name).check(answer)
    (feedback.ok if right else feedback.fail)(f"{name}: {why}")
    if not right:
        feedback.note(f"try again, or reveal the worked solution: show_solution({name!r})")
    return feedback
