"""Notebook 03's your-turn checker (the softmax backward of attention) and its exercises (registered
with :func:`lora_np.course.exercises.register`).

* :func:`check_softmax_backward` checks a learner's ``softmax_backward(dp, p)`` in float64 against the
  library's :func:`~lora_np.functional.softmax_backward` AND against central differences of the softmax
  itself, on a batch of rows and on a causally masked square, and names the common mistakes (the sum
  over the wrong axis, the subtraction term missing, the leading p missing, Σ dp instead of Σ dp·p, the
  sign, the last two axes swapped, the sum without ``keepdims``). It never raises on the learner's code.
* :func:`softmax_backward` is the reference, shown by ``show_solution("softmax_backward")``;
  :func:`causal_softmax` the reference of the code exercise.

The derivation: for one row p = softmax(s), ∂p_j/∂s_k = p_j (δ_jk − p_k), so J = diag(p) − p pᵀ (symmetric)
and ds = Jᵀ dp = p ⊙ dp − p (pᵀ dp) = p ⊙ (dp − Σ_j dp_j p_j), row by row along the last axis.

Every right answer of an exercise is computed here from the quantities in its question:

* LoRA on a d×d projection trains A (r, d) and B (d, r): 2·r·d; on n projections in L blocks, n·2·r·d·L;
* causal attention: position t reads positions ≤ t only, so changing the last input changes the last output
  only;
* strength 0 scales ΔW by 0: the LoRA model is the base model, and the same seed samples the same text.
"""
from __future__ import annotations

import inspect
import re

import numpy as np  # noqa: TID251  host-side by design: the learner gets plain float64 NumPy arrays

from .. import functional as F
from .. import validate
from ..gradcheck import numerical_gradient, rel_error_tensor
from .exercises import Exercise, choice_of, numeric, register
from .feedback import Feedback

__all__ = ["softmax_backward", "check_softmax_backward", "causal_softmax", "check_causal_softmax",
           "EXERCISES_03"]

TOL = 1e-7                     # against the library (DESIGN.md: every operation below 1e-7)
NUM_TOL = 1e-6                 # against central differences, relative to the tensor's scale


# ------------------------------------------------------------------ the reference

def softmax_backward(dp, p):
    """ds = p ⊙ (dp − Σ_j dp_j p_j), the sum along the last axis (the one the softmax normalised).

    p: (..., n) the softmax's output, each row summing to 1;  dp: (..., n) = dL/dp.  Returns ds: (..., n).
    """
    inner = (dp * p).sum(axis=-1, keepdims=True)     # (..., 1)  pᵀ dp, one number per row
    return p * (dp - inner)                          # (..., n)  J dp with J = diag(p) − p pᵀ


def _cases(seed: int):
    """Two float64 problems (s, p, dp): a batch of rows (2, 3, 5), and a causally masked square (4, 4)."""
    g = np.random.default_rng(seed)
    s1 = g.standard_normal((2, 3, 5))                                     # (2, 3, 5) scores
    s2 = g.standard_normal((4, 4))                                        # (4, 4) scores
    s2[np.triu(np.ones((4, 4), dtype=bool), k=1)] = -np.inf               # the future is masked
    out = []
    for name, s in (("a batch of rows, shape (2, 3, 5)", s1), ("a causal 4×4 score matrix (masked)", s2)):
        p = F.softmax(s)                                                  # same shape, rows sum to 1
        dp = g.standard_normal(s.shape)                                   # dL/dp
        out.append((name, s, p, dp))
    return out


def _variants(dp, p) -> dict:
    """What the common slips return (None where a slip raises on this shape)."""
    out = {
        "missing_term": p * dp,
        "no_p": dp - (dp * p).sum(axis=-1, keepdims=True),
        "sum_dp": p * (dp - dp.sum(axis=-1, keepdims=True)),
        "sign": p * ((dp * p).sum(axis=-1, keepdims=True) - dp),
        "transposed": np.swapaxes(softmax_backward(dp, p), -1, -2),
    }
    out["wrong_axis"] = p * (dp - (dp * p).sum(axis=-2, keepdims=True))
    if p.ndim >= 3:
        out["first_axis"] = p * (dp - (dp * p).sum(axis=0, keepdims=True))
    return out


