"""Intrinsic dimension: how many random directions does fine-tuning need? (notebook 06)

Train only ``z ∈ R^d`` with θ = θ₀ + P z (:class:`lora_np.nn.subspace.RandomSubspace`) and sweep d.
Accuracy is put on one scale from chance (0) to full fine-tuning (1),

    a(d) = (acc(d) − chance) / (acc_full − chance),

and the **intrinsic dimension** d_int90 is the smallest d with a(d) ≥ 0.9. This is this library's
variant of Li et al.'s (2018) d_int90, which asks for 90% of the baseline's accuracy itself
(acc ≥ 0.9·acc_full); measured from chance, 0 means "no better than guessing".
Aghajanyan et al. (2020) measured it for fine-tuning language models: a few hundred directions out
of hundreds of millions, fewer the longer the model was pretrained — one explanation of why a
low-rank update (LoRA) is enough.

>>> task = make_fruit_task()
>>> base, _ = pretrain(task, hidden=(64, 64))                  # D = 6,154 parameters
>>> sweep = intrinsic_dimension_sweep(base, task)              # d = 16 .. 512, and full fine-tuning
>>> sweep.d_int90                                              # ≈ 84: ~1.4% of D

**What the defaults measure** (shift_rank = 2, 500 labelled shifted fruit, 2,000 test fruit;
Adam at lr = 0.1, 20 epochs, batches of 64; seed 0, with seeds 1 and 2 in brackets — the seed sets
pretraining, P and the shuffle). The pretrained (64, 64) model scores 53% on the shifted fruit before
any training: a(0) ≈ 0.52, far below 0.9, so d_int90 measures the fix, not the starting point (no
harder shift is needed). Full fine-tuning reaches 92.5%; chance is 10%.

* sweep, (64, 64): d_int90 ≈ 84 [76, 82] of D = 6,154, i.e. ~1.3% of the parameters;
* widths (32, 32), (64, 64), (128, 128): D = 2,058 / 6,154 / 20,490 (10×), d_int90 ≈ 77 / 84 / 104
  [60 / 76 / 95; 62 / 82 / 86]. It grows, but only ~1.4× while D grows 10×, so the trained fraction
  d_int90/D falls from ~3.5% to ~0.5%. Li et al. report it flat; here it creeps up slowly;
* SAID (one scale per tensor, 6 of the d numbers): ≈ 61 [84, 72] against 84 [76, 82] — lower in
  two seeds of three, so at this size the scales help little and not reliably (most at d ≈ 32);
* pretraining (64, 64): random init ≈ 216 [226, 296], one epoch ≈ 162 [278, 176], fifteen epochs
  ≈ 84 [76, 82]. Full pretraining cuts the intrinsic dimension (as Aghajanyan et al. found): 2.6× in
  seed 0, 3.0× and 3.6× in the others, while
  full fine-tuning reaches ~92.5% from all three starts. One epoch lies in between in two seeds of
  three: its curve crosses 0.9 slowly, so its d_int90 is the noisiest. From a random init a(0) ≈ 0;
* LoRA on fc1 and fc2 reaches a = 0.98 already at r = 1 (212 trainable numbers), so its count at
  the threshold is at most 212 — the same order as d_int90 (LoRA on fc1 alone: 84 at r = 1, a = 0.97).

Runtimes on one core: a sweep of six d ≈ 1 s, SAID ≈ 0.9 s, LoRA ≈ 0.7 s, widths ≈ 5 s,
pretraining ≈ 3 s; the whole item ≈ 11 s.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field

from ..data import FruitTask
from ..models import MLP
from ..nn import Module
from ..nn.subspace import RandomSubspace
from ..optim import Adam
from ..tables import text_table
from ..train import History, evaluate, fit, progress_bar
from ..validate import int_list, number
from .finetune import DEFAULT_TARGETS, finetune, pretrain
from .seeds import spread

DIMS = (16, 32, 64, 128, 256, 512)
WIDTHS = ((32, 32), (64, 64), (128, 128))
PRETRAIN_LEVELS = (0, 1, 15)          # epochs of pretraining; 0 is the random initialisation
LEVEL = 0.9                           # d_int90: 90% of the way from chance to full fine-tuning
SUBSPACE = {"epochs": 20, "lr": 0.1, "batch_size": 64}


@dataclass
class SubspaceResult:
    """One run of :func:`subspace_finetune`, measured on the shifted test fruit."""

    d: int
    said: bool
    D: int
    accuracy: float
    seconds: float
    history: History
    model: RandomSubspace | None = field(default=None, repr=False)

    @property
    def fraction(self) -> float:
        """d / D: the share of the model's parameter count that is trained."""
        return self.d / self.D


