"""The benchmark's models in PyTorch (CPU, eager), with the weights of a lora_np model.

Only used by ``benchmarks/bench.py`` when torch is installed; nothing in lora_np imports it.
Each torch module mirrors one lora_np module operation for operation (same names, same layout:
a Linear's weight is (d_out, d_in) in both), so :func:`mirror` can copy every array across and a
test can check that both give the same loss. LoRA here is the same update as lora_np's:
y = x W0ᵀ + b0 + s · (x Aᵀ) Bᵀ with W0 and b0 frozen.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from lora_np import backend
from lora_np.nn import LoRALinear


class TorchLoRALinear(nn.Module):
    """A frozen Linear plus s · B A, as LoRALinear."""

    def __init__(self, base: nn.Linear, r: int, scale: float):
        super().__init__()
        self.base, self.scale = base, scale
        for p in base.parameters():
            p.requires_grad_(False)
        self.lora_A = nn.Parameter(torch.zeros(r, base.in_features))       # (r, d_in)
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, r))      # (d_out, r)

    def forward(self, x):
        return self.base(x) + self.scale * ((x @ self.lora_A.T) @ self.lora_B.T)


class TorchMLP(nn.Module):
    def __init__(self, d_in: int, width: int, n_classes: int = 10):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(d_in, width), nn.Linear(width, width)
        self.head = nn.Linear(width, n_classes)

    def forward(self, x):
        return self.head(torch.relu(self.fc2(torch.relu(self.fc1(x)))))


class TorchBlock(nn.Module):
    """Pre-LN: h = x + o(attn(ln1(x))),  y = h + down(gelu_tanh(up(ln2(h))))."""

    def __init__(self, d: int, heads: int):
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(d, eps=1e-5), nn.LayerNorm(d, eps=1e-5)
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
        self.up, self.down = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def attention(self, x):
        B, T, d = x.shape
        H, dh = self.heads, d // self.heads

        def split(t):
            return t.view(B, T, H, dh).transpose(1, 2)                     # (B, H, T, dh)
        Q, K, V = split(self.q(x)), split(self.k(x)), split(self.v(x))
        S = (Q @ K.transpose(-2, -1)) / math.sqrt(dh)                      # (B, H, T, T)
        mask = torch.ones(T, T, dtype=torch.bool).tril()
        P = torch.softmax(S.masked_fill(~mask, float("-inf")), dim=-1)     # (B, H, T, T)
        return self.o((P @ V).transpose(1, 2).reshape(B, T, d))            # (B, T, d)

    def forward(self, x):
        h = x + self.attention(self.ln1(x))
        return h + self.down(nn.functional.gelu(self.up(self.ln2(h)), approximate="tanh"))


class TorchLM(nn.Module):
    def __init__(self, vocab: int, d: int, layers: int, heads: int, context: int):
        super().__init__()
        self.tok_emb, self.pos_emb = nn.Embedding(vocab, d), nn.Embedding(context, d)
        self.blocks = nn.ModuleList(TorchBlock(d, heads) for _ in range(layers))
        self.ln_f, self.head = nn.LayerNorm(d, eps=1e-5), nn.Linear(d, vocab)

    def forward(self, ids):
        x = self.tok_emb(ids) + self.pos_emb(torch.arange(ids.shape[1]))
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))


def torch_name(name: str, lora_owners: set) -> str:
    """lora_np's parameter name -> the mirror's: the blocks have no ``attn``/``mlp`` level, and a LoRA
    layer's frozen weight and bias sit in its ``base`` Linear (``blocks.0.q.base.weight``)."""
    name = name.replace(".attn.", ".").replace(".mlp.", ".")
    owner, _, leaf = name.rpartition(".")
    return f"{owner}.base.{leaf}" if owner in lora_owners and leaf in ("weight", "bias") else name


def mirror(net, model: str, size: dict, n_heads: int):
    """A torch module with ``net``'s architecture, LoRA layers and weights (and dtype), on the CPU."""
    if model == "mlp":
        tnet = TorchMLP(size["d_in"], size["width"])
    else:
        tnet = TorchLM(net.config.vocab_size, size["d_model"], size["n_layers"], n_heads, size["tokens"])
    lora_owners = set()
    for name, module in net.named_modules():
        if isinstance(module, LoRALinear):
            name = torch_name(name, set())
            owner_name, _, attr = name.rpartition(".")
            owner = tnet.get_submodule(owner_name) if owner_name else tnet
            setattr(owner, attr, TorchLoRALinear(getattr(owner, attr), module.r, float(module.scaling)))
            lora_owners.add(name)
    if next(p for _, p in net.named_parameters()).data.dtype == np.float64:
        tnet = tnet.to(torch.float64)                                      # before the weights come in
    wanted = dict(tnet.named_parameters())
    with torch.no_grad():
        for name, p in net.named_parameters():
            key = torch_name(name, lora_owners)
            if key not in wanted:
                raise KeyError(f"no torch parameter for {name!r} (looked for {key!r})")
            wanted.pop(key).copy_(torch.from_numpy(np.ascontiguousarray(backend.to_numpy(p.data))))
            tnet.get_parameter(key).requires_grad_(p.trainable)
    if wanted:
        raise KeyError(f"torch parameters with no lora_np counterpart: {sorted(wanted)}")
    return tnet


def make_step(tnet, x, y, lr: float = 1e-3):
    """``step()``: one training step (forward, cross-entropy, backward, Adam), as lora_np's."""
    params = [p for p in tnet.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    xt, yt = torch.from_numpy(backend.to_numpy(x)), torch.from_numpy(backend.to_numpy(y)).long()

    def step():
        opt.zero_grad(set_to_none=True)
        logits = tnet(xt)
        loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), yt.reshape(-1))
        loss.backward()
        opt.step()
        return loss
    return step
