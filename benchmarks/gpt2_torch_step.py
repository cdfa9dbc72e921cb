"""The same GPT-2 step in PyTorch, for ``benchmarks/gpt2_cost.py --torch-python``: transformers' eager
GPT2LMHeadModel (dropout off), full fine-tuning or PEFT's LoRA r = 8, alpha = 16 on ``c_attn``, Adam,
float32, one thread. Run by the interpreter of an environment that has torch, transformers and peft:

    /path/to/torch-venv/bin/python benchmarks/gpt2_torch_step.py full 2 128 [checkpoint]

It prints one JSON object: the median seconds of 3 steps after a warm-up step, and the versions.
"""
from __future__ import annotations

import json
import statistics
import sys
import time


def main() -> None:
    import peft
    import torch
    import transformers

    mode, batch, tokens = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    checkpoint = sys.argv[4] if len(sys.argv) > 4 else None
    torch.set_num_threads(1)
    torch.manual_seed(0)
    if checkpoint:
        model = transformers.GPT2LMHeadModel.from_pretrained(checkpoint, attn_pdrop=0.0, embd_pdrop=0.0,
                                                             resid_pdrop=0.0)
    else:
        model = transformers.GPT2LMHeadModel(transformers.GPT2Config(attn_pdrop=0.0, embd_pdrop=0.0,
                                                                     resid_pdrop=0.0))
    if mode == "lora":
        model = peft.get_peft_model(model, peft.LoraConfig(r=8, lora_alpha=16, target_modules=["c_attn"]))
    model.train()
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    seeded = torch.Generator().manual_seed(0)
    ids = torch.randint(0, model.config.vocab_size, (batch, tokens + 1), generator=seeded)   # (B, T + 1)
    x, y = ids[:, :-1], ids[:, 1:]

    def step():
        optimizer.zero_grad()
        logits = model(x).logits                                                   # (B, T, V)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        loss.backward()
        optimizer.step()

    step()                                                                         # warm-up: Adam's state
    seconds = []
    for _ in range(3):
        t0 = time.perf_counter()
        step()
        seconds.append(time.perf_counter() - t0)
    print(json.dumps({"mode": mode, "seconds_per_step": statistics.median(seconds),
                      "torch": torch.__version__, "transformers": transformers.__version__,
                      "peft": peft.__version__}))


if __name__ == "__main__":
    main()
