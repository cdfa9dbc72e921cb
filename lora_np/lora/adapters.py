"""Adapters as values: take the LoRA tensors out of a model, put them back, turn their strength.

An adapter is small — only A and B of every LoRA layer — so one frozen base model can carry many:
train one per task or style, keep each as a dict of host arrays, and load whichever you need.

>>> style = lora_state_dict(model)                     # {"blocks.0.attn.q.lora_A": array, ...}
>>> load_lora_state_dict(other_model, style)           # same base, same targets, same r
>>> set_lora_strength(other_model, 0.5)                # half of ΔW: s ← s · 0.5
"""
from __future__ import annotations

import numbers

from .. import backend
from ..nn import Module
from .inject import lora_layers


def lora_state_dict(model: Module) -> dict:
    """Host copies of every LoRA tensor, under the model's dotted names."""
    return {name: backend.to_numpy(p.data).copy() for name, p in model.named_parameters()
            if name.endswith((".lora_A", ".lora_B"))}


def load_lora_state_dict(model: Module, state: dict) -> None:
    """Copy LoRA tensors into a model with the same LoRA layers (names and shapes must match)."""
    params = {n: p for n, p in model.named_parameters() if n.endswith((".lora_A", ".lora_B"))}
    missing, extra = sorted(set(params) - set(state)), sorted(set(state) - set(params))
    if missing or extra:
        raise KeyError(f"adapter does not fit this model: missing {missing}, unexpected {extra}")
    for name, p in params.items():
        if tuple(state[name].shape) != tuple(p.shape):
            raise ValueError(f"{name}: the adapter has shape {tuple(state[name].shape)}, the model {tuple(p.shape)}")
    for _, layer in lora_layers(model):
        if layer.merged:
            raise RuntimeError(f"{layer.name}: unmerge before loading another adapter")
    for name, p in params.items():
        p.data = backend.asarray(state[name], dtype=p.dtype)


def set_lora_strength(model: Module, strength: float) -> None:
    """Scale every adapter's contribution: ΔW ← strength · s · B A (0 = off, 1 = as trained)."""
    if isinstance(strength, bool) or not isinstance(strength, numbers.Real):
        raise ValueError(f"strength must be a number, got {strength!r}")
    layers = [layer for _, layer in lora_layers(model)]
    if not layers:
        raise ValueError("the model has no LoRA layers; call inject_lora first")
    for layer in layers:
        if layer.merged:
            raise RuntimeError(f"{layer.name}: unmerge before changing the strength")
        layer.strength = float(strength)



