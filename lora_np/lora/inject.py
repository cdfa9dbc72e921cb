"""What an adapter is made of: its config, the layers it targets, building and merging them.

``LoraConfig`` holds PEFT's knobs; :func:`build_lora_layers` makes one LoRA layer per targeted
layer (with :func:`lora_np.nn.make_lora_layer`); :func:`merge_lora` / :func:`unmerge_lora` fold
them into W0 and back. Installing them in a model is :mod:`lora_np.lora.manager`'s job
(``inject_lora``, ``add_adapter``).

A pattern in ``target_modules`` matches a Linear (or GPT-2's Conv1D) layer whose dotted name
equals it, ends with ``"." + pattern`` (PEFT's rule: ``"q"`` matches ``blocks.0.attn.q``), or matches it as a
shell-style glob (``"fc*"``). ``None`` adapts every Linear layer; Embedding layers are adapted
when named. Every parameter that is not a LoRA matrix is frozen.
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from .. import validate
from ..nn import (
    Conv1D,
    Embedding,
    Linear,
    LoRAConv1D,
    LoRAEmbedding,
    LoRALayer,
    Module,
    VeRAShared,
    as_rng,
    make_lora_layer,
)
from ..nn.lora import INITS
from ..nn.variants import VARIANTS

BIASES = ("none", "lora_only")
LINEAR_TYPES = (Linear, Conv1D)        # linear maps (Conv1D: GPT-2's, weight stored transposed)


@dataclass
class LoraConfig:
    """The knobs of a LoRA adapter, under PEFT's names.

    r: the rank of ΔW = s·B·A.  lora_alpha: the numerator of the scale s = alpha/r (alpha/√r with
    use_rslora).  target_modules: patterns naming the Linear layers to adapt (None: all).
    lora_dropout: dropout on the LoRA path only.  init_lora_weights: "kaiming" (loralib) or
    "gaussian" (std 1/r) for A; B always starts at zero.  seed: for A's initialisation.
    variant: plain LoRA or one of its variants — DoRA (a learned magnitude per output row), VeRA
    (frozen shared random A and B, trainable scaling vectors), PiSSA (A and B start at W0's
    principal singular directions). Embeddings are adapted with plain LoRA whatever the variant.
    bias: PEFT's option. "none" (b0 stays frozen) or "lora_only" (every adapted Linear trains its own
    copy of b0, saved with the adapter). PEFT's "all" (train every bias of the model in place) is
    refused: it would change the shared base model, so disabling the adapter would no longer give it.
    Every field is checked when the config is made.
    """

    r: int = 8
    lora_alpha: float = 8.0
    target_modules: list | tuple | str | None = None
    lora_dropout: float = 0.0
    init_lora_weights: str = "kaiming"
    use_rslora: bool = False
    seed: int = 0
    variant: str = "lora"              # "lora", "dora", "vera" or "pissa" (lora_np.nn.variants)
    dora_exact_grad: bool = True       # DoRA: the exact gradient, or the paper's (norm held constant)
    bias: str = "none"                 # "none" or "lora_only"

    def __post_init__(self):
        where = "LoraConfig"
        self.r = validate.positive_int(self.r, "r", where)
        self.lora_alpha = validate.positive_number(self.lora_alpha, "lora_alpha", where)
        self.lora_dropout = validate.fraction(self.lora_dropout, "lora_dropout", where)
        validate.choice(self.init_lora_weights, "init_lora_weights", INITS, where)
        validate.boolean(self.use_rslora, "use_rslora", where)
        self.seed = validate.integer(self.seed, "seed", where, low=0)
        validate.choice(self.variant, "variant", VARIANTS, where)
        validate.boolean(self.dora_exact_grad, "dora_exact_grad", where)
        if self.bias == "all":
            raise ValueError(f"{where}: bias='all' is not supported: it trains every bias of the model in "
                             "place, so the shared base model changes and disabling the adapter no longer "
                             "gives it back; use bias='lora_only' (each adapted layer trains its own "
                             "copy of b0)")
        validate.choice(self.bias, "bias", BIASES, where)


def _matches(name: str, pattern: str) -> bool:
    return name == pattern or name.endswith("." + pattern) or fnmatch.fnmatchcase(name, pattern)


def find_target_layers(model: Module, target_modules=None) -> list[str]:
    """Dotted names of the layers the patterns select, in model order.

    Linear and Embedding layers can be adapted; ``None`` selects every Linear layer (embeddings
    are adapted only when named). Raises ValueError naming any pattern that matches nothing.
    """
    linears = [n for n, m in model.named_modules() if type(m) in LINEAR_TYPES]
    if target_modules is None:
        return linears
    embeddings = [n for n, m in model.named_modules() if type(m) is Embedding]
    candidates = [n for n, m in model.named_modules() if type(m) in (*LINEAR_TYPES, Embedding)]
    patterns = [target_modules] if isinstance(target_modules, str) else list(target_modules)
    if not patterns or not all(isinstance(p, str) and p for p in patterns):
        raise ValueError(validate.message("target_modules", "None or a list of non-empty strings",
                                          target_modules))
    for p in patterns:
        if not any(_matches(n, p) for n in candidates):
            raise ValueError(f"target_modules: pattern {p!r} matches no Linear layer (nor Embedding); "
                             f"the Linear layers are {linears}"
                             + (f", the Embedding layers {embeddings}" if embeddings else ""))
    return [n for n in candidates if any(_matches(n, p) for p in patterns)]


def build_lora_layers(model: Module, config: LoraConfig, bases: dict | None = None) -> dict:
    """Create (but do not install) one LoRA layer per targeted layer: ``{path: layer}``.

    ``bases`` maps paths to the original layers when the model currently shows other adapters there.
    """
    bases = bases or {}
    names = find_target_layers(BaseView(model, bases), config.target_modules)
    if not names:
        raise ValueError("target_modules selected no Linear layer: the model has none")
    rng, layers = as_rng(config.seed), {}
    shared = None
    if config.variant == "vera":                                # one frozen random pair for all layers
        shared = VeRAShared.for_layers([bases.get(n) or model.get_submodule(n) for n in names
                                        if isinstance(bases.get(n) or model.get_submodule(n), Linear)],
                                       config.r, config.seed)
    for name in names:
        base = bases.get(name) or model.get_submodule(name)
        if isinstance(base, Embedding):
            layers[name] = LoRAEmbedding(base, r=config.r, alpha=config.lora_alpha,
                                         use_rslora=config.use_rslora, rng=rng.spawn(), name=name)
        elif isinstance(base, Conv1D):
            if config.variant != "lora":
                raise ValueError(f"{name} is a Conv1D layer (GPT-2's): variant {config.variant!r} is not "
                                 "available on it; use plain LoRA (variant='lora')")
            layers[name] = LoRAConv1D(base, r=config.r, alpha=config.lora_alpha,
                                      init=config.init_lora_weights, use_rslora=config.use_rslora,
                                      dropout=config.lora_dropout, rng=rng.spawn(), name=name)
        else:
            options = {"use_rslora": config.use_rslora, "dropout": config.lora_dropout,
                       "init": config.init_lora_weights, "rng": rng.spawn(),
                       "exact_grad": config.dora_exact_grad, "vera_shared": shared}
            layers[name] = make_lora_layer(base, config.variant, config.r, config.lora_alpha, name=name,
                                           **options)
        if config.bias == "lora_only" and not isinstance(base, Embedding) and base.bias is not None:
            layers[name].train_own_bias()
    return layers


class BaseView:
    """The model as if every adapted layer were its base layer (for matching target patterns)."""

    def __init__(self, model, bases):
        self.model, self.bases = model, bases

    def named_modules(self):
        for name, m in self.model.named_modules():
            yield name, self.bases.get(name, m)


def lora_layers(model: Module) -> list[tuple[str, LoRALayer]]:
    """(name, layer) for every LoRA layer in the model."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, LoRALayer)]


def merge_lora(model: Module) -> Module:
    """Merge every adapter into its W0 (layers already merged are left as they are)."""
    for _, layer in lora_layers(model):
        if not layer.merged:
            layer.merge()
    return model


def unmerge_lora(model: Module) -> Module:
    """Undo :func:`merge_lora`, restoring every W0 bit for bit."""
    for _, layer in lora_layers(model):
        if layer.merged:
            layer.unmerge()
    return model
