"""The one place that knows which array library is in use.

Three backends share one interface:

* ``"numpy"``    — plain NumPy on the CPU (the default);
* ``"cupy"``     — CuPy on an NVIDIA GPU (optional extra: ``pip install lora_np[gpu]``);
* ``"emulated"`` — NumPy dressed up as a device. Its arrays (:class:`DeviceArray`) refuse
  exactly what CuPy refuses: mixing with host (NumPy) arrays and implicit conversion to
  NumPy. The whole test suite runs under it, so an array that leaks to the host fails a test
  on a laptop instead of crashing a learner's GPU run. The device itself lives beside this
  module, in :mod:`lora_np.emulated`; ``DeviceArray`` and ``EMULATED_XP`` are importable from both.

Library code never imports NumPy for array work. It asks this module:

>>> from lora_np import backend
>>> xp = backend.get_xp()                  # the array namespace of the current backend
>>> x = backend.asarray([[1.0, 2.0]])      # host data -> current device, default dtype
>>> xp = backend.get_array_module(x)       # the namespace that owns ``x``
>>> backend.to_numpy(x)                    # device -> host, for plotting and printing
array([[1., 2.]], dtype=float32)

Random numbers are drawn on the host with NumPy's ``Generator`` and then moved to the device
(:class:`Rng`), so the same seed gives the same weights on every backend.

One switch: ``set_backend("cupy")`` (or ``LORA_NP_BACKEND=cupy`` in the environment) before
building models and data. Things built earlier move with :func:`to_device` (``model.to("cupy")``,
``task.to("cupy")``); build optimizers after moving.
"""
from __future__ import annotations

import contextlib
import os

import numpy as np

from .emulated import EMULATED_XP, DeviceArray

BACKENDS = ("numpy", "emulated", "cupy")
ENV_VAR = "LORA_NP_BACKEND"
CUPY_INSTALL_HINT = ("pip install 'lora_np[gpu]' (CuPy for CUDA 12: cupy-cuda12x) "
                     "or 'lora_np[gpu-cuda13]' (CUDA 13: cupy-cuda13x)")

# --------------------------------------------------------------------------- selection

_state = {"name": None, "xp": None, "dtype": np.dtype(np.float32)}
_cupy = []                                            # the CuPy module, once a GPU has answered


def _load_cupy():
    """Import CuPy and prove a GPU answers, or raise a RuntimeError that says what to do."""
    if _cupy:
        return _cupy[0]                               # probed once; get_array_module calls this often
    try:
        import cupy  # optional dependency: imported only when asked for
    except ImportError as err:
        raise RuntimeError(f"backend 'cupy' needs CuPy, which is not installed: {CUPY_INSTALL_HINT}") from err
    try:
        if not cupy.is_available():
            raise RuntimeError("cupy.is_available() is False")
        int((cupy.arange(3) + 1).sum())              # one tiny computation on the device
    except Exception as err:                          # CUDARuntimeError is a RuntimeError
        raise RuntimeError(
            f"backend 'cupy': CuPy is installed but no usable CUDA GPU was found ({err}). Check that "
            f"nvidia-smi sees a GPU and that CuPy matches its CUDA major version: {CUPY_INSTALL_HINT}. "
            "On a machine without a GPU use set_backend('numpy').") from err
    _cupy.append(cupy)
    return cupy


def set_backend(name: str):
    """Select the array library: ``"numpy"``, ``"emulated"`` or ``"cupy"``. Returns its namespace.

    Create models and data *after* switching: arrays live where they were created.
    """
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")
    xp = {"numpy": lambda: np, "emulated": lambda: EMULATED_XP, "cupy": _load_cupy}[name]()
    _state["name"], _state["xp"] = name, xp
    return xp


def get_backend() -> str:
    """The name of the current backend (from ``$LORA_NP_BACKEND`` on first use, else numpy)."""
    if _state["name"] is None:
        set_backend(os.environ.get(ENV_VAR, "numpy"))
    return _state["name"]


def get_xp():
    """The array namespace (``numpy``, ``cupy`` or the emulated one) of the current backend."""
    get_backend()
    return _state["xp"]


@contextlib.contextmanager
def use_backend(name: str, dtype=None):
    """Temporarily switch backend (and optionally the default dtype)."""
    saved = dict(_state)
    set_backend(name)
    if dtype is not None:
        set_default_dtype(dtype)
    try:
        yield _state["xp"]
    finally:
        _state.update(saved)


def set_default_dtype(dtype) -> None:
    """float32 (the default, for speed) or float64 (for gradient checks)."""
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"dtype must be float32 or float64, got {dtype}")
    _state["dtype"] = dtype


def default_dtype() -> np.dtype:
    return _state["dtype"]


def get_array_module(*arrays):
    """The namespace that owns these arrays (what ``cupy.get_array_module`` does)."""
    for a in arrays:
        if isinstance(a, DeviceArray):
            return EMULATED_XP
        if type(a).__module__.startswith("cupy"):
            return _state["xp"] if _state["name"] == "cupy" else _load_cupy()
    return np


def is_array(x) -> bool:
    """True for arrays of any backend (host or device)."""
    return isinstance(x, (np.ndarray, DeviceArray)) or type(x).__module__.startswith("cupy")


