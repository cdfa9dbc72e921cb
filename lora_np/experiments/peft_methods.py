"""Adapters, LoRA and prefix tuning on the same ViT and the same shifted fruit images, measured.

>>> task = make_image_task()
>>> base, _ = pretrain_vit(task)
>>> rows = compare_peft_methods(base, task)           # base, LoRA (unmerged, merged), adapters, prefix, full
>>> print(format_peft_table(rows))

Three ways to adapt a frozen Transformer with few parameters:

* **LoRA** on W_q and W_v: y = x W0ᵀ + s (x Aᵀ) Bᵀ. Trainable 2·r·d per adapted d×d matrix.
  After training, ΔW = s B A merges into W0: the model is the base model again, at no extra cost.
* **Adapters** (Houlsby et al.): h ← h + W_up act(W_down h) after every attention and feed-forward
  sublayer. Trainable 2md + m + d per adapter. Nothing merges: every input travels two extra
  matrix products per adapter, at inference too.
* **Prefix tuning** (Li & Liang): p learned key/value pairs in front of every attention layer's keys
  and values. Trainable 2·p·d per layer. The attention scores T·(T + p) pairs instead of T².

The classifier head stays frozen in every method (as PEFT does by default and as LoRA does in
:func:`lora_np.experiments.finetune`): only the method's own parameters are trained, so the three
are compared on what they add. ``train_head=True`` unfreezes the head for every method alike.

Latency is measured (:func:`lora_np.experiments.multi_adapter.inference_latency`, one image per call by
default); at this size it is mostly Python's cost per operation, so it counts the extra *steps* on
the forward path more than their arithmetic. ``matmuls`` and ``macs`` count the work exactly.
"""
from __future__ import annotations

import copy
import statistics
import time
from dataclasses import dataclass

from ..lora import LoraConfig, inject_lora, lora_layers, merge_and_unload, trainable_report
from ..models import ViTClassifier
from ..nn import Linear, Module
from ..nn.attention import MultiHeadAttention
from ..nn.bottleneck import PLACES, BottleneckAdapter, bottleneck_adapters, insert_adapter_layers
from ..nn.lora import LoRALayer
from ..nn.prefix import PrefixAttention, add_prefix_tuning, prefix_layers
from ..optim import Adam
from ..tables import text_table
from ..train import History, fit, progress_bar
from ..validate import choice, int_list, message, positive_int, positive_number
from .finetune import grape_report
from .multi_adapter import inference_latency
from .seeds import spread

METHODS = ("base", "lora", "lora_merged", "adapters", "prefix", "full")
LABELS = {"base": "base model", "lora": "LoRA (unmerged)", "lora_merged": "LoRA (merged)",
          "adapters": "adapters", "prefix": "prefix", "full": "full fine-tuning"}
# Prefix parameters reach the output only through a softmax share, so they want larger steps.
DEFAULT_LR = {"lora": 3e-3, "adapters": 3e-3, "prefix": 3e-2, "full": 1e-3}
TRAINED = ("lora", "adapters", "prefix", "full")


@dataclass
class PeftCost:
    """What a method costs: trainable parameters and the work and time of one forward pass.

    ``latency``: median seconds per forward call; ``keys_per_query``: how many keys each query
    scores (T, or T + p with a prefix); ``matmuls``: matrix products per forward pass;
    ``macs``: multiply-adds of those products for one image.
    """

    method: str
    label: str
    trainable: int
    total: int
    percent: float
    latency: float
    keys_per_query: int
    matmuls: int
    macs: int


@dataclass
class PeftRow(PeftCost):
    """One row of :func:`compare_peft_methods`: the costs, and the result on the shifted test images."""

    accuracy: float
    grape_recall: float
    train_seconds: float
    history: History | None
    model: Module


# --------------------------------------------------------------------------- building the models


def _check_base(base) -> None:
    if not isinstance(base, ViTClassifier):
        raise TypeError(f"base must be a ViTClassifier (pretrain_vit), got {type(base).__name__}")
    peft = (LoRALayer, BottleneckAdapter, PrefixAttention)
    added = [n for n, m in base.named_modules() if isinstance(m, peft)]
    if added:
        raise ValueError(f"base must be the plain pretrained model, but it already has PEFT layers at "
                         f"{added[:3]}")


