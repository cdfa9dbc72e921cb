"""The demo: the fruit story end to end, printed as a table, with figures under ``outputs/``.

1. pretrain an MLP on the source fruit;
2. show that on the new harvest it calls most grapes raisins;
3. fine-tune with LoRA at r = 1, 2, 4, 8, 16 and fully, and compare what each costs and fixes.

The report goes to stdout; while a model trains, a progress bar shows on stderr (``progress=False``:
none), so ``python -m lora_np demo > report.txt`` keeps the report clean.
"""
from __future__ import annotations

import os
import time

from . import backend
from .data import FRUITS, make_fruit_task
from .experiments import finetune, format_table, grape_report, pretrain


def run_demo(out_dir: str = "outputs", ranks=(1, 2, 4, 8, 16), shift_rank: int = 2, seed: int = 0,
             save_figures: bool = True, progress: bool = True):
    """Run the story, print it, save figures; returns the list of FinetuneResult (full fine-tuning last)."""
    start = time.perf_counter()
    print(f"lora_np demo — backend: {backend.get_backend()}, dtype: {backend.default_dtype()}")
    task = make_fruit_task(shift_rank=shift_rank, seed=seed)
    print(f"fruit task: {task.n_classes} fruit, {task.d_in} features; "
          f"{task.source_train[0].shape[0]} source fruit to pretrain on, "
          f"{task.shift_train[0].shape[0]} labelled fruit from the new harvest (shift of rank {shift_rank})")

    base, hist = pretrain(task, seed=seed, progress="pretraining" if progress else False)
    print(f"\n1. pretrained MLP {base.d_in}-{'-'.join(map(str, base.hidden))}-{base.n_classes}: "
          f"{base.num_parameters():,} parameters, source test accuracy {hist.val_accuracy[-1]:.1%}")

    before = grape_report(base, task.shift_test)
    print(f"2. on the new harvest: accuracy {before['accuracy']:.1%}, grape recall "
          f"{before['grape_recall']:.1%}, and {before['grape_as_raisin']:.1%} of grapes are called raisins")

    print("3. fine-tuning on the new harvest (LoRA on fc1 and fc2; the head and all W0 stay frozen):\n")
    results = []
    for r in (*ranks, None):                                            # None: full fine-tuning, last
        label = "fine-tuning " + ("fully" if r is None else f"at r={r}")
        results.append(finetune(base, task, r=r, seed=seed, progress=label if progress else False))
    print(format_table(results))
    full = results[-1]
    good = [res for res in results[:-1] if res.r <= 4 and res.accuracy >= 0.95 * full.accuracy]
    if good:
        best = good[0]
        print(f"\nLoRA at r = {best.r} reaches {best.accuracy / full.accuracy:.1%} of full fine-tuning's "
              f"accuracy training {best.percent:.2f}% of the parameters, with "
              f"{full.optimizer_bytes / best.optimizer_bytes:.0f}x less optimizer state.")

    if save_figures:
        _save_figures(out_dir, results, base, task, before)
    print(f"\ndone in {time.perf_counter() - start:.1f} s")
    return results


def _save_figures(out_dir, results, base, task, before):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from . import viz
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for name, draw in (("loss_curves.png", lambda ax: viz.plot_loss_curves(results, ax=ax)),
                       ("rank_sweep.png",
                        lambda ax: viz.plot_rank_sweep(results, ax=ax, before=before["accuracy"])),
                       ("confusion_before.png", lambda ax: viz.plot_confusion(
                           before["confusion"], FRUITS, ax=ax, title="Pretrained model on the new harvest"))):
        fig, ax = plt.subplots(figsize=(7, 4.5) if "confusion" not in name else (6.5, 5.5))
        draw(ax)
        fig.tight_layout()
        path = os.path.join(out_dir, name)
        fig.savefig(path, dpi=120)
        plt.close(fig)
        paths.append(path)
    print("figures: " + ", ".join(paths))
