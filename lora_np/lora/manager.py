"""Adapters on a model: inject the first, add more, switch, combine, unload — PEFT's adapter
management, in plain code.

Each adapter is its own set of LoRA layers (one object per adapted layer), all sharing the base's
frozen W0 Parameters. The model tree shows the *active* adapter's layers; switching swaps layer
objects, so every adapter keeps its trained A and B untouched while another is active.

>>> inject_lora(model, LoraConfig(r=4, target_modules=["fc1"]), adapter_name="shop")
>>> add_adapter(model, "verse", LoraConfig(r=8, target_modules=["fc1", "fc2"]))
>>> set_adapter(model, "verse")              # train or run "verse"; "shop" is kept aside
>>> with adapters_disabled(model):           # the base model, exactly
...     ...
>>> set_adapter_strength(model, 0.5)         # half of the active ΔW
>>> add_weighted_adapter(model, ["shop", "verse"], [0.7, 0.3], "blend", combination="svd", rank=4)
>>> merge_and_unload(model)                  # a plain model with W0 + ΔW, no adapter layers left
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

from .. import backend, validate
from ..nn import Conv1D, Embedding, LoRAConv1D, LoRAEmbedding, LoRALayer, LoRALinear, Module
from .inject import BaseView, LoraConfig, build_lora_layers


@dataclass
class AdapterState:
    """What a model with adapters carries (as ``model._lora``; read it with :func:`adapter_state`):
    the base layers, every adapter's layers and config, which one is active, and whether all are off."""

    bases: dict = field(default_factory=dict)         # path -> the original Linear / Embedding
    adapters: dict = field(default_factory=dict)      # name -> {path: LoRALayer}
    configs: dict = field(default_factory=dict)       # name -> LoraConfig (None for combinations)
    active: str | None = None
    disabled: bool = False


def adapter_state(model: Module) -> AdapterState | None:
    """The model's :class:`AdapterState`, or None for a model without adapters."""
    return getattr(model, "_lora", None)


def _registry(model: Module) -> AdapterState:
    reg = adapter_state(model)
    if reg is None:
        raise ValueError("the model has no adapters; call inject_lora(model, config) first")
    return reg


def base_modules(model: Module) -> dict:
    """``{path: module}`` of the model as if no adapter were installed (each adapted layer is its base)."""
    reg = adapter_state(model)
    return dict(BaseView(model, reg.bases if reg is not None else {}).named_modules())


def _check_name(name) -> None:
    if not isinstance(name, str) or not name or "." in name:
        raise ValueError(f"adapter_name must be a non-empty string without dots, got {name!r}")


def inject_lora(model: Module, config: LoraConfig | None = None, adapter_name: str = "default",
                **kwargs) -> Module:
    """Replace the targeted layers by LoRA layers, freeze everything else, return the model.

    ``inject_lora(model, r=4, target_modules=["fc1"])`` is shorthand for passing a LoraConfig.
    The model is changed in place (its pretrained W0 arrays are shared, not copied). The adapter
    is registered under ``adapter_name`` and is active; :func:`add_adapter` adds more.
    The layers are :class:`lora_np.nn.LoRALinear` (or a variant's class): see its ``forward``.
    """
    if config is None:
        config = LoraConfig(**kwargs)
    elif kwargs:
        raise TypeError("pass either a LoraConfig or keyword arguments, not both")
    if any(isinstance(m, LoRALayer) for _, m in model.named_modules()):
        raise ValueError("this model already has LoRA layers; inject into a fresh copy of the base model, "
                         "or add another adapter with lora_np.lora.add_adapter")
    _check_name(adapter_name)
    layers = build_lora_layers(model, config)
    model.freeze()
    reg = AdapterState(bases={path: model.get_submodule(path) for path in layers})
    reg.adapters[adapter_name], reg.configs[adapter_name], reg.active = layers, config, adapter_name
    model._lora, model.lora_config = reg, config
    _show(model, adapter_name)
    return model


def unload(model: Module) -> Module:
    """Put the base layers back and forget every adapter (nothing is merged: the base model returns)."""
    reg = _registry(model)
    if any(layer.merged for layer in _installed(model)):
        raise RuntimeError("an adapter is merged into the weights; call unmerge_lora(model) first, "
                           "or merge_and_unload(model) to keep the merged weights")
    _forget(model, reg)
    return model


def _forget(model: Module, reg: AdapterState) -> None:
    for path, base in reg.bases.items():
        model.set_submodule(path, base)
    del model._lora
    if hasattr(model, "lora_config"):
        del model.lora_config


