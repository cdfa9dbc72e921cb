"""Saving and loading ONE adapter in lora_np's own format, without the base model's weights.

An adapter is a few small matrices; the base model is large and is already on disk somewhere.
So a saved adapter is two files in a folder, named so that a PEFT export
(:mod:`lora_np.lora.peft`: ``adapter_config.json``, ``adapter_model.safetensors``) fits beside them:

* ``lora_np_adapter.npz`` — the adapter's tensors under the model's dotted names (``fc1.lora_A``:
  ``(r, d_in)``, ``fc1.lora_B``: ``(d_out, r)``; embeddings in loralib's orientation; ``fc1.bias``
  for an adapter that trains its own bias), host arrays in their exact dtype;
* ``lora_np_adapter.json`` — what is needed to rebuild the adapter (r, alpha, the scaling rule,
  the adapted layers, the variant, the strengths, ...), the shape, dtype and SHA-256 of every
  tensor, a *fingerprint of the base model* (a SHA-256 over every non-adapter parameter, see
  :func:`~lora_np.lora.attach.base_model_fingerprint`) and a ``checksum`` of the config itself, so
  an edited field (alpha, say) is refused instead of silently changing the outputs.

>>> save_adapter(model, "runs/grapes")                    # the active adapter
>>> name = load_adapter(fresh_base_model, "runs/grapes")  # the same outputs, bit for bit

The folder is replaced as a unit (:func:`lora_np.lora.files.replace_folder`): a crash at any
instant, or a reader at the same time, sees the complete old adapter or the complete new one.
Everything read is checked before it is used (:mod:`lora_np.lora.checks`); NaN or inf in an
adapter is refused when saving and when loading. Folders of format 1 (``adapter_config.json`` +
``adapter.npz``, lora_np 0.1) still load.
"""
from __future__ import annotations

import io
import json
import os
import warnings

import numpy as _host_np  # files are written and read on the host; arrays move with backend.asarray

from .. import backend
from ..nn import LoRAEmbedding
from ..version import __version__
from .attach import adapter_attribute, attach_adapter, base_model_fingerprint
from .checks import check_config, config_checksum, read_npz, refuse_non_finite, sha256_array
from .files import json_bytes, list_folder, read_folder, replace_folder
from .inject import LoraConfig
from .manager import active_adapter, adapter_config, adapter_layers, adapter_state

FORMAT_VERSION = 2
CONFIG_NAME, TENSORS_NAME = "lora_np_adapter.json", "lora_np_adapter.npz"
LEGACY_CONFIG_NAME, LEGACY_TENSORS_NAME = "adapter_config.json", "adapter.npz"      # format 1



# --------------------------------------------------------------------------- save

def save_adapter(model, directory, adapter_name: str | None = None) -> str:
    """Write one adapter (default: the active one) to ``directory``; return the config's path.

    Other files in the folder (a PEFT export of the same adapter, a README) are kept. An adapter
    with NaN or inf in a tensor is refused (ValueError naming the tensor): it would load as garbage.
    """
    name = adapter_name if adapter_name is not None else active_adapter(model)
    if name is None:
        raise ValueError("save_adapter: the model has no active adapter; pass adapter_name")
    layers = adapter_layers(model, name)
    r, alpha = adapter_attribute(layers, "r", name), adapter_attribute(layers, "alpha", name)
    config = adapter_config(model, name) or LoraConfig(r=r, lora_alpha=alpha)      # None: a combination
    use_rslora = bool(adapter_attribute(layers, "use_rslora", name))
    fingerprint = base_model_fingerprint(model)
    tensors, layer_info = {}, {}
    for path, layer in layers.items():
        if layer.merged:
            raise RuntimeError(f"{path}: adapter {name!r} is merged into the weights; call "
                               "unmerge_lora(model) first")
        own = {n: backend.to_numpy(p.data).copy() for n, p in layer.adapter_parameters().items()}
        layer_info[path] = {
            "kind": "embedding" if isinstance(layer, LoRAEmbedding) else "linear",
            "variant": layer.variant,
            "base_shape": list(layer.weight.shape),
            "strength": float(layer.strength),
            "tensors": {n: list(a.shape) for n, a in own.items()}}
        tensors.update({f"{path}.{n}": a for n, a in own.items()})
    refuse_non_finite(tensors, f"save_adapter: adapter {name!r}")
    dtypes = sorted({str(a.dtype) for a in tensors.values()})
    meta = {
        "format": "lora_np adapter",
        "format_version": FORMAT_VERSION,
        "library": "lora_np",
        "library_version": __version__,
        "adapter_name": name,
        "r": int(r),
        "lora_alpha": float(alpha),
        "scaling": "alpha/sqrt(r)" if use_rslora else "alpha/r",
        "use_rslora": use_rslora,
        "variant": config.variant,
        "init_lora_weights": config.init_lora_weights,
        "lora_dropout": float(config.lora_dropout),
        "seed": int(config.seed),
        "dora_exact_grad": bool(config.dora_exact_grad),
        "bias": config.bias,
        "dtype": dtypes[0] if len(dtypes) == 1 else dtypes,
        "target_modules": list(layers),
        "layers": layer_info,
        "base_model_fingerprint": fingerprint,
        "tensors": {k: {"shape": list(a.shape), "dtype": str(a.dtype), "sha256": sha256_array(a)}
                    for k, a in tensors.items()},
    }
    meta["checksum"] = config_checksum(meta)
    buf = io.BytesIO()
    _host_np.savez(buf, **tensors)
    legacy = "lora_np (format 1)" in adapter_formats(directory)         # replaced by this save
    folder = replace_folder(directory, {CONFIG_NAME: json_bytes(meta), TENSORS_NAME: buf.getvalue()},
                            drop=(LEGACY_CONFIG_NAME, LEGACY_TENSORS_NAME) if legacy else ())
    return os.path.join(folder, CONFIG_NAME)


