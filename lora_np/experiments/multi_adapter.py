"""Several adapters on one base, measured: a second harvest, blends, latency, the variants side by side.

>>> task = make_fruit_task()
>>> base, _ = pretrain(task)
>>> harvest_a = harvest_of(task)                                     # the shifted split, as a Harvest
>>> harvest_b = make_harvest("harvest_b", shift_seed=2024, shift_rank=3, seed=1)    # another lamp
>>> accuracy_table(model, ["harvest_a", "harvest_b"], [harvest_a, harvest_b])
>>> blend_accuracy(model, "harvest_a", "harvest_b", 0.5, {"a": harvest_a.test, "b": harvest_b.test})
>>> inference_latency(model, X[:1])                                  # median seconds per call
>>> runs = compare_variants(base, task)                              # LoRA, rsLoRA, DoRA, VeRA, ...
>>> spreads = compare_variants_over_seeds(base, task, seeds=(0, 1, 2))   # mean and min–max per variant

Every function here only calls the library (:mod:`lora_np.lora`, :mod:`lora_np.train`); the
notebooks ``04_adapters_in_practice`` and ``04b_lora_variants`` show what they measure.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

from .. import backend
from ..data import FruitTask, sample_fruit
from ..lora import (
    LoraConfig,
    active_adapter,
    adapters_disabled,
    add_weighted_adapter,
    delete_adapter,
    list_adapters,
    set_adapter,
)
from ..nn import Module, SoftmaxCrossEntropy
from ..nn.variants import DoRALinear
from ..tables import text_table
from ..train import evaluate, progress_bar
from ..validate import integer, message, number, positive_int
from .finetune import DEFAULT_TARGETS, FinetuneResult, finetune, format_table
from .seeds import spread

# --------------------------------------------------------------------------- a second harvest


@dataclass
class Harvest:
    """One new harvest: a few labelled fruit to train an adapter on, and a test set.

    Every harvest shares the planted shift of :func:`lora_np.data.shift_matrix` (grapes read as
    raisins); ``shift_seed`` draws its other ``shift_rank − 1`` directions, so two seeds are two
    different lamps.
    """

    name: str
    train: tuple
    test: tuple
    shift_seed: int
    shift_rank: int


def make_harvest(name: str, shift_seed: int = 1234, shift_rank: int = 2, n_finetune: int = 500,
                 n_test: int = 2000, seed: int = 0, dtype=None) -> Harvest:
    """A harvest under the lamp ``shift_seed``, on the current backend.

    With the defaults (and the same ``seed``) it is exactly the ``shift_train`` / ``shift_test``
    of :func:`lora_np.data.make_fruit_task`: the same sample seeds ``10·seed + 3`` and ``+ 4``.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(message("name", "a non-empty string", name, "make_harvest"))
    shift_seed = integer(shift_seed, "shift_seed", "make_harvest")
    seed = integer(seed, "seed", "make_harvest")

    def split(n, s):
        X, y = sample_fruit(n, "shifted", shift_rank, seed=seed * 10 + s, shift_seed=shift_seed)
        return backend.asarray(X, dtype=dtype), backend.asarray(y)

    return Harvest(name, split(n_finetune, 3), split(n_test, 4), shift_seed, shift_rank)


def harvest_of(task: FruitTask, name: str = "harvest_a") -> Harvest:
    """The shifted splits of a fruit task, as a :class:`Harvest` (its lamp is the default one)."""
    return Harvest(name, task.shift_train, task.shift_test, 1234, task.shift_rank)


# --------------------------------------------------------------------------- several adapters, measured