def _show(model, name: str | None) -> None:
    """Install the layers of adapter ``name`` (None: the base layers) wherever any adapter sits."""
    reg = _registry(model)
    if any(layer.merged for layer in _installed(model)):
        raise RuntimeError("an adapter is merged into the weights; call unmerge_lora(model) before switching")
    layers = reg.adapters.get(name, {}) if name is not None else {}
    for path, base in reg.bases.items():
        model.set_submodule(path, layers.get(path, base))


def _installed(model):
    return [m for _, m in model.named_modules() if isinstance(m, LoRALayer)]


# --------------------------------------------------------------------------- add, switch, delete

def add_adapter(model: Module, adapter_name: str, config: LoraConfig) -> Module:
    """Add a new adapter (not activated: call :func:`set_adapter`). Its targets may differ."""
    if adapter_state(model) is None:
        return inject_lora(model, config, adapter_name=adapter_name)
    reg = _registry(model)
    _check_name(adapter_name)
    if adapter_name in reg.adapters:
        raise ValueError(f"an adapter named {adapter_name!r} already exists; delete_adapter first or pick "
                         "another name")
    layers = build_lora_layers(model, config, bases=reg.bases)
    for path in layers:
        reg.bases.setdefault(path, model.get_submodule(path))
    reg.adapters[adapter_name], reg.configs[adapter_name] = layers, config
    _show(model, None if reg.disabled else reg.active)      # a newly wrapped path shows its base
    return model


def set_adapter(model: Module, adapter_name: str) -> None:
    """Make ``adapter_name`` the active adapter (the one that runs and trains)."""
    reg = _registry(model)
    if adapter_name not in reg.adapters:
        raise KeyError(f"no adapter named {adapter_name!r}; the adapters are {list(reg.adapters)}")
    _show(model, adapter_name)
    reg.active, reg.disabled = adapter_name, False


def active_adapter(model: Module) -> str | None:
    return _registry(model).active


def list_adapters(model: Module) -> list:
    return list(_registry(model).adapters)


def adapter_config(model: Module, adapter_name: str | None = None) -> LoraConfig | None:
    reg = _registry(model)
    return reg.configs[adapter_name or reg.active]


def adapter_layers(model: Module, adapter_name: str | None = None) -> dict:
    """``{path: LoRALayer}`` of an adapter (default: the active one), whether shown or not."""
    reg = _registry(model)
    name = adapter_name or reg.active
    if name not in reg.adapters:
        raise KeyError(f"no adapter named {name!r}; the adapters are {list(reg.adapters)}")
    return reg.adapters[name]


def delete_adapter(model: Module, adapter_name: str) -> None:
    """Remove an adapter. Deleting the active one leaves the base model showing (no adapter active)."""
    reg = _registry(model)
    if adapter_name not in reg.adapters:
        raise KeyError(f"no adapter named {adapter_name!r}; the adapters are {list(reg.adapters)}")
    if adapter_name == reg.active:
        _show(model, None)
        reg.active = None
    del reg.adapters[adapter_name], reg.configs[adapter_name]


def disable_adapters(model: Module) -> None:
    """Show the base model (exactly: the base layers themselves run)."""
    _show(model, None)
    _registry(model).disabled = True


def enable_adapters(model: Module) -> None:
    reg = _registry(model)
    _show(model, reg.active)
    reg.disabled = False


@contextlib.contextmanager
def adapters_disabled(model: Module):
    """``with adapters_disabled(model): ...`` runs the base model, then restores what was active."""
    was = _registry(model).disabled
    disable_adapters(model)
    try:
        yield model
    finally:
        if not was:
            enable_adapters(model)


def set_adapter_strength(model: Module, strength: float, adapter_name: str | None = None) -> None:
    """ΔW ← strength · s · B A for every layer of one adapter (default: the active one)."""
    strength = validate.finite_number(strength, "strength")
    for layer in adapter_layers(model, adapter_name).values():
        if layer.merged:
            raise RuntimeError(f"{layer.name}: unmerge before changing the strength")
        layer.strength = strength


# --------------------------------------------------------------------------- combining and unloading

