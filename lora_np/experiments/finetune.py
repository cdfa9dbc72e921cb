"""The fruit story as functions: pretrain on the source fruit, then fix the shift with LoRA.

>>> task = make_fruit_task(shift_rank=2)
>>> base, _ = pretrain(task)
>>> grape_report(base, task.shift_test)["grape_recall"]        # most grapes are called raisins
>>> res = finetune(base, task, r=4)                            # LoRA on fc1 and fc2, rank 4
>>> res.accuracy, res.percent                                  # fixed, with ~4% of the parameters

``base`` is never changed: every fine-tune works on a deep copy.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass

from ..data import GRAPE, RAISIN, FruitTask
from ..lora import LoraConfig, inject_lora, loraplus_param_groups, trainable_report
from ..models import MLP
from ..nn import Module
from ..optim import Adam
from ..tables import format_bytes, text_table
from ..train import History, confusion_matrix, fit, predict, progress_bar

DEFAULT_TARGETS = ("fc1", "fc2")


def pretrain(task: FruitTask, hidden=(256, 256), epochs: int = 15, lr: float = 1e-3,
             batch_size: int = 64, seed: int = 0, progress: bool = False):
    """Train an MLP on the source fruit. Returns ``(model, history)``."""
    model = MLP(task.d_in, hidden, task.n_classes, seed=seed)
    hist = fit(model, Adam(model, lr=lr), *task.source_train, epochs=epochs, batch_size=batch_size,
               val=task.source_test, seed=seed, progress=progress)
    return model, hist


def grape_report(model: Module, data) -> dict:
    """Accuracy, grape recall and the share of grapes called raisins, on ``data = (X, y)``."""
    X, y = data
    C = confusion_matrix(y, predict(model, X), model.n_classes)          # (C, C) host counts
    grapes = C[GRAPE].sum()
    return {"accuracy": float(C.trace() / C.sum()), "grape_recall": float(C[GRAPE, GRAPE] / grapes),
            "grape_as_raisin": float(C[GRAPE, RAISIN] / grapes), "confusion": C}


@dataclass
class FinetuneResult:
    """One fine-tuning run, measured on the shifted test fruit."""

    label: str
    r: int | None                  # None: full fine-tuning
    trainable: int
    total: int
    percent: float
    optimizer_bytes: int
    accuracy: float
    grape_recall: float
    seconds: float
    history: History
    model: Module


def finetune(base: Module, task: FruitTask, r: int | None = 4, alpha: float | None = None,
             target_modules=DEFAULT_TARGETS, epochs: int = 30, lr: float | None = None,
             batch_size: int = 32, use_rslora: bool = False, variant: str = "lora",
             loraplus_ratio: float | None = None, dora_exact_grad: bool = True, seed: int = 0, callbacks=(),
             progress: bool = False) -> FinetuneResult:
    """Fine-tune a copy of ``base`` on the few labelled shifted fruit.

    ``r``: the LoRA rank, or ``None`` for full fine-tuning (every parameter trained).
    ``alpha`` defaults to 2r, so the scale s = alpha/r = 2 whatever the rank.
    ``lr`` defaults to 3e-3 for LoRA and 1e-3 for full fine-tuning (LoRA likes larger steps).
    ``variant``: "lora", "dora", "vera" or "pissa"; ``loraplus_ratio``: train B at lr·ratio (LoRA+);
    ``dora_exact_grad=False``: DoRA with the paper's gradient (its norm held constant).
    """
    model = copy.deepcopy(base)
    if r is not None:
        config = LoraConfig(r=r, lora_alpha=2.0 * r if alpha is None else alpha,
                            target_modules=list(target_modules) if target_modules else None,
                            use_rslora=use_rslora, variant=variant, dora_exact_grad=dora_exact_grad,
                            seed=seed)
        inject_lora(model, config)
        lr = 3e-3 if lr is None else lr
    else:
        model.unfreeze()
        lr = 1e-3 if lr is None else lr
    params = model if loraplus_ratio is None else loraplus_param_groups(model, lr, loraplus_ratio)
    opt = Adam(params, lr=lr)
    start = time.perf_counter()
    hist = fit(model, opt, *task.shift_train, epochs=epochs, batch_size=batch_size,
               val=task.shift_test, seed=seed, callbacks=callbacks, progress=progress)
    seconds = time.perf_counter() - start
    rep, fruit = trainable_report(model), grape_report(model, task.shift_test)
    tag = ("rs" if use_rslora else "") + variant + ("+" if loraplus_ratio else "")   # e.g. "rslora", "lora+"
    label = "full" if r is None else f"r={r}" if tag == "lora" else f"{tag} r={r}"
    return FinetuneResult(label, r, rep.trainable, rep.total, rep.percent,
                          opt.state_bytes(), fruit["accuracy"], fruit["grape_recall"], seconds, hist, model)


def rank_sweep(base: Module, task: FruitTask, ranks=(1, 2, 4, 8, 16), include_full: bool = True,
               progress: bool = False, **kwargs) -> list:
    """:func:`finetune` at every rank (and fully, last). Keyword arguments go to finetune.

    ``progress``: a bar over the runs.
    """
    settings = [dict(kwargs, r=r) for r in ranks]
    if include_full:
        settings.append({**{k: v for k, v in kwargs.items() if k != "alpha"}, "r": None})
    return [finetune(base, task, **setting) for setting in progress_bar(settings, progress, "rank sweep")]


RESULT_COLUMNS = ("trainable", "% model", "optim. state", "grape recall", "accuracy", "time")


def format_table(results, label: str = "run") -> str:
    """The demo's table: one row per run (``label`` heads the column of run names), with the
    :data:`RESULT_COLUMNS` of each :class:`FinetuneResult`."""
    rows = [[res.label, f"{res.trainable:,}", f"{res.percent:.2f}%", format_bytes(res.optimizer_bytes),
             f"{res.grape_recall:.1%}", f"{res.accuracy:.1%}", f"{res.seconds:.2f}s"] for res in results]
    return text_table((label,) + RESULT_COLUMNS, rows)