MISTAKES = {
    "missing_term": ("missing the subtraction term: you returned p ⊙ dp, the diagonal of J alone; "
                     "J = diag(p) − p pᵀ also has the −p pᵀ part, so subtract Σ_j dp_j p_j inside"),
    "no_p": ("missing the leading factor p: you returned dp − Σ_j dp_j p_j; ds = p ⊙ (dp − Σ_j dp_j p_j) "
             "(a masked entry, where p = 0, must get 0)"),
    "sum_dp": ("the sum must weight dp by p: subtract Σ_j dp_j p_j (that is (dp * p).sum(...)), "
               "not Σ_j dp_j"),
    "sign": "the sign is flipped: ds = p ⊙ (dp − Σ_j dp_j p_j), dp first, the sum subtracted",
    "transposed": ("transposed: your ds has its last two axes swapped; keep p's layout (..., n), the "
                   "softmax normalises along the last axis"),
    "wrong_axis": ("the sum runs over the wrong axis (the second-to-last, across the rows); softmax "
                   "normalises each row, so sum along the last axis: axis=-1"),
    "first_axis": ("the sum runs over the wrong axis (axis 0, across the batch); softmax normalises each "
                   "row, so sum along the last axis: axis=-1"),
}


def _close(a, b, tol=TOL) -> bool:
    return a.shape == b.shape and rel_error_tensor(a, b) < tol


def _numerical(s, dp):
    """Central differences of L = Σ softmax(s) ⊙ dp with respect to s (h = 1e-5, float64)."""
    s = s.copy()
    return numerical_gradient(lambda: float((F.softmax(s) * dp).sum()), s)


def _as_array(value):
    if value is None:
        return None, "softmax_backward returned None: end it with `return ds`"
    if isinstance(value, tuple):
        return None, f"softmax_backward returned a tuple of {len(value)}; return one array, ds"
    try:
        a = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return None, f"softmax_backward returned a {type(value).__name__}, not an array of numbers"
    return a, None


def check_softmax_backward(fn, seed: int = 0) -> Feedback:
    """Check a learner's ``softmax_backward(dp, p) -> ds`` on two float64 problems.

    One ✓/✗ line per problem. ✓ when ds agrees with :func:`lora_np.functional.softmax_backward` and
    with central differences of the softmax (both measured by ``rel_error_tensor``: max |a − b| over
    max (|a| + |b|), below 1e-7 and 1e-6). A ✗ names the mistake when one explains the values.
    Raises only when ``fn`` is not a function.
    """
    if not callable(fn):
        raise ValueError(validate.message("fn", "a function (pass softmax_backward, not its result)",
                                          fn, where="check_softmax_backward"))
    seed = validate.integer(seed, "seed", where="check_softmax_backward", low=0)
    fb = Feedback()
    for name, s, p, dp in _cases(seed):
        right = F.softmax_backward(dp, p)                                  # the library's
        try:
            got = fn(dp.copy(), p.copy())
        except NotImplementedError:
            fb.fail("softmax_backward: not written yet (it raises NotImplementedError): fill in the TODO and "
                    "run its cell")
            return fb
        except Exception as err:                                          # the learner's code: feedback
            first = re.sub(r", with gufunc signature \S+", "", (str(err).splitlines() or [""])[0])
            hint = ""
            if isinstance(err, ValueError) and "broadcast" in first:
                hint = (" — the row sums lost their last axis: write .sum(axis=-1, keepdims=True), so that "
                        "they broadcast against dp's (..., n)")
            fb.fail(f"{name}: softmax_backward raised {type(err).__name__}: {first}{hint}")
            continue
        ds, why = _as_array(got)
        if why:
            fb.fail(f"{name}: {why}")
            continue
        mistake = next((MISTAKES[k] for k, v in _variants(dp, p).items() if _close(ds, v) and
                        not _close(v, right)), None)
        if ds.shape != right.shape:
            fb.fail(f"{name}: ds has shape {ds.shape}, p and dp have {right.shape} — "
                    + (mistake or "ds has the shape of the scores s, the same as p and dp"))
            continue
        if not np.all(np.isfinite(ds)):
            fb.fail(f"{name}: ds contains NaN or inf — a masked entry has p = 0 and dp finite: multiply by "
                    f"p, never divide by it nor take its log")
            continue
        err = rel_error_tensor(ds, right)
        err_num = rel_error_tensor(ds, _numerical(s, dp))
        if err < TOL and err_num < NUM_TOL:
            fb.ok(f"{name}: ds matches F.softmax_backward (error {err:.0e}) and central differences of "
                  f"the softmax ({err_num:.0e})")
            continue
        fb.fail(f"{name}: ds is wrong (error {err:.2g} against F.softmax_backward, {err_num:.2g} against "
                f"central differences) — "
                + (mistake or "check each factor of ds = p ⊙ (dp − Σ_j dp_j p_j), the sum along axis -1"))
    if fb.passed:
        fb.note("error: rel_error_tensor, max |a − b| / max(|a| + |b|) over the tensor. The masked entries "
                "got exactly 0 because p = 0 there: no special case needed")
    return fb