def make_peft_model(base: ViTClassifier, method: str, size: int = 4, lora_targets=("q", "v"),
                    adapter_where=PLACES, train_head: bool = False, seed: int = 0) -> Module:
    """A fresh copy of ``base`` prepared for ``method`` (``base`` itself is never changed).

    ``size`` is the method's knob: LoRA's rank r (alpha = 2r), the adapters' bottleneck m, the prefix
    length p. "lora_merged" is LoRA merged and unloaded: a plain model again. "full" trains everything,
    "base" nothing.
    """
    method = choice(method, "method", METHODS, "make_peft_model")
    _check_base(base)
    if method in ("lora", "lora_merged"):
        size = positive_int(size, "size (LoRA's rank r)", "make_peft_model")
    model = copy.deepcopy(base)
    if method in ("lora", "lora_merged"):
        config = LoraConfig(r=size, lora_alpha=2.0 * size, target_modules=list(lora_targets), seed=seed)
        inject_lora(model, config)
        if method == "lora_merged":
            merge_and_unload(model)
    elif method == "adapters":
        insert_adapter_layers(model, bottleneck=size, where=adapter_where, seed=seed)
    elif method == "prefix":
        add_prefix_tuning(model, n_prefix=size, seed=seed)
    elif method == "full":
        model.unfreeze()
    else:
        model.freeze()
    if train_head and method not in ("full", "base"):
        model.head.unfreeze()
    return model


# --------------------------------------------------------------------------- counting the work


def n_tokens(model: ViTClassifier) -> int:
    """T: the tokens every attention layer sees (the patches, plus the class token if any)."""
    return model.n_patches + (model.config.pooling == "cls")


def forward_matmuls(model: Module) -> int:
    """Matrix products in one forward pass: 1 per Linear, 3 per unmerged LoRA layer (W0, A, B),
    1 per merged one, 2 per attention (Q K'ᵀ and P V'). Adapters add their two Linears.
    """
    count = 0
    for _, m in model.named_modules():
        if isinstance(m, LoRALayer):
            count += 1 if m.merged else 3
        elif type(m) is Linear:
            count += 1
        elif isinstance(m, MultiHeadAttention):
            count += 2
    return count


def forward_macs(model: ViTClassifier) -> int:
    """Multiply-adds of the matrix products of one image's forward pass (element-wise work left out).

    Base ViT, with T tokens, N patches of k = p²C pixels, L blocks, width d, MLP width h, C classes:
        N·k·d  +  L·(4·T·d² + 2·T·(T + p)·d + 2·T·d·h)  +  d·C
    (p = 0 without a prefix). Unmerged LoRA adds T·r·(d_in + d_out) per adapted layer, an adapter
    T·2·m·d (both its products). A merged model costs exactly the base model's.
    """
    c = model.config
    T, d, h = n_tokens(model), c.d_model, c.mlp_ratio * c.d_model
    k = c.patch_size ** 2 * c.channels
    p = {id(m.base_layer): m.n_prefix for _, m in prefix_layers(model) if m.enabled}
    macs = model.n_patches * k * d + d * model.n_classes
    for _, m in model.named_modules():
        if isinstance(m, MultiHeadAttention):
            macs += 4 * T * d * d + 2 * T * (T + p.get(id(m), 0)) * d
    macs += c.n_layers * 2 * T * d * h
    for _, layer in lora_layers(model):
        if not layer.merged:
            macs += T * layer.r * (layer.d_in + layer.d_out)
    for _, a in bottleneck_adapters(model):
        macs += T * 2 * a.bottleneck * a.d_model
    return macs


def keys_per_query(model: ViTClassifier) -> int:
    """How many keys each query scores: T, plus the prefix length if the model has one."""
    return n_tokens(model) + max([m.n_prefix for _, m in prefix_layers(model) if m.enabled] + [0])


