"""Notebook 05's exercises and checkers (registered with :func:`lora_np.course.exercises.register`).

Predict, then observe (one question before each dashboard or experiment):

* ``budget_thin_layer`` — what a thin weight does to the break-even rank;
* ``memory_fits`` — which training fits under a 24 GiB and an 80 GiB card's line;
* ``knee_k3`` — where the rank sweep on a shift of planted rank 3 stops climbing;
* ``scaling_fastest`` — which rank learns fastest under alpha/√r.

Exercises at the end (besides ``break_even_4096x11008``, ``fp16_13b_vs_24gb`` and ``fits_24gb``,
registered by :mod:`lora_np.course.exercises` and reused here):

* ``knee_k4`` — the knee of a shift of planted rank 4 (prediction);
* ``checkpoint_fp32_r8`` — the size of a GPT-3 adapter saved in fp32, in MiB (computation);
* ``lora_training_bytes`` — write LoRA's training-memory formula (code).
"""
from __future__ import annotations

import inspect
import math

from .exercises import Exercise, call_for_number, choice_of, numeric, register
from .notebook00 import choice_prompt

MIB = 2 ** 20

# ------------------------------------------------------------------ a GPT-3 adapter saved in fp32
GPT3_LAYERS, GPT3_D, R_CKPT = 96, 12288, 8
GPT3_R8_PARAMS = GPT3_LAYERS * 2 * R_CKPT * (GPT3_D + GPT3_D)       # W_q and W_v in each of 96 layers
FP32_BYTES = 4
CKPT_MIB = GPT3_R8_PARAMS * FP32_BYTES / MIB


# ------------------------------------------------------------------ LoRA's training memory, as code
def lora_training_bytes(n_params, trainable, w, g, o, m):
    """Bytes to train LoRA: the N frozen weights and the T adapter weights are stored (w bytes each);
    only the T trained ones get a gradient (g), optimizer state (o) and a master copy (m)."""
    return (n_params + trainable) * w + trainable * (g + o + m)


TRAINING_CASES = (            # (N, T, w, g, o, m): a 7B model, GPT-2 small in fp32, LLaMA-7B with SGD
    (7_000_000_000, 20_000_000, 2, 2, 8, 4),
    (124_439_808, 294_912, 4, 4, 8, 0),
    (6_738_415_616, 4_194_304, 2, 2, 0, 4),
)
TRAINING_MISTAKES = (
    (lambda N, T, w, g, o, m: T * (w + g + o + m),
     "the frozen weights are still stored, N·w bytes, although they are not trained"),
    (lambda N, T, w, g, o, m: N * (w + g + o + m),
     "that is full fine-tuning: the frozen weights get no gradient, no optimizer state and no master copy"),
    (lambda N, T, w, g, o, m: (N + T) * (w + g + o + m),
     "the frozen weights get no gradient, no optimizer state and no master copy: only the T trained ones do"),
    (lambda N, T, w, g, o, m: N * w + T * (g + o + m),
     "the adapter's own T weights are stored too, w bytes each, besides the N frozen ones"),
    (lambda N, T, w, g, o, m: (N + T) * w + T * (g + o),
     "each trained parameter also has a master copy, m bytes"),
    (lambda N, T, w, g, o, m: (N + T) * w + T * (g + m),
     "each trained parameter also has optimizer state, o bytes"),
    (lambda N, T, w, g, o, m: (N + T) * w + T * (o + m),
     "each trained parameter also has a gradient, g bytes"),
    (lambda N, T, w, g, o, m: lora_training_bytes(N, T, w, g, o, m) / 2 ** 30,
     "that is in GiB; return bytes (the plot converts)"),
)


def _check_training_bytes(fn) -> tuple[bool, str]:
    if not callable(fn):
        return False, (f"expected your function lora_training_bytes (without calling it), "
                       f"got a {type(fn).__name__}")
    for case in TRAINING_CASES:
        value, why = call_for_number(fn, case, "one number of bytes")
        if why:
            return False, why
        if math.isclose(value, lora_training_bytes(*case), rel_tol=1e-9):
            continue
        for wrong, why in TRAINING_MISTAKES:
            if math.isclose(value, wrong(*case), rel_tol=1e-9):
                return False, why
        N, T, w, g, o, m = case
        return False, (f"for N = {N:,}, T = {T:,}, (w, g, o, m) = ({w}, {g}, {o}, {m}) your function "
                       f"returned {value:.4g} bytes: count what is stored for the frozen weights, and what "
                       f"for each trained one")
    return True, ("right: (N + T)·w + T·(g + o + m), the same as lora_memory(...).total "
                  f"(tested on {len(TRAINING_CASES)} settings)")


