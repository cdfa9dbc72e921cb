"""Notebook 07's exercises and checkers (registered with :func:`lora_np.course.exercises.register`).

Every right answer is computed here from the quantities in its question:

* prefix tuning trains P_k and P_v, each (p, d), in every one of the L attention layers: 2·p·d·L;
* a query scores T + p keys instead of T: attention's cost grows by the factor T(T + p) / T² = (T + p) / T;
* merged LoRA is one matrix W0 + s·B·A of W0's shape: the base model's products whatever r;
* the prefix's gradient: dK = dK'[:, p:], dP_k = Σ_batch dK'[:, :p] (the prefix comes first, K' = [P_k; K]).
"""
from __future__ import annotations

from .. import backend
from .exercises import Exercise, choice_of, numeric, register, yes_no

# ------------------------------------------------------------------ before the dashboard: a prediction
PREDICT_OPTIONS = {
    "a": "(a) every method's multiply-adds grow about 16-fold, like its trainable parameters;",
    "b": "(b) merged LoRA's stay exactly the base model's at every k; the other methods add a small fraction "
         "of the base model's work, more as k grows;",
    "c": "(c) the prefix adds none: it adds no layer, only parameters;",
    "d": "(d) the adapters add the most at every k, since they train the most.",
}
PREDICT_ANSWER = "b"

# ------------------------------------------------------------------ prefix tuning on a GPT-2-small size
GPT_L, GPT_D, GPT_HEADS, GPT_P = 12, 768, 12, 20
GPT_PREFIX_PARAMS = 2 * GPT_P * GPT_D * GPT_L

# ------------------------------------------------------------------ attention's cost with a prefix
COST_T, COST_P = 64, 16
COST_FACTOR = COST_T * (COST_T + COST_P) / COST_T ** 2

# ------------------------------------------------------------------ merged LoRA at a large rank
MERGED_R = 64
MERGED_SLOWER = False


# ------------------------------------------------------------------ code: the prefix's gradient
def split_prefix_grad(dK_full, p):
    """dK_full: (batch, p + T, d), the gradient at K' = [P_k; K]. Returns dK: (batch, T, d), dP_k: (p, d)."""
    dK = dK_full[:, p:]                  # K's rows come after the prefix's p rows
    dP_k = dK_full[:, :p].sum(axis=0)    # one prefix shared by the whole batch: add every example's part
    return dK, dP_k


SPLIT_SOLUTION = '''def split_prefix_grad(dK_full, p):
    dK = dK_full[:, p:]                  # K's rows come after the prefix's p rows
    dP_k = dK_full[:, :p].sum(axis=0)    # one prefix shared by the whole batch: add every example's part
    return dK, dP_k'''


def _close(a, b) -> bool:
    """Same shape and equal up to rounding (host arrays: their own methods, no array library needed)."""
    return a.shape == b.shape and float(abs(a - b).max()) <= 1e-12 * (1 + float(abs(b).max()))


def check_split(fn) -> tuple[bool, str]:
    """Run the learner's ``split_prefix_grad`` on a random dK' (batch 3, p = 2, T = 5, d = 4) and name
    the first thing that is wrong; the reference is never shown."""
    if not callable(fn):
        return False, "pass your function itself, `split_prefix_grad`, without calling it"
    batch, p, T, d = 3, 2, 5, 4
    dK_device = backend.Rng(0).standard_normal((batch, p + T, d), dtype="float64")   # the notebook's xp
    dK_full = backend.to_numpy(dK_device)
    want_dK, want_dP = split_prefix_grad(dK_full, p)
    try:
        got = fn(dK_device.copy(), p)
    except NotImplementedError:
        return False, "not written yet: replace `raise NotImplementedError` by your code"
    except Exception as exc:             # the learner's code: name what it raised
        return False, f"it raised {type(exc).__name__}: {exc}"
    if not isinstance(got, tuple) or len(got) != 2:
        return False, "it must return two arrays: `return dK, dP_k`"
    try:
        dK, dP = (backend.to_numpy(a) for a in got)
    except Exception as exc:             # e.g. a ragged list
        return False, f"dK and dP_k must be arrays: {type(exc).__name__}: {exc}"
    shapes = f"(batch {batch}, p = {p}, T = {T}, d = {d})"
    if dK.shape == want_dP.shape and dP.shape == want_dK.shape:
        return False, "it returned (dP_k, dK); it must return dK first, then dP_k"
    if dK.shape != want_dK.shape:
        return False, (f"dK has shape {dK.shape} for dK' of shape {dK_full.shape} {shapes}: it must have K's "
                       f"shape (batch, T, d), without the prefix's rows")
    if dP.shape == (batch, p, d):
        return False, ("dP_k has shape (batch, p, d): but there is one prefix, of shape (p, d), used by "
                       "every example of the batch, so its gradient collects every example's part")
    if dP.shape != want_dP.shape:
        return False, f"dP_k has shape {dP.shape} {shapes}: it must have the prefix's shape (p, d)"
    if _close(dK, dK_full[:, :T]) or _close(dP, dK_full[:, T:].sum(axis=0)):
        return False, ("the split is at the wrong end: the prefix comes first, K' = [P_k; K], so its rows "
                       "are the first p and K's the last T")
    if not _close(dK, want_dK):
        return False, "dK's values are not K's rows of dK'"
    if _close(dP, want_dP / batch):
        return False, ("dP_k is the batch mean: the loss adds every example's loss over the shared prefix, "
                       "so the gradients add up too (the 1/batch of a mean loss is already inside dK')")
    if not _close(dP, want_dP):
        return False, "dP_k's values are not the prefix rows' gradient, collected over the batch"
    return True, ("right: the prefix's rows of dK', added up over the batch (the same for V), as "
                  "prefix_attention_backward does")


