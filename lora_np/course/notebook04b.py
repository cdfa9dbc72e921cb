"""Notebook 04b (LoRA's variants): its prediction, exercises and checkers.

Every right answer is computed here from the quantities in its question:

* VeRA trains two scaling vectors per adapted (d_out, d_in) layer, λ_d (r,) and λ_b (d_out,): r + d_out,
  while its random A and B are frozen and shared by every layer;
* LoRA's scale is α/r and rsLoRA's α/√r: their ratio is √r, whatever α;
* DoRA's weight: V = W0 + s·B·A, W = m ⊙ V / ‖V‖_rows (each row of V divided by its norm, times m).
"""
from __future__ import annotations

import math

from .. import backend
from .exercises import Exercise, choice_of, numeric, register

# ------------------------------------------------------------------ before the comparison: a prediction
PREDICT_OPTIONS = {
    "a": "(a) every variant's accuracy range overlaps LoRA's: on a small task they all do the same;",
    "b": "(b) DoRA lands clearly above LoRA: its lowest seed above LoRA's highest;",
    "c": "(c) VeRA, with about a sixth of LoRA's trainable parameters, lands below LoRA's whole range, while "
         "rsLoRA's and DoRA's ranges overlap LoRA's;",
    "d": "(d) the seed changes nothing: each variant's three seeds agree to 0.1 point.",
}
PREDICT_ANSWER = "c"

# ------------------------------------------------------------------ VeRA on a 7B model
L7B, D7B, N_PROJ, VERA_R = 32, 4096, 2, 256     # LLaMA-7B's q and v in 32 blocks; VeRA's usual r = 256
VERA_PARAMS_7B = L7B * N_PROJ * (VERA_R + D7B)

# ------------------------------------------------------------------ rsLoRA against LoRA
RS_ALPHA, RS_R = 16, 64
RS_RATIO = (RS_ALPHA / math.sqrt(RS_R)) / (RS_ALPHA / RS_R)


# ------------------------------------------------------------------ code: DoRA's weight
def dora_weight(W0, A, B, m, s):
    """W0: (d_out, d_in), A: (r, d_in), B: (d_out, r), m: (d_out,). W = m ⊙ V / ‖V‖_rows, V = W0 + s B A."""
    xp = backend.get_array_module(W0)
    V = W0 + s * (B @ A)                                                # (d_out, d_in)
    norm = xp.sqrt((V * V).sum(axis=1, keepdims=True))                  # (d_out, 1)  one norm per row
    return m[:, None] * V / norm                                        # (d_out, d_in)


DORA_SOLUTION = '''def dora_weight(W0, A, B, m, s):
    V = W0 + s * (B @ A)                                  # (d_out, d_in)
    norm = np.linalg.norm(V, axis=1, keepdims=True)       # (d_out, 1)  one norm per row
    return m[:, None] * V / norm                          # (d_out, d_in)'''


def _close(a, b) -> bool:
    return a.shape == b.shape and float(abs(a - b).max()) <= 1e-10 * (1 + float(abs(b).max()))