def subspace_finetune(base: Module, task: FruitTask, d: int, said: bool = False,
                      epochs: int = SUBSPACE["epochs"], lr: float = SUBSPACE["lr"],
                      batch_size: int = SUBSPACE["batch_size"], seed: int = 0,
                      keep_model: bool = True) -> SubspaceResult:
    """Fine-tune a copy of ``base`` on the shifted fruit with only d numbers: θ = θ₀ + P z (+ SAID's scales).

    ``seed`` draws P and shuffles the batches. Adam's steps are per coordinate of z, so the default
    learning rate (0.1) is larger than full fine-tuning's: one step of all of z moves θ by ≈ lr·√d.
    """
    model = RandomSubspace(copy.deepcopy(base), d, seed=seed, said=said)
    start = time.perf_counter()
    hist = fit(model, Adam(model, lr=lr), *task.shift_train, epochs=epochs, batch_size=batch_size, seed=seed)
    accuracy = evaluate(model, *task.shift_test)["accuracy"]
    return SubspaceResult(model.d, said, model.D, accuracy, time.perf_counter() - start, hist,
                          model if keep_model else None)


@dataclass
class IntrinsicSweep:
    """Accuracy against the subspace dimension d, with the references that normalise it."""

    dims: list
    accuracy: list                 # shifted-test accuracy at each d
    D: int                         # parameters of the whole model
    full_accuracy: float           # full fine-tuning (every parameter trained)
    chance: float                  # 1 / n_classes
    before: float                  # the base model, untouched: the d = 0 point
    said: bool = False
    hidden: tuple = ()
    seconds: float = 0.0
    runs: list = field(default_factory=list, repr=False)

    def normalized(self, accuracy: float | None = None):
        """(acc − chance) / (full − chance) for one accuracy, or the list over the sweep."""
        scale = self.full_accuracy - self.chance
        if scale <= 0:
            raise ValueError(f"full fine-tuning ({self.full_accuracy:.3f}) is not above chance "
                             f"({self.chance:.3f}): nothing to normalise against")
        if accuracy is None:
            return [(a - self.chance) / scale for a in self.accuracy]
        return (accuracy - self.chance) / scale

    @property
    def d_int90(self) -> float | None:
        return d_int90(self)

    def at(self, d: int) -> dict:
        """The numbers of one swept d."""
        if d not in self.dims:
            raise ValueError(f"d must be one of the swept dims {self.dims}, got {d!r}")
        acc = self.accuracy[self.dims.index(d)]
        return {"d": d, "D": self.D, "accuracy": acc, "normalized": self.normalized(acc),
                "fraction": d / self.D}


def intrinsic_dimension_sweep(base: Module, task: FruitTask, dims=DIMS, said: bool = False, seed: int = 0,
                              full_epochs: int = 30, full_accuracy: float | None = None,
                              progress: bool = False, **subspace_kwargs) -> IntrinsicSweep:
    """:func:`subspace_finetune` at every d of ``dims``, plus full fine-tuning and chance.

    ``full_accuracy``: a full fine-tuning accuracy already measured on this base and task (skips
    that run). Other keywords (``epochs``, ``lr``, ``batch_size``) go to :func:`subspace_finetune`.
    ``progress``: a bar over the dims.
    """
    dims, start = sorted(set(int_list(dims, "dims", "intrinsic_dimension_sweep"))), time.perf_counter()
    runs = [subspace_finetune(base, task, d, said=said, seed=seed, keep_model=False, **subspace_kwargs)
            for d in progress_bar(dims, progress, "intrinsic-dimension sweep")]
    if full_accuracy is None:
        full_accuracy = finetune(base, task, r=None, epochs=full_epochs, seed=seed).accuracy
    before = evaluate(base, *task.shift_test)["accuracy"]
    return IntrinsicSweep(dims, [res.accuracy for res in runs], runs[0].D, float(full_accuracy),
                          1.0 / task.n_classes, before, said, tuple(getattr(base, "hidden", ())),
                          time.perf_counter() - start, runs)