def asarray(data, dtype=None):
    """Host data (lists, NumPy arrays, device arrays) -> an array of the current backend.

    Floating data gets the default dtype unless ``dtype`` is given; integer data keeps its kind.
    """
    xp = get_xp()
    if dtype is None:
        kind = getattr(data, "dtype", np.asarray(data).dtype if not is_array(data) else None)
        dtype = _state["dtype"] if kind is None or np.dtype(kind).kind == "f" else kind
    return xp.asarray(data, dtype=dtype)


def to_numpy(x):
    """Any array (or scalar) -> a NumPy array on the host. The one explicit way back."""
    if isinstance(x, DeviceArray):
        return x.get()
    if type(x).__module__.startswith("cupy"):
        return x.get()
    return np.asarray(x)


def to_float(x) -> float:
    """A 0-d array of any backend -> a Python float (one device synchronisation)."""
    return float(x)


def max_abs(x) -> float:
    """max |x| over every entry, as a Python float: ``max_abs(y_merged - y_unmerged)``, on any backend."""
    return float(abs(x).max())


# --------------------------------------------------------------------------- moving things between backends

def to_device(obj, name: str | None = None):
    """Move every array reachable from ``obj`` to backend ``name`` (default: the current one).

    ``obj``: an array; a Module (``model.to(name)`` calls this); a FruitTask or ImageTask (their
    ``(X, y)`` tuples); or lists, tuples and dicts of these. The walk is generic: it goes into
    lists, tuples, dicts and the attributes (``__dict__`` and ``__slots__``) of lora_np's own
    objects and of subclasses of them, so it finds every Parameter and its gradient, a LoRA
    model's ``_lora`` registry (the base layers and every adapter kept aside), cached arrays
    such as a merged layer's ``_W0`` backup, VeRA's ``_shared`` matrices and PiSSA's ``_A0, _B0``.
    Each object is visited once, so a Parameter shared by a base layer and its adapters stays
    shared. Mutable objects are changed in place and returned; arrays and tuples come back as new
    objects (``X = to_device(X, "cupy")``). dtypes are kept; an array already there is not copied.

    Switch first, then move, then create the optimizer (its state is built from the parameters):

    >>> set_backend("cupy"); model.to("cupy"); task = to_device(task); opt = Adam(model, lr=1e-3)
    """
    name = get_backend() if name is None else name
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")
    xp = {"numpy": np, "emulated": EMULATED_XP}.get(name) or _load_cupy()
    return _move(obj, name, xp, {})


def _owner(a) -> str:
    if isinstance(a, DeviceArray):
        return "emulated"
    return "cupy" if type(a).__module__.startswith("cupy") else "numpy"


def _ours(obj) -> bool:
    """An instance of a lora_np class (or of a user's subclass of one): walk its attributes."""
    return not isinstance(obj, type) and any(c.__module__.split(".")[0] == "lora_np"
                                             for c in type(obj).__mro__)


def _as_tuple(slots):
    return (slots,) if isinstance(slots, str) else tuple(slots)


def _move(obj, name, xp, memo):
    if id(obj) in memo:
        return memo[id(obj)][1]
    if is_array(obj):
        new = obj if _owner(obj) == name else to_numpy(obj) if name == "numpy" else xp.asarray(to_numpy(obj))
    elif isinstance(obj, tuple):
        items = [_move(o, name, xp, memo) for o in obj]
        changed = any(a is not b for a, b in zip(items, obj, strict=True))
        new = obj if not changed else type(obj)(*items) if hasattr(obj, "_fields") else type(obj)(items)
    else:
        memo[id(obj)] = (obj, obj)                    # before recursing: cycles end here
        if isinstance(obj, list):
            obj[:] = [_move(o, name, xp, memo) for o in obj]
        elif isinstance(obj, dict):
            for k, v in list(obj.items()):
                obj[k] = _move(v, name, xp, memo)
        elif _ours(obj):
            slots = {s for c in type(obj).__mro__ for s in _as_tuple(getattr(c, "__slots__", ()))}
            attrs = list(getattr(obj, "__dict__", {})) + sorted(s for s in slots if not s.startswith("__")
                                                                 and hasattr(obj, s))
            for attr in attrs:
                old = getattr(obj, attr)
                moved = _move(old, name, xp, memo)
                if moved is not old:
                    object.__setattr__(obj, attr, moved)   # works on frozen dataclasses too
        return obj
    memo[id(obj)] = (obj, new)                        # keep obj alive so its id is not reused
    return new


class Rng:
    """Seeded random numbers, drawn on the host by NumPy, delivered on the current device.

    Drawing on the host means the same seed gives bit-identical numbers on every backend.
    Only the draws the library needs are offered (CuPy's RNG lacks ``normal``/``choice``).
    """

    def __init__(self, seed=0):
        self.host = np.random.default_rng(seed)

    def standard_normal(self, shape, dtype=None):
        return asarray(self.host.standard_normal(shape), dtype=dtype)

    def uniform(self, low, high, shape, dtype=None):
        return asarray(self.host.uniform(low, high, shape), dtype=dtype)

    def random(self, shape, dtype=None):
        return asarray(self.host.random(shape), dtype=dtype)

    def integers(self, low, high, shape):
        return asarray(self.host.integers(low, high, shape))

    def permutation(self, n):
        return asarray(self.host.permutation(n))

    def spawn(self) -> Rng:
        """An independent child generator (for a layer that needs its own stream)."""
        child = Rng.__new__(Rng)
        child.host = self.host.spawn(1)[0]
        return child
