"""Checking what an adapter file says before anything of it is used.

* :func:`check_config`: every field of lora_np's adapter config, strictly typed (``"false"`` is
  not a boolean, ``8`` is not a list), consistent with the others, and covered by a checksum;
  a malformed config raises a ValueError that names the file and the field.
* :func:`read_npz`: an .npz archive whose members' declared shapes, dtypes and sizes are compared
  with what the config expects BEFORE their data is read, so a small file that declares a huge
  array is refused without allocating it; then every tensor's SHA-256 is checked.
* :func:`refuse_non_finite`: NaN or inf in an adapter, with the tensor named.
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import re
import zipfile
import zlib

import numpy as _host_np  # archives are read on the host

from ..nn import VARIANT_CLASSES
from ..nn.lora import INITS
from ..validate import is_int, is_real

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
DTYPES = ("float32", "float64")


def sha256_array(a) -> str:
    """SHA-256 of a host array's bytes in C order."""
    return hashlib.sha256(_host_np.ascontiguousarray(a).tobytes()).hexdigest()


def config_checksum(meta: dict) -> str:
    """SHA-256 of the config's canonical JSON (sorted keys, no spaces), without the checksum itself."""
    body = {k: v for k, v in meta.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")).hexdigest()


def refuse_non_finite(tensors: dict, where: str) -> None:
    """ValueError naming the first tensor that holds NaN or ±inf."""
    for name, a in tensors.items():
        if a.dtype.kind == "f" and not _host_np.isfinite(a).all():
            bad = int((~_host_np.isfinite(a)).sum())
            raise ValueError(f"{where}: tensor {name} holds {bad} NaN or infinite value(s); an adapter must "
                             "be finite (was the training diverging?)")


# --------------------------------------------------------------------------- the config

class _Config:
    """Field checks that name the file and the field."""

    def __init__(self, meta: dict, path: str):
        self.meta, self.path = meta, path

    def fail(self, field: str, expected: str):
        value = self.meta.get(field, "<missing>") if "." not in field else "<see the field>"
        raise ValueError(f"{self.path}: field {field!r} must be {expected}, got {value!r}")

    def get(self, field: str, ok, expected: str, default=None, required: bool = True):
        if field not in self.meta:
            if required:
                raise ValueError(f"{self.path}: missing field {field!r} ({expected})")
            return default
        value = self.meta[field]
        if not ok(value):
            self.fail(field, expected)
        return value


def _pos_int(v) -> bool:
    return is_int(v) and v > 0


def _number(v) -> bool:
    return is_real(v) and math.isfinite(v)


def _dtypes(v) -> bool:
    return v in DTYPES or (isinstance(v, list) and len(v) > 0 and all(d in DTYPES for d in v))


def _shape(v) -> bool:
    return isinstance(v, list) and all(is_int(d) and d >= 0 for d in v)


def check_config(raw: bytes, path: str, version: int) -> dict:
    """The config in ``raw`` (the bytes of ``path``) as a dict with every field checked.

    ``version`` 2 configs carry a checksum over all their fields; version 1 configs (lora_np 0.1)
    have none, and get the defaults of the fields they lack.
    """
    try:
        meta = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON ({err}); the adapter config is damaged") from err
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: the adapter config must be a JSON object, got {type(meta).__name__}")
    if "format_version" not in meta:
        raise ValueError(f"{path}: missing format_version; not a lora_np adapter")
    if meta["format_version"] != version:
        raise ValueError(f"{path}: unknown format_version {meta['format_version']!r}; this lora_np reads "
                         f"format_version {version} from this file")
    c = _Config(meta, path)
    if version >= 2:
        c.get("format", lambda v: v == "lora_np adapter", "'lora_np adapter'")
        c.get("checksum", lambda v: isinstance(v, str) and bool(_HEX64.match(v)), "a SHA-256 in hex")
        if meta["checksum"] != config_checksum(meta):
            raise ValueError(f"{path}: the config was changed after it was saved (its checksum does not "
                             "match): a field such as lora_alpha, r or a strength would change the outputs. "
                             "Save the adapter again instead of editing the file")
    c.get("library_version", lambda v: isinstance(v, str), "a version string")
    c.get("adapter_name", lambda v: isinstance(v, str) and v and "." not in v,
          "a non-empty name without dots")
    r = c.get("r", _pos_int, "a positive integer")
    c.get("lora_alpha", lambda v: _number(v) and v > 0, "a finite positive number")
    rslora = c.get("use_rslora", lambda v: isinstance(v, bool), "true or false", False, required=version >= 2)
    c.get("scaling", lambda v: v == ("alpha/sqrt(r)" if rslora else "alpha/r"),
          f"'{'alpha/sqrt(r)' if rslora else 'alpha/r'}' (it must agree with use_rslora)")
    variant = c.get("variant", lambda v: v in VARIANT_CLASSES, f"one of {tuple(VARIANT_CLASSES)}", "lora",
                    required=version >= 2)
    new = version >= 2                                  # format 1 lacks these fields: they get defaults
    c.get("init_lora_weights", lambda v: v in INITS, f"one of {INITS}", "kaiming", required=new)
    c.get("lora_dropout", lambda v: _number(v) and 0 <= v < 1, "a number in [0, 1)", 0.0, required=new)
    c.get("seed", lambda v: v is None or (is_int(v) and v >= 0), "a non-negative integer", 0, required=new)
    c.get("dora_exact_grad", lambda v: isinstance(v, bool), "true or false", True, required=new)
    c.get("bias", lambda v: v in ("none", "lora_only"), "'none' or 'lora_only'", "none", required=new)
    dtype = c.get("dtype", _dtypes, f"one of {DTYPES} (or a list of them)", None, required=new)
    c.get("base_model_fingerprint", lambda v: isinstance(v, str) and bool(_HEX64.match(v)),
          "a SHA-256 in hex")
    layers = c.get("layers", lambda v: isinstance(v, dict) and v, "an object of the adapted layers")
    targets = c.get("target_modules", lambda v: isinstance(v, list) and sorted(v) == sorted(layers),
                    "the list of the adapted layers' paths (the keys of 'layers')")
    tensors = c.get("tensors", lambda v: isinstance(v, dict) and v, "an object of tensor specs")
    listed = set()
    for lpath, info in layers.items():
        _check_layer(c, lpath, info, variant, r)
        listed |= {f"{lpath}.{t}" for t in info["tensors"]}
    if listed != set(tensors):
        raise ValueError(f"{path}: the config is inconsistent: its layers list tensors "
                         f"{sorted(listed ^ set(tensors))} that its tensor table does not, or vice versa")
    for key, spec in tensors.items():
        ok = (isinstance(spec, dict) and _shape(spec.get("shape")) and spec.get("dtype") in DTYPES
              and isinstance(spec.get("sha256"), str) and _HEX64.match(spec["sha256"]))
        lpath, tname = key.rsplit(".", 1)
        if not ok or spec["shape"] != layers[lpath]["tensors"][tname]:
            raise ValueError(f"{path}: field 'tensors.{key}' must be "
                             f"{{shape: the layer's shape for it, dtype: one "
                             f"of {DTYPES}, sha256: hex}}, got {spec!r}")
        if dtype is not None and spec["dtype"] not in ([dtype] if isinstance(dtype, str) else dtype):
            raise ValueError(f"{path}: field 'tensors.{key}' has dtype {spec['dtype']}, the config's dtype "
                             f"is {dtype}")
    meta.update(use_rslora=rslora, variant=variant, target_modules=targets,
                **{k: meta.get(k, d) for k, d in (("init_lora_weights", "kaiming"), ("lora_dropout", 0.0),
                                                   ("dora_exact_grad", True), ("bias", "none"))})
    meta["seed"] = meta.get("seed") or 0
    return meta


def _check_layer(c: _Config, lpath: str, info, variant: str, r: int) -> None:
    where = f"layers.{lpath}"
    if not isinstance(info, dict):
        raise ValueError(f"{c.path}: field {where!r} must be an object, got {info!r}")
    kind = info.get("kind")
    if kind not in ("linear", "embedding"):
        raise ValueError(f"{c.path}: field '{where}.kind' must be 'linear' or 'embedding', got {kind!r}")
    built = "lora" if kind == "embedding" else variant                     # embeddings are plain LoRA
    if info.get("variant", "lora") != built:
        raise ValueError(f"{c.path}: layer {lpath!r} is saved as variant {info.get('variant')!r}, but the "
                         f"adapter's variant {variant!r} builds {built!r}")
    shape = info.get("base_shape")
    if not (_shape(shape) and len(shape) == 2):
        raise ValueError(f"{c.path}: field '{where}.base_shape' must be [rows, columns], got {shape!r}")
    strength = info.get("strength", 1.0)
    if not _number(strength):
        raise ValueError(f"{c.path}: field '{where}.strength' must be a finite number, got {strength!r}")
    names = info.get("tensors")
    if not (isinstance(names, dict) and names and all(_shape(s) for s in names.values())):
        raise ValueError(f"{c.path}: field '{where}.tensors' must map tensor names to shapes, got {names!r}")


# --------------------------------------------------------------------------- the archive

def read_npz(raw: bytes, expected: dict, path: str) -> dict:
    """``{name: host array}`` from the .npz bytes ``raw``, each member checked against
    ``expected[name] = {shape, dtype, sha256}`` before its data is read."""
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as z:
            members = {n[:-4]: z.getinfo(n) for n in z.namelist() if n.endswith(".npy")}
            missing, extra = sorted(set(expected) - set(members)), sorted(set(members) - set(expected))
            if missing:
                raise ValueError(f"{path}: missing tensors {missing} (the config lists them)")
            if extra:
                raise ValueError(f"{path}: unexpected tensors {extra} (not in the config)")
            return {k: _member(z, members[k], k, spec, path) for k, spec in expected.items()}
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, KeyError) as err:
        raise ValueError(f"{path} is truncated or corrupted and cannot be read ({type(err).__name__}: "
                         f"{err}); save the adapter again") from err