def check_dora(fn) -> tuple[bool, str]:
    """Run the learner's ``dora_weight`` on random tensors (d_out 5, d_in 7, r 2, s = 2) and name the
    first thing that is wrong; the reference is never shown."""
    if not callable(fn):
        return False, "pass your function itself, `dora_weight`, without calling it"
    rng = backend.Rng(7)
    d_out, d_in, r, s = 5, 7, 2, 2.0
    dev = [rng.standard_normal(shape, dtype="float64") for shape in ((d_out, d_in), (r, d_in), (d_out, r))]
    m_dev = abs(rng.standard_normal((d_out,), dtype="float64")) + 0.5
    W0, A, B = (backend.to_numpy(a) for a in dev)
    m = backend.to_numpy(m_dev)
    want = dora_weight(W0, A, B, m, s)                                  # (d_out, d_in)
    try:
        got = fn(dev[0].copy(), dev[1].copy(), dev[2].copy(), m_dev.copy(), s)
    except NotImplementedError:
        return False, "not written yet: replace `raise NotImplementedError` by your code"
    except Exception as exc:             # the learner's code: name what it raised
        return False, f"it raised {type(exc).__name__}: {exc}"
    if got is None:
        return False, "it returned None: is the `return` missing?"
    try:
        W = backend.to_numpy(got)
    except Exception as exc:
        return False, f"it must return one array: {type(exc).__name__}: {exc}"
    if getattr(W, "shape", None) != want.shape:
        return False, (f"W has shape {getattr(W, 'shape', None)}; it must have W0's shape (d_out, d_in) "
                       f"= {want.shape}")
    if _close(W, want):
        return True, ("right: every row of W has the norm m_i and the direction of V's row, as DoRALinear "
                      "computes it")
    V = W0 + s * B @ A
    by_column = V / (V * V).sum(axis=0, keepdims=True) ** 0.5          # (d_out, d_in)  norms of the columns
    if _close(W, m[:, None] * by_column) or _close(W, by_column):
        return False, ("V is divided by its column norms; DoRA normalises each row (one norm per output, "
                       "axis=1)")
    if _close(W, m[:, None] * V / float((V * V).sum()) ** 0.5):
        return False, ("V is divided by one norm of the whole matrix; DoRA divides each row by that row's "
                       "norm (axis=1), so that each output's length is m_i")
    V1 = W0 + B @ A
    if _close(W, m[:, None] * V1 / (V1 * V1).sum(axis=1, keepdims=True) ** 0.5):
        return False, "the scale s is missing: V = W0 + s·B·A"
    if _close(W, V / (V * V).sum(axis=1, keepdims=True) ** 0.5):
        return False, "the rows have length 1: multiply each row by its magnitude m_i"
    if _close(W, m[:, None] * V):
        return False, "V is not normalised: divide each row by its norm before multiplying by m"
    if _close(W, m[:, None] * W0 / (W0 * W0).sum(axis=1, keepdims=True) ** 0.5):
        return False, "the update s·B·A is missing from V"
    norms = (W * W).sum(axis=1) ** 0.5
    if not _close(norms, m):
        return False, "the rows of W must have the norms m (W = m ⊙ V/‖V‖_rows); they do not"
    return False, "the rows have the right norms but not V's directions: V = W0 + s·B·A"


