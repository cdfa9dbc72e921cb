"""Notebook 09 (GPT-2, an optional capstone): its exercises (registered with
:func:`lora_np.course.exercises.register`), and the helpers that keep file paths out of the lesson
(:func:`checkpoint_folder`, :func:`committed_cost`, :func:`format_committed_cost`). Its your-turn checker,
:func:`check_merge_conv1d`, lives in :mod:`lora_np.course.notebook09_checks`.

The merge. GPT-2's Conv1D stores W0 as (d_in, d_out) and computes y = x W0 + b. LoRA keeps A (r, d_in)
and B (d_out, r), as on a Linear layer, and adds s (x Aᵀ) Bᵀ = x · s (B A)ᵀ. So the merged weight, in
the checkpoint's layout, is W = W0 + s (B A)ᵀ = W0 + s Aᵀ Bᵀ, which is what
:meth:`lora_np.nn.LoRAConv1D.delta_weight` adds, and what PEFT's ``fan_in_fan_out=True`` asks for.

Every right answer of an exercise is computed here from the quantities in its question:

* LoRA on GPT-2 small's fused c_attn (768 → 2304) in every one of its 12 blocks: 12 · r · (768 + 2304);
* its bytes in float32: that count · 4, in MiB (2²⁰ bytes);
* a Parameter used twice (the tied head and the lookup) gets the sum of both uses' gradients;
* ``fan_in_fan_out=True``: the base layer stores (d_in, d_out), so ΔW is transposed when merged.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from .exercises import Exercise, choice_of, numeric, register
from .notebook09_checks import MERGE_SOLUTION, check_merge_conv1d, merge_answer, merge_conv1d

__all__ = ["merge_conv1d", "check_merge_conv1d", "checkpoint_folder", "committed_cost",
           "format_committed_cost", "TINY_CHECKPOINT", "EXERCISES_09"]

ROOT = Path(__file__).resolve().parents[2]
TINY_CHECKPOINT = ROOT / "tests" / "data" / "gpt2_tiny"
COST_FILE = ROOT / "docs" / "gpt2_small_cost.json"
CHECKPOINT_FILES = ("config.json", "model.safetensors", "vocab.json", "merges.txt")
DOWNLOAD = ("huggingface-cli download openai-community/gpt2 config.json model.safetensors vocab.json "
            "merges.txt --local-dir ~/models/gpt2")


# ------------------------------------------------------------------ the checkpoint to load

def checkpoint_folder(gpt2_dir=None) -> Path:
    """The folder to load: ``gpt2_dir`` if given, else ``$LORA_NP_GPT2_DIR`` if set, else the committed
    tiny checkpoint. A folder without the four files (config.json, model.safetensors, vocab.json,
    merges.txt) is a FileNotFoundError that names what is missing and how to download GPT-2 small."""
    chosen = gpt2_dir if gpt2_dir is not None else (os.environ.get("LORA_NP_GPT2_DIR") or None)
    folder = TINY_CHECKPOINT if chosen is None else Path(os.path.expanduser(os.fspath(chosen)))
    missing = [f for f in CHECKPOINT_FILES if not (folder / f).is_file()]
    if missing:
        raise FileNotFoundError(f"GPT2_DIR: {folder} lacks {', '.join(missing)}. A GPT-2 folder holds "
                                f"{', '.join(CHECKPOINT_FILES)}; download GPT-2 small's with `{DOWNLOAD}` "
                                "(or from https://huggingface.co/openai-community/gpt2 in a browser), or set "
                                "GPT2_DIR = None for the tiny checkpoint")
    return folder


def committed_cost(path=None) -> dict | None:
    """The committed measurement of GPT-2 small's training step (``docs/gpt2_small_cost.json``), or
    None when it has not been measured yet."""
    path = COST_FILE if path is None else Path(path)
    if not path.is_file():
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def format_committed_cost(cost: dict | None) -> str:
    """The committed measurement as a table, with LoRA's share of full fine-tuning's time and memory;
    "not measured yet" when there is none."""
    if cost is None:
        return f"GPT-2 small: not measured yet ({COST_FILE.relative_to(ROOT)} does not exist)"
    machine = cost.get("machine", "?")
    if isinstance(machine, dict):
        machine = ", ".join(f"{k} {v}" for k, v in machine.items())
    lines = [f"{cost.get('model', 'GPT-2 small')}: batch {cost['batch']} × {cost['tokens']} tokens"
             + (f", LoRA {cost['lora']}" if cost.get("lora") else "")
             + f"; measured {cost.get('date', '?')} on {machine}", "",
             f"{'mode':8s}{'trainable':>14s}{'s/step':>9s}{'params':>9s}{'grads':>9s}{'Adam':>9s}{'peak':>9s}"
             "  (MiB)"]
    keys = ("params_MiB", "grads_MiB", "optimizer_MiB", "peak_MiB")
    for row in cost["rows"]:
        lines.append(f"{row['mode']:8s}{row['trainable']:14,d}{row['seconds_per_step']:9.2f}"
                     + "".join(f"{row[k]:9.1f}" for k in keys))
    rows = {row["mode"]: row for row in cost["rows"]}
    if {"full", "lora"} <= set(rows):
        full, lora = rows["full"], rows["lora"]
        time_share = lora["seconds_per_step"] / full["seconds_per_step"]
        lines += ["", f"LoRA against full fine-tuning: {lora['trainable'] / full['trainable']:.2%} of the "
                      f"parameters trained, time per step {time_share:.0%}, "
                      f"Adam state {lora['optimizer_MiB'] / full['optimizer_MiB']:.2%}, peak of the step "
                      f"{lora['peak_MiB'] / full['peak_MiB']:.0%}"]
    theirs = {mode: row.get("torch_seconds_per_step") for mode, row in rows.items()}
    if all(theirs.values()) and cost.get("torch"):
        versions = ", ".join(f"{k} {v}" for k, v in cost["torch"].items())
        lines += [f"the same step in PyTorch ({versions}): "
                  + ", ".join(f"{mode} {s:.2f} s" for mode, s in theirs.items())]
    return "\n".join(lines)


# ------------------------------------------------------------------ the quantities of the exercises
GPT2_LAYERS, GPT2_D, R8, FP32 = 12, 768, 8, 4
C_ATTN_OUT = 3 * GPT2_D                                               # q, k, v fused: 768 -> 2304
C_ATTN_PARAMS = GPT2_LAYERS * R8 * (GPT2_D + C_ATTN_OUT)
MIB = 2 ** 20
C_ATTN_MIB = C_ATTN_PARAMS * FP32 / MIB
PARAMS_HINT = ("count A (r, d_in) and B (d_out, r) of the fused c_attn, d_in = 768 and d_out = 3·768, "
               "in every block")
BYTES_HINT = ("count r·(d_in + d_out) numbers of c_attn per block, every block, 4 bytes each, then divide "
              "by 2²⁰")

PREDICT_OPTIONS = {
    "a": "(a) the loss falls to about what a good model of this text reaches, and the samples read as verse;",
    "b": "(b) the loss falls a little and then stalls far above that; the samples stay mostly noise;",
    "c": "(c) the loss does not move at all: B starts at zero, so no gradient reaches A or B;",
    "d": "(d) the loss rises: a random model's gradients point the wrong way.",
}
PREDICT_ANSWER = "b"
TIED_OPTIONS = {
    "a": "(a) the head's gradient only: looking up rows of a table has no gradient;",
    "b": "(b) the sum of the head's gradient and the lookup's gradient;",
    "c": "(c) the average of the two, so that the learning rate means what it means for an untied model;",
    "d": "(d) the lookup's gradient only: a tied head is frozen.",
}
TIED_ANSWER = "b"
FAN_OPTIONS = {
    "a": "(a) A and B are saved transposed, (d_in, r) and (r, d_out), and must be transposed when loaded;",
    "b": "(b) the base layer stores its weight as (d_in, d_out), so ΔW = s·B·A is transposed when merged;",
    "c": "(c) the adapter is applied twice, to the layer's input (fan-in) and to its output (fan-out);",
    "d": "(d) the scale s is computed from the layer's fan-in and fan-out instead of alpha / r.",
}
FAN_ANSWER = "b"


EXERCISES_09: dict[str, Exercise] = {
    "merge_conv1d": Exercise(
        prompt=("Write merge_conv1d(W0, A, B, s): W0 is a Conv1D weight stored (d_in, d_out), A is "
                "(r, d_in), B is (d_out, r), s a number; return the merged weight in W0's layout. Pass "
                "the function itself."),
        answer=merge_conv1d,
        check=merge_answer,
        solution=(MERGE_SOLUTION + "\nThe adapter adds s (x Aᵀ) Bᵀ = x · s Aᵀ Bᵀ = x · s (B A)ᵀ; a Conv1D "
                  "computes x W, so its merged weight is W0 + s (B A)ᵀ, of shape (d_in, d_out). Without the "
                  "transpose a non-square layer fails on shapes, and a square one silently computes x (W0 + "
                  "s B A), a different layer. lora_np's LoRAConv1D.delta_weight returns s · Aᵀ Bᵀ, the same "
                  "matrix without forming B A first."),
    ),
    "predict_finetune_tiny": Exercise(
        prompt=("The tiny checkpoint's weights are random. LoRA, r = 8, trains on c_attn, c_proj and c_fc of "
                "its 2 blocks for a few hundred steps on verse; everything else stays frozen, the token "
                "embedding and the tied head included. What do you expect?\n"
                + "\n".join(PREDICT_OPTIONS.values())),
        answer=PREDICT_ANSWER,
        check=choice_of(PREDICT_ANSWER, options={
            "a": ("not here: ask what the frozen parts allow. Every logit is h · w_v, with h the output of "
                  "the frozen final LayerNorm and w_v a row of the frozen, random, small token embedding: "
                  "how far apart can two logits get?"),
            "b": "",
            "c": ("no: with B = 0 the gradient of A is 0 at the first step, but the gradient of B is not "
                  "(it needs A, which is random); after one step B ≠ 0 and both train"),
            "d": ("no: a gradient step lowers the loss of its batch for a small enough step, whatever the "
                  "weights; a random model is just a poor starting point"),
        }, right=("right: the logits are h · w_v with h from a frozen LayerNorm (length about √d) and w_v "
                  "rows of a random embedding of std 0.02, so no adapter in the blocks can make them far "
                  "apart: the predictions stay nearly flat, whatever is trained")),
        solution=("LoRA changes only what the blocks compute. The logits are h · w_v: h leaves the frozen "
                  "final LayerNorm, so its length is fixed (about √d times its gains), and w_v is a row of "
                  "the frozen, random token embedding (std 0.02), which the tied head reuses. So "
                  "|logit_u − logit_v| ≤ |h| · |w_u − w_v| stays small, and the predicted distribution "
                  "cannot become sharp: the loss falls a little and stalls (b). The notebook computes this "
                  "bound and then adapts the head too, which removes it. A pretrained GPT-2 has a head worth "
                  "keeping, and the LoRA paper leaves it frozen (it adapts attention projections only)."),
    ),
    "gpt2_c_attn_lora_params": Exercise(
        prompt=(f"GPT-2 small has {GPT2_LAYERS} blocks of width d = {GPT2_D}; each block's c_attn is ONE "
                f"Conv1D from d to 3d = {C_ATTN_OUT} (q, k and v fused). How many parameters does LoRA train "
                f"with r = {R8} on c_attn (target_modules=[\"c_attn\"])?"),
        answer=C_ATTN_PARAMS,
        check=numeric(C_ATTN_PARAMS, integer=True, mistakes=[
            (C_ATTN_PARAMS // GPT2_LAYERS, "that is one block's adapter; each of the 12 blocks has its own"),
            (GPT2_LAYERS * R8 * GPT2_D, "that counts only A (r, d_in); B (d_out, r) is trained too"),
            (GPT2_LAYERS * R8 * C_ATTN_OUT, "that counts only B (d_out, r); A (r, d_in) is trained too"),
            (3 * GPT2_LAYERS * R8 * 2 * GPT2_D, "that adapts q, k and v as three d × d matrices; c_attn is "
                                                "one fused Conv1D, so it gets ONE pair A, B"),
            (GPT2_LAYERS * GPT2_D * C_ATTN_OUT, "that is the full c_attn weights, d·3d per block; LoRA "
                                                "trains two thin matrices instead"),
            (GPT2_LAYERS * R8 * 2 * GPT2_D, "that treats c_attn as d × d; its output is 3d wide"),
        ], too_large=PARAMS_HINT, too_small=PARAMS_HINT,
           right="right: r·(d_in + d_out) per block, about 0.24 % of GPT-2 small's 124 million"),
        solution=(f"c_attn maps d_in = {GPT2_D} to d_out = {C_ATTN_OUT}; one pair A ({R8}, {GPT2_D}), "
                  f"B ({C_ATTN_OUT}, {R8}): {R8}·({GPT2_D} + {C_ATTN_OUT}) = {R8 * (GPT2_D + C_ATTN_OUT):,} "
                  f"per block; {GPT2_LAYERS} blocks: {C_ATTN_PARAMS:,}, {C_ATTN_PARAMS / 124.44e6:.2%} of "
                  f"GPT-2 small's 124.4 million parameters. print_trainable_parameters on the loaded GPT-2 "
                  f"small, after inject_lora(model, LoraConfig(r=8, target_modules=['c_attn'])), prints it."),
    ),
    "adapter_mib_c_attn_r8": Exercise(
        prompt=(f"That adapter (r = {R8} on c_attn in all {GPT2_LAYERS} blocks of GPT-2 small) is saved in "
                "float32, 4 bytes per number. How many MiB (2²⁰ bytes) is its adapter_model.safetensors, "
                "leaving out the file's small header? (within 1 %)"),
        answer=C_ATTN_MIB,
        check=numeric(C_ATTN_MIB, rel_tol=0.01, mistakes=[
            (C_ATTN_PARAMS * FP32, "that is in bytes; divide by 2²⁰ bytes per MiB"),
            (C_ATTN_PARAMS * FP32 / 1e6, "that is in MB (10⁶ bytes); a MiB is 2²⁰ bytes"),
            (C_ATTN_PARAMS / MIB, "that counts one byte per number; float32 stores 4"),
            (C_ATTN_PARAMS * 2 / MIB, "that is 2 bytes per number (float16); the adapter is float32"),
            (C_ATTN_MIB / GPT2_LAYERS, "that is one block's adapter; every block has its own"),
            (GPT2_LAYERS * GPT2_D * C_ATTN_OUT * FP32 / MIB,
             "that is the size of the full c_attn weights; the adapter stores r·(d_in + d_out) per block"),
        ], too_large=BYTES_HINT, too_small=BYTES_HINT,
           right="right: about a megabyte, against about 475 MiB for GPT-2 small's float32 weights"),
        solution=(f"{C_ATTN_PARAMS:,} numbers (the exercise before) × {FP32} bytes = "
                  f"{C_ATTN_PARAMS * FP32:,} bytes = {C_ATTN_MIB:.3f} MiB (the safetensors header adds a few "
                  f"kilobytes). GPT-2 small's float32 weights take 124.44e6 × 4 / 2²⁰ ≈ "
                  f"{124.44e6 * 4 / MIB:.0f} MiB, about "
                  f"{124.44e6 * 4 / MIB / C_ATTN_MIB:.0f} times more."),
    ),
    "tied_wte_gradient": Exercise(
        prompt=("GPT-2's head is tied: lm_head's weight IS transformer.wte.weight, one Parameter (V, d), "
                "used twice, to look up the input tokens' vectors and to score every token at the output. "
                "After model.backward(dlogits), what is wte's gradient?\n"
                + "\n".join(TIED_OPTIONS.values())),
        answer=TIED_ANSWER,
        check=choice_of(TIED_ANSWER, options={
            "a": ("no: a lookup x_t = W[ids_t] is linear in W's rows; the rows that were looked up get the "
                  "gradient that arrives at x_t"),
            "b": "",
            "c": ("no: write the loss as a function of one matrix W used in two places and apply the chain "
                  "rule: the contributions of the two uses are not averaged"),
            "d": ("no: tying makes two layers share one Parameter; whether it trains is its trainable flag, "
                  "and full fine-tuning trains it"),
        }, right=("right: a Parameter used twice gets the sum of its two gradients, dlogitsᵀ h from the head "
                  "plus, row by row, the dx of the positions where each token was read")),
        solution=("L depends on W through two uses: logits = h Wᵀ and x_t = W[ids_t] (+ positions). By the "
                  "multivariable chain rule dL/dW is the sum of the two partial contributions: the head's, "
                  "dlogitsᵀ h (V, d), and the lookup's, which adds dx_t to row ids_t for every position "
                  "(np.add.at, so a token read twice gets both). lora_np's GPT2LMHeadModel.backward lets "
                  "lm_head.backward and wte.backward both accumulate into the one Parameter's .grad (b)."),
    ),
    "fan_in_fan_out_meaning": Exercise(
        prompt=("The adapter_config.json that export_peft writes for GPT-2 says \"fan_in_fan_out\": true. "
                "What does it tell PEFT?\n" + "\n".join(FAN_OPTIONS.values())),
        answer=FAN_ANSWER,
        check=choice_of(FAN_ANSWER, options={
            "a": ("no: open adapter_model.safetensors: lora_A is (r, d_in) and lora_B (d_out, r), the same "
                  "shapes as on a Linear layer; the flag is about the base layer's weight"),
            "b": "",
            "c": ("no: an adapter is one bypass per layer, s (x Aᵀ) Bᵀ added to the output; the flag names "
                  "a layout, not a place"),
            "d": "no: s is alpha / r (or alpha / √r with use_rslora), whatever this flag says",
        }, right=("right: GPT-2's Conv1D stores W as (d_in, d_out), fan-in first, so merging adds "
                  "s·(B A)ᵀ; the forward pass and the shapes of A and B do not change")),
        solution=("PEFT's fan_in_fan_out=True says that the base layer's weight is stored "
                  "(fan_in, fan_out) = (d_in, d_out), as GPT-2's Conv1D stores it, instead of nn.Linear's "
                  "(d_out, d_in). A and B keep their usual shapes and the forward pass is the same; only "
                  "merging changes: W ← W + s·(B A)ᵀ, the merge_conv1d of this notebook (b). For a Linear "
                  "layer in the same model, such as GPT-2's lm_head, PEFT sets it back to False with a "
                  "warning."),
    ),
}

register(EXERCISES_09)