def _softmax_answer(fn) -> tuple[bool, str]:
    if not callable(fn):
        return False, "pass your function itself: softmax_backward, not softmax_backward(...)"
    fb = check_softmax_backward(fn)
    return fb.passed, ("right: " if fb.passed else "not yet: ") + "one line per problem below\n" + str(fb)


# ------------------------------------------------------------------ code exercise: the causal softmax

def causal_softmax(S):
    """P = softmax of the scores with the future masked: P[..., i, j] = 0 for j > i, each row summing to 1.

    S: (..., T, T) scores (query i, key j).  Returns P: (..., T, T).
    """
    T = S.shape[-1]
    future = np.triu(np.ones((T, T), dtype=bool), k=1)        # (T, T)  True where j > i
    masked = np.where(future, -np.inf, S)                     # (..., T, T)  −∞: exp(−∞) = 0
    e = np.exp(masked - masked.max(axis=-1, keepdims=True))   # (..., T, T)  stable: the diagonal is finite
    return e / e.sum(axis=-1, keepdims=True)


def _softmax_masked(S, hide):
    return F.softmax(np.where(hide, -np.inf, S))


def _causal_variants(S) -> dict:
    T = S.shape[-1]
    upper = np.triu(np.ones((T, T), dtype=bool), k=1)
    P = causal_softmax(S)
    return {
        "past": _softmax_masked(S, np.tril(np.ones((T, T), dtype=bool), k=-1)),
        "diagonal": np.nan_to_num(_softmax_masked(S, np.triu(np.ones((T, T), dtype=bool), k=0))),
        "zero": F.softmax(np.where(upper, 0.0, S)),
        "after": np.where(upper, 0.0, F.softmax(S)),
        "axis": np.where(upper, 0.0, 1.0) * _softmax_masked_axis0(S, upper),
        "transposed": np.swapaxes(P, -1, -2),
    }


def _softmax_masked_axis0(S, upper):
    m = np.where(upper, -np.inf, S)
    e = np.exp(m - m.max(axis=-2, keepdims=True))
    return e / e.sum(axis=-2, keepdims=True)


CAUSAL_MISTAKES = {
    "past": ("the mask hides the past: query i may look at keys j ≤ i, so mask the entries above the "
             "diagonal (j > i), not below it"),
    "diagonal": ("the diagonal is masked too: position i may look at itself (j ≤ i); only j > i is the "
                 "future"),
    "zero": ("the future scores were set to 0, not −∞: exp(0) = 1, so the future still gets weight; set "
             "them to −∞ before the softmax"),
    "after": ("the future was zeroed after the softmax: the rows no longer sum to 1; mask the scores with "
              "−∞ before the softmax"),
    "axis": "the softmax runs over the wrong axis: normalise each row (query), along the last axis",
    "transposed": "P is transposed: row i is query i, column j key j, so the zeros lie above the diagonal",
}