# --------------------------------------------------------------------------- what a folder holds

def adapter_formats(directory) -> list:
    """The adapter formats a folder holds: ``"lora_np"``, ``"lora_np (format 1)"``, ``"peft"``."""
    try:
        present = list_folder(directory)                   # one version, even during a save
    except (FileNotFoundError, NotADirectoryError):
        return []
    found = ["lora_np"] if CONFIG_NAME in present else []
    if LEGACY_CONFIG_NAME in present:
        try:
            with open(os.path.join(directory, LEGACY_CONFIG_NAME), "rb") as f:
                cfg = json.loads(f.read(1 << 20).decode("utf-8"))
        except (OSError, ValueError):                           # unreadable: not format 1, call it PEFT's
            cfg = None
        ours = isinstance(cfg, dict) and cfg.get("library") == "lora_np"
        found.append("lora_np (format 1)" if ours else "peft")
    return found


def _found_instead(directory, wanted: str) -> str:
    formats = [f for f in adapter_formats(directory) if not f.startswith(wanted)]
    if "peft" in formats:
        return " It holds a PEFT adapter: load it with lora_np.lora.import_peft(model, directory)."
    if formats:
        return f" It holds: {formats}."
    return ""


# --------------------------------------------------------------------------- load

def read_adapter(directory) -> tuple:
    """``(meta, {tensor name: host array})`` of the lora_np adapter in ``directory``, checked.

    One consistent version is read even while a save replaces the folder. Every field of the
    config is validated, its checksum verified, and every tensor's shape, dtype and size is
    checked before its data is read, then its SHA-256 and finiteness.
    """
    directory = os.fspath(directory)
    if CONFIG_NAME not in _listing(directory) and "lora_np (format 1)" in adapter_formats(directory):
        names, version = (LEGACY_CONFIG_NAME, LEGACY_TENSORS_NAME), 1
    else:
        names, version = (CONFIG_NAME, TENSORS_NAME), FORMAT_VERSION
    try:
        files = read_folder(directory, names)
    except FileNotFoundError as err:
        hint = _found_instead(directory, "lora_np")
        raise FileNotFoundError(f"no lora_np adapter here: {err}.{hint}") from None
    config_path, npz_path = (os.path.join(directory, n) for n in names)
    meta = check_config(files[names[0]], config_path, version)
    if meta["library_version"] != __version__:
        warnings.warn(f"adapter saved with lora_np {meta['library_version']}, loading with {__version__}",
                      UserWarning, stacklevel=3)
    flat = read_npz(files[names[1]], meta["tensors"], npz_path)
    return meta, flat


def _listing(directory) -> set:
    try:
        return set(os.listdir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return set()


def load_adapter(model, directory, adapter_name: str | None = None) -> str:
    """Add the adapter saved in ``directory`` to ``model`` (the same base it was trained on).

    Returns the adapter's name (``adapter_name``, default the saved one). If the model had no
    adapter, the loaded one is active; otherwise it is added but not activated (``set_adapter``).
    A folder that holds only a PEFT export is refused with a message that says to use import_peft.
    """
    meta, flat = read_adapter(directory)
    name = adapter_name if adapter_name is not None else meta["adapter_name"]
    reg = adapter_state(model)
    if reg is not None and name in reg.adapters:
        raise ValueError(f"an adapter named {name!r} already exists on the model; pass another adapter_name")
    fingerprint = base_model_fingerprint(model)
    if fingerprint != meta["base_model_fingerprint"]:
        raise ValueError("adapter was trained on another base model: fingerprint "
                         f"{meta['base_model_fingerprint']} != {fingerprint} (this model's; it differs in a "
                         "parameter's name, shape, dtype or values)")
    layers = meta["layers"]
    tensors = {path: {t: flat[f"{path}.{t}"] for t in info["tensors"]} for path, info in layers.items()}
    config = LoraConfig(r=meta["r"], lora_alpha=meta["lora_alpha"], target_modules=list(layers),
                        lora_dropout=meta["lora_dropout"], init_lora_weights=meta["init_lora_weights"],
                        use_rslora=meta["use_rslora"], seed=meta["seed"], variant=meta["variant"],
                        dora_exact_grad=meta["dora_exact_grad"], bias=meta["bias"])
    attach_adapter(model, name, config, {p: info["kind"] for p, info in layers.items()}, tensors,
                   strengths={p: info["strength"] for p, info in layers.items()})
    return name
