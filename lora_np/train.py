"""The training loop: mini-batches, evaluation, history, per-step callbacks, a progress bar.

>>> hist = fit(model, Adam(model, lr=1e-3), X, y, epochs=10, batch_size=64, val=(Xv, yv))
>>> hist.val_accuracy[-1]

Shuffling uses a host NumPy generator seeded by ``seed``; with the same seed, model and data the
history is bit-identical on NumPy. A loss that becomes NaN or inf stops training with
:class:`TrainingDiverged`, which names the step and suggests a lower learning rate.
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field

import numpy as _host_np  # host-side bookkeeping only: shuffling indices and metrics on the CPU

from . import backend, validate
from .nn import Module, SoftmaxCrossEntropy, check_finite


class TrainingDiverged(FloatingPointError):
    """The loss became NaN or infinite."""


@dataclass
class History:
    """What happened during :func:`fit`: one loss per step, and per-epoch summaries."""

    step_loss: list = field(default_factory=list)          # training loss of every mini-batch
    epoch_loss: list = field(default_factory=list)         # mean training loss of every epoch
    val_loss: list = field(default_factory=list)
    val_accuracy: list = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("step_loss", "epoch_loss", "val_loss", "val_accuracy")}


@dataclass
class StepInfo:
    """What a callback receives after every optimizer step."""

    step: int
    epoch: int
    loss: float
    model: Module
    history: History


def _check_xy(X, y, where):
    if not (backend.is_array(X) and backend.is_array(y)):
        raise TypeError(f"{where}: X and y must be arrays (use lora_np.backend.asarray)")
    if X.ndim < 2 or y.ndim < 1 or X.shape[0] != y.shape[0]:
        raise ValueError(f"{where}: X and y must have the same number of examples N in their first axis "
                         f"(X: (N, ...), y: (N, ...)), got {tuple(X.shape)} and {tuple(y.shape)}")
    if X.shape[0] == 0:
        raise ValueError(f"{where}: the data set is empty (0 rows)")


def evaluate(model: Module, X, y, batch_size: int = 4096) -> dict:
    """Mean loss and accuracy of ``model`` on (X, y), in eval mode (no dropout)."""
    _check_xy(X, y, "evaluate")
    criterion, was_training = SoftmaxCrossEntropy(), model.training
    model.eval()
    loss_sum, correct, N = 0.0, 0, X.shape[0]
    for i in range(0, N, batch_size):
        logits = model(X[i:i + batch_size])                                  # (B, C)
        yb = y[i:i + batch_size]                                              # (B,)
        loss_sum += float(criterion(logits, yb)) * yb.shape[0]
        correct += int((logits.argmax(axis=-1) == yb).sum())
    model.train(was_training)
    model.clear_caches()
    return {"loss": loss_sum / N, "accuracy": correct / y.size}


def logits(model: Module, X, batch_size: int = 4096):
    """The model's outputs on X in eval mode, with no cache kept for a backward pass (inference only)."""
    was_training = model.training
    model.eval()
    xp = backend.get_array_module(X)
    out = [model(X[i:i + batch_size]) for i in range(0, X.shape[0], batch_size)]        # (B, C) each
    model.train(was_training)
    model.clear_caches()
    return out[0] if len(out) == 1 else xp.concatenate(out, axis=0)                     # (N, C)


def predict(model: Module, X, batch_size: int = 4096):
    """Predicted classes as a host NumPy array (for metrics and plots)."""
    was_training = model.training
    model.eval()
    out = [backend.to_numpy(model(X[i:i + batch_size]).argmax(axis=-1))            # (B,) each
           for i in range(0, X.shape[0], batch_size)]
    model.train(was_training)
    model.clear_caches()
    return _host_np.concatenate(out)


def confusion_matrix(y_true, y_pred, n_classes: int):
    """C[i, j] = how many examples of class i were predicted as class j (host arrays)."""
    C = _host_np.zeros((n_classes, n_classes), dtype=_host_np.int64)
    _host_np.add.at(C, (backend.to_numpy(y_true), backend.to_numpy(y_pred)), 1)
    return C


