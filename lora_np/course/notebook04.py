"""Notebook 04 (adapters in practice): its predictions, exercises and checkers.

Every right answer is computed here from the quantities in its question:

* strength t scales the active update to t·s·B·A, so t = 0 is the base model exactly, whatever the adapter;
* a blend is w·ΔW_a + (1 − w)·ΔW_b; the two adapters share the grape fix, so the even blend keeps most
  of both;
* LoRA of rank r on a d × d projection stores r·(d + d) numbers; 2 projections in each of L layers, 2 bytes
  each in fp16: 2·L·r·2d·2 bytes (1 MiB = 2²⁰ bytes);
* merged, W = W0 + s·B·A gives the unmerged logits up to float32 rounding (~1e-7 relative), far below the
  margins between classes: no test fruit changes class;
* the exact linear blend stacks the factors: B = [w·s_a·B_a, (1 − w)·s_b·B_b], A = [A_a; A_b], scale 1.
"""
from __future__ import annotations

from .. import backend
from .exercises import Exercise, choice_of, numeric, register, yes_no

# ------------------------------------------------------------------ before the adapter switcher
SWITCH_OPTIONS = {
    "a": "(a) both accuracies drop to about 10%: at strength 0 the model has lost its adapter and guesses;",
    "b": "(b) both accuracies become exactly the base model's, the same as choosing \"none\";",
    "c": "(c) they land halfway between the base model's and harvest_b's adapter's;",
    "d": "(d) they become harvest_a's adapter's, the other adapter on the model.",
}
SWITCH_ANSWER = "b"

# ------------------------------------------------------------------ before the blend slider
BLEND_OPTIONS = {
    "a": "(a) near the base model's (below 50%) on both: the two updates pull in different directions and "
         "cancel;",
    "b": "(b) within about 3 points of each adapter's own accuracy on its own harvest, on both harvests;",
    "c": "(c) exactly the average of the two rows of the table (each adapter on that harvest);",
    "d": "(d) clearly better than either adapter alone on both harvests (over 95%).",
}
BLEND_ANSWER = "b"

# ------------------------------------------------------------------ an adapter file for a 7B model
L7B, D7B, R7B, N_PROJ = 32, 4096, 8, 2          # LLaMA-7B: 32 blocks of width 4096; LoRA r = 8 on q and v
FP16 = 2
ADAPTER_NUMBERS_7B = L7B * N_PROJ * R7B * (D7B + D7B)
ADAPTER_MIB_7B = ADAPTER_NUMBERS_7B * FP16 / 2 ** 20

# ------------------------------------------------------------------ merged accuracy
MERGED_ACCURACY_CHANGES = False


# ------------------------------------------------------------------ code: the exact linear blend
def stack_blend(A_a, B_a, s_a, A_b, B_b, s_b, w):
    """A_a: (r_a, d_in), B_a: (d_out, r_a), A_b: (r_b, d_in), B_b: (d_out, r_b).
    Returns A: (r_a + r_b, d_in), B: (d_out, r_a + r_b) with B A = w s_a B_a A_a + (1 − w) s_b B_b A_b."""
    xp = backend.get_array_module(A_a)
    A = xp.concatenate([A_a, A_b], axis=0)                              # (r_a + r_b, d_in)
    B = xp.concatenate([w * s_a * B_a, (1 - w) * s_b * B_b], axis=1)   # (d_out, r_a + r_b)
    return A, B


STACK_SOLUTION = '''def stack_blend(A_a, B_a, s_a, A_b, B_b, s_b, w):
    A = np.concatenate([A_a, A_b], axis=0)                              # (r_a + r_b, d_in)
    B = np.concatenate([w * s_a * B_a, (1 - w) * s_b * B_b], axis=1)   # (d_out, r_a + r_b)
    return A, B'''


def _close(a, b) -> bool:
    """Same shape and equal up to rounding (host arrays)."""
    return a.shape == b.shape and float(abs(a - b).max()) <= 1e-10 * (1 + float(abs(b).max()))


