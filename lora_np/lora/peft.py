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
unchanged. Only plain LoRA is exchanged (no DoRA, no per-layer ranks), with PEFT's
``bias="lora_only"`` (the adapted layers' own biases, under ``<path>.base_layer.bias``).

GPT-2's Conv1D layers store their weight transposed, (d_in, d_out). PEFT marks this with
``fan_in_fan_out=True``, which changes only how ΔW is merged (as (B A)ᵀ); A and B have the same
shapes as on a Linear. The export sets it when an adapted layer is a Conv1D; the import accepts either
value, since, as in PEFT, each layer's own type decides: PEFT flips the flag per layer with a
warning (a Linear such as GPT-2's ``lm_head`` gets False, a Conv1D True) and saves the last value it
set, so an adapter PEFT wrote for GPT-2 with ``lm_head`` among its targets says False.

The folder is replaced as a unit, as lora_np's own format is (:mod:`lora_np.lora.files`), and
the two formats live side by side in one folder. The importer reads the config by an allow-list:
it knows every key it honours and the default of every key it does not, and refuses any other
key whose value is not a default (an aLoRA's ``alora_invocation_tokens``, say, which changes where
PEFT applies the adapter), naming the key.

>>> export_peft(model, "out/grapes")                  # PeftModel.from_pretrained(torch_model, "out/grapes")
>>> import_peft(base_model, "downloaded/adapter")     # the reverse, onto the same base

The safetensors files are read and written by :mod:`lora_np.lora.safetensors`.
"""
from __future__ import annotations

import json
import os
import warnings

from .. import backend, validate
from ..nn import Embedding, LoRAConv1D, LoRAEmbedding
from .attach import adapter_attribute, attach_adapter
from .checks import refuse_non_finite
from .files import json_bytes, read_folder, replace_folder
from .inject import LINEAR_TYPES, LoraConfig
from .io import adapter_formats
from .manager import active_adapter, adapter_config, adapter_layers, base_modules
from .safetensors import parse_safetensors, safetensors_bytes

CONFIG_NAME, WEIGHTS_NAME = "adapter_config.json", "adapter_model.safetensors"
PREFIX = "base_model.model."
SUFFIXES = {".lora_A.weight": ("linear", "lora_A"), ".lora_B.weight": ("linear", "lora_B"),
            ".lora_embedding_A": ("embedding", "lora_A"), ".lora_embedding_B": ("embedding", "lora_B"),
            ".base_layer.bias": ("linear", "bias")}
BASE_WEIGHT = ".base_layer.weight"            # PEFT saves it for adapted embeddings and heads: checked

# Keys that do not change what the adapter computes once its tensors are loaded: read and ignored.
IGNORED = ("task_type", "base_model_name_or_path", "revision", "inference_mode", "auto_mapping",
           "peft_version", "runtime_config", "exclude_modules", "layers_to_transform", "layers_pattern",
           "megatron_core")
# Keys this importer does not implement, with PEFT's default: any other value is refused.
DEFAULTS = {"modules_to_save": None, "rank_pattern": {}, "alpha_pattern": {},
            "megatron_config": None, "trainable_token_indices": None, "loftq_config": {}, "eva_config": None,
            "corda_config": None, "lora_ga_config": None, "use_dora": False, "velora_config": None,
            "alora_invocation_tokens": None, "use_qalora": False, "qalora_group_size": 16,
            "monteclora_config": None, "layer_replication": None, "lora_bias": False,
            "target_parameters": None,
            "use_bdlora": None, "arrow_config": None, "kasa_config": None, "ensure_weight_tying": False}
HONOURED = ("peft_type", "r", "lora_alpha", "target_modules", "lora_dropout", "use_rslora",
            "init_lora_weights", "bias", "fan_in_fan_out")


# --------------------------------------------------------------------------- export

def _peft_number(x: float):
    return int(x) if float(x).is_integer() else float(x)


def export_peft(model, directory, adapter_name: str | None = None) -> str:
    """Write one plain-LoRA adapter (default: the active one) as a PEFT adapter folder; return its path.

    Other files in the folder (lora_np's own format of the same adapter, a README) are kept.
    """
    name = adapter_name if adapter_name is not None else active_adapter(model)
    if name is None:
        raise ValueError("export_peft: the model has no active adapter; pass adapter_name")
    layers = adapter_layers(model, name)
    config = adapter_config(model, name) or LoraConfig(r=adapter_attribute(layers, "r", name),
                                                      lora_alpha=adapter_attribute(layers, "alpha", name))
    tensors = {}
    for path, layer in layers.items():
        if layer.variant != "lora":
            raise ValueError(f"export_peft: adapter {name!r} is variant {layer.variant!r} at {path!r}; only "
                             "plain LoRA is exported to PEFT (convert PiSSA with pissa_to_lora first)")
        if layer.merged:
            raise RuntimeError(f"{path}: adapter {name!r} is merged into the weights; "
                               "call unmerge_lora(model) first")
        if layer.strength != 1.0:
            warnings.warn(f"export_peft: {path} has strength {layer.strength}; PEFT's format has no "
                          "strength, so the adapter is exported as trained (strength 1)",
                          UserWarning, stacklevel=2)
        names = {"lora_A": ".lora_A.weight", "lora_B": ".lora_B.weight", "bias": ".base_layer.bias"}
        if isinstance(layer, LoRAEmbedding):
            names = {"lora_A": ".lora_embedding_A", "lora_B": ".lora_embedding_B"}
        for tname, p in layer.adapter_parameters().items():   # A (r, in), B (out, r), own bias (out,)
            tensors[PREFIX + path + names[tname]] = backend.to_numpy(p.data)
    refuse_non_finite(tensors, f"export_peft: adapter {name!r}")
    peft_config = {
        "peft_type": "LORA", "task_type": None, "auto_mapping": None,
        "base_model_name_or_path": None, "revision": None, "inference_mode": True,
        "r": int(adapter_attribute(layers, "r", name)),
        "lora_alpha": _peft_number(adapter_attribute(layers, "alpha", name)),
        "target_modules": sorted(layers), "lora_dropout": float(config.lora_dropout),
        "bias": config.bias, "use_rslora": bool(adapter_attribute(layers, "use_rslora", name)),
        "init_lora_weights": True if config.init_lora_weights == "kaiming" else config.init_lora_weights,
        "layers_to_transform": None, "layers_pattern": None, "megatron_core": "megatron.core",
        **DEFAULTS,
        "fan_in_fan_out": any(isinstance(layer, LoRAConv1D) for layer in layers.values()),
    }
    files = {WEIGHTS_NAME: safetensors_bytes(tensors, metadata={"format": "pt"}),
             CONFIG_NAME: json_bytes(peft_config)}
    return replace_folder(directory, files)


# --------------------------------------------------------------------------- import

def check_peft_config(cfg: dict, where: str) -> dict:
    """The PEFT config's honoured fields, checked; ValueError naming any key this importer cannot honour."""
    if cfg.get("peft_type") != "LORA":
        raise ValueError(f"{where}: peft_type must be 'LORA', got {cfg.get('peft_type')!r}")
    for key, value in cfg.items():
        if key in HONOURED or key in IGNORED:
            continue
        if key in DEFAULTS:
            default = DEFAULTS[key]
            if value == default and isinstance(value, bool) == isinstance(default, bool):
                continue
            raise ValueError(f"{where}: {key}={value!r} is not supported: lora_np imports plain LoRA, so "
                             f"{key} must have PEFT's default, {default!r}")
        if not (value is None or value is False or (isinstance(value, (list, dict, str)) and not value)):
            raise ValueError(f"{where}: {key}={value!r} is an option this importer does not know; it refuses "
                             "unknown options that are set, since they may change what the adapter computes")
    init = cfg.get("init_lora_weights", True)
    if not (isinstance(init, bool) or init == "gaussian"):
        raise ValueError(f"{where}: init_lora_weights={init!r} is not supported: with it PEFT changes the "
                         "base weights too, so the adapter alone does not reproduce the model")
    bias = cfg.get("bias", "none")
    if bias not in ("none", "lora_only"):
        raise ValueError(f"{where}: bias={bias!r} is not supported: it trains biases of the shared base "
                         "model in place; 'none' and 'lora_only' are")
    return {"r": validate.positive_int(cfg.get("r"), "r", where),
            "lora_alpha": validate.positive_number(cfg.get("lora_alpha"), "lora_alpha", where),
            "lora_dropout": validate.fraction(cfg.get("lora_dropout") or 0.0, "lora_dropout", where),
            "use_rslora": validate.boolean(cfg.get("use_rslora", False), "use_rslora", where),
            "init_lora_weights": "gaussian" if init == "gaussian" else "kaiming", "bias": bias,
            "fan_in_fan_out": validate.boolean(cfg.get("fan_in_fan_out", False), "fan_in_fan_out", where)}


def _find_folder(directory, adapter_name: str) -> str:
    """PEFT's subfolder ``directory/<adapter_name>`` (where PEFT's ``save_pretrained`` puts an adapter
    that is not "default"), if there is one; else ``directory``."""
    directory = os.fspath(directory)
    sub = os.path.join(directory, adapter_name)
    if adapter_name != "default" and os.path.isfile(os.path.join(sub, CONFIG_NAME)):
        return sub
    formats = adapter_formats(directory)
    if "peft" in formats:
        return directory
    if os.path.isfile(os.path.join(sub, CONFIG_NAME)):
        return sub
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"PEFT adapter folder not found: {directory} does not exist")
    named = sorted(e.name for e in os.scandir(directory)
                   if e.is_dir() and os.path.isfile(os.path.join(e.path, CONFIG_NAME)))
    hint = (f" PEFT saves a named adapter in a subfolder; the subfolders with an adapter here are {named}: "
            "pass adapter_name=<one of them>" if named else "")
    if any(f.startswith("lora_np") for f in formats):
        hint += " It holds a lora_np adapter: load it with lora_np.lora.load_adapter(model, directory)."
    raise FileNotFoundError(f"no PEFT adapter here: {os.path.join(directory, CONFIG_NAME)} does not "
                            f"exist.{hint}")


def import_peft(model, directory, adapter_name: str = "default") -> str:
    """Add the PEFT LoRA adapter in ``directory`` to ``model`` as adapter ``adapter_name``.

    Active if the model had no adapter; otherwise added but not activated, as PEFT's ``load_adapter``.
    A named adapter that PEFT saved in the subfolder ``directory/<adapter_name>`` is found there (and
    is preferred to an adapter at the top of ``directory``, PEFT's "default" one).
    """
    directory = _find_folder(directory, adapter_name)
    where, weights = os.path.join(directory, CONFIG_NAME), os.path.join(directory, WEIGHTS_NAME)
    if not os.path.isfile(weights) and os.path.isfile(os.path.join(directory, "adapter_model.bin")):
        raise ValueError(f"{directory}: only adapter_model.safetensors is read, "
                         "not the pickled adapter_model.bin")
    files = read_folder(directory, (CONFIG_NAME, WEIGHTS_NAME))
    try:
        cfg = json.loads(files[CONFIG_NAME].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{where} is not valid JSON ({err}); the PEFT adapter config is damaged") from err
    if not isinstance(cfg, dict):
        raise ValueError(f"{where}: the PEFT adapter config must be a JSON object, got {type(cfg).__name__}")
    opts = check_peft_config(cfg, where)
    kinds, tensors = _read_tensors(parse_safetensors(files[WEIGHTS_NAME], weights), weights, model, opts)
    opts.pop("fan_in_fan_out")                    # each layer's own type decides how ΔW is merged
    config = LoraConfig(target_modules=sorted(kinds), **opts)
    attach_adapter(model, adapter_name, config, kinds, tensors)
    return adapter_name


def _check_saved_base_weight(key: str, a, base, weights: str) -> None:
    """PEFT saves the base weight of an adapted embedding or head (``save_embedding_layers="auto"``:
    GPT-2's ``lm_head``, tied to ``wte``), in case the vocabulary was resized. It must be this model's
    weight (up to bfloat16 rounding); it is then not needed."""
    if base is None or not hasattr(base, "weight"):
        raise ValueError(f"{weights}: key {key!r} is the base weight of a layer this model does not have")
    W = backend.to_numpy(base.weight.data)
    if a.shape != W.shape:
        raise ValueError(f"{weights}: key {key!r} has shape {a.shape}, this model's weight has {W.shape} "
                         "(was the vocabulary resized?)")
    scale = float(abs(W).max()) or 1.0
    if float(abs(a.astype(W.dtype) - W).max()) > 1e-2 * scale:
        raise ValueError(f"{weights}: key {key!r} holds a base weight that differs from this model's: the "
                         "adapter was trained on another base model")


def _read_tensors(flat: dict, weights: str, model, opts: dict):
    """``({path: kind}, {path: {tensor: array}})`` from the safetensors keys, every one checked."""
    refuse_non_finite(flat, weights)
    modules, r = base_modules(model), opts["r"]
    tensors, kinds = {}, {}
    for key, a in flat.items():
        if key.startswith(PREFIX) and key.endswith(BASE_WEIGHT):
            _check_saved_base_weight(key, a, modules.get(key[len(PREFIX):-len(BASE_WEIGHT)]), weights)
            continue
        suffix = next((s for s in SUFFIXES if key.endswith(s)), None)
        if not key.startswith(PREFIX) or suffix is None:
            raise ValueError(f"{weights}: key {key!r} is not a LoRA tensor this importer knows (expected "
                             f"'{PREFIX}<path>' + one of {list(SUFFIXES)})")
        kind, tname = SUFFIXES[suffix]
        path = key[len(PREFIX):-len(suffix)]
        want = (Embedding,) if kind == "embedding" else LINEAR_TYPES
        if type(modules.get(path)) not in want:
            raise ValueError(f"{weights}: key {key!r} maps to {path!r}, which is no "
                             f"{' or '.join(t.__name__ for t in want)} layer of this model"
                             + (f" (it is a {type(modules[path]).__name__})" if path in modules else ""))

        base = modules[path]
        d_in, d_out = (base.num_embeddings, base.dim) if kind == "embedding" else (base.d_in, base.d_out)
        expected = {"lora_A": (r, d_in), "lora_B": (d_out, r), "bias": (d_out,)}[tname]
        if a.dtype.kind != "f" or a.shape != expected:
            raise ValueError(f"{weights}: key {key!r} has shape {a.shape} and dtype {a.dtype}, but {path!r} "
                             f"needs a floating tensor of shape {expected}"
                             + (f" (the config says r={r})" if tname != "bias" else ""))
        tensors.setdefault(path, {})[tname] = a.astype(base.weight.dtype, copy=False)
        kinds[path] = kind
    needed = ("lora_A", "lora_B")
    for path, have in tensors.items():
        for tname in needed + (("bias",) if opts["bias"] == "lora_only" and kinds[path] == "linear"
                               and modules[path].bias is not None else ()):
            if tname not in have:
                raise ValueError(f"{weights}: {path!r} has no {tname} tensor (the config's bias is "
                                 f"{opts['bias']!r}; the keys come in A/B pairs)")
        if "bias" in have and opts["bias"] != "lora_only":
            raise ValueError(f"{weights}: {path!r} has a bias tensor, but the config's bias is "
                             f"{opts['bias']!r}")
    if not tensors:
        raise ValueError(f"{weights}: no LoRA tensors in the file")
    return kinds, tensors
