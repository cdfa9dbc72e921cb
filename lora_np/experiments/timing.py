"""Time one LoRA training step on each backend: NumPy against CuPy (the GPU check and notebook 08).

A *training step* is what :func:`lora_np.train.fit` does per mini-batch: forward, loss, backward
and an Adam step, here with LoRA (r = 8) on the MLP's hidden layers or on every block's q and v.

>>> row = time_training_step("mlp", {"width": 1024, "batch": 1024}, "numpy")
>>> row.ms                                       # the median milliseconds per step

Timing a GPU honestly takes three precautions:

* **synchronise before reading the clock** — CuPy returns as soon as a kernel is *queued*, so
  without ``cupy.cuda.Device().synchronize()`` the clock would measure the queueing, not the work;
* **warm up** — the first steps compile CuPy's kernels and fill its memory pool; they are run and
  not counted;
* **take the median of several repeats** — one step can be disturbed by anything else running.

The GPU wins when each step has enough arithmetic to hide its fixed costs (a kernel launch costs
microseconds; a tiny matmul on the CPU costs less): wide layers and many tokens per batch.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field

import numpy as _host_np  # inputs are drawn on the host, then moved to the device

from .. import backend
from ..lora import inject_lora
from ..models import MLP, TransformerConfig, TransformerLM
from ..nn import SoftmaxCrossEntropy
from ..optim import Adam

# Sizes where a GPU should win (wide layers, big batches), and tiny ones for a quick run.
MLP_SIZES = ({"width": 256, "batch": 256}, {"width": 1024, "batch": 1024}, {"width": 4096, "batch": 2048})
TRANSFORMER_SIZES = ({"d_model": 64, "batch": 32, "tokens": 64}, {"d_model": 256, "batch": 32, "tokens": 128},
                     {"d_model": 512, "batch": 16, "tokens": 256})
QUICK_MLP_SIZES = ({"width": 32, "batch": 32}, {"width": 64, "batch": 64})
QUICK_TRANSFORMER_SIZES = ({"d_model": 32, "batch": 2, "tokens": 8},
                           {"d_model": 48, "batch": 4, "tokens": 16})
LORA_R = 8                      # every size is wide enough for r = 8 (below the break-even rank)


@dataclass
class StepTiming:
    """Milliseconds per training step of one model at one size on one backend."""

    model: str                   # "mlp" or "transformer"
    size: dict
    backend: str
    ms: float                    # the median over the timed repeats
    times_ms: list = field(default_factory=list)

    @property
    def label(self) -> str:
        return size_label(self.model, self.size)


def size_label(model: str, size: dict) -> str:
    if model == "mlp":
        return f"width {size['width']}, batch {size['batch']}"
    return f"d_model {size['d_model']}, {size['batch']}x{size['tokens']} tokens"


def synchronize(name: str) -> None:
    """Wait until the device has finished all queued work (a no-op on the host backends)."""
    if name == "cupy":
        backend._load_cupy().cuda.Device().synchronize()


def make_training_step(model: str, size: dict, seed: int = 0):
    """Build a LoRA model, its data and Adam on the current backend; return ``step()``."""
    host = _host_np.random.default_rng(seed)
    if model == "mlp":
        w, n = size["width"], size["batch"]
        net = inject_lora(MLP(w, (w, w), 10, seed=seed), r=LORA_R, lora_alpha=2.0 * LORA_R,
                          target_modules=["fc1", "fc2"])
        x = backend.asarray(host.standard_normal((n, w)))                        # (N, width)
        labels = backend.asarray(host.integers(0, 10, n))                        # (N,)
    elif model == "transformer":
        d, b, t = size["d_model"], size["batch"], size["tokens"]
        cfg = TransformerConfig(d_model=d, n_heads=max(2, d // 64), n_layers=2,
                                context=t, vocab_size=64, seed=seed)
        net = inject_lora(TransformerLM(cfg), r=LORA_R, lora_alpha=2.0 * LORA_R, target_modules=["q", "v"])
        x = backend.asarray(host.integers(0, 64, (b, t)))                        # (B, T) token ids
        labels = backend.asarray(host.integers(0, 64, (b, t)))                   # (B, T) next tokens
    else:
        raise ValueError(f"model must be 'mlp' or 'transformer', got {model!r}")
    opt, criterion = Adam(net, lr=1e-3), SoftmaxCrossEntropy()                  # after the model exists

    def step():
        opt.zero_grad()
        loss = criterion(net(x), labels)
        net.backward(criterion.backward())
        opt.step()
        return loss                                                              # a 0-d device array
    return step


def time_training_step(model: str, size: dict, backend_name: str, warmup: int = 2, repeats: int = 5,
                       budget_s: float | None = None, seed: int = 0) -> StepTiming:
    """Median milliseconds of one training step on ``backend_name``, after ``warmup`` steps.

    ``budget_s`` caps the time spent on the timed repeats (at least 3 are kept), so that a slow
    size on the CPU does not hold up the whole comparison.
    """
    with backend.use_backend(backend_name, dtype="float32"):
        step = make_training_step(model, size, seed)
        for _ in range(warmup):
            step()
        synchronize(backend_name)
        times, n = [], repeats
        while len(times) < n:
            start = time.perf_counter()
            step()
            synchronize(backend_name)                 # the work is done: now the clock is honest
            times.append(1000.0 * (time.perf_counter() - start))
            if budget_s is not None and len(times) == 1:
                n = max(min(3, repeats), min(repeats, int(budget_s * 1000.0 / max(times[0], 1e-3))))
    return StepTiming(model, dict(size), backend_name, statistics.median(times), times)


def compare_backends(backends=("numpy",), mlp_sizes=MLP_SIZES, transformer_sizes=TRANSFORMER_SIZES,
                     warmup: int = 2, repeats: int = 5, budget_s: float | None = 10.0, progress=None) -> list:
    """One row per (model, size): ``{"model", "size", "label", "<backend>_ms", ..., "speedup"}``.

    ``speedup`` is numpy ms / cupy ms when both were timed, else None. ``progress``: a callable
    given each finished :class:`StepTiming` (to print as it goes).
    """
    rows = []
    for model, sizes in (("mlp", mlp_sizes), ("transformer", transformer_sizes)):
        for size in sizes:
            row = {"model": model, "size": dict(size), "label": size_label(model, size)}
            for name in backends:
                w = warmup if name == "cupy" else min(warmup, 1)    # the host needs no kernel compiling
                timing = time_training_step(model, size, name, w, repeats, budget_s)
                row[f"{name}_ms"] = timing.ms
                if progress is not None:
                    progress(timing)
            both = row.get("numpy_ms") and row.get("cupy_ms")
            row["speedup"] = row["numpy_ms"] / row["cupy_ms"] if both else None
            rows.append(row)
    return rows
