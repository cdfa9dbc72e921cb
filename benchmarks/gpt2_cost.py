"""``make bench-gpt2``: what fine-tuning GPT-2 small costs here, full fine-tuning against LoRA, measured.

    .venv/bin/python benchmarks/gpt2_cost.py                          # GPT-2 small's shape, random weights
    .venv/bin/python benchmarks/gpt2_cost.py --checkpoint ~/models/gpt2   # the real files, if you have them
    .venv/bin/python benchmarks/gpt2_cost.py --quick                  # a tiny GPT-2: checks that it runs
    .venv/bin/python benchmarks/gpt2_cost.py --torch-python ~/torch-venv/bin/python   # and PyTorch's step

Time and memory do not depend on the values of the weights, only on their shapes, so without the
checkpoint the model is GPT-2 small's architecture (124,439,808 parameters) with random weights.
Each mode runs in a fresh interpreter, at one BLAS thread (what ``make`` sets):

* ``full``: every parameter trained (Adam);
* ``lora``: LoRA r = 8, alpha = 16 on ``c_attn`` (PEFT's default target for GPT-2), everything else frozen.

:func:`lora_np.gpt2.finetune.step_cost` measures one training step (forward, loss, backward, Adam):
seconds (median of 3 after a warm-up), the bytes of the parameters, gradients and optimizer state
(from the arrays that exist), and the peak of what NumPy allocates during the step (tracemalloc).
The process's own peak resident memory (``ru_maxrss``) is recorded too: everything, interpreter and
copies included. With ``--torch-python`` (an interpreter with torch, transformers and peft; they stay
out of .venv) the same step is timed in transformers' eager GPT2LMHeadModel with PEFT's LoRA
(``gpt2_torch_step.py``), each mode right after ours, in a fresh interpreter at one thread.
Results: a table on stdout, ``docs/gpt2_small_cost.json`` and ``docs/gpt2_small_cost.md``.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import resource
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
MODES = ("full", "lora")
MIB = 2 ** 20


def worker(mode: str, checkpoint: str | None, quick: bool, batch: int, tokens: int) -> dict:
    """One mode in this interpreter: build or load the model, measure a step, return a row."""
    import numpy as np

    from lora_np.gpt2 import GPT2Config, GPT2LMHeadModel, load_gpt2
    from lora_np.gpt2.finetune import step_cost
    from lora_np.lora import LoraConfig, inject_lora

    if checkpoint:
        model = load_gpt2(checkpoint)
    elif quick:
        model = GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=512, n_positions=64))
    else:
        model = GPT2LMHeadModel(GPT2Config())                            # GPT-2 small's shape
    if mode == "lora":
        inject_lora(model, LoraConfig(r=8, lora_alpha=16, target_modules=["c_attn"]))
    ids = np.random.default_rng(0).integers(0, model.config.vocab_size, (batch, tokens + 1))
    cost = step_cost(model, ids)
    return {"mode": mode, "seconds_per_step": cost["seconds_per_step"],
            "peak_MiB": cost["peak_bytes"] / MIB, "params_MiB": cost["params_bytes"] / MIB,
            "grads_MiB": cost["grads_bytes"] / MIB, "optimizer_MiB": cost["optimizer_bytes"] / MIB,
            "trainable": cost["trainable"], "total": cost["total"],
            "process_peak_MiB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def table(meta: dict) -> str:
    head = ("mode", "trainable parameters", "seconds per step", "PyTorch's step", "parameters", "gradients",
            "optimizer state", "step's peak (NumPy)", "process peak RSS")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in meta["rows"]:
        mib = " | ".join(f"{r[k]:,.0f} MiB" for k in ("params_MiB", "grads_MiB", "optimizer_MiB", "peak_MiB",
                                                      "process_peak_MiB"))
        counts = f"{r['trainable']:,} of {r['total']:,}"
        torch_s = r.get("torch_seconds_per_step")
        theirs = f"{torch_s:.2f}" if torch_s else "not measured"
        lines.append(f"| {r['mode']} | {counts} | {r['seconds_per_step']:.2f} | {theirs} | {mib} |")
    return "\n".join(lines)


def torch_step(args, mode: str, env: dict) -> dict:
    """PyTorch's step for ``mode`` (``gpt2_torch_step.py`` in ``--torch-python``): seconds and versions."""
    cmd = [args.torch_python, str(ROOT / "benchmarks" / "gpt2_torch_step.py"), mode, str(args.batch),
           str(args.tokens)] + ([args.checkpoint] if args.checkpoint else [])
    done = subprocess.run(cmd, check=True, env=env, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def report(meta: dict) -> str:
    """``docs/gpt2_small_cost.md``."""
    box, versions = meta["machine"], meta["torch"]
    theirs = (f"PyTorch's step: transformers' eager GPT2LMHeadModel with PEFT's LoRA on the same batch, one "
              f"thread, each mode in a fresh interpreter right after ours (torch {versions['torch']}, "
              f"transformers {versions['transformers']}, peft {versions['peft']}).\n\n" if versions else
              "PyTorch's step: not measured (give `--torch-python`).\n\n")
    return (f"# What fine-tuning GPT-2 small costs here\n\nMeasured by `make bench-gpt2` "
            f"(`benchmarks/gpt2_cost.py`) on {meta['date']}: {box['cpu']}, {box['cores']} cores, one BLAS "
            f"thread, NumPy {box['numpy']} ({box['blas']}), Python {box['python']}.\n\n"
            f"Model: {meta['model']}. A step is forward, loss, backward and Adam on a batch of "
            f"{meta['batch']} sequences of {meta['tokens']} tokens, float32. LoRA: {meta['lora']}. Time and "
            "memory depend on the weights' shapes, not their values.\n\n" + table(meta) + "\n\n" + theirs +
            "Parameters, gradients and optimizer state are the bytes of the arrays that exist after a step; "
            "the step's peak is the most that NumPy allocated at once during one step beyond what existed "
            "before it (tracemalloc); the process peak is the resident memory of the whole interpreter "
            "(`ru_maxrss`): the model's construction, the measuring steps and the copy of the trained "
            "weights that `step_cost` keeps to restore them afterwards (the parameters' size for full "
            "fine-tuning) included.\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", help="a GPT-2 folder (config.json, model.safetensors); default: random")
    ap.add_argument("--quick", action="store_true", help="a tiny GPT-2: seconds, to check that it runs")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--tokens", type=int, help="tokens per sequence (default 128; 32 with --quick)")
    ap.add_argument("--torch-python", help="an interpreter with torch, transformers, peft: time theirs too")
    ap.add_argument("--worker", choices=MODES, help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.tokens = args.tokens or (32 if args.quick else 128)
    if args.worker:
        row = worker(args.worker, args.checkpoint, args.quick, args.batch, args.tokens)
        pathlib.Path(args.out).write_text(json.dumps(row))
        return
    from bench import machine
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "PYTHONPATH": str(ROOT)}
    rows, versions = [], None
    for mode in MODES:
        out = ROOT / "build" / f"gpt2_cost_{mode}.json"
        out.parent.mkdir(exist_ok=True)
        cmd = [sys.executable, __file__, "--worker", mode, "--out", str(out), "--batch", str(args.batch),
               "--tokens", str(args.tokens)]
        cmd += ["--checkpoint", args.checkpoint] if args.checkpoint else []
        cmd += ["--quick"] if args.quick else []
        subprocess.run(cmd, check=True, env=env)
        rows.append(json.loads(out.read_text()))
        if args.torch_python and not args.quick:                       # --quick checks lora_np only
            versions = torch_step(args, mode, env)
            rows[-1]["torch_seconds_per_step"] = versions.pop("seconds_per_step")
            versions.pop("mode")
    model = ("GPT-2 small from " + args.checkpoint if args.checkpoint else
             "a tiny GPT-2 (--quick)" if args.quick else "GPT-2 small's architecture, random weights")
    meta = {"date": datetime.date.today().isoformat(), "machine": machine(), "threads": 1, "model": model,
            "batch": args.batch, "tokens": args.tokens, "lora": "r=8, alpha=16 on c_attn", "rows": rows,
            "torch": versions}
    print(table(meta))
    if args.quick:
        return                                                         # a check, not a result to publish
    (ROOT / "docs" / "gpt2_small_cost.json").write_text(json.dumps(meta, indent=1) + "\n")
    (ROOT / "docs" / "gpt2_small_cost.md").write_text(report(meta))


if __name__ == "__main__":
    main()
