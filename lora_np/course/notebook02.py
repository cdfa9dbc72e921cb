"""Notebook 02's questions (its your-turn pair is checked by :func:`lora_np.course.check_lora_pair`).

Every right answer follows from the question:

* merging folds the adapter into the weight: W = W0 + s·B·A, a (d_out, d_in) matrix like W0;
* the new harvest's shift acts on the 20 input features, x' = (I + U Vᵀ) x, so an exact fix changes the
  first layer alone (W0 ↦ W0 (I + U Vᵀ)⁻¹, a rank-2 change): LoRA on fc1 only can do what fc1 + fc2 do.
"""
from __future__ import annotations

from .. import backend
from .exercises import Exercise, choice_of, register

# ------------------------------------------------------------------ prediction: which layer to adapt
FC1_ONLY_OPTIONS = {
    "a": "(a) close to the pretrained model's few percent: the fix needs both hidden layers;",
    "b": "(b) within a few points of LoRA on fc1 and fc2, with about a third of the parameters;",
    "c": "(c) clearly higher than fc1 and fc2 together: fewer parameters cannot overfit;",
    "d": "(d) about half way: one adapted layer fixes about half of the confusion.",
}
FC1_ONLY_ANSWER = "b"


# ------------------------------------------------------------------ code: merge the adapter by hand
def merge_weight(W0, A, B, s):
    """W = W0 + s·B·A.   W0: (d_out, d_in)  A: (r, d_in)  B: (d_out, r)  ->  W: (d_out, d_in)."""
    return W0 + s * (B @ A)              # (d_out, d_in): one matrix, W0's shape, whatever r


MERGE_SOLUTION = '''def merge_weight(W0, A, B, s):
    return W0 + s * (B @ A)              # (d_out, d_in): (d_out, r) @ (r, d_in), W0's shape'''


def _close(a, b) -> bool:
    """Same shape and equal up to rounding (host arrays)."""
    return a.shape == b.shape and float(abs(a - b).max()) <= 1e-10 * (1 + float(abs(b).max()))


def check_merge(fn) -> tuple[bool, str]:
    """Run the learner's ``merge_weight`` on a random layer (d_out 6, d_in 5, r 2, s = 1.5) and name the
    first thing that is wrong; the reference is never shown."""
    if not callable(fn):
        return False, "pass your function itself, `merge_weight`, without calling it"
    rng = backend.Rng(3)
    W0, A, B = (rng.standard_normal(shape, dtype="float64") for shape in ((6, 5), (2, 5), (6, 2)))
    s = 1.5
    host = [backend.to_numpy(a) for a in (W0, A, B)]
    want = merge_weight(*host, s)                                    # (6, 5)
    try:
        got = fn(W0.copy(), A.copy(), B.copy(), s)
    except NotImplementedError:
        return False, "not written yet: replace `raise NotImplementedError` by your code"
    except Exception as exc:                                         # the learner's code: name what it raised
        return False, (f"it raised {type(exc).__name__}: {exc}; check the order of the product: "
                       f"B is (d_out, r) and A is (r, d_in)")
    if got is None:
        return False, "it returned None: is the `return` missing?"
    try:
        got = backend.to_numpy(got)
    except Exception as exc:                                         # e.g. a tuple of arrays
        return False, f"return one array, W: {type(exc).__name__}: {exc}"
    W0h, Ah, Bh = host
    if got.shape != want.shape:
        return False, (f"W has shape {got.shape} for W0 of shape {W0h.shape}: the merged weight has W0's "
                       f"shape (d_out, d_in)")
    if _close(got, s * Bh @ Ah):
        return False, "that is ΔW = s·B·A alone; the merged weight is W0 plus it"
    if _close(got, W0h + Bh @ Ah):
        return False, "the scale s is missing: the adapter adds s·B·A, not B·A"
    if _close(got, W0h - s * Bh @ Ah):
        return False, "the sign is wrong: merging adds the update to W0"
    if _close(got, W0h):
        return False, "W0 unchanged: the update s·B·A is missing"
    if not _close(got, want):
        return False, "W's values are not W0 plus the scaled product of the two factors"
    return True, ("right: one matrix of W0's shape, so the merged layer costs what the base layer costs, "
                  "as merge_lora does for every adapter")