def accuracy_table(model: Module, adapters, harvests) -> dict:
    """``{row: {harvest name: test accuracy}}`` with one row for the base (adapters disabled) and
    one per adapter. The adapter active before the call is active again afterwards.
    """
    adapters, harvests = list(adapters), list(harvests)
    if not adapters or not all(a in list_adapters(model) for a in adapters):
        raise ValueError(f"accuracy_table: adapters must name adapters of the model {list_adapters(model)}, "
                         f"got {adapters!r}")
    if not harvests or not all(isinstance(h, Harvest) for h in harvests):
        raise ValueError("accuracy_table: harvests must be a non-empty list of Harvest (make_harvest)")
    before = active_adapter(model)

    def row():
        return {h.name: evaluate(model, *h.test)["accuracy"] for h in harvests}

    with adapters_disabled(model):
        table = {"base": row()}
    for name in adapters:
        set_adapter(model, name)
        table[name] = row()
    if before is not None:
        set_adapter(model, before)
    return table


def format_accuracy_table(table: dict) -> str:
    """The table of :func:`accuracy_table`, one row per model, one column per harvest."""
    cols = list(next(iter(table.values())))
    rows = [[name] + [f"{accs[c]:.1%}" for c in cols] for name, accs in table.items()]
    return text_table(["model"] + cols, rows)


def blend_adapters(model: Module, adapter_a: str, adapter_b: str, w: float, name: str = "blend",
                   combination: str = "linear", rank: int | None = None) -> None:
    """Make ``name`` the adapter w·ΔW_a + (1 − w)·ΔW_b and activate it (an older ``name`` is replaced).

    ``combination="svd"`` cuts the blend to ``rank`` (see :func:`lora_np.lora.add_weighted_adapter`).
    """
    w = number(w, "w", "blend_adapters", low=0.0, high=1.0)
    if name in (adapter_a, adapter_b):
        raise ValueError(f"blend_adapters: name={name!r} would replace one of the adapters being blended")
    if name in list_adapters(model):
        delete_adapter(model, name)
    add_weighted_adapter(model, [adapter_a, adapter_b], [w, 1.0 - w], name,
                         combination=combination, rank=rank)
    set_adapter(model, name)


def blend_accuracy(model: Module, adapter_a: str, adapter_b: str, w: float, datasets: dict,
                   name: str = "blend", combination: str = "linear", rank: int | None = None) -> dict:
    """Build the blend (:func:`blend_adapters`, left active) and measure it on every data set.

    ``datasets``: ``{label: (X, y)}``. Returns ``{"w": w, label: accuracy, ...}``.
    """
    blend_adapters(model, adapter_a, adapter_b, w, name, combination, rank)
    return {"w": float(w), **{k: evaluate(model, *data)["accuracy"] for k, data in datasets.items()}}


def inference_latency(model: Module, x, repeats: int = 500, warmup: int = 20) -> float:
    """The median wall-clock seconds of one forward pass on ``x`` (time.perf_counter).

    Every call ends by reading one output number back to the host, which waits for a GPU to
    finish; that costs the same for every model, so comparisons stay fair. The median ignores
    the occasional slow call (a garbage collection, another process).
    """
    repeats = positive_int(repeats, "repeats", "inference_latency")
    warmup = integer(warmup, "warmup", "inference_latency", low=0)
    if not backend.is_array(x):
        raise TypeError("inference_latency: x must be an array (use lora_np.backend.asarray)")
    was_training = model.training
    model.eval()
    times = []
    try:
        for i in range(warmup + repeats):
            start = time.perf_counter()
            y = model(x)                                                   # (N, C)
            backend.to_float(y.reshape(-1)[0])                             # wait for the device
            if i >= warmup:
                times.append(time.perf_counter() - start)
    finally:
        model.train(was_training)
        model.clear_caches()
    return statistics.median(times)


# --------------------------------------------------------------------------- the variants side by side


