"""Saving and loading ONE adapter, without the base model's weights.

An adapter is a few small matrices; the base model is large and is already on disk somewhere.
So a saved adapter is a folder with two files:

* ``adapter.npz`` — the adapter's tensors under the model's dotted names (``fc1.lora_A``:
  ``(r, d_in)``, ``fc1.lora_B``: ``(d_out, r)``; embeddings in loralib's orientation), host
  arrays in their exact dtype;
* ``adapter_config.json`` — what is needed to rebuild the adapter (r, alpha, the scaling rule,
  the adapted layers, the variant, ...), a checksum of every tensor, and a *fingerprint of the
  base model*: a SHA-256 over the names, shapes, dtypes and bytes of every non-adapter parameter.
  An adapter only means something on top of the W0 it was trained with; the fingerprint lets
  :func:`load_adapter` refuse another base (or the same architecture with other weights).

>>> save_adapter(model, "runs/grapes")                    # the active adapter
>>> name = load_adapter(fresh_base_model, "runs/grapes")  # the same outputs, bit for bit

Both files are written atomically (a temporary file in the same folder, flushed and fsync'ed,
then renamed over the final name), the tensors first and the config last: a folder that has a
config always has a complete ``adapter.npz``. For the PEFT format, see :mod:`lora_np.lora.peft`.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import warnings
import zipfile

import numpy as _host_np  # files are written and read on the host; arrays move with backend.asarray

from .. import backend
from ..nn import VARIANT_CLASSES, Embedding, Linear, LoRAEmbedding, LoRALayer, Parameter
from .inject import BaseView, LoraConfig, find_target_layers
from .manager import (
    active_adapter,
    adapter_config,
    adapter_layers,
    adapter_state,
    add_adapter,
    base_modules,
    delete_adapter,
    inject_lora,
    unload,
)

FORMAT_VERSION = 1
CONFIG_NAME, TENSORS_NAME = "adapter_config.json", "adapter.npz"


# --------------------------------------------------------------------------- files

def atomic_write(path: str, write) -> None:
    """Call ``write(f)`` on a temporary binary file beside ``path``, then rename it onto ``path``.

    A crash or an exception leaves either the old file or the new one, never half of one, and no
    temporary file behind. (The rename is atomic within one file system, hence the same folder.)
    """
    directory = os.path.dirname(os.path.abspath(path))
    tmp = tempfile.NamedTemporaryFile(dir=directory, prefix="." + os.path.basename(path) + ".",
                                      suffix=".tmp", delete=False)
    try:
        with tmp:
            write(tmp)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp.name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp.name)
        raise
    with contextlib.suppress(OSError):           # make the rename itself durable (not on Windows)
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_json(path: str, obj: dict) -> None:
    atomic_write(path, lambda f: f.write((json.dumps(obj, indent=2, sort_keys=False) + "\n").encode("utf-8")))


def read_json(path: str, what: str = "adapter config") -> dict:
    """The JSON object in ``path``, or FileNotFoundError / ValueError saying what is wrong."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} not found: {path} does not exist")
    try:
        with open(path, "rb") as f:
            obj = json.loads(f.read().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON ({err}); the {what} is damaged") from err
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: the {what} must be a JSON object, got {type(obj).__name__}")
    return obj


def sha256_array(a) -> str:
    """SHA-256 of a host array's bytes in C order."""
    return hashlib.sha256(_host_np.ascontiguousarray(a).tobytes()).hexdigest()


# --------------------------------------------------------------------------- the base model

def _base_parameters(model) -> dict:
    """``{name: Parameter}`` of the model as if no adapter were there: every adapted layer is
    replaced by its base layer (so PiSSA's residual weight and the LoRA tensors are not included)."""
    reg = adapter_state(model)
    bases = reg.bases if reg is not None else {}
    params = {}
    for path, module in model.named_modules():
        if isinstance(module, LoRALayer):
            if module.merged:
                raise RuntimeError(f"{path}: an adapter is merged into the weights; call unmerge_lora(model) "
                                   "first")
            src = bases.get(path)
            own = (src._children() if src is not None else
                   ((n, p) for n, p in module._children() if n not in module.adapter_tensors))
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
        h.update(_host_np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


# --------------------------------------------------------------------------- save

def adapter_attribute(layers: dict, attr: str, adapter: str):
    """The one value of ``attr`` (r, alpha, ...) that every layer of an adapter shares, or a ValueError."""
    values = {getattr(layer, attr) for layer in layers.values()}
    if len(values) != 1:
        raise ValueError(f"adapter {adapter!r}: its layers differ in {attr} ({sorted(values)}); this format "
                         "stores one value per adapter")
    return values.pop()


def save_adapter(model, directory, adapter_name: str | None = None) -> str:
    """Write one adapter (default: the active one) to ``directory``; return the config's path."""
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
            "variant": getattr(layer, "variant", "lora"),
            "base_shape": list(layer.weight.shape),
            "strength": float(layer.strength),
            "tensors": {n: list(a.shape) for n, a in own.items()}}
        tensors.update({f"{path}.{n}": a for n, a in own.items()})
    dtypes = sorted({str(a.dtype) for a in tensors.values()})
    meta = {
        "format_version": FORMAT_VERSION,
        "library": "lora_np",
        "library_version": _library_version(),
        "adapter_name": name,
        "r": int(r),
        "lora_alpha": float(alpha),
        "scaling": "alpha/sqrt(r)" if use_rslora else "alpha/r",
        "use_rslora": use_rslora,
        "variant": config.variant,
        "init_lora_weights": config.init_lora_weights,
        "lora_dropout": float(config.lora_dropout),
        "seed": config.seed if isinstance(config.seed, int) else None,
        "dora_exact_grad": bool(config.dora_exact_grad),
        "dtype": dtypes[0] if len(dtypes) == 1 else dtypes,
        "target_modules": list(layers),
        "layers": layer_info,
        "base_model_fingerprint": fingerprint,
        "tensors": {k: {"shape": list(a.shape), "dtype": str(a.dtype), "sha256": sha256_array(a)}
                    for k, a in tensors.items()},
    }
    os.makedirs(directory, exist_ok=True)
    atomic_write(os.path.join(directory, TENSORS_NAME), lambda f: _host_np.savez(f, **tensors))   # npz first
    config_path = os.path.join(directory, CONFIG_NAME)
    write_json(config_path, meta)                                                       # json last
    return config_path


def _library_version() -> str:
    from .. import __version__
    return __version__


# --------------------------------------------------------------------------- load

def read_npz(path: str) -> dict:
    """``{name: host array}`` from an .npz, or ValueError if it is truncated or corrupted."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"adapter tensors not found: {path} does not exist")
    with open(path, "rb") as f:
        try:
            z = _host_np.load(f, allow_pickle=False)
            if not isinstance(z, _host_np.lib.npyio.NpzFile):
                raise ValueError("an .npy array, not an .npz archive")
            try:
                return {k: z[k] for k in z.files}
            finally:
                z.close()
        except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as err:
            raise ValueError(f"{path} is truncated or corrupted and cannot be read ({type(err).__name__}: "
                             f"{err}); "
                             "save the adapter again") from err


def check_tensors(tensors: dict, expected: dict, path: str) -> None:
    """Names, shapes, dtypes and SHA-256 of ``tensors`` against ``expected[name] = {shape, dtype, sha256}``.
    """
    missing, extra = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
    if missing:
        raise ValueError(f"{path}: missing tensors {missing} (the config lists them)")
    if extra:
        raise ValueError(f"{path}: unexpected tensors {extra} (not in the config)")
    for k, spec in expected.items():
        a = tensors[k]
        if list(a.shape) != list(spec["shape"]):
            raise ValueError(f"{path}: tensor {k} has the wrong shape: expected {tuple(spec['shape'])}, got "
                             f"{tuple(a.shape)}")
        if str(a.dtype) != spec["dtype"]:
            raise ValueError(f"{path}: tensor {k} has the wrong dtype: expected {spec['dtype']}, got "
                             f"{a.dtype}")
    for k, spec in expected.items():
        if sha256_array(tensors[k]) != spec["sha256"]:
            raise ValueError(f"{path}: tensor {k} is corrupted: its SHA-256 checksum does not match the "
                             "config's")


def _read_config(directory) -> dict:
    meta = read_json(os.path.join(directory, CONFIG_NAME))
    version = meta.get("format_version")
    if version is None:
        raise ValueError(f"{os.path.join(directory, CONFIG_NAME)}: missing format_version; not a lora_np "
                         "adapter")
    if version != FORMAT_VERSION:
        raise ValueError(f"{os.path.join(directory, CONFIG_NAME)}: unknown format_version {version!r}; this "
                         f"lora_np reads format_version {FORMAT_VERSION}")
    for key in ("library_version", "adapter_name", "r", "lora_alpha", "target_modules", "layers", "tensors",
                "base_model_fingerprint"):
        if key not in meta:
            raise ValueError(f"{os.path.join(directory, CONFIG_NAME)}: missing {key!r}")
    if meta["library_version"] != _library_version():
        warnings.warn(f"adapter saved with lora_np {meta['library_version']}, loading with "
                      f"{_library_version()}",
                      UserWarning, stacklevel=3)
    return meta


def attach_adapter(model, name: str, config: LoraConfig, kinds: dict, tensors: dict, strengths=None) -> None:
    """Build adapter ``name`` on exactly the layers in ``kinds`` (``{path: "linear" | "embedding"}``)
    and copy ``tensors`` (``{path: {tensor name: host array}}``) into it, in the arrays' dtypes.

    A model without adapters gets it through :func:`inject_lora` (and it is active); a model
    that has adapters gets it through :func:`add_adapter` (not activated, as in PEFT).
    """
    reg = adapter_state(model)
    if reg is not None and name in reg.adapters:
        raise ValueError(f"an adapter named {name!r} already exists on the model; pass another adapter_name")
    view = BaseView(model, reg.bases if reg is not None else {})
    modules = base_modules(model)
    for path, kind in kinds.items():
        module = modules.get(path)
        if type(module) not in (Linear, Embedding):
            raise ValueError(f"the adapter adapts {path!r}, which is not a Linear or Embedding layer of this "
                             "model")
        if (kind == "embedding") != (type(module) is Embedding):
            raise ValueError(f"the adapter adapts {path!r} as a {kind} layer, but the model has a "
                             f"{type(module).__name__} there")
    selected = find_target_layers(view, list(kinds))
    if sorted(selected) != sorted(kinds):
        raise ValueError(f"the adapter's layer paths {sorted(kinds)} also select "
                         f"{sorted(set(selected) - set(kinds))} "
                         "in this model (target_modules match by suffix), so it cannot be rebuilt exactly")
    flags = {n: p.trainable for n, p in model.named_parameters()}
    if reg is None:
        inject_lora(model, config, adapter_name=name)
    else:
        add_adapter(model, name, config)
    try:
        for path, layer in adapter_layers(model, name).items():
            params = layer.adapter_parameters()
            if sorted(params) != sorted(tensors[path]):
                raise ValueError(f"{path}: the adapter has tensors {sorted(tensors[path])}, a "
                                 f"{type(layer).__name__} has {sorted(params)}")
            for tname, p in params.items():
                a = tensors[path][tname]
                if tuple(a.shape) != tuple(p.shape) or a.dtype != p.dtype:
                    raise ValueError(f"{path}.{tname}: this model expects shape {tuple(p.shape)} and dtype "
                                     f"{p.dtype}, "
                                     f"got {tuple(a.shape)} and {a.dtype}")
            for tname, p in params.items():
                p.data = backend.asarray(tensors[path][tname], dtype=tensors[path][tname].dtype)
            if strengths:
                layer.strength = strengths[path]
    except BaseException:                   # leave the model as it was: no half-loaded adapter
        if reg is None:
            unload(model)
            for n, p in model.named_parameters():
                p.trainable = flags.get(n, p.trainable)
        else:
            delete_adapter(model, name)
        raise


def load_adapter(model, directory, adapter_name: str | None = None) -> str:
    """Add the adapter saved in ``directory`` to ``model`` (the same base it was trained on).

    Returns the adapter's name (``adapter_name``, default the saved one). If the model had no
    adapter, the loaded one is active; otherwise it is added but not activated (``set_adapter``).
    """
    meta = _read_config(directory)
    name = adapter_name if adapter_name is not None else meta["adapter_name"]
    reg = adapter_state(model)
    if reg is not None and name in reg.adapters:
        raise ValueError(f"an adapter named {name!r} already exists on the model; pass another adapter_name")
    fingerprint = base_model_fingerprint(model)
    if fingerprint != meta["base_model_fingerprint"]:
        raise ValueError("adapter was trained on another base model: fingerprint "
                         f"{meta['base_model_fingerprint']} "
                         f"!= {fingerprint} (this model's; it differs in a parameter's name, shape, dtype or "
                         "values)")
    variant = meta.get("variant", "lora")
    if variant not in VARIANT_CLASSES:
        raise ValueError(f"{os.path.join(directory, CONFIG_NAME)}: variant {variant!r} cannot be loaded by "
                         "this "
                         f"lora_np; it knows the variants {tuple(VARIANT_CLASSES)}")
    layers = meta["layers"]
    listed = {f"{path}.{t}" for path, info in layers.items() for t in info["tensors"]}
    if listed != set(meta["tensors"]):
        raise ValueError(f"{os.path.join(directory, CONFIG_NAME)}: the config is inconsistent: its layers "
                         "list "
                         f"tensors {sorted(listed ^ set(meta['tensors']))} that its tensor table does not, "
                         "or vice versa")
    for path, info in layers.items():
        built = "lora" if info.get("kind") == "embedding" else variant     # embeddings are plain LoRA
        if info.get("variant", "lora") != built:
            raise ValueError(f"{os.path.join(directory, CONFIG_NAME)}: layer {path!r} is saved as variant "
                             f"{info.get('variant')!r}, but the adapter's variant {variant!r} builds "
                             f"{built!r}")
    npz_path = os.path.join(directory, TENSORS_NAME)
    flat = read_npz(npz_path)
    check_tensors(flat, meta["tensors"], npz_path)
    tensors = {path: {t: flat[f"{path}.{t}"] for t in info["tensors"]} for path, info in layers.items()}
    config = LoraConfig(r=int(meta["r"]), lora_alpha=float(meta["lora_alpha"]), target_modules=list(layers),
                        lora_dropout=float(meta.get("lora_dropout", 0.0)),
                        init_lora_weights=meta.get("init_lora_weights", "kaiming"),
                        use_rslora=bool(meta.get("use_rslora", False)),
                        seed=meta.get("seed") if meta.get("seed") is not None else 0,
                        variant=variant, dora_exact_grad=bool(meta.get("dora_exact_grad", True)))
    attach_adapter(model, name, config, {p: info["kind"] for p, info in layers.items()}, tensors,
                   strengths={p: float(info.get("strength", 1.0)) for p, info in layers.items()})
    return name