def check_causal_softmax(fn) -> tuple[bool, str]:
    """Run the learner's ``causal_softmax(S)`` on random (2, 5, 5) float64 scores; name the first mistake."""
    if not callable(fn):
        return False, "pass your function itself, `causal_softmax`, without calling it"
    S = np.random.default_rng(3).standard_normal((2, 5, 5))          # (2, 5, 5)
    right = causal_softmax(S)
    try:
        got = fn(S.copy())
    except NotImplementedError:
        return False, "not written yet: replace `raise NotImplementedError` by your code"
    except Exception as exc:                                         # the learner's code: name what it raised
        return False, f"it raised {type(exc).__name__}: {exc}"
    P, why = _as_array(got)
    if why:
        return False, why.replace("softmax_backward", "causal_softmax").replace("ds", "P")
    if P.shape != right.shape:
        return False, f"P has shape {P.shape} for scores of shape {S.shape}: it must have the scores' shape"
    if not np.all(np.isfinite(P)):
        return False, ("P contains NaN or inf: subtract each row's maximum before exp, and mask with −∞ "
                       "only the future (j > i), so that every row keeps a finite score")
    if _close(P, right, 1e-10):
        return True, ("right: zeros above the diagonal, every row a probability distribution over the "
                      "keys j ≤ i, as the library's attention computes it")
    with np.errstate(invalid="ignore"):                              # a slip may mask a whole row
        variants = _causal_variants(S)
    for kind, value in variants.items():
        if _close(P, value, 1e-10):
            return False, CAUSAL_MISTAKES[kind]
    if not np.allclose(P.sum(axis=-1), 1.0):
        return False, "the rows of P do not sum to 1: the softmax normalises each row over its keys"
    return False, ("P's values are off: mask the scores with −∞ where j > i, then take the softmax along "
                   "the last axis")


# ------------------------------------------------------------------ before the dashboard: a prediction
STRENGTH_OPTIONS = {
    "a": "(a) a weaker verse: fewer commas, but still some;",
    "b": "(b) exactly the base model's own text, character for character;",
    "c": "(c) random characters: the adapter's layers now output nothing useful;",
    "d": "(d) inventory lines: switching one adapter off brings the other back.",
}
STRENGTH_ANSWER = "b"

CAUSAL_OPTIONS = {
    "a": "(a) all 16 positions: attention mixes every position with every other;",
    "b": "(b) the last position only;",
    "c": "(c) none: the last output predicts a 17th character, which is not in the input;",
    "d": "(d) the first 15 positions, but not the last.",
}
CAUSAL_ANSWER = "b"

# ------------------------------------------------------------------ LoRA on all four projections
GPT_D, GPT_L, ALL4_R = 768, 12, 4
ALL4_PARAMS = 4 * 2 * ALL4_R * GPT_D * GPT_L