def progress_bar(iterable, enabled: bool, desc: str, total: int | None = None):
    """``iterable`` wrapped in a tqdm bar (the notebook widget in Jupyter, text on stderr in a terminal)
    when ``enabled``, else ``iterable`` itself. ``iterable=None`` gives a bar of ``total`` steps to
    advance with ``bar.update(1)`` (``None`` when not enabled). For long runs: pretraining, sweeps, the demo.
    """
    if not enabled:
        return iterable
    from tqdm.auto import tqdm
    return tqdm(iterable, desc=desc, total=total, leave=False, file=sys.stderr)


def _diverged(loss: float, step: int, epoch: int, model: Module, optimizer, xb) -> str:
    """Why the loss is not finite: the inputs (the data's fault) or the parameters (the step size's)."""
    xp = backend.get_array_module(xb)
    if xb.dtype.kind == "f" and not bool(xp.isfinite(xb).all()):
        return (f"the loss became {loss} at step {step} (epoch {epoch}) because the input batch contains NaN "
                "or inf values: clean or impute the data (the learning rate is not the cause)")
    bad = [n for n, p in model.named_parameters()
           if not bool(backend.get_array_module(p.data).isfinite(p.data).all())]
    where = f"the parameters {bad[:3]} hold NaN or inf" if bad else "the logits overflowed"
    return (f"the loss became {loss} at step {step} (epoch {epoch}) with finite inputs: {where}, so the "
            f"training diverged; try a lower learning rate than lr={optimizer.groups[0]['lr']:g}")


def fit(model: Module, optimizer, X, y, epochs: int = 10, batch_size: int = 64, val=None,
        callbacks=(), seed: int = 0, progress: bool | str = False) -> History:
    """Train with mini-batch gradient descent on softmax cross-entropy; return the History.

    ``val``: an (X_val, y_val) pair evaluated after every epoch. ``callbacks``: callables
    receiving a :class:`StepInfo` after every step (for live plots). ``progress``: a tqdm bar on
    stderr, one tick per step, labelled "training" or with ``progress`` when it is a string; it
    changes nothing else (the history is bit-identical with and without it).
    """
    _check_xy(X, y, "fit")
    epochs = validate.positive_int(epochs, "epochs")
    batch_size = validate.positive_int(batch_size, "batch_size")
    if val is not None:
        _check_xy(*val, "fit(val=...)")
    optimizer.check_params(model)                  # made before inject_lora? it would train nothing
    check_finite(X, "fit", "X")
    if val is not None:
        check_finite(val[0], "fit(val=...)", "X_val")
    criterion, hist, N = SoftmaxCrossEntropy(), History(), X.shape[0]
    shuffler = _host_np.random.default_rng(seed)
    steps_per_epoch = math.ceil(N / batch_size)
    bar = progress_bar(None, bool(progress), progress if isinstance(progress, str) else "training",
                       total=epochs * steps_per_epoch)
    model.train()
    start, step = time.perf_counter(), 0
    try:
        for epoch in range(epochs):
            order = backend.asarray(shuffler.permutation(N))                   # (N,) on the device
            total = 0.0
            for i in range(0, N, batch_size):
                idx = order[i:i + batch_size]                                  # (B,)
                logits = model(X[idx])                                         # (B, C)
                loss = float(criterion(logits, y[idx]))
                if not math.isfinite(loss):
                    raise TrainingDiverged(_diverged(loss, step, epoch, model, optimizer, X[idx]))
                optimizer.zero_grad()
                model.backward(criterion.backward())
                optimizer.step()
                hist.step_loss.append(loss)
                total += loss * idx.shape[0]
                step += 1
                for cb in callbacks:
                    cb(StepInfo(step, epoch, loss, model, hist))
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss:.4f}", refresh=False)      # drawn at most every 0.1 s
            hist.epoch_loss.append(total / N)
            if val is not None:
                res = evaluate(model, *val)
                hist.val_loss.append(res["loss"])
                hist.val_accuracy.append(res["accuracy"])
    finally:
        if bar is not None:
            bar.close()
    hist.seconds = time.perf_counter() - start
    return hist
