"""Interchange with Hugging Face PEFT: its adapter folder of a config and a safetensors file.

A PEFT LoRA adapter is a folder with ``adapter_config.json`` (a ``LoraConfig``) and
``adapter_model.safetensors``, whose keys are the model's module paths with PEFT's prefix:

=========  ==============================================  ==========  =====================
layer      key                                             shape       ours
=========  ==============================================  ==========  =====================
Linear     ``base_model.model.<path>.lora_A.weight``       (r, d_in)   ``<path>.lora_A``
Linear     ``base_model.model.<path>.lora_B.weight``       (d_out, r)  ``<path>.lora_B``
Embedding  ``base_model.model.<path>.lora_embedding_A``    (r, V)      ``<path>.lora_A``
Embedding  ``base_model.model.<path>.lora_embedding_B``    (d, r)      ``<path>.lora_B``
=========  ==============================================  ==========  =====================

PEFT stores the adapter name in the module (``lora_A.default.weight``) and removes it when saving
(``get_peft_model_state_dict``). Its embedding LoRA has loralib's orientation, as ours does:
ΔW = s (B A)ᵀ. Its scale is ours, alpha/r (alpha/√r with ``use_rslora``), so A and B travel
unchanged. Only plain LoRA is exchanged (no DoRA, no ``fan_in_fan_out``, no per-layer ranks).

>>> export_peft(model, "out/grapes")                  # PeftModel.from_pretrained(torch_model, "out/grapes")
>>> import_peft(base_model, "downloaded/adapter")     # the reverse, onto the same base

The safetensors files are read and written by :mod:`lora_np.lora.safetensors`.
"""
from __future__ import annotations

import os
import warnings

from .. import backend
from ..nn import Embedding, Linear, LoRAEmbedding
from .inject import LoraConfig
from .io import adapter_attribute, attach_adapter, read_json, write_json
from .manager import active_adapter, adapter_config, adapter_layers, base_modules
from .safetensors import read_safetensors, write_safetensors

CONFIG_NAME, WEIGHTS_NAME = "adapter_config.json", "adapter_model.safetensors"
PREFIX = "base_model.model."
SUFFIXES = {".lora_A.weight": ("linear", "lora_A"), ".lora_B.weight": ("linear", "lora_B"),
            ".lora_embedding_A": ("embedding", "lora_A"), ".lora_embedding_B": ("embedding", "lora_B")}

# --------------------------------------------------------------------------- export

def _peft_number(x: float):
    return int(x) if float(x).is_integer() else float(x)


def export_peft(model, directory, adapter_name: str | None = None) -> str:
    """Write one plain-LoRA adapter (default: the active one) as a PEFT adapter folder; return its path."""
    name = adapter_name if adapter_name is not None else active_adapter(model)
    if name is None:
        raise ValueError("export_peft: the model has no active adapter; pass adapter_name")
    layers = adapter_layers(model, name)
    config = adapter_config(model, name)
    tensors = {}
    for path, layer in layers.items():
        variant = getattr(layer, "variant", "lora")
        if variant != "lora":
            raise ValueError(f"export_peft: adapter {name!r} is variant {variant!r} at {path!r}; only plain "
                             "LoRA is exported to PEFT (convert PiSSA with pissa_to_lora first)")
        if layer.merged:
            raise RuntimeError(f"{path}: adapter {name!r} is merged into the weights; "
                               "call unmerge_lora(model) first")
        if layer.strength != 1.0:
            warnings.warn(f"export_peft: {path} has strength {layer.strength}; PEFT's format has no "
                          "strength, so the adapter is exported as trained (strength 1)",
                          UserWarning, stacklevel=2)
        A, B = backend.to_numpy(layer.lora_A.data), backend.to_numpy(layer.lora_B.data)
        names = (".lora_embedding_A", ".lora_embedding_B") if isinstance(layer, LoRAEmbedding) else \
            (".lora_A.weight", ".lora_B.weight")
        tensors[PREFIX + path + names[0]] = A                        # (r, in), an embedding's (r, V)
        tensors[PREFIX + path + names[1]] = B                        # (out, r), an embedding's (d, r)
    init = config.init_lora_weights if config is not None else "kaiming"
    peft_config = {
        "peft_type": "LORA", "task_type": None, "auto_mapping": None,
        "base_model_name_or_path": None, "revision": None, "inference_mode": True,
        "r": int(adapter_attribute(layers, "r", name)),
        "lora_alpha": _peft_number(adapter_attribute(layers, "alpha", name)),
        "target_modules": sorted(layers), "lora_dropout": float(config.lora_dropout) if config else 0.0,
        "fan_in_fan_out": False, "bias": "none",
        "use_rslora": bool(adapter_attribute(layers, "use_rslora", name)),
        "modules_to_save": None, "init_lora_weights": True if init == "kaiming" else init,
        "layers_to_transform": None, "layers_pattern": None, "rank_pattern": {}, "alpha_pattern": {},
        "megatron_config": None, "megatron_core": "megatron.core", "loftq_config": {},
        "use_dora": False, "layer_replication": None,
    }
    os.makedirs(directory, exist_ok=True)
    write_safetensors(os.path.join(directory, WEIGHTS_NAME), tensors, metadata={"format": "pt"})   # first
    write_json(os.path.join(directory, CONFIG_NAME), peft_config)                                  # last
    return os.fspath(directory)


