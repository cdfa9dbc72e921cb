"""The safetensors format, read and written in plain Python and NumPy (PEFT stores adapters in it).

A file is an 8-byte little-endian header length N, N bytes of JSON (``name -> {dtype, shape,
data_offsets: [begin, end]}``, plus an optional ``__metadata__`` of strings), then the raw
little-endian bytes, the offsets counting from the start of that byte buffer.

>>> write_safetensors("a.safetensors", {"w": x}, metadata={"format": "pt"})
>>> read_safetensors("a.safetensors")            # {"w": host array}
"""
from __future__ import annotations

import json
import math
import os
import struct

import numpy as _host_np  # files are written and read on the host

from .. import backend
from ..validate import is_int
from .files import atomic_write

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
    atomic_write(os.fspath(path), safetensors_bytes(tensors, metadata))


def safetensors_bytes(tensors: dict, metadata: dict | None = None) -> bytes:
    """The bytes of a .safetensors file holding ``{name: array}`` and the string ``metadata``."""
    if not isinstance(tensors, dict) or not all(isinstance(k, str) and k for k in tensors):
        raise TypeError("write_safetensors: tensors must be a dict of non-empty str names to arrays")
    if "__metadata__" in tensors:
        raise ValueError("write_safetensors: '__metadata__' is reserved and cannot name a tensor")
    if metadata is not None and (not isinstance(metadata, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())):
        raise TypeError(f"write_safetensors: metadata must be a dict of str to str, got {metadata!r}")
    host = {k: _host_np.asarray(backend.to_numpy(v)) for k, v in tensors.items()}
    order = sorted(host, key=lambda k: (-host[k].dtype.itemsize, k))   # large alignments first, as upstream
    header, chunks, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = dict(metadata)
    for k in order:
        a = host[k]
        data = a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()   # (n bytes) little-endian, C order
        header[k] = {"dtype": _code(a, k), "shape": list(a.shape),
                     "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    head = json.dumps(header, separators=(",", ":")).encode("utf-8")
    head += b" " * (-len(head) % 8)                                          # pad to a multiple of 8
    return b"".join([struct.pack("<Q", len(head)), head, *chunks])


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
    return parse_safetensors(raw, path, return_metadata)


def parse_safetensors(raw: bytes, path: str = "<bytes>", return_metadata: bool = False):
    """:func:`read_safetensors` for bytes already read (``path`` names them in errors)."""
    if len(raw) < 8:
        raise ValueError(f"{path} is truncated: {len(raw)} bytes, shorter than the 8-byte header length")
    (n,) = struct.unpack("<Q", raw[:8])
    if n > MAX_HEADER:
        raise ValueError(f"{path}: bad header: its length field says {n} bytes (the limit is {MAX_HEADER})")
    if 8 + n > len(raw):
        raise ValueError(f"{path} is truncated: the header should be {n} bytes, the file has "
                         f"{len(raw) - 8} after the length")
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
            raise ValueError(f"{path}: bad header: tensor {name!r} needs exactly dtype, shape and "
                             f"data_offsets, got {spec!r}")
        code, shape, offs = spec["dtype"], spec["shape"], spec["data_offsets"]
        if code not in DTYPES and code != "BF16":
            raise ValueError(f"{path}: tensor {name!r} has dtype {code!r}, which this reader does not know")
        if not isinstance(shape, list) or not all(is_int(d) and d >= 0 for d in shape):
            raise ValueError(f"{path}: bad header: tensor {name!r} has shape {shape!r}")
        ok = isinstance(offs, list) and len(offs) == 2 and all(map(is_int, offs))
        if not ok or not 0 <= offs[0] <= offs[1]:
            raise ValueError(f"{path}: bad header: tensor {name!r} has data_offsets {offs!r}")
        itemsize = 2 if code == "BF16" else _host_np.dtype(DTYPES[code]).itemsize
        if offs[1] - offs[0] != math.prod(shape) * itemsize:
            raise ValueError(f"{path}: bad header: tensor {name!r} of shape {tuple(shape)} and dtype {code} "
                             f"needs {math.prod(shape) * itemsize} bytes, its data_offsets {offs} span "
                             f"{offs[1] - offs[0]}")
        if offs[1] > len(buf):
            raise ValueError(f"{path} is truncated: tensor {name!r} ends at byte {offs[1]} of the data, "
                             f"which has only {len(buf)} bytes (offset out of range)")
        spans.append((offs[0], offs[1], name))
        if code == "BF16":
            bits = _host_np.frombuffer(buf, "<u2", math.prod(shape), offs[0]).astype(_host_np.uint32) << 16
            out[name] = bits.view(_host_np.float32).reshape(shape)
        else:
            dt = _host_np.dtype(DTYPES[code])
            a = _host_np.frombuffer(buf, dt, math.prod(shape), offs[0]).reshape(shape)
            out[name] = a.astype(dt.newbyteorder("="))                      # native byte order, a copy
    end = 0
    for begin, stop, name in sorted(spans):
        if begin != end:
            raise ValueError(f"{path}: bad header: tensor {name!r} starts at byte {begin}, expected {end} "
                             "(the tensors must tile the data without gaps or overlaps)")
        end = stop
    if end != len(buf):
        raise ValueError(f"{path}: bad header: the tensors cover {end} bytes of data, "
                         f"the file has {len(buf)}")
    return (out, metadata or {}) if return_metadata else out