EXERCISES_07: dict[str, Exercise] = {
    "predict_peft_costs": Exercise(
        prompt=("You will slide k from 1 to 16, so every method trains 16 times more parameters. What "
                "happens to the work of one forward pass (the multiply-adds printed under the figures)?\n"
                + "\n".join(PREDICT_OPTIONS.values())),
        answer=PREDICT_ANSWER,
        check=choice_of(PREDICT_ANSWER, options={
            "a": ("no: a trained number is not a multiply-add; ask, for each method, what its trained "
                  "numbers add to the road at inference, and how that grows with k"),
            "b": "",
            "c": ("no: a prefix adds no layer, but each query then scores T + k keys instead of T, so both "
                  "of attention's products get longer"),
            "d": ("no: per token and block, an adapter pair adds 2·(m·d + d·m) multiply-adds, and LoRA on "
                  "two projections 2·(r·d + d·r): at equal k the same, and the biases the adapters also "
                  "train are additions, not products"),
        }, right=("right: merged, ΔW = s·B·A is inside W0, a matrix of W0's shape: the same products and "
                  "multiply-adds whatever the rank")),
        solution=("Merged LoRA replaces W0 by W0 + s·B·A, a matrix of the same shape: the merged model does "
                  "the base model's products and multiply-adds at every k (b). The others: unmerged LoRA "
                  "adds x·Aᵀ and u·Bᵀ, 2·r·d per token per adapted matrix; the adapters 2·m·d per token per "
                  "adapter; the prefix makes each query score T + k keys. All grow in proportion to k, but "
                  "from a small fraction of the base model's work, not 16-fold (not a); the prefix's is not "
                  "zero (not c); the adapters' equals unmerged LoRA's at equal k here (not d)."),
    ),
    "prefix_params_gpt2_small": Exercise(
        prompt=(f"A GPT-2-small-sized model has L = {GPT_L} blocks of width d = {GPT_D} ({GPT_HEADS} heads). "
                f"How many parameters does prefix tuning with p = {GPT_P} train, with P_k and P_v learned "
                f"directly in every attention layer?"),
        answer=GPT_PREFIX_PARAMS,
        check=numeric(GPT_PREFIX_PARAMS, integer=True, mistakes=[
            (GPT_P * GPT_D * GPT_L, "that counts one of P_k and P_v per layer; each layer learns both"),
            (2 * GPT_P * GPT_D, "that is one layer's count; each of the L layers has a prefix of its own"),
            (GPT_P * GPT_D, "that is one P_k of one layer; count P_v too, in each of the L layers"),
            (2 * GPT_P * GPT_D * GPT_L * GPT_HEADS, "the heads split d into slices of d/h; they do not "
                                                    "multiply the count"),
            (2 * GPT_P * GPT_L, "each of the p prefix slots is a d-wide vector, not one number"),
        ], too_large="count P_k and P_v, each (p, d), once per attention layer",
           too_small="count P_k and P_v, each (p, d), in every one of the L attention layers",
           right="right: 2·p·d per layer, L layers; well under 1% of a 124-million-parameter model"),
        solution=(f"Per attention layer P_k and P_v are each (p, d): 2·p·d = 2·{GPT_P}·{GPT_D} = "
                  f"{2 * GPT_P * GPT_D:,}. Over L = {GPT_L} layers: {2 * GPT_P * GPT_D:,}·{GPT_L} = "
                  f"{GPT_PREFIX_PARAMS:,}. The {GPT_HEADS} heads split each d-wide vector into slices of "
                  f"d/h = {GPT_D // GPT_HEADS}; they do not change the count. That is "
                  f"{GPT_PREFIX_PARAMS / 124e6:.2%} of GPT-2 small's 124 million parameters. (Li & Liang "
                  f"train the prefix through an MLP for stability and keep only its output afterwards: the "
                  f"count while training is larger.)"),
    ),
    "attention_cost_factor": Exercise(
        prompt=(f"Per head, attention's two products (QK'ᵀ and its softmax times V') cost in proportion to "
                f"the number of query-key pairs. For an input of T = {COST_T} tokens and a prefix of "
                f"p = {COST_P}, by what factor does that cost grow over the base model's? (a number, "
                f"within 0.005)"),
        answer=COST_FACTOR,
        check=numeric(COST_FACTOR, abs_tol=0.005, mistakes=[
            ((COST_T + COST_P) ** 2 / COST_T ** 2, "that extends the queries too; only the keys and values "
                                                   "get the prefix, the T queries stay"),
            (COST_P / COST_T, "that is the increase, not the factor: the factor compares the new cost with "
                              "the old one"),
            (COST_T / (COST_T + COST_P), "that is the old cost over the new one; the question asks new over "
                                         "old"),
            ((COST_T + COST_P) / COST_P, "that divides by p; compare T·(T + p) pairs with the base model's "
                                         "T·T"),
        ], too_large="count the query-key pairs: T queries, each scoring T + p keys, against T·T",
           too_small="count the query-key pairs: T queries, each scoring T + p keys, against T·T",
           right="right: (T + p)/T, large for short inputs and small for long ones"),
        solution=(f"The base model scores T·T = {COST_T}·{COST_T} = {COST_T ** 2:,} pairs per head; with "
                  f"the prefix, T·(T + p) = {COST_T}·{COST_T + COST_P} = {COST_T * (COST_T + COST_P):,}. "
                  f"Factor: (T + p)/T = {COST_T + COST_P}/{COST_T} = {COST_FACTOR:.2f}. The projections and "
                  f"the MLP do not change, so the whole forward pass grows by less."),
    ),
    "merged_lora_latency_r64": Exercise(
        prompt=(f"You merge a LoRA adapter of rank r = {MERGED_R} (not 4) into a model's query and value "
                f"projections and serve it one request at a time. Is its latency per forward pass larger "
                f"than the base model's, beyond measurement noise? Answer True or False."),
        answer=MERGED_SLOWER,
        check=yes_no(MERGED_SLOWER,
                     right=("right: merged, the road is as long as before whatever r; the rank costs only "
                            "while training, or while the adapter is kept unmerged"),
                     wrong=("not quite: write down what the merged model computes for one projection, and "
                            "the shape of that matrix; then count its matrix products against the base "
                            "model's")),
        solution=(f"Merging computes W = W0 + s·B·A once, a matrix of W0's shape (d_out, d_in), whatever "
                  f"r = {MERGED_R}: the merged model does exactly the base model's products and "
                  f"multiply-adds, so its latency is the base model's up to noise (False). Unmerged, the "
                  f"adapter adds two thin products per layer, x·Aᵀ then u·Bᵀ, whose cost grows with r."),
    ),
    "prefix_grad_split": Exercise(
        prompt=("Write split_prefix_grad(dK_full, p): dK_full, of shape (batch, p + T, d), is the gradient "
                "at K' = [P_k; K]; return dK, of shape (batch, T, d), and dP_k, of shape (p, d). Pass the "
                "function itself to the checker."),
        answer=split_prefix_grad,
        check=check_split,
        solution=(SPLIT_SOLUTION + "\n\nThe prefix comes first in K' = [P_k; K], so K's rows are the last T. "
                  "One prefix is used by every example of the batch, so its gradient is the sum of the "
                  "examples' (dK' already holds the mean loss's 1/batch). The same split gives dV and dP_v."),
    ),
}

register(EXERCISES_07)
