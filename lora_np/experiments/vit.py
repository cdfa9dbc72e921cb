"""The fruit story on images: a small ViT, pretrained on source images, fixed with LoRA in attention.

>>> task = make_image_task()
>>> base, _ = pretrain_vit(task)
>>> runs = table5(base, task, seeds=(0, 1, 2))   # the LoRA paper's Table 5, in miniature
>>> table5_summary(runs)                         # mean, min, max and std over the seeds, per setting

The LoRA paper (Hu et al., 2021, Table 5) fixes a budget of trainable parameters and asks where
to spend it: W_q alone or W_v alone at rank 8, W_q and W_v at rank 4, or all four projections at
rank 2. Each uses 2 · r · d per adapted matrix per block, so all four settings cost the same.

Over several seeds the pretrained ViT is shared: a seed changes the fine-tune only (the adapter's
initial A and the order of the batches), so the spread measures the fine-tuning's own variation.
"""
from __future__ import annotations

import copy
import time

from .. import validate
from ..lora import LoraConfig, inject_lora, trainable_report
from ..models import TransformerConfig, ViTClassifier
from ..optim import Adam
from ..train import fit, progress_bar
from .finetune import FinetuneResult, grape_report
from .seeds import spread

VIT_CONFIG = dict(d_model=48, n_heads=4, n_layers=2, patch_size=4, pooling="mean")
TABLE5 = ((("q",), 8), (("v",), 8), (("q", "v"), 4), (("q", "k", "v", "o"), 2))


def pretrain_vit(task, config: TransformerConfig | None = None, epochs: int = 8, lr: float = 2e-3,
                 batch_size: int = 64, seed: int = 0, progress: bool = False, val: bool = True):
    """Train a ViT classifier on the source images. Returns ``(model, history)``.

    ``val``: measure the source test accuracy after every epoch (``history.val_accuracy``); ``False``
    skips it (a sixth of the time), and the history has the training loss only.
    """
    if config is None:
        config = TransformerConfig(n_classes=task.n_classes, image_size=task.image_size, seed=seed,
                                   **VIT_CONFIG)
    model = ViTClassifier(config)
    hist = fit(model, Adam(model, lr=lr), *task.source_train, epochs=epochs, batch_size=batch_size,
               val=task.source_test if val else None, seed=seed, progress=progress)
    return model, hist


def _label(targets, r) -> str:
    return "full" if targets is None else ",".join("W" + t for t in targets) + f" r={r}"


def _finetune(base, task, targets, r, epochs: int, lr: float, batch_size: int, seed: int) -> FinetuneResult:
    """One Table-5 run on a copy of ``base``: LoRA on ``targets`` at rank r (α = 2r), or every
    parameter (``targets=None``). Measured once, on the shifted test images, at the end (the
    library's ``finetune`` also measures after every epoch, which doubles the cost here)."""
    model = copy.deepcopy(base)
    if targets is None:
        model.unfreeze()
    else:
        inject_lora(model, LoraConfig(r=r, lora_alpha=2.0 * r, target_modules=list(targets), seed=seed))
    opt = Adam(model, lr=lr)
    start = time.perf_counter()
    hist = fit(model, opt, *task.shift_train, epochs=epochs, batch_size=batch_size, seed=seed)
    seconds = time.perf_counter() - start
    rep, fruit = trainable_report(model), grape_report(model, task.shift_test)
    return FinetuneResult(_label(targets, r), r, rep.trainable, rep.total, rep.percent, opt.state_bytes(),
                          fruit["accuracy"], fruit["grape_recall"], seconds, hist, model, seed=seed)


def table5(base, task, settings=TABLE5, epochs: int = 10, lr: float = 3e-3, include_full: bool = True,
           seed: int = 0, seeds=None, batch_size: int = 32, progress: bool = False) -> list:
    """Fine-tune ``base`` on the shifted images under each (targets, r) of ``settings``.

    Returns FinetuneResults labelled like the paper's columns ("Wq,Wv r=4"), then full fine-tuning
    (every parameter, at a third of the rate). ``seeds``: repeat every setting for each seed
    (seed-major order; each result's ``.seed`` says which), for :func:`table5_summary`; ``None``: one
    pass at ``seed``. ``base`` is never changed. ``progress``: a bar over the runs.
    """
    seeds = [validate.integer(seed, "seed", where="table5", low=0)] if seeds is None else \
        validate.int_list(seeds, "seeds", "table5", low=0)
    settings = list(settings) + ([(None, None)] if include_full else [])
    plan = [(s, targets, r) for s in seeds for targets, r in settings]
    return [_finetune(base, task, targets, r, epochs, lr / 3 if targets is None else lr, batch_size, s)
            for s, targets, r in progress_bar(plan, progress, "Table 5")]


def table5_summary(runs) -> list:
    """One row per setting, in the order of ``runs``: ``{"label", "r", "trainable", "percent", "seeds",
    "accuracy": {mean, min, max, std}, "grape_recall": {...}}`` over the seeds (std with ddof 0)."""
    groups: dict = {}
    for res in runs:
        groups.setdefault(res.label, []).append(res)
    return [{"label": label, "r": rs[0].r, "trainable": rs[0].trainable, "percent": rs[0].percent,
             "seeds": [res.seed for res in rs], "accuracy": spread([res.accuracy for res in rs]),
             "grape_recall": spread([res.grape_recall for res in rs])} for label, rs in groups.items()]