EXERCISES_03: dict[str, Exercise] = {
    "softmax_backward": Exercise(
        prompt=("Write softmax_backward(dp, p): p = softmax(s) along the last axis, dp = dL/dp, both of "
                "shape (..., n); return ds = dL/ds of the same shape. Pass the function itself."),
        answer=softmax_backward,
        check=_softmax_answer,
        solution=(inspect.getsource(softmax_backward) + "\nOne row: J = diag(p) − p pᵀ is symmetric, so "
                  "ds = J dp = p ⊙ dp − p (pᵀ dp). The library's one-liner is "
                  "lora_np.functional.softmax_backward."),
    ),
    "predict_strength_zero": Exercise(
        prompt=("You pick the verse adapter and slide its strength from 1 down to 0 (same prompt, same "
                "seed). What does the model write at strength 0?\n" + "\n".join(STRENGTH_OPTIONS.values())),
        answer=STRENGTH_ANSWER,
        check=choice_of(STRENGTH_ANSWER, options={
            "a": ("no: that is what a strength between 0 and 1 may do; at 0 the update s·B·A is multiplied "
                  "by 0 — what is left of the adapter then?"),
            "b": "",
            "c": ("no: the LoRA layers still hold the frozen W0, which the base model uses; only the "
                  "update s·B·A is scaled"),
            "d": "no: one adapter is loaded at a time; the inventory adapter is not in the model",
        }, right=("right: ΔW = 0·s·B·A = 0, so each LoRA layer computes x W0ᵀ + b0, the base model's "
                  "layer; with the same seed the sampler draws the same characters")),
        solution=("At strength 0 every update is 0·s·B·A = 0: each LoRA layer computes the frozen x W0ᵀ + b0 "
                  "of the base model, so the whole model is the base model, and with the same seed the "
                  "sampler draws the same characters: the base model's own text (b). In between (a) is what "
                  "happens, unevenly, because the softmax and the sampling are not linear."),
    ),
    "predict_causal_last": Exercise(
        prompt=("A causal language model reads 16 characters and outputs, at each position, the scores of "
                "the next character. You change the LAST input character only. Which positions' outputs "
                "change?\n" + "\n".join(CAUSAL_OPTIONS.values())),
        answer=CAUSAL_ANSWER,
        check=choice_of(CAUSAL_ANSWER, options={
            "a": ("no: in a causal model position t attends to positions ≤ t only (the mask sets the scores "
                  "of later keys to −∞); which positions can see the last one?"),
            "b": "",
            "c": ("no: the output at the last position is computed FROM the last input (it attends to "
                  "itself); what it predicts is the next character, but it reads this one"),
            "d": ("no: that is the opposite of the mask: the earlier positions cannot see the last "
                  "character, so nothing they compute can depend on it"),
        }, right=("right: only the last position can see the last character; every earlier output is "
                  "exactly unchanged, as section 3 measured")),
        solution=("The mask lets position t attend to keys j ≤ t. The last character is key T − 1, visible "
                  "only to query T − 1 (itself), in every layer; the MLP and LayerNorm act per position. So "
                  "only the last output changes (b); the first 15 are bit-identical."),
    ),
    "lora_all_four_params": Exercise(
        prompt=(f"A GPT-2-small-sized model has L = {GPT_L} blocks of width d = {GPT_D}. How many parameters "
                f"does LoRA train on all four attention projections W_q, W_k, W_v, W_o (each d × d) at rank "
                f"r = {ALL4_R}?"),
        answer=ALL4_PARAMS,
        check=numeric(ALL4_PARAMS, integer=True, mistakes=[
            (ALL4_PARAMS // 2, ("that is half: each adapted matrix trains A (r, d) AND B (d, r), and all "
                                "four projections of every block are adapted")),
            (ALL4_PARAMS // GPT_L, "that is one block's count; each of the L blocks has its own adapters"),
            (ALL4_PARAMS // 4, "that is one projection's count in every block; four projections are adapted"),
            (4 * GPT_D * GPT_D * GPT_L, "that is full fine-tuning of the four projections, d·d each"),
            (4 * ALL4_R * ALL4_R * GPT_L, "A is (r, d) and B is (d, r), not r × r"),
        ], too_large="count A (r, d) and B (d, r) for each of the four projections, in each block",
           too_small="count A (r, d) and B (d, r) for each of the four projections, in each of the L blocks",
           right="right: n·2·r·d·L; the same budget as W_q and W_v at rank 8, or W_q alone at rank 16"),
        solution=(f"Each adapted d × d projection trains A: (r, d) and B: (d, r), that is 2·r·d = "
                  f"2·{ALL4_R}·{GPT_D} = {2 * ALL4_R * GPT_D:,}. Four projections per block: "
                  f"{4 * 2 * ALL4_R * GPT_D:,}; {GPT_L} blocks: {ALL4_PARAMS:,}, "
                  f"{ALL4_PARAMS / 124e6:.2%} of GPT-2 small's 124 million parameters."),
    ),
    "causal_softmax": Exercise(
        prompt=("Write causal_softmax(S): S, of shape (..., T, T), holds the scores of query i (row) for "
                "key j (column); return P of the same shape, zero where j > i, each row summing to 1. Pass "
                "the function itself."),
        answer=causal_softmax,
        check=check_causal_softmax,
        solution=(inspect.getsource(causal_softmax) + "\nMask the scores, not the probabilities: −∞ before "
                  "the softmax gives exp(−∞) = 0 and rows that still sum to 1. The diagonal stays (a "
                  "position may look at itself), so every row has a finite maximum."),
    ),
}

register(EXERCISES_03)
