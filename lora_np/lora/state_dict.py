"""Adapters as values: take the LoRA tensors out of a model and put them back.

An adapter is small — only A and B of every LoRA layer — so one frozen base model can carry many:
train one per task or style, keep each as a dict of host arrays, and load whichever you need.

>>> style = lora_state_dict(model)                     # {"blocks.0.attn.q.lora_A": array, ...}
>>> load_lora_state_dict(other_model, style)           # same base, same targets, same r
"""
from __future__ import annotations

from .. import backend
from ..nn import Module
from .inject import lora_layers


def _adapter_params(model: Module) -> dict:
    """``{"fc1.lora_A": Parameter, ...}``: every adapter tensor of the LoRA layers shown in the model."""
    return {f"{path}.{n}": p for path, layer in lora_layers(model)
            for n, p in layer.adapter_parameters().items()}


def lora_state_dict(model: Module) -> dict:
    """Host copies of every adapter tensor (A, B, and a variant's own), under the model's dotted names."""
    return {name: backend.to_numpy(p.data).copy() for name, p in _adapter_params(model).items()}


def load_lora_state_dict(model: Module, state: dict) -> None:
    """Copy LoRA tensors into a model with the same LoRA layers (names and shapes must match)."""
    params = _adapter_params(model)
    missing, extra = sorted(set(params) - set(state)), sorted(set(state) - set(params))
    if missing or extra:
        raise KeyError(f"adapter does not fit this model: missing {missing}, unexpected {extra}")
    for name, p in params.items():
        if tuple(state[name].shape) != tuple(p.shape):
            raise ValueError(f"{name}: the adapter has shape {tuple(state[name].shape)}, the model "
                             f"{tuple(p.shape)}")
    for _, layer in lora_layers(model):
        if layer.merged:
            raise RuntimeError(f"{layer.name}: unmerge before loading another adapter")
    for name, p in params.items():
        p.data = backend.asarray(state[name], dtype=p.dtype)
