"""How much rank does a fix need?  Two experiments on the fruit task (notebook 05).

**Planted rank.** The new harvest is ``x' = (I + U Vᵀ) x`` with ``U, V: (20, k)``, so an exact fix
changes the first layer by a rank-k matrix (:mod:`lora_np.data.fruit`). A rank sweep of LoRA on
``fc1`` should then improve quickly up to ``r = k`` and hardly at all after it: a knee at k.

>>> task = planted_rank_task(k=3)
>>> base, _ = pretrain(task)
>>> sweep = planted_rank_sweep(base, task)          # r = 1..8 on fc1, and full fine-tuning
>>> sweep.knee                                       # 3

**Scaling rule.** LoRA scales its update by ``s = alpha / r``; rsLoRA by ``s = alpha / √r``.
With a fixed alpha and learning rate, :func:`scaling_sweep` trains the same adapter at several r
under both rules and records how fast the loss falls. Under Adam every entry of B moves by about
``lr`` per step whatever its gradient's size, so after t steps ``B A`` is a sum of r coherent rank-1
terms and grows like ``r · lr · t``: ``s = alpha / r`` cancels that growth (the same early speed at
every r, the LoRA paper's reason for it), while ``alpha / √r`` leaves a factor √r, so larger ranks
learn faster and go further in the same number of steps (rsLoRA's point: they use their capacity).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..data import FruitTask, make_fruit_task
from ..nn import Module, lora_scaling
from ..train import progress_bar
from ..validate import choice, fraction, int_list, integer, message
from .finetune import FinetuneResult, finetune

# enough data not to overfit; random directions that matter
KNEE_TASK = {"n_finetune": 3000, "shift_strength": 5.0}
SCALING_RULES = {"alpha/r": False, "alpha/sqrt(r)": True}   # rule -> use_rslora


def planted_rank_task(k: int = 3, seed: int = 0, **kwargs) -> FruitTask:
    """The fruit task with a shift of planted rank ``k`` made for a sharp knee.

    Compared with the demo's task: 3000 labelled shifted fruit instead of 500 (so that a large r
    cannot win by overfitting) and ``shift_strength = 5`` (so that every direction a rank-r update
    cannot undo costs accuracy). Other keyword arguments go to :func:`make_fruit_task`.
    """
    k = integer(k, "k (the planted rank)", "planted_rank_task", low=1, high=8)
    return make_fruit_task(shift_rank=k, seed=seed, **{**KNEE_TASK, **kwargs})


def find_knee(ranks, losses, tol: float = 0.05) -> int:
    """The smallest rank that gets ``1 − tol`` of the way from the sweep's worst loss to its best.

    With ``tol = 0.05``: ``loss(r) − min ≤ 0.05 · (max − min)``. Past the knee a larger rank buys
    almost nothing; measuring against the sweep's own range keeps the rule free of the loss's units.
    """
    ranks, losses = list(ranks), [float(v) for v in losses]
    if not ranks or len(ranks) != len(losses):
        raise ValueError(f"find_knee: ranks and losses must be non-empty and of one length, got {len(ranks)} "
                         f"and {len(losses)}")
    tol = fraction(tol, "tol", "find_knee")
    best, worst = min(losses), max(losses)
    return min(r for r, v in zip(ranks, losses, strict=True) if v - best <= tol * (worst - best))


@dataclass
class PlantedRankSweep:
    """A rank sweep on a shift of planted rank ``k``, measured on the shifted test fruit."""

    k: int
    ranks: list
    accuracy: list                 # one per rank
    val_loss: list
    trainable: list                # LoRA's trainable parameters at each rank
    knee: int                      # :func:`find_knee` of val_loss
    full: FinetuneResult | None    # full fine-tuning, for reference
    total: int                     # parameters of the whole model
    runs: list = field(repr=False, default_factory=list)

    def at(self, r: int) -> dict:
        """The numbers of one rank of the sweep."""
        if r not in self.ranks:
            raise ValueError(message("r", f"one of the swept ranks {self.ranks}", r, "PlantedRankSweep.at"))
        i = self.ranks.index(r)
        return {"r": r, "accuracy": self.accuracy[i], "val_loss": self.val_loss[i],
                "trainable": self.trainable[i], "percent": 100.0 * self.trainable[i] / self.total}


def planted_rank_sweep(base: Module, task: FruitTask, ranks=(1, 2, 3, 4, 5, 6, 8), target_modules=("fc1",),
                       epochs: int = 10, include_full: bool = True, tol: float = 0.05, seed: int = 0,
                       progress: bool = False, **kwargs) -> PlantedRankSweep:
    """LoRA at every rank on ``target_modules`` (default ``fc1``, where the exact fix lives), then the knee.

    Keyword arguments go to :func:`finetune` (lr, alpha, batch_size, ...). ``progress``: a bar over the runs.
    """
    ranks = sorted(set(int_list(ranks, "ranks", "planted_rank_sweep")))
    tol = fraction(tol, "tol", "planted_rank_sweep")                 # before the training, not after it
    settings = [dict(kwargs, r=r, target_modules=target_modules) for r in ranks]
    if include_full:
        settings.append({**{k: v for k, v in kwargs.items() if k != "alpha"}, "r": None})
    done = [finetune(base, task, epochs=epochs, seed=seed, **setting)
            for setting in progress_bar(settings, progress, "planted-rank sweep")]
    runs, full = done[:len(ranks)], done[-1] if include_full else None
    losses = [res.history.val_loss[-1] for res in runs]
    return PlantedRankSweep(task.shift_rank, ranks, [res.accuracy for res in runs], losses,
                            [res.trainable for res in runs], find_knee(ranks, losses, tol), full,
                            runs[0].total, runs)


@dataclass
class ScalingSweep:
    """Training curves at several ranks under one scaling rule, with a fixed alpha and learning rate."""

    rule: str                      # "alpha/r" or "alpha/sqrt(r)"
    alpha: float
    lr: float
    ranks: list
    scales: list                   # s at each rank
    step_loss: list                # one list of per-step losses per rank
    epoch_loss: list               # one list of per-epoch losses per rank
    accuracy: list                 # final shifted-test accuracy per rank

    def loss_after(self, epoch: int = 1) -> list:
        """Mean training loss during epoch ``epoch`` (1-based) at each rank: the learning speed."""
        epoch = integer(epoch, "epoch", "ScalingSweep.loss_after", low=1, high=len(self.epoch_loss[0]))
        return [losses[epoch - 1] for losses in self.epoch_loss]


def scaling_sweep(base: Module, task: FruitTask, ranks=(1, 4, 16, 64), alpha: float = 8.0, lr: float = 1e-3,
                  epochs: int = 4, target_modules=("fc2",), rules=tuple(SCALING_RULES), seed: int = 0,
                  progress: bool = False) -> dict:
    """:func:`finetune` at every rank under each scaling rule, alpha and lr fixed.
    Returns rule -> ScalingSweep.

    ``fc2`` (256 × 256) is the default target so that ranks up to 64 and beyond make sense.
    ``progress``: a bar over the runs (every rank under every rule).
    """
    rules = [choice(rule, "each of rules", tuple(SCALING_RULES), "scaling_sweep") for rule in rules]
    ranks = int_list(ranks, "ranks", "scaling_sweep")
    done = {}
    for rule, r in progress_bar([(rule, r) for rule in rules for r in ranks], progress, "scaling sweep"):
        done[rule, r] = finetune(base, task, r=r, alpha=alpha, lr=lr, epochs=epochs,
                                 target_modules=target_modules, use_rslora=SCALING_RULES[rule], seed=seed)
    out = {}
    for rule in rules:
        runs = [done[rule, r] for r in ranks]
        scales = [lora_scaling(r, alpha, SCALING_RULES[rule]) for r in ranks]
        out[rule] = ScalingSweep(rule, alpha, lr, list(ranks), scales,
                                 [res.history.step_loss for res in runs],
                                 [res.history.epoch_loss for res in runs], [res.accuracy for res in runs])
    return out