def d_int90(sweep: IntrinsicSweep, level: float = LEVEL) -> float | None:
    """The smallest d whose normalised accuracy reaches ``level``, interpolated on a log-d axis.

    Between the last swept d below the level (d₀, a₀) and the first at or above it (d₁, a₁):
    log d = log d₀ + (level − a₀)/(a₁ − a₀) · (log d₁ − log d₀). The first crossing counts (a sweep
    is noisy, not monotone). Returns ``dims[0]`` when the first d already reaches the level (the
    true value is at most that) and ``None`` when no swept d reaches it (it is above the grid).
    """
    if not isinstance(sweep, IntrinsicSweep):
        raise TypeError(f"d_int90: sweep must be an IntrinsicSweep (intrinsic_dimension_sweep), "
                        f"got {type(sweep).__name__}")
    level = number(level, "level", "d_int90", low=0.0, high=1.0, low_open=True)
    a = sweep.normalized()
    for i, (d, ai) in enumerate(zip(sweep.dims, a, strict=True)):
        if ai >= level:
            if i == 0:
                return float(d)
            d0, a0 = sweep.dims[i - 1], a[i - 1]
            t = (level - a0) / (ai - a0)
            return float(math.exp(math.log(d0) + t * (math.log(d) - math.log(d0))))
    return None


# --------------------------------------------------------------------------- studies


@dataclass
class IntrinsicStudy:
    """Several sweeps that differ in one thing (the width, the pretraining, the method)."""

    what: str                      # "width", "pretraining epochs", "method"
    labels: list                   # one per sweep, e.g. "(64, 64)", "1 epoch", "SAID"
    values: list                   # the varied quantity: hidden widths, epochs, said flags
    sweeps: list

    @property
    def d_int90(self) -> list:
        return [s.d_int90 for s in self.sweeps]

    @property
    def D(self) -> list:
        return [s.D for s in self.sweeps]

    def table(self) -> str:
        """One line per sweep: D, before, full, d_int90 and d_int90 / D."""
        rows = []
        for label, s in zip(self.labels, self.sweeps, strict=True):
            di = s.d_int90
            found = [f"{di:.0f}", f"{di / s.D:.2%}"] if di is not None else [f"> {s.dims[-1]}", ""]
            rows.append([label, f"{s.D:,}", f"{s.before:.1%}", f"{s.full_accuracy:.1%}", *found])
        return text_table([self.what, "D", "before", "full", "d_int90", "d_int90/D"], rows)


def width_study(task: FruitTask, widths=WIDTHS, dims=DIMS, pretrain_epochs: int = 15, seed: int = 0,
                progress: bool = False, **sweep_kwargs) -> IntrinsicStudy:
    """Pretrain an MLP of every width on the source fruit, then sweep d on the shifted fruit.

    Li et al.'s finding: d_int90 hardly moves while D grows. Keywords go to :func:`intrinsic_dimension_sweep`.
    ``progress``: a bar over the widths (and the bars of each pretraining and sweep).
    """
    widths = [tuple(w) if isinstance(w, (list, tuple)) else (w,) for w in widths]
    if not widths:
        raise ValueError("width_study: widths must name at least one hidden-layer width, "
                         "e.g. ((32, 32), (64, 64))")
    sweeps = []
    for w in progress_bar(widths, progress, "widths"):
        base, _ = pretrain(task, hidden=w, epochs=pretrain_epochs, seed=seed, progress=progress)
        sweeps.append(intrinsic_dimension_sweep(base, task, dims, seed=seed, progress=progress,
                                                **sweep_kwargs))
    return IntrinsicStudy("width", [str(w) for w in widths], widths, sweeps)


