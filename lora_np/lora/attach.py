"""Putting a loaded adapter on a model, and telling which base model an adapter belongs to.

Both file formats (:mod:`lora_np.lora.io`, :mod:`lora_np.lora.peft`) read tensors from disk and
then call :func:`attach_adapter`, which builds the adapter's layers on the model and copies the
tensors in, or leaves the model exactly as it was when anything does not fit.

An adapter only means something on top of the W0 it was trained with: :func:`base_model_fingerprint`
is a SHA-256 over the names, shapes, dtypes and bytes of every parameter that is not part of an
adapter, so a loader can refuse another base (or the same architecture with other weights).
"""
from __future__ import annotations

import hashlib

from .. import backend
from ..nn import Embedding, LoRALayer, Parameter
from .inject import LINEAR_TYPES, BaseView, LoraConfig, find_target_layers
from .manager import (
    adapter_layers,
    adapter_state,
    add_adapter,
    base_modules,
    delete_adapter,
    inject_lora,
    unload,
)


def _base_parameters(model) -> dict:
    """``{name: Parameter}`` of the model as if no adapter were there: every adapted layer is
    replaced by its base layer (so PiSSA's residual weight, an adapter's own bias and the LoRA
    tensors are not included)."""
    reg = adapter_state(model)
    bases = reg.bases if reg is not None else {}
    params = {}
    for path, module in model.named_modules():
        if isinstance(module, LoRALayer):
            if module.merged:
                raise RuntimeError(f"{path}: an adapter is merged into the weights; "
                                   "call unmerge_lora(model) first")
            src = bases.get(path)
            own = (src._children() if src is not None else
                   ((n, p) for n, p in module._children() if n not in module.adapter_parameters()))
        else:
            own = module._children()
        for name, p in own:
            if isinstance(p, Parameter):
                params[f"{path}.{name}" if path else name] = p
    return params


def base_model_fingerprint(model) -> str:
    """SHA-256 over the sorted (name, shape, dtype, bytes) of every non-adapter parameter."""
    h = hashlib.sha256()
    for name, p in sorted(_base_parameters(model).items()):
        a = backend.to_numpy(p.data)
        h.update(f"{name}\0{tuple(a.shape)}\0{a.dtype.str}\0".encode())
        h.update(a.tobytes(order="C"))
    return h.hexdigest()


def adapter_attribute(layers: dict, attr: str, adapter: str):
    """The one value of ``attr`` (r, alpha, ...) that every layer of an adapter shares, or a ValueError."""
    values = {getattr(layer, attr) for layer in layers.values()}
    if len(values) != 1:
        raise ValueError(f"adapter {adapter!r}: its layers differ in {attr} ({sorted(values)}); this format "
                         "stores one value per adapter")
    return values.pop()


def attach_adapter(model, name: str, config: LoraConfig, kinds: dict, tensors: dict, strengths=None) -> None:
    """Build adapter ``name`` on exactly the layers in ``kinds`` (``{path: "linear" | "embedding"}``;
    "linear" is a Linear or a Conv1D: their adapters have the same tensors)
    and copy ``tensors`` (``{path: {tensor name: host array}}``) into it, in the arrays' dtypes.

    A model without adapters gets it through :func:`inject_lora` (and it is active); a model
    that has adapters gets it through :func:`add_adapter` (not activated, as in PEFT). If anything
    does not fit, the model is left exactly as it was: no half-loaded adapter.
    """
    reg = adapter_state(model)
    if reg is not None and name in reg.adapters:
        raise ValueError(f"an adapter named {name!r} already exists on the model; pass another adapter_name")
    modules = base_modules(model)
    for path, kind in kinds.items():
        module = modules.get(path)
        if type(module) not in (*LINEAR_TYPES, Embedding):
            raise ValueError(f"the adapter adapts {path!r}, which is not a Linear, Conv1D or Embedding layer "
                             "of this model")
        if (kind == "embedding") != (type(module) is Embedding):
            raise ValueError(f"the adapter adapts {path!r} as a {kind} layer, but the model has a "
                             f"{type(module).__name__} there")
    selected = find_target_layers(BaseView(model, reg.bases if reg is not None else {}), list(kinds))
    if sorted(selected) != sorted(kinds):
        raise ValueError(f"the adapter's layer paths {sorted(kinds)} also select "
                         f"{sorted(set(selected) - set(kinds))} in this model (target_modules match by "
                         "suffix), so it cannot be rebuilt exactly")
    flags = {n: p.trainable for n, p in model.named_parameters()}
    if reg is None:
        inject_lora(model, config, adapter_name=name)
    else:
        add_adapter(model, name, config)
    try:
        for path, layer in adapter_layers(model, name).items():
            _copy_into(layer, path, tensors[path])
            if strengths:
                layer.strength = strengths[path]
    except BaseException:                   # leave the model as it was
        if reg is None:
            unload(model)
            for n, p in model.named_parameters():
                p.trainable = flags.get(n, p.trainable)
        else:
            delete_adapter(model, name)
        raise


def _copy_into(layer, path: str, arrays: dict) -> None:
    params = layer.adapter_parameters()
    if sorted(params) != sorted(arrays):
        raise ValueError(f"{path}: the adapter has tensors {sorted(arrays)}, a {type(layer).__name__} "
                         f"here has {sorted(params)}")
    for tname, p in params.items():
        a = arrays[tname]
        if tuple(a.shape) != tuple(p.shape) or a.dtype != p.dtype:
            raise ValueError(f"{path}.{tname}: this model expects shape {tuple(p.shape)} and dtype "
                             f"{p.dtype}, got {tuple(a.shape)} and {a.dtype}")
    for tname, p in params.items():
        p.data = backend.asarray(arrays[tname], dtype=arrays[tname].dtype)
