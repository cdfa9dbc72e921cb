"""The emulated device: NumPy dressed up as a GPU, so CPU-only test runs catch what CuPy refuses.

CuPy keeps its arrays on the GPU and refuses two things NumPy allows without a word: mixing a
device array with a host (NumPy) array, and converting a device array to NumPy implicitly
(``np.asarray(d)``). Code that does either runs on a laptop and crashes on a learner's GPU.

This module wraps NumPy so that it refuses the same things with CuPy's exception type:

* :class:`DeviceArray` — an ``np.ndarray`` "on the device". Arithmetic, indexing, methods and
  NumPy functions work and give ``DeviceArray`` back; ``d + np.ones(3)``, ``np.asarray(d)``,
  ``d[np.array([0])]`` and ``d[0] = np.ones(3)`` raise ``TypeError``. ``d.get()`` copies it to the host.
* :data:`EMULATED_XP` — the ``xp`` namespace of this device: NumPy's functions taking and giving
  ``DeviceArray``; ``xp.asarray(host)`` is the explicit host -> device transfer, ``xp.asnumpy(d)``
  the way back. It has no ``xp.random`` (draw with ``lora_np.backend.Rng``).

>>> d = EMULATED_XP.asarray([1.0, 2.0])     # host -> device, explicitly
>>> (d * 2).sum()                             # computed on the device, a 0-d device array
DeviceArray(array(6.))
>>> d.get()                                   # device -> host, explicitly
array([1., 2.])

Select it with ``lora_np.backend.set_backend("emulated")``; everything here is also importable
from :mod:`lora_np.backend`, the one module library code asks for arrays.
"""
from __future__ import annotations

import types

import numpy as np
from numpy.lib.mixins import NDArrayOperatorsMixin

__all__ = ["DeviceArray", "EMULATED_XP"]


class DeviceArray(NDArrayOperatorsMixin):
    """A NumPy array that behaves like a CuPy array: it lives "on the device".

    Arithmetic, indexing, methods and NumPy functions all work and return ``DeviceArray``.
    What CuPy refuses is refused here with CuPy's exception type (``TypeError``):
    ``np.asarray(d)``, ``d + np.ones(3)``, ``d[np.array([0])]``, ``d[0] = np.ones(3)``.
    Explicit transfers work: ``d.get()`` (to the host) and ``xp.asarray(host)`` (to the device).
    """

    __slots__ = ("_a",)
    __array_priority__ = 1000
    __hash__ = None

    def __init__(self, a):
        self._a = a                                   # the wrapped np.ndarray

    # ---- the refusals
    def __array__(self, dtype=None, copy=None):
        raise TypeError(
            "Implicit conversion to a NumPy array is not allowed (device array). "
            "Use lora_np.backend.to_numpy(x) or x.get() to copy it to the host explicitly.")

    def __getattr__(self, name):
        if name.startswith("__") or name in ("ctypes", "data", "base"):
            raise AttributeError(name)
        attr = getattr(self._a, name)
        if not callable(attr):
            return _wrap(attr)

        def method(*args, **kwargs):
            return _wrap(attr(*_unwrap(args), **_unwrap(kwargs)))
        return method

    # ---- NumPy protocols: compute on the wrapped arrays, refuse host arrays
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        out = kwargs.get("out")
        result = getattr(ufunc, method)(*_unwrap(inputs), **_unwrap(kwargs))
        if out is not None:
            return out[0] if len(out) == 1 else out
        return _wrap(result)

    def __array_function__(self, func, types_, args, kwargs):
        return _wrap(func(*_unwrap(args), **_unwrap(kwargs)))

    # ---- the array interface used by library code
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    nbytes = property(lambda self: self._a.nbytes)
    T = property(lambda self: DeviceArray(self._a.T))

    def get(self):
        """Copy to the host (CuPy's spelling)."""
        return self._a.copy()

    def __getitem__(self, key):
        return _wrap(self._a[_unwrap(key)])

    def __setitem__(self, key, value):
        self._a[_unwrap(key)] = _unwrap(value)

    def __len__(self):
        return len(self._a)

    def __iter__(self):
        return (_wrap(row) for row in self._a)

    def __float__(self):
        return float(self._a)

    def __int__(self):
        return int(self._a)

    def __bool__(self):
        return bool(self._a)

    def __repr__(self):
        return "DeviceArray(" + repr(self._a)[6:-1] + ")" if self._a.ndim else f"DeviceArray({self._a!r})"


def _unwrap(obj):
    """DeviceArray -> its ndarray; a host ndarray -> TypeError; containers recursively."""
    if isinstance(obj, DeviceArray):
        return obj._a
    if isinstance(obj, np.ndarray):
        raise TypeError(
            "Unsupported type numpy.ndarray: a host (NumPy) array was mixed with a device array. "
            "Move it to the device first with lora_np.backend.asarray(...).")
    if isinstance(obj, (tuple, list)):
        return type(obj)(_unwrap(o) for o in obj)
    if isinstance(obj, dict):
        return {k: _unwrap(v) for k, v in obj.items()}
    return obj


def _wrap(obj):
    """ndarray (or NumPy scalar) -> DeviceArray; containers recursively; others unchanged."""
    if isinstance(obj, np.ndarray):
        return DeviceArray(obj)
    if isinstance(obj, np.generic):
        return DeviceArray(np.asarray(obj))          # reductions give 0-d device arrays, as in CuPy
    if isinstance(obj, tuple):
        return tuple(_wrap(o) for o in obj)
    if isinstance(obj, list):
        return [_wrap(o) for o in obj]
    return obj


class _EmulatedNamespace(types.SimpleNamespace):
    """``xp`` for the emulated backend: NumPy's functions, taking and giving DeviceArrays."""

    _TRANSFER = ("asarray", "array", "ascontiguousarray")

    def __init__(self, module=np):
        super().__init__()
        self._module = module
        self.ndarray = DeviceArray

    def __getattr__(self, name):
        if name == "random":
            raise AttributeError("the emulated backend has no xp.random: use lora_np.backend.Rng")
        obj = getattr(self._module, name)
        if isinstance(obj, types.ModuleType):
            return _EmulatedNamespace(obj)
        if isinstance(obj, type) or not callable(obj):
            return obj                               # dtypes, constants, newaxis
        if name in self._TRANSFER:
            return _to_emulated
        return lambda *args, **kwargs: _wrap(obj(*_unwrap(args), **_unwrap(kwargs)))

    @staticmethod
    def asnumpy(x):
        return x.get() if isinstance(x, DeviceArray) else np.asarray(x)

    @staticmethod
    def get_array_module(*arrays):
        return EMULATED_XP


def _to_emulated(obj, dtype=None, copy=None):
    """Explicit host -> device transfer (what ``cupy.asarray`` does)."""
    if isinstance(obj, DeviceArray):
        a = obj._a if dtype is None else obj._a.astype(dtype, copy=False)
        return DeviceArray(a.copy() if copy else a)
    return DeviceArray(np.array(obj if isinstance(obj, np.ndarray) else _unwrap(obj), dtype=dtype))


EMULATED_XP = _EmulatedNamespace()