def add_weighted_adapter(model: Module, adapters, weights, adapter_name: str, combination: str = "linear",
                         rank: int | None = None) -> Module:
    """A new adapter whose update is Σ_i w_i ΔW_i (each ΔW_i with its own scale and strength).

    ``"linear"``: exact. The update is written as one LoRA of rank Σ r_i by stacking the factors,
    B = [w_1 s_1 B_1, …, w_k s_k B_k], A = [A_1; …; A_k], with s = 1.
    ``"svd"``: Σ w_i ΔW_i is formed and cut to ``rank`` by its SVD (the best rank-``rank``
    approximation; at full rank it equals the linear combination).
    """
    reg = _registry(model)
    _check_name(adapter_name)
    if adapter_name in reg.adapters:
        raise ValueError(f"an adapter named {adapter_name!r} already exists")
    adapters = list(adapters)
    weights = [validate.finite_number(w, f"weights[{i}]", "add_weighted_adapter")
               for i, w in enumerate(weights)]
    if not adapters or len(adapters) != len(weights):
        raise ValueError(f"adapters and weights must be non-empty and of equal length, got {len(adapters)} "
                         f"and {len(weights)}")
    for a in adapters:
        adapter_layers(model, a)                                       # raises for unknown names
    validate.choice(combination, "combination", ("linear", "svd"))
    if combination == "svd":
        rank = validate.positive_int(rank, "rank", "combination='svd'")
    for a in adapters:
        if any(layer.variant == "pissa" for layer in reg.adapters[a].values()):
            raise ValueError(f"adapter {a!r} is PiSSA: its ΔW is relative to a residual weight, not to W0; "
                             "convert it with lora_np.nn.variants.pissa_to_lora before combining")
    paths = [p for p in reg.bases if any(p in reg.adapters[a] for a in adapters)]
    layers = {}
    for path in paths:
        parts = [(w, reg.adapters[a][path]) for a, w in zip(adapters, weights, strict=True)
                 if path in reg.adapters[a]]
        if combination == "linear":
            B, A = _stack(parts)
        else:
            B, A = _svd_factors(sum(w * layer.delta_weight() for w, layer in parts), rank, parts[0][1])
        layers[path] = _layer_from_factors(reg.bases[path], B, A, path)
    reg.adapters[adapter_name], reg.configs[adapter_name] = layers, None
    return model


def _stack(parts):
    """Factors of Σ w_i s_i B_i A_i, exactly, for plain LoRA layers: B (d_out, Σr), A (Σr, d_in)."""
    for _, layer in parts:
        if type(layer) not in (LoRALinear, LoRAConv1D, LoRAEmbedding):
            raise ValueError(f"{layer.name}: combination='linear' needs plain LoRA layers; use "
                             "combination='svd'")
    xp = backend.get_array_module(parts[0][1].lora_A.data)
    Bs = [w * layer.s * layer.lora_B.data for w, layer in parts]                   # (d_out, r_i) each
    As = [layer.lora_A.data for _, layer in parts]                                  # (r_i, d_in) each
    return xp.concatenate(Bs, axis=1), xp.concatenate(As, axis=0)


def _svd_factors(delta, rank, like):
    """Best rank-``rank`` factors of ``delta`` (in the layer's B·A orientation): B = U_r Σ_r, A = V_rᵀ."""
    if isinstance(like, (LoRAEmbedding, LoRAConv1D)):
        delta = delta.T                                                             # ΔW = (B A)ᵀ: back to B A
    if rank > min(delta.shape):
        raise ValueError(f"rank={rank} is above min{tuple(delta.shape)} = {min(delta.shape)}")
    xp = backend.get_array_module(delta)
    U, S, Vt = xp.linalg.svd(delta, full_matrices=False)                           # (m, k), (k,), (k, n)
    return U[:, :rank] * S[:rank], Vt[:rank]                                        # (m, rank), (rank, n)


def _layer_from_factors(base, B, A, name):
    """A LoRA layer with ΔW = B A (scale 1) on ``base``."""
    r = A.shape[0]
    cls = {Embedding: LoRAEmbedding, Conv1D: LoRAConv1D}.get(type(base), LoRALinear)
    layer = cls(base, r=r, alpha=float(r), name=name)                               # alpha = r: s = 1
    layer.lora_A.data, layer.lora_B.data = A.astype(base.weight.dtype), B.astype(base.weight.dtype)
    base.weight.trainable = False
    return layer


def merge_and_unload(model: Module) -> Module:
    """Merge the active adapter into W0 and put plain layers back: no adapter layers remain.

    The returned model (the same object) is an ordinary model whose weights are W0 + ΔW; the
    adapters and the original W0 are gone. Its parameters keep their trainable flags. A tied head
    (GPT-2's) that was adapted is untied: it keeps W0 + ΔW, the token embedding keeps W0. An adapter
    that trained its own bias (``bias="lora_only"``) leaves that bias in the base layer.
    """
    reg = _registry(model)
    if reg.active is not None and not reg.disabled:
        for path, layer in reg.adapters[reg.active].items():
            if not layer.merged:
                layer.merge()
            layer._W0 = None                                                        # drop the backup
            if layer.tied_to is not None:               # a tied layer got its own merged weight: untie
                reg.bases[path].weight, reg.bases[path].tied_to = layer.weight, None
                layer._tied = None
            if layer.owns_bias:
                reg.bases[path].bias.data = layer.bias.data                         # (d_out,)
    _forget(model, reg)                                         # the base layers share the merged weights
    return model
