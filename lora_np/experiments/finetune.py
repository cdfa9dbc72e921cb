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

from .. import validate
from ..data import GRAPE, RAISIN, FruitTask
from ..lora import LoraConfig, inject_lora, loraplus_param_groups, trainable_report
from ..models import MLP
from ..nn import Module
from ..optim import Adam
from ..tables import format_bytes, text_table
from ..train import History, confusion_matrix, fit, predict, progress_bar
from .seeds import spread

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
    seed: int = 0                  # the fine-tune's seed: the adapter's initialisation and the batch order


def finetune(base: Module, task: FruitTask, r: int | None = 4, alpha: float | None = None,
             target_modules=DEFAULT_TARGETS, epochs: int = 30, lr: float | None = None,
             batch_size: int = 32, use_rslora: bool = False, variant: str = "lora",
             loraplus_ratio: float | None = None, dora_exact_grad: bool = True, seed: int = 0, callbacks=(),
             progress: bool = False, track_val: bool = True) -> FinetuneResult:
    """Fine-tune a copy of ``base`` on the few labelled shifted fruit.

    ``r``: the LoRA rank, or ``None`` for full fine-tuning (every parameter trained).
    ``alpha`` defaults to 2r, so the scale s = alpha/r = 2 whatever the rank.
    ``lr`` defaults to 3e-3 for LoRA and 1e-3 for full fine-tuning (LoRA likes larger steps).
    ``variant``: "lora", "dora", "vera" or "pissa"; ``loraplus_ratio``: train B at lr·ratio (LoRA+);
    ``dora_exact_grad=False``: DoRA with the paper's gradient (its norm held constant).
    ``track_val=False``: skip the held-out evaluation after every epoch (``history.val_*`` stay empty;
    the training is the same, about twice as fast); the final ``accuracy`` and ``grape_recall`` are measured
    either way.
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
               val=task.shift_test if track_val else None, seed=seed, callbacks=callbacks, progress=progress)
    seconds = time.perf_counter() - start
    rep, fruit = trainable_report(model), grape_report(model, task.shift_test)
    tag = ("rs" if use_rslora else "") + variant + ("+" if loraplus_ratio else "")   # e.g. "rslora", "lora+"
    label = "full" if r is None else f"r={r}" if tag == "lora" else f"{tag} r={r}"
    return FinetuneResult(label, r, rep.trainable, rep.total, rep.percent,
                          opt.state_bytes(), fruit["accuracy"], fruit["grape_recall"], seconds, hist, model,
                          seed=seed)


def rank_sweep(base: Module, task: FruitTask, ranks=(1, 2, 4, 8, 16), include_full: bool = True,
               progress: bool = False, seeds=None, **kwargs) -> list:
    """:func:`finetune` at every rank (and fully, last). Keyword arguments go to finetune.

    ``seeds``: a list of fine-tuning seeds; the whole sweep is repeated for each (seed-major order,
    each result's ``.seed`` says which), for :func:`sweep_summary`'s mean and spread. ``None`` (the
    default): one sweep, at ``seed`` from the keywords (0 if absent), as before.
    ``progress``: a bar over the runs.
    """
    if seeds is None:
        seeds = [kwargs.pop("seed", 0)]
    else:
        if "seed" in kwargs:
            raise ValueError("rank_sweep: give seed or seeds, not both")
        seeds = validate.int_list(seeds, "seeds", "rank_sweep", low=0)
    settings = [dict(kwargs, r=r, seed=seed) for seed in seeds for r in list(ranks)
                + ([None] if include_full else [])]
    for setting in settings:
        if setting["r"] is None:
            setting.pop("alpha", None)                  # full fine-tuning has no alpha
    return [finetune(base, task, **setting) for setting in progress_bar(settings, progress, "rank sweep")]


def sweep_summary(results) -> list:
    """One row per rank (full fine-tuning last) over the seeds of a :func:`rank_sweep`:
    ``{"label", "r", "trainable", "n_seeds", "seeds", "accuracy": {mean, min, max, std},
    "grape_recall": {...}, "final_loss": {...}}`` (the final loss is the last epoch's training loss)."""
    groups = {}
    for res in results:
        groups.setdefault(res.label, []).append(res)
    rows = []
    for label, runs in sorted(groups.items(), key=lambda kv: (kv[1][0].r is None, kv[1][0].r or 0)):
        rows.append({"label": label, "r": runs[0].r, "trainable": runs[0].trainable, "n_seeds": len(runs),
                     "seeds": [run.seed for run in runs],
                     "accuracy": spread([run.accuracy for run in runs]),
                     "grape_recall": spread([run.grape_recall for run in runs]),
                     "final_loss": spread([run.history.epoch_loss[-1] for run in runs])})
    return rows


def format_summary(rows) -> str:
    """:func:`sweep_summary`'s rows as a table: mean and min–max over the seeds."""
    def cell(d, pct=True):
        f = (lambda v: f"{100 * v:.1f}") if pct else (lambda v: f"{v:.3f}")
        return f"{f(d['mean'])} [{f(d['min'])}, {f(d['max'])}]"
    body = [[row["label"], f"{row['trainable']:,}", str(row["n_seeds"]), cell(row["accuracy"]),
             cell(row["grape_recall"]), cell(row["final_loss"], pct=False)] for row in rows]
    return text_table(("run", "trainable", "seeds", "accuracy % mean [min, max]",
                       "grape recall % mean [min, max]", "final train loss"), body)


RESULT_COLUMNS = ("trainable", "% model", "optim. state", "grape recall", "accuracy", "time")


def format_table(results, label: str = "run") -> str:
    """The demo's table: one row per run (``label`` heads the column of run names), with the
    :data:`RESULT_COLUMNS` of each :class:`FinetuneResult`."""
    rows = [[res.label, f"{res.trainable:,}", f"{res.percent:.2f}%", format_bytes(res.optimizer_bytes),
             f"{res.grape_recall:.1%}", f"{res.accuracy:.1%}", f"{res.seconds:.2f}s"] for res in results]
    return text_table((label,) + RESULT_COLUMNS, rows)
