"""Interchange with Hugging Face PEFT: its adapter folder, and the safetensors format it uses.

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

safetensors: an 8-byte little-endian header length N, N bytes of JSON (``name -> {dtype, shape,
data_offsets: [begin, end]}``, plus an optional ``__metadata__`` of strings), then the raw
little-endian bytes, the offsets counting from the start of that byte buffer.
"""
from __future__ import annotations

import json
import math
import os
import struct
import warnings

import numpy as _host_np   # files are written and read on the host; arrays move with backend.asarray

from .. import backend
from ..nn import Embedding, Linear, LoRAEmbedding
from .inject import LoraConfig, _BaseView
from .io import _uniform, atomic_write, attach_adapter, read_json, write_json
from .manager import active_adapter, adapter_config, adapter_layers

CONFIG_NAME, WEIGHTS_NAME = "adapter_config.json", "adapter_model.safetensors"
PREFIX = "base_model.model."
SUFFIXES = {".lora_A.weight": ("linear", "lora_A"), ".lora_B.weight": ("linear", "lora_B"),
            ".lora_embedding_A": ("embedding", "lora_A"), ".lora_embedding_B": ("embedding", "lora_B")}

# --------------------------------------------------------------------------- safetensors

DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1",
          "U64": "<u8", "U32": "<u4", "U16": "<u2", "U8": "u1", "BOOL": "?"}
CODES = {_host_np.dtype(v).newbyteorder("<").str: k for k, v in DTYPES.items()}     # "<f4" -> "F32"
MAX_HEADER = 100_000_000                      # the reference reader's limit


def _code(a, name):
    code = CODES.get(a.dtype.newbyteorder("<").str)
    if code is None:
        raise ValueError(f"write_safetensors: tensor {name!r} has dtype {a.dtype}, which safetensors cannot "
                         f"store here; use one of {sorted(str(_host_np.dtype(v)) for v in DTYPES.values())}")
    return code


