"""The benchmark's models, sizes and training steps on the lora_np side (``benchmarks/bench.py``).

Two models, three sizes each, three ways to train them:

* **mlp** — ``MLP(d_in, (width, width), 10)`` with ReLU, on a batch of random features;
* **transformer** — the character language model (pre-LN blocks, q/k/v/o, a 4d GELU-tanh MLP),
  on random token ids, every position predicting the next;
* **modes** — ``full`` (every weight trains), ``lora-qv`` (r = 8 on every block's q and v; the
  Transformer only) and ``lora-all`` (r = 8 on every Linear layer except the output head).

A step is forward, loss, backward and one Adam update, in float32, exactly what ``fit`` does per
mini-batch.
"""
from __future__ import annotations

import numpy as np

from lora_np import backend, inject_lora
from lora_np.models import MLP, TransformerConfig, TransformerLM
from lora_np.nn import SoftmaxCrossEntropy
from lora_np.optim import Adam

VOCAB = 64                    # a character vocabulary
R = 8                         # the LoRA rank of both LoRA modes
SIZES = {
    "mlp": {"S": {"d_in": 64, "width": 256, "batch": 256},
            "M": {"d_in": 256, "width": 1024, "batch": 512},
            "L": {"d_in": 512, "width": 2048, "batch": 512}},
    "transformer": {"S": {"d_model": 64, "n_layers": 2, "batch": 32, "tokens": 32},
                    "M": {"d_model": 256, "n_layers": 4, "batch": 32, "tokens": 64},
                    "L": {"d_model": 512, "n_layers": 4, "batch": 16, "tokens": 128}},
}
QUICK_SIZES = {                                     # seconds in all: for the tests and a first look
    "mlp": {"S": {"d_in": 24, "width": 32, "batch": 8}},
    "transformer": {"S": {"d_model": 32, "n_layers": 1, "batch": 2, "tokens": 8}},
}
MODES = {"mlp": ("full", "lora-all"), "transformer": ("full", "lora-qv", "lora-all")}
TARGETS = {"lora-qv": ["q", "v"], "lora-all": {"mlp": ["fc1", "fc2"],
                                               "transformer": ["q", "k", "v", "o", "up", "down"]}}


def n_heads(d_model: int) -> int:
    """One head per 64 channels, at least two (S: 2, M: 4, L: 8)."""
    return max(2, d_model // 64)


def describe(model: str, size: dict) -> str:
    if model == "mlp":
        return f"{size['d_in']}→{size['width']}→{size['width']}→10, batch {size['batch']}"
    return (f"d {size['d_model']}, {size['n_layers']} layers, {n_heads(size['d_model'])} heads, "
            f"{size['batch']}×{size['tokens']} tokens")


def build(model: str, size: dict, mode: str, seed: int = 0, dtype: str = "float32"):
    """(net, inputs, labels) in ``dtype`` on the current backend: the model, LoRA-wrapped per ``mode``."""
    host = np.random.default_rng(seed)
    with backend.use_backend(backend.get_backend(), dtype=dtype):
        if model == "mlp":
            net = MLP(size["d_in"], (size["width"], size["width"]), 10, seed=seed)
            x = backend.asarray(host.standard_normal((size["batch"], size["d_in"])))    # (N, d_in)
            y = backend.asarray(host.integers(0, 10, size["batch"]))                    # (N,)
        else:
            cfg = TransformerConfig(d_model=size["d_model"], n_heads=n_heads(size["d_model"]),
                                    n_layers=size["n_layers"], context=size["tokens"], vocab_size=VOCAB,
                                    seed=seed)
            net = TransformerLM(cfg)
            x = backend.asarray(host.integers(0, VOCAB, (size["batch"], size["tokens"])))  # (B, T)
            y = backend.asarray(host.integers(0, VOCAB, (size["batch"], size["tokens"])))  # (B, T)
        if mode != "full":
            targets = TARGETS[mode] if mode == "lora-qv" else TARGETS[mode][model]
            net = inject_lora(net, r=R, lora_alpha=2.0 * R, target_modules=targets)
    return net, x, y


def make_step(net, x, y, lr: float = 1e-3):
    """``step()`` runs one training step and returns the loss; ``step.optimizer`` is its Adam."""
    opt, criterion = Adam(net, lr=lr), SoftmaxCrossEntropy()

    def step():
        opt.zero_grad()
        loss = criterion(net(x), y)
        net.backward(criterion.backward())
        opt.step()
        return loss
    step.optimizer = opt
    return step