def measure_latencies(models: dict, x, repeats: int = 300, rounds: int = 3, warmup: int = 10) -> dict:
    """``{name: seconds}``: the median latency of each model on ``x``, measured in interleaved rounds
    (every model once per round, ``repeats / rounds`` calls each), so that a slow spell of the
    machine hits every model alike. Each round's median comes from :func:`inference_latency`;
    the result is the median over rounds.
    """
    repeats = positive_int(repeats, "repeats", "measure_latencies")
    rounds = positive_int(rounds, "rounds", "measure_latencies")
    if not models:
        raise ValueError("measure_latencies: models is empty")
    per = max(1, repeats // rounds)
    times = {name: [] for name in models}
    for _ in range(rounds):
        for name, model in models.items():
            times[name].append(inference_latency(model, x, repeats=per, warmup=warmup))
    return {name: statistics.median(t) for name, t in times.items()}


def _cost(method, model, latency, trained_as=None) -> dict:
    """The PeftCost fields of ``model``; its trainable count is that of ``trained_as`` when given
    (a merged LoRA model trains nothing itself: it reports the adapter that was merged into it)."""
    rep = trainable_report(model if trained_as is None else trained_as)
    return dict(method=method, label=LABELS[method], trainable=rep.trainable, total=rep.total,
                percent=rep.percent, latency=latency, keys_per_query=keys_per_query(model),
                matmuls=forward_matmuls(model), macs=forward_macs(model))


def peft_costs(base: ViTClassifier, size: int, x, lora_targets=("q", "v"), adapter_where=PLACES,
               repeats: int = 150, seed: int = 0) -> list:
    """The costs of every method at one ``size`` (r = m = p), without training: a :class:`PeftCost` each
    for the base model, LoRA unmerged and merged, adapters and prefix. Latency is measured on ``x``.
    """
    _check_base(base)
    methods = ("base", "lora", "adapters", "prefix")
    models = {m: make_peft_model(base, m, size, lora_targets, adapter_where, seed=seed) for m in methods}
    models["lora_merged"] = merge_and_unload(copy.deepcopy(models["lora"]))
    order = ("base", "lora", "lora_merged", "adapters", "prefix")
    lat = measure_latencies({m: models[m] for m in order}, x, repeats=repeats)
    return [PeftCost(**_cost(m, models[m], lat[m], trained_as=models["lora"] if m == "lora_merged" else None))
            for m in order]


# --------------------------------------------------------------------------- the comparison


def _learning_rates(lr) -> dict:
    """None: DEFAULT_LR. A number: that rate for the PEFT methods, a third of it for full fine-tuning
    (as :func:`lora_np.experiments.vit.table5` does). A dict overrides the defaults per method.
    """
    where = "compare_peft_methods"
    if lr is None:
        return dict(DEFAULT_LR)
    if isinstance(lr, dict):
        if not set(lr) <= set(TRAINED):
            expected = "None, a positive number or a dict {method: positive number}"
            raise ValueError(message("lr", f"{expected} of methods in {TRAINED}", lr, where))
        return {**DEFAULT_LR, **{k: positive_number(v, f"lr[{k!r}]", where) for k, v in lr.items()}}
    lr = positive_number(lr, "lr", where)
    return {"lora": lr, "adapters": lr, "prefix": lr, "full": lr / 3}


def _train(model, task, epochs, lr, batch_size, seed):
    start = time.perf_counter()
    hist = fit(model, Adam(model, lr=lr), *task.shift_train, epochs=epochs, batch_size=batch_size, seed=seed)
    return hist, time.perf_counter() - start


def compare_peft_methods(base_vit: ViTClassifier, task, lora_r: int = 4, lora_targets=("q", "v"),
                         bottleneck: int = 4, adapter_where=PLACES, n_prefix: int = 8, epochs: int = 10,
                         lr=None, batch_size: int = 32, include_full: bool = True, train_head: bool = False,
                         latency_repeats: int = 300, latency_batch: int = 1, seed: int = 0,
                         progress: bool = False) -> list:
    """Train LoRA, adapters and prefix tuning (and full fine-tuning) on the shifted images; measure each.

    Every method starts from a copy of ``base_vit`` and trains on ``task.shift_train`` with Adam for
    the same ``epochs`` and ``batch_size`` and the same shuffling ``seed``; ``lr`` as in
    :data:`DEFAULT_LR` (see :func:`_learning_rates` for a number or a dict). Returns one
    :class:`PeftRow` per model, in the order base model, LoRA (unmerged), LoRA (merged), adapters,
    prefix, full fine-tuning: accuracy and grape recall on ``task.shift_test``, trainable parameters,
    and the latency of a forward pass on ``latency_batch`` test images (``latency_repeats`` calls in all).
    ``progress``: a bar over the methods trained.
    """
    _check_base(base_vit)
    latency_batch = positive_int(latency_batch, "latency_batch", "compare_peft_methods")
    lrs = _learning_rates(lr)
    sizes = {"lora": lora_r, "adapters": bottleneck, "prefix": n_prefix, "full": 0}
    kw = dict(lora_targets=lora_targets, adapter_where=adapter_where, train_head=train_head, seed=seed)
    models = {"base": make_peft_model(base_vit, "base")}
    trained = {}
    methods = ("lora", "adapters", "prefix") + (("full",) if include_full else ())
    for method in progress_bar(methods, progress, "PEFT methods"):
        models[method] = make_peft_model(base_vit, method, sizes[method], **kw)
        trained[method] = _train(models[method], task, epochs, lrs[method], batch_size, seed)
        if method == "lora":                              # the same trained adapter, merged into W0
            models["lora_merged"] = merge_and_unload(copy.deepcopy(models["lora"]))
            trained["lora_merged"] = trained["lora"]
    order = [m for m in METHODS if m in models]
    x = task.shift_test[0][:latency_batch]                                    # (b, H, W, C)
    latency = measure_latencies({m: models[m] for m in order}, x, repeats=latency_repeats)
    rows = []
    for m in order:
        fruit = grape_report(models[m], task.shift_test)
        hist, seconds = trained.get(m, (None, 0.0))
        cost = _cost(m, models[m], latency[m], trained_as=models["lora"] if m == "lora_merged" else None)
        rows.append(PeftRow(**cost, accuracy=fruit["accuracy"], grape_recall=fruit["grape_recall"],
                            train_seconds=seconds, history=hist, model=models[m]))
    return rows


@dataclass
class PeftSeeds:
    """:func:`compare_peft_methods` once per training seed (same base model, same data).

    ``runs[i]`` holds the rows of ``seeds[i]``. The seed sets each method's initialisation (LoRA's A,
    the adapters' W_down, the prefix) and the order of the batches. Latency does not depend on the
    seed: it is measured once, with the first seed (``rows``); the other runs measure it only briefly.
    """

    seeds: list
    runs: list

    @property
    def rows(self) -> list:
        """The first seed's rows, with the full latency measurement."""
        return self.runs[0]

    @property
    def methods(self) -> list:
        return [r.method for r in self.rows]

    def values(self, method: str, field: str = "accuracy") -> list:
        """``field`` of ``method`` in every seed, in the order of ``seeds``."""
        method = choice(method, "method", tuple(self.methods), "PeftSeeds.values")
        return [next(getattr(r, field) for r in rows if r.method == method) for rows in self.runs]

    def stats(self, method: str, field: str = "accuracy") -> dict:
        """mean, std (population), min and max of ``field`` over the seeds."""
        v = self.values(method, field)
        return spread(v)

    def table(self) -> str:
        """One line per model: trainable count, accuracy and grape recall as mean [min–max] over the seeds."""
        def cell(method, field):
            st = self.stats(method, field)
            return f"{st['mean']:.1%} [{st['min']:.1%}–{st['max']:.1%}]"
        lines = [[r.label, f"{r.trainable:,}", f"{r.percent:.2f}%", cell(r.method, "accuracy"),
                  cell(r.method, "grape_recall")] for r in self.rows]
        n = len(self.seeds)
        return text_table(("method", "trainable", "% model", f"accuracy, mean [min–max] of {n} seeds",
                           "grape recall, mean [min–max]"), lines)


def compare_peft_seeds(base_vit: ViTClassifier, task, seeds=(0, 1, 2), latency_repeats: int = 300,
                       **kwargs) -> PeftSeeds:
    """:func:`compare_peft_methods` for every seed in ``seeds`` (at least one), the same keywords each
    time; the latency is measured with ``latency_repeats`` calls for the first seed only.
    """
    seeds = int_list(seeds, "seeds", "compare_peft_seeds", low=0)
    if not seeds:
        raise ValueError("compare_peft_seeds: seeds must name at least one seed, e.g. (0, 1, 2)")
    runs = [compare_peft_methods(base_vit, task, seed=seed, latency_repeats=latency_repeats if i == 0 else 3,
                                 **kwargs) for i, seed in enumerate(seeds)]
    return PeftSeeds(seeds, runs)


def format_peft_table(rows) -> str:
    """One row per model: trainable parameters, share of the model, grape recall and accuracy (in the
    order of :func:`~lora_np.experiments.finetune.format_table`), batch-1 latency (and against the base
    model's), keys per query, matrix products, multiply-adds.
    """
    rows = list(rows)
    if not rows:
        raise ValueError("format_peft_table: rows is empty")
    ref = next((r.latency for r in rows if r.method == "base"), rows[0].latency)
    header = ("method", "trainable", "% model", "grape recall", "accuracy", "latency", "vs base",
              "keys/query", "matmuls", "MACs")
    lines = [[r.label, f"{r.trainable:,}", f"{r.percent:.2f}%",
              *((f"{r.grape_recall:.1%}", f"{r.accuracy:.1%}") if hasattr(r, "accuracy") else ("", "")),
              f"{1e3 * r.latency:.3f} ms", f"{r.latency / ref:.2f}x", r.keys_per_query, r.matmuls,
              f"{r.macs:,}"] for r in rows]
    return text_table(header, lines)


def peft_param_count(d_model: int, n_layers: int, method: str, size: int, n_lora_targets: int = 2,
                     n_adapter_places: int = 2) -> int:
    """Trainable parameters by formula, for a Transformer of width d with L blocks (d×d projections):
    LoRA 2·r·d per adapted matrix, an adapter 2·m·d + m + d, a prefix 2·p·d per attention layer.
    """
    d, L, k = d_model, n_layers, size
    formulas = {"lora": L * n_lora_targets * 2 * k * d, "lora_merged": L * n_lora_targets * 2 * k * d,
                "adapters": L * n_adapter_places * (2 * k * d + k + d), "prefix": L * 2 * k * d}
    return formulas[choice(method, "method", tuple(formulas), "peft_param_count")]