def _member(z: zipfile.ZipFile, info: zipfile.ZipInfo, key: str, spec: dict, path: str):
    shape, dtype = tuple(spec["shape"]), _host_np.dtype(spec["dtype"])
    nbytes = math.prod(shape) * dtype.itemsize
    if info.file_size > nbytes + 65536:                          # a .npy header is far smaller than 64 KiB
        raise ValueError(f"{path}: tensor {key} declares {info.file_size:,} bytes, but its config says "
                         f"{shape} {dtype} ({nbytes:,} bytes); refusing to read it")
    with z.open(info) as f:
        try:
            version = _host_np.lib.format.read_magic(f)
            read_header = (_host_np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else _host_np.lib.format.read_array_header_2_0)
            got_shape, fortran, got_dtype = read_header(f)
        except ValueError as err:
            raise ValueError(f"{path}: tensor {key} is not a readable .npy array ({err})") from err
        if tuple(got_shape) != shape:
            raise ValueError(f"{path}: tensor {key} has the wrong shape: expected {shape}, got "
                             f"{tuple(got_shape)}")
        if got_dtype != dtype:
            raise ValueError(f"{path}: tensor {key} has the wrong dtype: expected {dtype}, got {got_dtype}")
        data = f.read(nbytes + 1)                                 # +1: notice trailing bytes
    if len(data) != nbytes:
        raise ValueError(f"{path} is truncated or corrupted: tensor {key} has {len(data)} data bytes, "
                         f"expected {nbytes}")
    a = _host_np.frombuffer(data, dtype).reshape(shape, order="F" if fortran else "C").copy()
    if sha256_array(a) != spec["sha256"]:
        raise ValueError(f"{path}: tensor {key} is corrupted: its SHA-256 checksum does not match the "
                         "config's")
    refuse_non_finite({key: a}, path)
    return a