def check_stack(fn) -> tuple[bool, str]:
    """Run the learner's ``stack_blend`` on random factors (d_in 6, d_out 5, r_a 2, r_b 3, w = 0.3)
    and name the first thing that is wrong; the reference is never shown."""
    if not callable(fn):
        return False, "pass your function itself, `stack_blend`, without calling it"
    rng = backend.Rng(4)
    d_in, d_out, r_a, r_b, s_a, s_b, w = 6, 5, 2, 3, 2.0, 0.5, 0.3
    dev = [rng.standard_normal(shape, dtype="float64") for shape in ((r_a, d_in), (d_out, r_a),
                                                                      (r_b, d_in), (d_out, r_b))]
    A_a, B_a, A_b, B_b = (backend.to_numpy(a) for a in dev)
    want = w * s_a * B_a @ A_a + (1 - w) * s_b * B_b @ A_b              # (d_out, d_in)
    try:
        got = fn(dev[0].copy(), dev[1].copy(), s_a, dev[2].copy(), dev[3].copy(), s_b, w)
    except NotImplementedError:
        return False, "not written yet: replace `raise NotImplementedError` by your code"
    except Exception as exc:             # the learner's code: name what it raised
        return False, f"it raised {type(exc).__name__}: {exc}"
    if not isinstance(got, tuple) or len(got) != 2:
        return False, "it must return two arrays: `return A, B`"
    try:
        A, B = (backend.to_numpy(a) for a in got)
    except Exception as exc:
        return False, f"A and B must be arrays: {type(exc).__name__}: {exc}"
    if A.shape == (d_out, r_a + r_b) and B.shape == (r_a + r_b, d_in):
        return False, "it returned (B, A); it must return A first, then B"
    if A.shape != (r_a + r_b, d_in):
        return False, (f"A has shape {A.shape} for A_a {A_a.shape} and A_b {A_b.shape}: stack the rows "
                       f"of the two A's, so that A is (r_a + r_b, d_in)")
    if B.shape != (d_out, r_a + r_b):
        return False, (f"B has shape {B.shape} for B_a {B_a.shape} and B_b {B_b.shape}: put the columns "
                       f"of the two B's side by side, so that B is (d_out, r_a + r_b)")
    got_dW = B @ A                                                      # (d_out, d_in)
    if _close(got_dW, want):
        return True, ("right: B A adds the two scaled updates, a LoRA of rank r_a + r_b with scale 1, as "
                      "add_weighted_adapter's 'linear' combination does")
    if _close(got_dW, w * B_a @ A_a + (1 - w) * B_b @ A_b):
        return False, "the weights are right but the scales s_a and s_b are missing: ΔW_a is s_a·B_a·A_a"
    if _close(got_dW, s_a * B_a @ A_a + s_b * B_b @ A_b):
        return False, "the scales are right but the blend weights w and 1 − w are missing"
    if _close(got_dW, w * w * s_a * B_a @ A_a + (1 - w) ** 2 * s_b * B_b @ A_b) or \
            _close(got_dW, w * w * s_a * s_a * B_a @ A_a + (1 - w) ** 2 * s_b * s_b * B_b @ A_b):
        return False, ("a weight or a scale is applied twice (once in A and once in B): B A multiplies them; "
                       "put each factor on one side only")
    if _close(got_dW, (1 - w) * s_a * B_a @ A_a + w * s_b * B_b @ A_b):
        return False, "w and 1 − w are swapped: w weighs adapter a"
    return False, "B A is not w·s_a·B_a·A_a + (1 − w)·s_b·B_b·A_b: check which block of B goes with which A"