@dataclass(frozen=True)
class VariantRun:
    """One row of the variants table: a LoRA flavour and its training settings.

    ``alpha`` defaults to 2r (as :func:`~lora_np.experiments.finetune` does); ``lr`` is the
    learning rate (of A and everything else with LoRA+, whose B trains at ``lr · loraplus_ratio``).
    """

    label: str
    variant: str = "lora"
    r: int = 4
    alpha: float | None = None
    use_rslora: bool = False
    dora_exact_grad: bool = True
    lr: float = 3e-3
    loraplus_ratio: float | None = None

    def config(self, target_modules=DEFAULT_TARGETS, seed: int = 0) -> LoraConfig:
        return LoraConfig(r=self.r, lora_alpha=2.0 * self.r if self.alpha is None else self.alpha,
                          target_modules=list(target_modules), use_rslora=self.use_rslora,
                          variant=self.variant, dora_exact_grad=self.dora_exact_grad, seed=seed)


VARIANT_RUNS = (
    VariantRun("LoRA"),
    VariantRun("rsLoRA", use_rslora=True),
    VariantRun("DoRA", variant="dora"),
    VariantRun("DoRA (paper grad)", variant="dora", dora_exact_grad=False),
    VariantRun("VeRA r=16", variant="vera", r=16, lr=1e-2),
    VariantRun("PiSSA", variant="pissa"),
    VariantRun("LoRA+", lr=1e-3, loraplus_ratio=16.0),
)


def finetune_variant(base: Module, task: FruitTask, run: VariantRun, target_modules=DEFAULT_TARGETS,
                     epochs: int = 30, batch_size: int = 32, seed: int = 0) -> FinetuneResult:
    """Fine-tune a copy of ``base`` on the shifted fruit with one :class:`VariantRun`.

    :func:`lora_np.experiments.finetune` with every knob of the run, labelled with the run's name.
    """
    if not isinstance(run, VariantRun):
        raise TypeError(f"finetune_variant: run must be a VariantRun, got {type(run).__name__}")
    res = finetune(base, task, r=run.r, alpha=run.alpha, target_modules=target_modules, epochs=epochs,
                   lr=run.lr, batch_size=batch_size, use_rslora=run.use_rslora, variant=run.variant,
                   loraplus_ratio=run.loraplus_ratio, dora_exact_grad=run.dora_exact_grad, seed=seed)
    res.label = run.label
    return res


def compare_variants(base: Module, task: FruitTask, runs=VARIANT_RUNS, progress: bool = False,
                     **kwargs) -> list:
    """:func:`finetune_variant` for every run (default: :data:`VARIANT_RUNS`), in order.

    Keyword arguments (``epochs``, ``seed``, ``target_modules``, ...) go to every run.
    ``progress``: a bar over the runs.
    """
    runs = tuple(runs)
    if not runs:
        raise ValueError("compare_variants: runs must name at least one VariantRun")
    return [finetune_variant(base, task, run, **kwargs) for run in progress_bar(runs, progress, "variants")]


@dataclass
class VariantSpread:
    """One variant fine-tuned once per seed: the per-seed results and their spread.

    ``results[i]`` is the :class:`FinetuneResult` of ``seeds[i]`` (the seed of the adapter's
    initialisation and of the batch order; the base model is the same for every seed).
    The spread reported is min–max over the seeds (with 3 seeds a standard deviation says little).
    """

    label: str
    seeds: tuple
    results: list

    @property
    def trainable(self) -> int:
        return self.results[0].trainable

    @property
    def r(self) -> int:
        return self.results[0].r

    def values(self, metric: str) -> list:
        """``metric`` ("accuracy", "grape_recall" or "seconds") of every seed, in order."""
        if metric not in ("accuracy", "grape_recall", "seconds"):
            raise ValueError(f"VariantSpread.values: metric must be 'accuracy', 'grape_recall' or 'seconds', "
                             f"got {metric!r}")
        return [getattr(res, metric) for res in self.results]

    def mean(self, metric: str) -> float:
        return spread(self.values(metric))["mean"]

    def low(self, metric: str) -> float:
        return min(self.values(metric))

    def high(self, metric: str) -> float:
        return max(self.values(metric))