EXERCISES_04B: dict[str, Exercise] = {
    "predict_variant_spread": Exercise(
        prompt=("Each variant is fine-tuned with 3 seeds (the adapter's initialisation and the batch order). "
                "Before running: what will the accuracy ranges (lowest to highest seed) show?\n"
                + "\n".join(PREDICT_OPTIONS.values())),
        answer=PREDICT_ANSWER,
        check=choice_of(PREDICT_ANSWER, options={
            "a": ("no: one variant trains far fewer numbers, through frozen random matrices; ask whether "
                  "that costs anything on this task"),
            "b": ("no: DoRA adds d_out numbers per layer to LoRA's; on a task that LoRA already fixes, ask "
                  "how large a gain that could be next to the spread over seeds"),
            "c": "",
            "d": ("no: the seed changes A's initialisation and the order of the batches; small models "
                  "trained for a few epochs differ by tenths of a point or more"),
        }, right=("right: VeRA trades parameters for accuracy; the others land within or next to each "
                  "other's ranges, so the table is no ranking of them")),
        solution=("VeRA trains r + d_out numbers per layer through frozen shared random A and B: far fewer "
                  "than LoRA, and on this task it stays below LoRA's whole range. rsLoRA (a different scale) "
                  "and DoRA (a magnitude vector more) change little on a task that LoRA fixes already: their "
                  "ranges overlap LoRA's (c). The seeds differ by tenths of a point to about two points in "
                  "accuracy and by several points in grape recall (not d)."),
    ),
    "vera_params_7b": Exercise(
        prompt=(f"VeRA with r = {VERA_R} on the query and value projections ({D7B} × {D7B}) of all {L7B} "
                f"blocks of a 7B model: how many parameters does it train? (Its A and B are frozen random "
                f"matrices, shared by every layer.)"),
        answer=VERA_PARAMS_7B,
        check=numeric(VERA_PARAMS_7B, integer=True, mistakes=[
            (L7B * N_PROJ * VERA_R * (D7B + D7B), "that is LoRA's count at that rank; VeRA freezes A and B "
                                                  "and trains only two scaling vectors"),
            (N_PROJ * (VERA_R + D7B), "that is one block; each of the blocks has its own scaling vectors"),
            (L7B * (VERA_R + D7B), "that counts one projection per block; VeRA is on both q and v"),
            (L7B * N_PROJ * D7B, "that counts only λ_b (d_out); λ_d, of length r, is trained too"),
            (L7B * N_PROJ * VERA_R, "that counts only λ_d (r); λ_b, of length d_out, is trained too"),
            (VERA_PARAMS_7B + VERA_R * (D7B + D7B), "the shared A and B are frozen: they are not trained"),
        ], too_large="per adapted layer VeRA trains λ_d (r) and λ_b (d_out), nothing else",
           too_small="count λ_d (r) and λ_b (d_out) in every adapted layer: q and v of every block",
           right="right: r + d_out per layer, a small fraction of LoRA's r·(d_in + d_out) at the same r"),
        solution=(f"Per adapted layer VeRA trains λ_d, of length r = {VERA_R}, and λ_b, of length "
                  f"d_out = {D7B}: {VERA_R + D7B:,}. Two layers (q, v) per block, {L7B} blocks: "
                  f"{L7B}·2·{VERA_R + D7B:,} = {VERA_PARAMS_7B:,}. LoRA at the same rank would train "
                  f"{L7B * N_PROJ * VERA_R * 2 * D7B:,}."),
    ),
    "rslora_scale_ratio": Exercise(
        prompt=(f"With lora_alpha = {RS_ALPHA} and r = {RS_R}: how many times larger is rsLoRA's scale "
                f"α/√r than LoRA's α/r?"),
        answer=RS_RATIO,
        check=numeric(RS_RATIO, rel_tol=0.005, mistakes=[
            (RS_R, "that is r; the ratio of α/√r to α/r is r/√r"),
            (1 / RS_RATIO, "that is LoRA's scale over rsLoRA's; the question asks rsLoRA's over LoRA's"),
            (RS_ALPHA / math.sqrt(RS_R), "that is rsLoRA's scale itself; divide it by LoRA's"),
            (RS_ALPHA / RS_R, "that is LoRA's scale itself; divide rsLoRA's by it"),
        ], too_large="divide α/√r by α/r: α cancels",
           too_small="divide α/√r by α/r: α cancels",
           right="right: √r, whatever α; at large ranks LoRA's α/r shrinks the update that much more"),
        solution=(f"(α/√r) / (α/r) = r/√r = √r = √{RS_R} = {RS_RATIO:g}; α cancels. rsLoRA's scale is "
                  f"{RS_ALPHA / math.sqrt(RS_R):g}, LoRA's {RS_ALPHA / RS_R:g}."),
    ),
    "dora_weight": Exercise(
        prompt=("Write dora_weight(W0, A, B, m, s): V = W0 + s·B·A, of shape (d_out, d_in); return "
                "W = m ⊙ V / ‖V‖_rows, each row of V divided by its own norm and multiplied by m_i. Pass the "
                "function itself to the checker."),
        answer=dora_weight,
        check=check_dora,
        solution=(DORA_SOLUTION + "\n\nEach row of W is one output's weights; DoRA gives it the direction of "
                  "V's row and the length m_i, so m (d_out,) is broadcast over the columns (m[:, None])."),
    ),
}

register(EXERCISES_04B)