EXERCISES_04: dict[str, Exercise] = {
    "predict_switch_strength0": Exercise(
        prompt=("You will pick harvest_b in the dropdown and slide its strength from 1 down to 0. At "
                "strength 0, what are the accuracies on the two harvests?\n"
                + "\n".join(SWITCH_OPTIONS.values())),
        answer=SWITCH_ANSWER,
        check=choice_of(SWITCH_ANSWER, options={
            "a": ("no: the adapter adds t·s·B·A to a pretrained W0; with t = 0 nothing is added, and W0 "
                  "alone is what the base model was"),
            "b": "",
            "c": ("no: that is what strength 0.5 gives (roughly); ask what t·s·B·A is at t = 0"),
            "d": ("no: the strength scales the active adapter only; the other adapter is not used while "
                  "harvest_b is active"),
        }, right=("right: the update is t·s·B·A; at t = 0 it is zero and the model is W0, the base model "
                  "exactly (the same bits as disabling the adapters)")),
        solution=("The active adapter's update is scaled to t·s·B·A. At t = 0 it is exactly zero, so every "
                  "LoRA layer computes x·W0ᵀ + b0: the base model, with the base model's accuracies on both "
                  "harvests, bit for bit the same as choosing \"none\" (b). The other adapter is not active, "
                  "so it plays no part (not d); the base model is a pretrained model, far above chance "
                  "(not a); halfway is strength 0.5, not 0 (not c)."),
    ),
    "predict_blend_half": Exercise(
        prompt=("The slider starts at w = 0.5, an even blend 0.5·ΔW(harvest_a) + 0.5·ΔW(harvest_b). Before "
                "moving it: how will the even blend do on the two harvests?\n"
                + "\n".join(BLEND_OPTIONS.values())),
        answer=BLEND_ANSWER,
        check=choice_of(BLEND_ANSWER, options={
            "a": ("no: both harvests share the grape-to-raisin problem, and both adapters learned to fix "
                  "it; the shared part of the two updates adds up, it does not cancel"),
            "b": "",
            "c": ("no: the blend mixes the weights, not the predictions; a model's accuracy is not linear "
                  "in its weights, so there is no reason for the average"),
            "d": ("no: each adapter was trained for its own harvest; half of it fixes that harvest less "
                  "well, not better"),
        }, right=("right: the two adapters learned much the same grape fix, so half of each still carries "
                  "it; what each adds for its own lamp is weakened, which costs a little")),
        solution=("Both harvests share the planted grape-to-raisin shift, and each adapter learned to undo "
                  "it; they differ in the other directions of their own lamp. Half of each adapter keeps the "
                  "shared fix at full strength (0.5 + 0.5) and halves the rest, so each harvest loses a "
                  "little: here about 90% and 92% against the adapters' own 93.0% and 92.2% (b). The blend "
                  "mixes weights, not predictions, so the average of the rows (c) is no law."),
    ),
    "lora_file_mib_7b": Exercise(
        prompt=(f"A LoRA adapter of rank r = {R7B} on the query and value projections ({D7B} × {D7B} each) "
                f"of all {L7B} blocks of a 7B model, stored in fp16 (2 bytes per number): how large is the "
                f"file, in MiB (2²⁰ bytes), leaving out its small header? (within 1 %)"),
        answer=ADAPTER_MIB_7B,
        check=numeric(ADAPTER_MIB_7B, rel_tol=0.01, mistakes=[
            (ADAPTER_MIB_7B / N_PROJ, "that is half of it: one projection per block (the adapter is on "
                                      "both q and v), or only A or only B of each (each adapted matrix has "
                                      "both)"),
            (ADAPTER_MIB_7B / L7B, "that is one block; the model has many blocks, each with its own adapter"),
            (ADAPTER_MIB_7B * 2, "that is 4 bytes per number (fp32); fp16 stores 2"),
            (ADAPTER_NUMBERS_7B * FP16 / 1e6, "that is in MB (10⁶ bytes); the question asks for MiB, "
                                              "2²⁰ bytes"),
            (L7B * N_PROJ * D7B * D7B * FP16 / 2 ** 20, "that is the size of the projections W0 themselves; "
                                                         "the adapter stores only A and B"),
        ], too_large="count r·(d_in + d_out) numbers per adapted matrix, 2 matrices per block, then bytes",
           too_small="count r·(d_in + d_out) numbers per adapted matrix, 2 matrices per block, then bytes",
           right=("right: a few MiB against the model's ~13 GiB in fp16; adapters for image models that "
                  "adapt many more layers at higher ranks are often 10-150 MB")),
        solution=(f"Per adapted matrix: r·(d_in + d_out) = {R7B}·({D7B} + {D7B}) = {R7B * 2 * D7B:,} "
                  f"numbers. "
                  f"Two matrices (q, v) per block, {L7B} blocks: {ADAPTER_NUMBERS_7B:,} numbers. In fp16: "
                  f"{ADAPTER_NUMBERS_7B * FP16:,} bytes = {ADAPTER_MIB_7B:.2f} MiB "
                  f"(2²⁰ = 1,048,576 bytes per MiB)."),
    ),
    "merged_accuracy_changes": Exercise(
        prompt=("You merge harvest_a into the weights (merge_lora) and measure the test accuracy on "
                "harvest_a again. Merged and unmerged logits differ by float32 rounding. Does the accuracy "
                "change? Answer True or False, then check it: merge_lora(model); "
                "evaluate(model, *harvest_a.test)."),
        answer=MERGED_ACCURACY_CHANGES,
        check=yes_no(MERGED_ACCURACY_CHANGES,
                     right=("right: a rounding step in the logits (about 1e-7 of their size) would flip a "
                            "prediction only for a fruit whose two top logits tie to 7 digits"),
                     wrong=("not quite: compare the size of the merged-vs-unmerged difference (section 3) "
                            "with the gap between a fruit's two largest logits")),
        solution=("Merged and unmerged logits differ by about 1e-7 of their size (section 3's check). A "
                  "prediction changes only when the two largest logits are closer than that; no test fruit "
                  "of harvest_a is that close, so the accuracy is the same to the last fruit (False)."),
    ),
    "stack_blend": Exercise(
        prompt=("Write stack_blend(A_a, B_a, s_a, A_b, B_b, s_b, w): return A, of shape (r_a + r_b, d_in), "
                "and B, of shape (d_out, r_a + r_b), such that B A = w·s_a·B_a A_a + (1 − w)·s_b·B_b A_b "
                "(the exact 'linear' blend, a LoRA of scale 1). Pass the function itself to the checker."),
        answer=stack_blend,
        check=check_stack,
        solution=(STACK_SOLUTION + "\n\nB A = [w·s_a·B_a, (1 − w)·s_b·B_b] [A_a; A_b] = w·s_a·B_a A_a + "
                  "(1 − w)·s_b·B_b A_b: a block product adds the blocks' products. Each weight and scale "
                  "goes on one side only (here on B); on both sides it would be squared."),
    ),
}

register(EXERCISES_04)