def pretraining_study(task: FruitTask, levels=PRETRAIN_LEVELS, hidden=(64, 64), dims=DIMS, seed: int = 0,
                      progress: bool = False, **sweep_kwargs) -> IntrinsicStudy:
    """d_int90 after 0 (random initialisation), a few and many epochs of pretraining on the source fruit.

    Each level is normalised by its own full fine-tuning (from that same start). The task is the
    same for every level; from a random init the model knows no fruit at all (a(0) ≈ 0).
    ``progress``: a bar over the levels (and the bars of each pretraining and sweep).
    """
    levels = int_list(levels, "levels (epochs of pretraining)", "pretraining_study", low=0)
    sweeps = []
    for epochs in progress_bar(levels, progress, "pretraining levels"):
        base = (MLP(task.d_in, hidden, task.n_classes, seed=seed) if epochs == 0
                else pretrain(task, hidden=hidden, epochs=epochs, seed=seed, progress=progress)[0])
        sweeps.append(intrinsic_dimension_sweep(base, task, dims, seed=seed, progress=progress,
                                                **sweep_kwargs))
    labels = ["random init" if e == 0 else f"{e} epoch{'s' if e != 1 else ''}" for e in levels]
    return IntrinsicStudy("pretraining", labels, levels, sweeps)


@dataclass
class StudySeeds:
    """One study (widths, or pretraining levels) repeated with several seeds: ``studies[i]`` ran with
    ``seeds[i]`` (the seed sets pretraining, P and the shuffle). Spread is min–max over the seeds."""

    seeds: list
    studies: list

    @property
    def what(self) -> str:
        return self.studies[0].what

    @property
    def labels(self) -> list:
        return self.studies[0].labels

    @property
    def D(self) -> list:
        return self.studies[0].D

    def d_int90_values(self, i: int) -> list:
        """d_int90 of the study's ``i``-th entry in every seed (None where a sweep never reached it)."""
        return [st.d_int90[i] for st in self.studies]

    def d_int90_stats(self) -> list:
        """Per entry: mean, std (population), min and max of d_int90 over the seeds that reached the
        level, and ``n`` (how many did)."""
        out = []
        for i in range(len(self.labels)):
            v = [x for x in self.d_int90_values(i) if x is not None]
            out.append(spread(v) if v else dict(mean=None, n=0))
        return out

    def normalized_stats(self, i: int):
        """``(dims, mean, min, max)`` of the normalised accuracy of entry ``i`` over the seeds."""
        curves = [st.sweeps[i].normalized() for st in self.studies]
        dims = self.studies[0].sweeps[i].dims
        cols = list(zip(*curves, strict=True))
        return dims, [sum(c) / len(c) for c in cols], [min(c) for c in cols], [max(c) for c in cols]

    def table(self) -> str:
        """One line per entry: D, before and full (means), d_int90 as mean [min–max], and mean / D."""
        rows = []
        for i, (label, D, st) in enumerate(zip(self.labels, self.D, self.d_int90_stats(), strict=True)):
            before = sum(s.sweeps[i].before for s in self.studies) / len(self.studies)
            full = sum(s.sweeps[i].full_accuracy for s in self.studies) / len(self.studies)
            if not st["n"]:
                found = ["not reached", ""]
            else:
                some = "" if st["n"] == len(self.seeds) else f" ({st['n']} of {len(self.seeds)} seeds)"
                found = [f"{st['mean']:.0f} [{st['min']:.0f}–{st['max']:.0f}]{some}", f"{st['mean'] / D:.2%}"]
            rows.append([label, f"{D:,}", f"{before:.1%}", f"{full:.1%}", *found])
        n = len(self.seeds)
        return text_table([self.what, "D", f"before (mean of {n})", "full (mean)",
                           "d_int90 mean [min–max]", "mean/D"], rows)