EXERCISES_05 = {
    "budget_thin_layer": Exercise(
        prompt=choice_prompt("The dashboard starts at a square 256 × 256 weight, where r* = 128. If you "
                             "slide d_in down to 16 (d_out stays 256), the break-even rank r* will:", {
                                 "a": "stay at 128, because d_out did not change",
                                 "b": "fall to about 15",
                                 "c": "fall to 8, half of 16",
                                 "d": "rise, because the weight became thinner"}),
        answer="b",
        check=choice_of("b", options={
            "a": "r* = d_in·d_out / (d_in + d_out) depends on both sizes",
            "b": "",
            "c": "d / 2 is the rule for a square d × d weight only; with d_in ≠ d_out use "
                 "r* = d_in·d_out / (d_in + d_out)",
            "d": "a thinner weight has fewer entries, d_in·d_out, while one rank still costs d_in + d_out: "
                 "compare how the two change"},
            right="right: r* = 16·256 / 272 ≈ 15, just below min(d_in, d_out) = 16; on a thin weight "
                  "LoRA saves little"),
        solution=("(b). r* = d_in·d_out / (d_in + d_out) = 16·256 / (16 + 256) = 4096 / 272 ≈ 15.06. "
                  "One rank costs d_in + d_out = 272 numbers, while the whole weight has only 4,096: "
                  "the break-even rank is close to min(d_in, d_out), so LoRA saves little on a thin weight."),
    ),
    "memory_fits": Exercise(
        prompt=choice_prompt("A nominal 7B model, fp16 mixed precision with Adam, activations not counted. "
                             "Which is true?", {
                                 "a": "full fine-tuning and LoRA (r = 8) both fit on an RTX 4090 (24 GiB)",
                                 "b": "LoRA (r = 8) fits on an RTX 4090; full fine-tuning needs more than "
                                      "an A100's 80 GiB",
                                 "c": "LoRA (r = 8) needs an A100 (80 GiB); full fine-tuning fits on two "
                                      "RTX 4090s",
                                 "d": "neither fits on an A100 (80 GiB)"}),
        answer="b",
        check=choice_of("b", options={
            "a": "full fine-tuning stores 16 bytes for each of the 7·10⁹ parameters: compare that with "
                 "24 GiB",
            "b": "",
            "c": "LoRA stores the frozen fp16 weights (2 bytes each) and very little else: compare that "
                 "with 24 GiB; and full fine-tuning's 16 bytes per parameter is more than two such cards",
            "d": "LoRA stores the frozen fp16 weights (2 bytes each) and very little else: compare that "
                 "with 80 GiB"},
            right="right: LoRA is the frozen fp16 weights (about 13 GiB) plus a few hundred MiB; full "
                  "fine-tuning's 16 bytes per parameter is about 104 GiB"),
        solution=("(b). Full fine-tuning: 7·10⁹ × (2 + 2 + 8 + 4) bytes = 1.12·10¹¹ B ≈ 104.3 GiB, more than "
                  "an A100's 80 GiB. LoRA r = 8 on W_q, W_v: the frozen weights, 7·10⁹ × 2 B ≈ 13.04 GiB, "
                  "plus 4.2M trained parameters × 16 B ≈ 64 MiB: under an RTX 4090's 24 GiB (before the "
                  "activations, which come on top)."),
    ),
    "knee_k3": Exercise(
        prompt=choice_prompt("The new harvest differs by a shift of planted rank k = 3. The sweep trains "
                             "LoRA on fc1 at r = 1, 2, 3, 4, 5, 6, 8. The accuracy against r will:", {
                                 "a": "climb at every step up to r = 8",
                                 "b": "climb up to r = 3, then stay nearly flat",
                                 "c": "be flat from r = 1: one direction is enough",
                                 "d": "be best at r = 1, then fall as larger ranks overfit"}),
        answer="b",
        check=choice_of("b", options={
            "a": "an update of rank 3 can already undo a shift of rank 3 exactly: what is left to gain "
                 "past it?",
            "b": "",
            "c": "a rank-1 update changes the layer along one direction, and the shift moved the fruit "
                 "along k = 3 of them",
            "d": "the sweep trains on 3,000 labelled fruit, many more than the few thousand parameters a "
                 "small rank trains, so overfitting is not what limits a rank here"},
            right="right: below k the update cannot undo every direction of the shift; from r = k on it "
                  "can, and more rank buys (almost) nothing"),
        solution=("(b). The shift is x' = (I + U Vᵀ) x with U, V of shape (20, 3), so W0 (I + U Vᵀ)⁻¹ "
                  "differs from W0 by a rank-3 matrix: a LoRA update of rank 3 on fc1 can undo it exactly, "
                  "one of rank 1 or 2 cannot. The sweep shows it: the accuracy climbs until r = 3 and is "
                  "nearly flat after it."),
    ),
    "scaling_fastest": Exercise(
        prompt=choice_prompt("alpha = 8 and the learning rate are fixed; LoRA on fc2 at r = 1, 4, 16, 64. "
                             "Under s = alpha/√r, whose training loss falls fastest?", {
                                 "a": "r = 1's: its scale s = alpha/√r is the largest",
                                 "b": "r = 64's",
                                 "c": "all the same: the scale corrects for r"}),
        answer="b",
        check=choice_of("b", options={
            "a": "s is largest at r = 1, but ΔW = s·B·A sums r rank-1 terms, and under Adam each of them "
                 "grows at about the same pace: multiply s by r",
            "b": "",
            "c": "that is what alpha/r does: it divides by the r terms of B·A; alpha/√r divides by √r only"},
            right="right: under Adam ΔW grows like s·r·lr per step, and s·r = alpha·√r grows with r; the "
                  "control below shows that it is this larger step, not the rank itself, that is faster"),
        solution=("(b). Adam moves each entry of B by about lr per step, so B·A (a sum of r rank-1 terms) "
                  "grows like r·lr·t and ΔW = s·B·A like s·r·lr·t. With s = alpha/r that is alpha·lr·t at "
                  "every rank; with s = alpha/√r it is alpha·√r·lr·t: 8 times faster at r = 64 than at "
                  "r = 1. A rank-1 adapter with alpha = 64 under alpha/r has the same s·r = 64 and learns "
                  "as fast: the speed-up is the step size."),
    ),
    "knee_k4": Exercise(
        prompt=choice_prompt("What will happen to the knee if the planted rank k is 4 instead of 3?", {
            "a": "it stays at r = 3: the fruit task has not changed",
            "b": "it moves to r = 4",
            "c": "it disappears: the accuracy climbs all the way to r = 8",
            "d": "it moves to r = 8"}),
        answer="b",
        check=choice_of("b", options={
            "a": "the shift is what a rank-r update has to undo, and its rank changed",
            "b": "",
            "c": "past the shift's rank, an update can undo it exactly: what is left to gain?",
            "d": "the exact fix of a rank-k shift is a rank-k change of fc1: how large must r be for it?"},
            right="right: the knee follows the rank of the change the fix has to make"),
        solution=("(b). With k = 4 the exact fix is a rank-4 change of fc1, so r = 1, 2, 3 fall short and "
                  "r = 4 is enough. Run it (seed 0, about 8 s): the accuracy is 82%, 85%, 89%, 92% at "
                  "r = 1…4 and 92-93% from r = 4 to 8; planted_rank_sweep finds the knee at r = 4."),
    ),
    "checkpoint_fp32_r8": Exercise(
        prompt=(f"GPT-3 175B with LoRA r = {R_CKPT} on W_q and W_v ({GPT3_D} × {GPT3_D} each, in each of "
                f"its {GPT3_LAYERS} layers) trains {GPT3_R8_PARAMS:,} parameters. How large is the adapter's "
                f"checkpoint saved in fp32 (4 bytes per parameter)? Answer in MiB (2²⁰ bytes), within 1 %."),
        answer=CKPT_MIB,
        check=numeric(CKPT_MIB, rel_tol=0.01, mistakes=[
            (GPT3_R8_PARAMS * 2 / MIB, "that is the checkpoint in fp16 (2 bytes per parameter); "
                                       "fp32 stores 4"),
            (GPT3_R8_PARAMS * FP32_BYTES / 1e6, "that is in MB (10⁶ bytes); the question asks for MiB, "
                                                "2²⁰ bytes each"),
            (GPT3_R8_PARAMS * FP32_BYTES, "that is in bytes; divide by 2²⁰ bytes per MiB"),
            (GPT3_R8_PARAMS * FP32_BYTES / 2 ** 10, "that is in KiB; a MiB is 2¹⁰ KiB"),
            (GPT3_R8_PARAMS * 16 / MIB, "a checkpoint holds the weights only: no gradient, no optimizer "
                                        "state, no master copy"),
        ], too_large="parameters × bytes per parameter, then divide by 2²⁰ bytes per MiB",
           too_small="parameters × bytes per parameter, then divide by 2²⁰ bytes per MiB",
           right="right: twice the fp16 file, and still about 2,300 times smaller than the model in fp16"),
        solution=(f"bytes = {GPT3_R8_PARAMS:,} × 4 = {GPT3_R8_PARAMS * 4:,};\n"
                  f"MiB = bytes / 2²⁰ = {GPT3_R8_PARAMS * 4:,} / {MIB:,} = {CKPT_MIB:g} MiB "
                  f"({GPT3_R8_PARAMS * 4 / 1e6:.1f} MB in powers of ten). Saved in fp16 it would be half "
                  f"that."),
    ),
    "lora_training_bytes": Exercise(
        prompt=("Write lora_training_bytes(n_params, trainable, w, g, o, m): the bytes LoRA needs for "
                "training (activations not counted), for a model of N = n_params frozen parameters and "
                "T = trainable adapter parameters, with w, g, o, m bytes per parameter for weights, "
                "gradients, optimizer state and master copies. Pass the function itself to the checker."),
        answer=lora_training_bytes,
        check=_check_training_bytes,
        solution=("Every weight is stored, frozen or not: (N + T)·w. Only the T trained ones get a "
                  "gradient, optimizer state and a master copy: T·(g + o + m).\n\n"
                  + inspect.getsource(lora_training_bytes)),
    ),
}

register(EXERCISES_05)