def write_safetensors(path, tensors: dict, metadata: dict | None = None) -> None:
    """Write ``{name: array}`` (any backend; copied to the host) as a .safetensors file, atomically."""
    if not isinstance(tensors, dict) or not all(isinstance(k, str) and k for k in tensors):
        raise TypeError("write_safetensors: tensors must be a dict of non-empty str names to arrays")
    if "__metadata__" in tensors:
        raise ValueError("write_safetensors: '__metadata__' is reserved and cannot name a tensor")
    if metadata is not None and (not isinstance(metadata, dict) or
                                 not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())):
        raise TypeError(f"write_safetensors: metadata must be a dict of str to str, got {metadata!r}")
    host = {k: _host_np.asarray(backend.to_numpy(v)) for k, v in tensors.items()}
    order = sorted(host, key=lambda k: (-host[k].dtype.itemsize, k))   # large alignments first, as the reference
    header, chunks, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = dict(metadata)
    for k in order:
        a = host[k]
        data = a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()      # (n bytes) little-endian, C order
        header[k] = {"dtype": _code(a, k), "shape": list(a.shape), "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    head = json.dumps(header, separators=(",", ":")).encode("utf-8")
    head += b" " * (-len(head) % 8)                                          # pad to a multiple of 8

    def write(f):
        f.write(struct.pack("<Q", len(head)))
        f.write(head)
        for c in chunks:
            f.write(c)
    atomic_write(os.fspath(path), write)


def _no_duplicates(pairs):
    keys = [k for k, _ in pairs]
    if len(keys) != len(set(keys)):
        raise ValueError(f"duplicate keys {sorted({k for k in keys if keys.count(k) > 1})}")
    return dict(pairs)


def read_safetensors(path, return_metadata: bool = False):
    """``{name: host array}`` from a .safetensors file (and its ``__metadata__`` if asked).

    BF16 tensors are widened to float32 (exactly: NumPy has no bfloat16). Raises ValueError for a
    truncated file, a bad header, unknown dtypes and offsets that do not tile the data exactly.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"safetensors file not found: {path} does not exist")
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        raise ValueError(f"{path} is truncated: {len(raw)} bytes, shorter than the 8-byte header length")
    (n,) = struct.unpack("<Q", raw[:8])
    if n > MAX_HEADER:
        raise ValueError(f"{path}: bad header: its length field says {n} bytes (the limit is {MAX_HEADER})")
    if 8 + n > len(raw):
        raise ValueError(f"{path} is truncated: the header should be {n} bytes, the file has {len(raw) - 8} after the length")
    try:
        header = json.loads(raw[8:8 + n].decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, ValueError) as err:
        raise ValueError(f"{path}: bad header: not valid JSON ({err})") from err
    if not isinstance(header, dict):
        raise ValueError(f"{path}: bad header: expected a JSON object, got {type(header).__name__}")
    metadata = header.pop("__metadata__", None)
    if metadata is not None and (not isinstance(metadata, dict) or
                                 not all(isinstance(v, str) for v in metadata.values())):
        raise ValueError(f"{path}: bad header: __metadata__ must map strings to strings")
    buf = memoryview(raw)[8 + n:]
    spans, out = [], {}
    for name, spec in header.items():
        if not isinstance(spec, dict) or set(spec) != {"dtype", "shape", "data_offsets"}:
            raise ValueError(f"{path}: bad header: tensor {name!r} needs exactly dtype, shape and data_offsets, got {spec!r}")
        code, shape, offs = spec["dtype"], spec["shape"], spec["data_offsets"]
        if code not in DTYPES and code != "BF16":
            raise ValueError(f"{path}: tensor {name!r} has dtype {code!r}, which this reader does not know")
        if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
            raise ValueError(f"{path}: bad header: tensor {name!r} has shape {shape!r}")
        if (not isinstance(offs, list) or len(offs) != 2 or not all(isinstance(o, int) and not isinstance(o, bool) for o in offs)
                or not 0 <= offs[0] <= offs[1]):
            raise ValueError(f"{path}: bad header: tensor {name!r} has data_offsets {offs!r}")
        itemsize = 2 if code == "BF16" else _host_np.dtype(DTYPES[code]).itemsize
        if offs[1] - offs[0] != math.prod(shape) * itemsize:
            raise ValueError(f"{path}: bad header: tensor {name!r} of shape {tuple(shape)} and dtype {code} needs "
                             f"{math.prod(shape) * itemsize} bytes, its data_offsets {offs} span {offs[1] - offs[0]}")
        if offs[1] > len(buf):
            raise ValueError(f"{path} is truncated: tensor {name!r} ends at byte {offs[1]} of the data, "
                             f"which has only {len(buf)} bytes (offset out of range)")
        spans.append((offs[0], offs[1], name))
        if code == "BF16":
            bits = _host_np.frombuffer(buf, "<u2", math.prod(shape), offs[0]).astype(_host_np.uint32) << 16
            out[name] = bits.view(_host_np.float32).reshape(shape)
        else:
            dt = _host_np.dtype(DTYPES[code])
            out[name] = _host_np.frombuffer(buf, dt, math.prod(shape), offs[0]).reshape(shape).astype(dt.newbyteorder("="))
    end = 0
    for begin, stop, name in sorted(spans):
        if begin != end:
            raise ValueError(f"{path}: bad header: tensor {name!r} starts at byte {begin}, expected {end} "
                             "(the tensors must tile the data without gaps or overlaps)")
        end = stop
    if end != len(buf):
        raise ValueError(f"{path}: bad header: the tensors cover {end} bytes of data, the file has {len(buf)}")
    return (out, metadata or {}) if return_metadata else out


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
            raise ValueError(f"export_peft: adapter {name!r} is variant {variant!r} at {path!r}; only plain LoRA "
                             "is exported to PEFT (convert PiSSA with pissa_to_lora first)")
        if layer.merged:
            raise RuntimeError(f"{path}: adapter {name!r} is merged into the weights; call unmerge_lora(model) first")
        if layer.strength != 1.0:
            warnings.warn(f"export_peft: {path} has strength {layer.strength}; PEFT's format has no strength, "
                          "so the adapter is exported as trained (strength 1)", UserWarning, stacklevel=2)
        A, B = backend.to_numpy(layer.lora_A.data), backend.to_numpy(layer.lora_B.data)
        if isinstance(layer, LoRAEmbedding):
            tensors[f"{PREFIX}{path}.lora_embedding_A"], tensors[f"{PREFIX}{path}.lora_embedding_B"] = A, B  # (r, V), (d, r)
        else:
            tensors[f"{PREFIX}{path}.lora_A.weight"], tensors[f"{PREFIX}{path}.lora_B.weight"] = A, B        # (r, in), (out, r)
    init = config.init_lora_weights if config is not None else "kaiming"
    peft_config = {
        "peft_type": "LORA", "task_type": None, "auto_mapping": None,
        "base_model_name_or_path": None, "revision": None, "inference_mode": True,
        "r": int(_uniform(layers, "r", name)), "lora_alpha": _peft_number(_uniform(layers, "alpha", name)),
        "target_modules": sorted(layers), "lora_dropout": float(config.lora_dropout) if config else 0.0,
        "fan_in_fan_out": False, "bias": "none", "use_rslora": bool(_uniform(layers, "use_rslora", name)),
        "modules_to_save": None, "init_lora_weights": True if init == "kaiming" else init,
        "layers_to_transform": None, "layers_pattern": None, "rank_pattern": {}, "alpha_pattern": {},
        "megatron_config": None, "megatron_core": "megatron.core", "loftq_config": {},
        "use_dora": False, "layer_replication": None,
    }
    os.makedirs(directory, exist_ok=True)
    write_safetensors(os.path.join(directory, WEIGHTS_NAME), tensors, metadata={"format": "pt"})   # tensors first
    write_json(os.path.join(directory, CONFIG_NAME), peft_config)                                  # config last
    return os.fspath(directory)


# --------------------------------------------------------------------------- import

def _check_peft_config(cfg: dict, where: str) -> None:
    if cfg.get("peft_type") != "LORA":
        raise ValueError(f"{where}: peft_type must be 'LORA', got {cfg.get('peft_type')!r}")
    refused = [("fan_in_fan_out", "a transposed (Conv1D) weight layout"), ("use_dora", "DoRA"),
               ("lora_bias", "LoRA biases"), ("rank_pattern", "per-layer ranks"), ("alpha_pattern", "per-layer alphas"),
               ("layer_replication", "layer replication"), ("modules_to_save", "fully trained extra modules"),
               ("trainable_token_indices", "trainable tokens")]                # each must be off: false, null or empty
    if cfg.get("bias", "none") != "none":
        refused.insert(0, ("bias", "trained biases"))
    for key, what in refused:
        value = cfg.get(key)
        if key == "bias" or value not in (None, False, [], {}):
            raise ValueError(f"{where}: {key}={value!r} ({what}) is not supported; only plain LoRA can be imported")
    init = cfg.get("init_lora_weights", True)
    if not (isinstance(init, bool) or init == "gaussian"):
        raise ValueError(f"{where}: init_lora_weights={init!r} is not supported: with it PEFT changes the base "
                         "weights too, so the adapter alone does not reproduce the model")
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
        raise ValueError(f"{directory}: only adapter_model.safetensors is read, not the pickled adapter_model.bin")
    flat = read_safetensors(weights)
    reg = getattr(model, "_lora", None)
    modules = dict(_BaseView(model, reg.bases if reg is not None else {}).named_modules())
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
                             f"this model" + (f" (it is a {type(modules[path]).__name__})" if path in modules else ""))
        if a.ndim != 2 or a.dtype.kind != "f":
            raise ValueError(f"{weights}: key {key!r} must be a 2-D floating tensor, got shape {a.shape}, dtype {a.dtype}")
        rank = a.shape[0] if tname == "lora_A" else a.shape[1]
        if rank != r:
            raise ValueError(f"{weights}: key {key!r} has rank {rank} (shape {a.shape}), but the config says r={r}")
        base = modules[path]
        d_in, d_out = (base.num_embeddings, base.dim) if kind == "embedding" else (base.d_in, base.d_out)
        expected = (r, d_in) if tname == "lora_A" else (d_out, r)
        if a.shape != expected:
            raise ValueError(f"{weights}: key {key!r} has shape {a.shape}, but {path!r} needs {expected}")
        tensors.setdefault(path, {})[tname] = a.astype(_host_np.dtype(str(base.weight.dtype)), copy=False)
        kinds[path] = kind
    for path, pair in tensors.items():
        for tname in ("lora_A", "lora_B"):
            if tname not in pair:
                raise ValueError(f"{weights}: {path!r} has no {tname} tensor (the keys come in A/B pairs)")
    if not tensors:
        raise ValueError(f"{weights}: no LoRA tensors in the file")
    init = cfg.get("init_lora_weights", True)
    config = LoraConfig(r=r, lora_alpha=float(cfg["lora_alpha"]), target_modules=sorted(kinds),
                        lora_dropout=float(cfg.get("lora_dropout") or 0.0), use_rslora=bool(cfg.get("use_rslora", False)),
                        init_lora_weights="gaussian" if init == "gaussian" else "kaiming")
    attach_adapter(model, adapter_name, config, kinds, tensors)
    return adapter_name
