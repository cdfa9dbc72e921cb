"""The fruit story on images: a small ViT, pretrained on source images, fixed with LoRA in attention.

>>> task = make_image_task()
>>> base, _ = pretrain_vit(task)
>>> table5(base, task)          # the LoRA paper's Table 5, in miniature: which projections to adapt

The LoRA paper (Hu et al., 2021, Table 5) fixes a budget of trainable parameters and asks where
to spend it: W_q alone or W_v alone at rank 8, W_q and W_v at rank 4, or all four projections at
rank 2. Each uses 2 · r · d per adapted matrix per block, so all four settings cost the same.
"""
from __future__ import annotations

from ..models import TransformerConfig, ViTClassifier
from ..optim import Adam
from ..train import fit, progress_bar
from .finetune import finetune

VIT_CONFIG = dict(d_model=48, n_heads=4, n_layers=2, patch_size=4, pooling="mean")
TABLE5 = ((("q",), 8), (("v",), 8), (("q", "v"), 4), (("q", "k", "v", "o"), 2))


def pretrain_vit(task, config: TransformerConfig | None = None, epochs: int = 8, lr: float = 2e-3,
                 batch_size: int = 64, seed: int = 0, progress: bool = False):
    """Train a ViT classifier on the source images. Returns ``(model, history)``."""
    if config is None:
        config = TransformerConfig(n_classes=task.n_classes, image_size=task.image_size, seed=seed,
                                   **VIT_CONFIG)
    model = ViTClassifier(config)
    hist = fit(model, Adam(model, lr=lr), *task.source_train, epochs=epochs, batch_size=batch_size,
               val=task.source_test, seed=seed, progress=progress)
    return model, hist


def table5(base, task, settings=TABLE5, epochs: int = 10, lr: float = 3e-3, include_full: bool = True,
           seed: int = 0, progress: bool = False) -> list:
    """Fine-tune ``base`` on the shifted images under each (targets, r) of ``settings``.

    Returns FinetuneResults labelled like the paper's columns ("Wq,Wv r=4"), then full fine-tuning.
    ``progress``: a bar over the runs.
    """
    settings = list(settings) + ([(None, None)] if include_full else [])
    runs = []
    for targets, r in progress_bar(settings, progress, "Table 5"):
        if targets is None:                                   # full fine-tuning, at a third of the rate
            runs.append(finetune(base, task, r=None, epochs=epochs, lr=lr / 3, seed=seed))
            continue
        res = finetune(base, task, r=r, target_modules=targets, epochs=epochs, lr=lr, seed=seed)
        res.label = ",".join("W" + t for t in targets) + f" r={r}"
        runs.append(res)
    return runs