EXERCISES_02: dict[str, Exercise] = {
    "predict_r16_recall": Exercise(
        prompt="The slider starts at r = 4. Before moving it to r = 16: what will held-out grape recall do? "
               "(a) rise clearly: more rank fits more; (b) stay about the same, or even drop a little; "
               "(c) fall to about zero. Answer 'a', 'b' or 'c'.",
        answer="b",
        check=choice_of("b", options={
            "a": "not here: more rank lets the adapter fit the 500 training fruit better, but the shift "
                 "it has to undo has rank 2, so there is nothing left for the extra rank to fix on new fruit",
            "b": "",
            "c": "no: a larger r can always do what a smaller one does (set the extra rows of A to zero); "
                 "training does not forget how to undo the shift"},
            right="right: the shift has rank 2, so past r ≈ 2–4 the extra rank fits the training fruit, "
                  "not the new harvest; training loss falls, held-out recall does not follow"),
        solution="The new harvest differs from the old by a rank-2 shift of the features. LoRA at r = 2 can "
                 "already undo it; a larger r adds capacity that only fits the 500 labelled fruit more "
                 "closely (lower training loss) without helping on held-out fruit. So (b): the held-out "
                 "panel flattens, or dips a little, while the loss panel keeps improving. Over three seeds "
                 "(section 9) r = 16's mean grape recall is a few points below r = 4's, but the seeds' "
                 "ranges overlap: one seed is an anecdote."),
    "predict_fc1_only": Exercise(
        prompt=("LoRA at r = 4 on fc1 only (1,104 trainable parameters) instead of fc1 and fc2 (3,152): "
                "what will held-out grape recall on the new harvest be?\n"
                + "\n".join(FC1_ONLY_OPTIONS.values())),
        answer=FC1_ONLY_ANSWER,
        check=choice_of(FC1_ONLY_ANSWER, options={
            "a": ("no: ask where the shift acts. It transforms the 20 input features, and fc1 is the layer "
                  "that reads them"),
            "b": "",
            "c": ("no: fewer parameters do not guarantee better held-out numbers; ask which layer the shift "
                  "acts on, and whether adapting that layer alone is enough"),
            "d": ("no: the shift acts on the input features, which fc1 alone reads; there is no reason for "
                  "a half fix"),
        }, right=("right: the shift acts on the input features, x' = (I + UVᵀ)x, so fc1 alone can undo it "
                  "(a rank-2 change of its weight); fc2's adapter adds little")),
        solution=("The new harvest is x' = (I + UVᵀ)x, a change of the 20 input features. fc1 reads them: "
                  "W0 x = W0 (I + UVᵀ)⁻¹ x', and W0 (I + UVᵀ)⁻¹ differs from W0 by a matrix of rank 2. So "
                  "LoRA on fc1 alone, at r ≥ 2, can undo the shift; fc2's adapter is not needed. In our runs "
                  "(seeds 0, 1, 2) fc1 alone reached 85.5–87.5% grape recall and fc1 + fc2 85–90%: (b). "
                  "Check it: finetune(base, task, r=4, target_modules=['fc1'], seed=0)."),
    ),
    "merge_weight": Exercise(
        prompt=("Write merge_weight(W0, A, B, s): the merged weight of a LoRA layer, W0: (d_out, d_in), "
                "A: (r, d_in), B: (d_out, r), s a number. Pass the function itself to the checker."),
        answer=merge_weight,
        check=check_merge,
        solution=(MERGE_SOLUTION + "\n\ny = x W0ᵀ + s (x Aᵀ) Bᵀ = x (W0 + s B A)ᵀ: the merged weight is "
                  "W0 + s·B·A, of W0's shape whatever r, which is why a merged adapter costs nothing at "
                  "inference. unmerge_lora does not subtract it back (that would round): it restores the "
                  "W0 kept aside."),
    ),
}

register(EXERCISES_02)