def studies_over_seeds(task: FruitTask, seeds=(0, 1, 2), widths=WIDTHS, levels=PRETRAIN_LEVELS,
                       hidden=(64, 64), pretrain_epochs: int = 15, dims=DIMS, width_dims=DIMS,
                       reuse: dict | None = None, progress: bool = False) -> tuple:
    """:func:`width_study` and :func:`pretraining_study` with every seed of ``seeds``; returns two
    :class:`StudySeeds` (widths, pretraining).

    A sweep both studies need (width ``hidden`` pretrained ``pretrain_epochs`` epochs) is run once per
    seed, over ``dims``. ``reuse``: ``{seed: IntrinsicSweep}`` already measured for that model and
    ``dims`` (e.g. the notebook's main sweep), used instead of running it again. ``width_dims``: the d
    swept for the other widths (their d_int90 only needs the d around the crossing; large d on a wide
    model are the costliest runs).
    """
    seeds = int_list(seeds, "seeds", "studies_over_seeds", low=0)
    widths = [tuple(w) if isinstance(w, (list, tuple)) else (w,) for w in widths]
    levels = int_list(levels, "levels (epochs of pretraining)", "studies_over_seeds", low=0)
    cache = {((tuple(hidden), pretrain_epochs), seed): sw for seed, sw in (reuse or {}).items()}

    def sweep(width, epochs, seed, swept):
        key = ((width, epochs), seed)
        if key not in cache:
            base = (MLP(task.d_in, width, task.n_classes, seed=seed) if epochs == 0
                    else pretrain(task, hidden=width, epochs=epochs, seed=seed)[0])
            cache[key] = intrinsic_dimension_sweep(base, task, swept, seed=seed)
        return cache[key]

    labels = ["random init" if e == 0 else f"{e} epoch{'s' if e != 1 else ''}" for e in levels]
    by_width, by_level = [], []
    for seed in progress_bar(seeds, progress, "seeds"):
        by_level.append(IntrinsicStudy("pretraining", labels, levels,
                                       [sweep(tuple(hidden), e, seed, dims) for e in levels]))
        by_width.append(IntrinsicStudy("width", [str(w) for w in widths], widths,
                                       [sweep(w, pretrain_epochs, seed, width_dims) for w in widths]))
    return StudySeeds(seeds, by_width), StudySeeds(seeds, by_level)


def said_comparison(base: Module, task: FruitTask, dims=DIMS, plain: IntrinsicSweep | None = None,
                    seed: int = 0, progress: bool = False, **sweep_kwargs) -> IntrinsicStudy:
    """The plain random subspace against SAID (one learned scale per parameter tensor), same dims.

    ``plain``: a plain sweep already measured on this base and task (reused, with its full accuracy).
    ``progress``: the bar of each sweep.
    """
    if plain is None:
        plain = intrinsic_dimension_sweep(base, task, dims, seed=seed, progress=progress, **sweep_kwargs)
    said = intrinsic_dimension_sweep(base, task, plain.dims, said=True, seed=seed,
                                     full_accuracy=plain.full_accuracy, progress=progress, **sweep_kwargs)
    return IntrinsicStudy("method", ["random subspace", "SAID"], [False, True], [plain, said])


@dataclass
class LoraComparison:
    """LoRA's trainable count at the smallest rank that reaches the level, against d_int90."""

    ranks: list
    trainable: list
    accuracy: list
    normalized: list               # on the sweep's scale (its chance and full fine-tuning)
    level: float
    r_level: int | None            # the smallest rank reaching the level (None: none did)
    lora_params: int | None        # LoRA's trainable parameters at that rank
    d_int90: float | None
    target_modules: tuple

    @property
    def at_smallest_rank(self) -> bool:
        """True when even the smallest rank reaches the level: LoRA's count is then an upper bound."""
        return self.r_level is not None and self.r_level == self.ranks[0]


def lora_comparison(base: Module, task: FruitTask, sweep: IntrinsicSweep, ranks=(1, 2, 4, 8),
                    target_modules=DEFAULT_TARGETS, level: float = LEVEL, seed: int = 0,
                    progress: bool = False, **finetune_kwargs):
    """:func:`finetune` with LoRA at every rank, normalised like ``sweep``; the smallest rank reaching
    ``level``.

    ``progress``: a bar over the ranks.
    """
    if not isinstance(sweep, IntrinsicSweep):
        raise TypeError(f"lora_comparison: sweep must be an IntrinsicSweep, got {type(sweep).__name__}")
    ranks = sorted(set(int_list(ranks, "ranks", "lora_comparison")))
    d90 = d_int90(sweep, level)                                     # a clear error for a bad level first
    runs = [finetune(base, task, r=r, target_modules=target_modules, seed=seed, **finetune_kwargs)
            for r in progress_bar(ranks, progress, "LoRA ranks")]
    normalized = [sweep.normalized(res.accuracy) for res in runs]
    hit = next((i for i, a in enumerate(normalized) if a >= level), None)
    return LoraComparison(ranks, [res.trainable for res in runs], [res.accuracy for res in runs], normalized,
                          level, None if hit is None else ranks[hit],
                          None if hit is None else runs[hit].trainable, d90, tuple(target_modules))