def compare_variants_over_seeds(base: Module, task: FruitTask, seeds=(0, 1, 2), runs=VARIANT_RUNS,
                                progress: bool = False, **kwargs) -> list:
    """:func:`compare_variants` once per seed; one :class:`VariantSpread` per run, in the runs' order.

    ``seeds``: at least one distinct integer (use 3 or more to see a spread). Other keyword
    arguments (``epochs``, ``target_modules``, ...) go to every run.
    """
    seeds = tuple(seeds) if isinstance(seeds, (list, tuple, range)) else seeds
    if not isinstance(seeds, tuple) or not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(message("seeds", "a non-empty list of distinct integers", seeds,
                                 "compare_variants_over_seeds"))
    seeds = tuple(integer(s, "seeds", "compare_variants_over_seeds") for s in seeds)
    if "seed" in kwargs:
        raise ValueError("compare_variants_over_seeds: pass seeds=(...), not seed=")
    per_seed = [compare_variants(base, task, runs, seed=s, **kwargs)
                for s in progress_bar(seeds, progress, "seeds")]
    return [VariantSpread(results[0].label, seeds, list(results)) for results in zip(*per_seed, strict=True)]


def format_variant_spread(spreads) -> str:
    """One row per variant: trainable parameters, then grape recall and accuracy as
    ``mean [min–max]`` over the seeds, and the mean training time."""
    def cell(sp, metric):
        return f"{sp.mean(metric):.1%} [{sp.low(metric):.1%}–{sp.high(metric):.1%}]"

    rows = [[sp.label, f"{sp.trainable:,}", cell(sp, "grape_recall"), cell(sp, "accuracy"),
             f"{sp.mean('seconds'):.2f}s"] for sp in spreads]
    n = len(spreads[0].seeds) if spreads else 0
    return text_table(("variant", "trainable", f"grape recall, mean [min–max of {n}]",
                       f"accuracy, mean [min–max of {n}]", "time"), rows)


def format_variant_table(results) -> str:
    """One row per variant, with the columns of :func:`~lora_np.experiments.finetune.format_table`:
    trainable parameters, their share of the model, optimizer state, grape recall, accuracy, time."""
    return format_table(results, label="variant")


def _cosine(a, b) -> float:
    xp = backend.get_array_module(a)
    return backend.to_float((a * b).sum() / (xp.linalg.norm(a) * xp.linalg.norm(b)))


def dora_gradient_gap(model: Module, X, y, layer: str = "fc1") -> dict:
    """DoRA's exact gradient against the paper's (‖V‖ held constant) on one layer, one batch.

    Runs the model forward and backward twice on ``(X, y)``, switching the layer's
    ``exact_grad``. Returns ``{tensor: {"rel_diff": ‖g_paper − g_exact‖ / ‖g_exact‖,
    "cosine": cos(g_paper, g_exact)}}`` for ``lora_A``, ``lora_B`` and ``lora_magnitude``.
    The model's gradients are cleared afterwards and its ``exact_grad`` setting is restored.
    """
    dora = model.get_submodule(layer)
    if not isinstance(dora, DoRALinear):
        raise TypeError(f"dora_gradient_gap: {layer!r} must be a DoRA layer, got {type(dora).__name__}")
    was, grads = dora.exact_grad, {}
    criterion = SoftmaxCrossEntropy()
    try:
        for exact in (True, False):
            dora.exact_grad = exact
            model.zero_grad()
            criterion(model(X), y)
            model.backward(criterion.backward())
            grads[exact] = {n: p.grad for n, p in dora.adapter_parameters().items()}
    finally:
        dora.exact_grad = was
        model.zero_grad()
        model.clear_caches()
    out = {}
    for n, g in grads[True].items():
        xp = backend.get_array_module(g)
        diff = backend.to_float(xp.linalg.norm(grads[False][n] - g) / xp.linalg.norm(g))
        out[n] = {"rel_diff": diff, "cosine": _cosine(grads[False][n], g)}
    return out
