"""Element-wise chains evaluated block by block, so that their temporaries stay in the CPU's cache.

GELU's forward, y = ½ x (1 + tanh(c (x + 0.044715 x³))), written as one NumPy expression on a
(32, 64, 1024) float32 activation, creates five temporaries of 8 MiB each: every operation streams
its operands from main memory and writes a new array back, and memory, not arithmetic, sets the
pace. The same operations applied in place to slices of about 65 thousand numbers (256 KiB, which
fits in a core's L2 cache) touch main memory once for each input and output. Measured on that
array (NumPy 2.4, one core of a 2-core AMD EPYC): the forward 14.3 ms in place on the whole array,
11.0 ms block by block; the backward 10.5 ms and 6.5 ms. Where each step is a row reduction
(LayerNorm's means) the extra calls cost more than the traffic saved, so LayerNorm runs in place
on the whole array (``numbers=None``).

A GPU has no such cache to fit (and each operation is a kernel launch), so on CuPy, and on the
emulated device that stands in for it in the tests, :func:`blocks` yields the whole arrays as one
block. The plain one-line formula of each function that uses this stays in its docstring, and
``tests/test_tuned_kernels.py`` checks that both agree.

**Threads.** NumPy runs each element-wise operation on one core, while BLAS runs a matrix product on
all the threads it was given. Blocks never overlap and NumPy releases Python's lock inside its
loops, so :func:`for_each` can hand the blocks to a few threads: as many as BLAS has
(``OMP_NUM_THREADS`` / ``OPENBLAS_NUM_THREADS`` / ``MKL_NUM_THREADS``, or ``LORA_NP_THREADS``;
1 when none is set, and ``make`` sets 1), or :func:`set_threads`.
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

from ..backend import get_array_module

BLOCK = 65536                    # numbers per block: 256 KiB of float32, 512 KiB of float64


_THREAD_VARS = ("LORA_NP_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
_state = {"threads": 1, "pool": None}
_local = threading.local()


def _threads_from_env() -> int:
    for var in _THREAD_VARS:
        value = os.environ.get(var, "").strip()
        if value.isdigit() and int(value) >= 1:
            return int(value)
    return 1


def set_threads(n: int) -> None:
    """Run the blocks of element-wise work on ``n`` threads (1: in the calling thread, in order)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"set_threads: n must be a positive integer, got {n!r}")
    if _state["pool"] is not None:
        _state["pool"].shutdown(wait=True)
    _state.update(threads=n, pool=ThreadPoolExecutor(n, thread_name_prefix="lora_np") if n > 1 else None)


def get_threads() -> int:
    return _state["threads"]


def for_each(fn, parts) -> None:
    """``fn(*part)`` for every part (tuples of blocks that never overlap), on :func:`get_threads` threads."""
    parts = list(parts)
    if _state["pool"] is None or len(parts) < 2:
        for part in parts:
            fn(*part)
        return
    for future in [_state["pool"].submit(fn, *part) for part in parts]:
        future.result()                                    # waits, and re-raises an error of fn


def work_like(block):
    """A scratch array of ``block``'s shape and dtype, this thread's own (kept for the next call)."""
    cache = _local.__dict__.setdefault("work", {})
    key = (type(block), block.dtype.str)
    if key not in cache or cache[key].size < block.size:                  # grows to the largest block
        cache[key] = get_array_module(block).empty(block.size, dtype=block.dtype)
    return cache[key][:block.size].reshape(block.shape)


def on_host(x) -> bool:
    """True for a NumPy array (blocking pays on a CPU), False for CuPy's or the emulated device's."""
    return type(x).__module__.startswith("numpy")


def empty(x):
    """A new C-ordered array of x's shape and dtype (safe to fill through a reshaped view)."""
    return get_array_module(x).empty(x.shape, dtype=x.dtype)


def blocks(*arrays, numbers: int | None = BLOCK):
    """Matching row blocks of arrays that share their leading axes: each array is viewed as
    (rows, its last axis) and sliced into blocks of about ``numbers`` numbers (None: one block).

    Outputs must be C-ordered (:func:`empty`) so that the view writes into them; inputs that are
    not are copied once. On a device the one block is everything.
    """
    flat = [a.reshape(-1, a.shape[-1]) if a.ndim else a.reshape(1, 1) for a in arrays]   # (rows, width) each
    rows = flat[0].shape[0]
    if numbers is None or not on_host(arrays[0]):
        yield tuple(flat)
        return
    step = max(1, numbers // max(f.shape[1] for f in flat))
    for i in range(0, rows, step):
        yield tuple(f[i:i + step] for f in flat)


def scratch(x, numbers: int | None = BLOCK):
    """A work array for one block of x (as :func:`blocks` cuts it): (rows of a block, x's last axis)."""
    width = max(x.shape[-1], 1) if x.ndim else 1
    rows = x.size // width
    if numbers is not None and on_host(x):
        rows = min(rows, max(1, numbers // width))
    return get_array_module(x).empty((rows, width), dtype=x.dtype)


set_threads(_threads_from_env())