# --------------------------------------------------------------------------- import

def _check_peft_config(cfg: dict, where: str) -> None:
    if cfg.get("peft_type") != "LORA":
        raise ValueError(f"{where}: peft_type must be 'LORA', got {cfg.get('peft_type')!r}")
    refused = [("fan_in_fan_out", "a transposed (Conv1D) weight layout"), ("use_dora", "DoRA"),
               ("lora_bias", "LoRA biases"), ("rank_pattern", "per-layer ranks"),
               ("alpha_pattern", "per-layer alphas"), ("layer_replication", "layer replication"),
               ("modules_to_save", "fully trained extra modules"),
               ("trainable_token_indices", "trainable tokens")]      # each must be off: false, null or empty
    if cfg.get("bias", "none") != "none":
        refused.insert(0, ("bias", "trained biases"))
    for key, what in refused:
        value = cfg.get(key)
        if key == "bias" or value not in (None, False, [], {}):
            raise ValueError(f"{where}: {key}={value!r} ({what}) is not supported; "
                             "only plain LoRA can be imported")
    init = cfg.get("init_lora_weights", True)
    if not (isinstance(init, bool) or init == "gaussian"):
        raise ValueError(f"{where}: init_lora_weights={init!r} is not supported: with it PEFT changes the "
                         "base weights too, so the adapter alone does not reproduce the model")
    r, alpha = cfg.get("r"), cfg.get("lora_alpha")
    if isinstance(r, bool) or not isinstance(r, int) or r <= 0:
        raise ValueError(f"{where}: r must be a positive integer, got {r!r}")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not alpha > 0:
        raise ValueError(f"{where}: lora_alpha must be a positive number, got {alpha!r}")


def import_peft(model, directory, adapter_name: str = "default") -> str:
    """Add the PEFT LoRA adapter in ``directory`` to ``model`` as adapter ``adapter_name``.

    Active if the model had no adapter; otherwise added but not activated, as PEFT's ``load_adapter``.
    """
    where = os.path.join(directory, CONFIG_NAME)
    cfg = read_json(where, "PEFT adapter config")
    _check_peft_config(cfg, where)
    weights = os.path.join(directory, WEIGHTS_NAME)
    if not os.path.isfile(weights) and os.path.isfile(os.path.join(directory, "adapter_model.bin")):
        raise ValueError(f"{directory}: only adapter_model.safetensors is read, "
                         "not the pickled adapter_model.bin")
    flat = read_safetensors(weights)
    modules = base_modules(model)
    r, tensors, kinds = cfg["r"], {}, {}
    for key, a in flat.items():
        suffix = next((s for s in SUFFIXES if key.endswith(s)), None)
        if not key.startswith(PREFIX) or suffix is None:
            raise ValueError(f"{weights}: key {key!r} is not a LoRA tensor this importer knows (expected "
                             f"'{PREFIX}<path>' + one of {list(SUFFIXES)})")
        kind, tname = SUFFIXES[suffix]
        path = key[len(PREFIX):-len(suffix)]
        want = Embedding if kind == "embedding" else Linear
        if type(modules.get(path)) is not want:
            raise ValueError(f"{weights}: key {key!r} maps to {path!r}, which is no {want.__name__} layer of "
                             "this model" + (f" (it is a {type(modules[path]).__name__})"
                                             if path in modules else ""))
        if a.ndim != 2 or a.dtype.kind != "f":
            raise ValueError(f"{weights}: key {key!r} must be a 2-D floating tensor, "
                             f"got shape {a.shape}, dtype {a.dtype}")
        rank = a.shape[0] if tname == "lora_A" else a.shape[1]
        if rank != r:
            raise ValueError(f"{weights}: key {key!r} has rank {rank} (shape {a.shape}), "
                             f"but the config says r={r}")
        base = modules[path]
        d_in, d_out = (base.num_embeddings, base.dim) if kind == "embedding" else (base.d_in, base.d_out)
        expected = (r, d_in) if tname == "lora_A" else (d_out, r)
        if a.shape != expected:
            raise ValueError(f"{weights}: key {key!r} has shape {a.shape}, but {path!r} needs {expected}")
        tensors.setdefault(path, {})[tname] = a.astype(base.weight.dtype, copy=False)
        kinds[path] = kind
    for path, pair in tensors.items():
        for tname in ("lora_A", "lora_B"):
            if tname not in pair:
                raise ValueError(f"{weights}: {path!r} has no {tname} tensor (the keys come in A/B pairs)")
    if not tensors:
        raise ValueError(f"{weights}: no LoRA tensors in the file")
    init = cfg.get("init_lora_weights", True)
    config = LoraConfig(r=r, lora_alpha=float(cfg["lora_alpha"]), target_modules=sorted(kinds),
                        lora_dropout=float(cfg.get("lora_dropout") or 0.0),
                        use_rslora=bool(cfg.get("use_rslora", False)),
                        init_lora_weights="gaussian" if init == "gaussian" else "kaiming")
    attach_adapter(model, adapter_name, config, kinds, tensors)
    return adapter_name
