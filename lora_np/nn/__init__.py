"""Stateful modules over :mod:`lora_np.functional`: each forward keeps a cache, each backward fills grads.

``module``: Module and Parameter.  ``layers``: Linear, activations, Embedding, LayerNorm, ...
``lora``: the LoRA layers and ``make_lora_layer``.  ``variants``: DoRA, VeRA, PiSSA.
``conv1d``: GPT-2's Conv1D layout and its LoRA layer.  ``attention``: multi-head attention.
``bottleneck``: adapter layers (Houlsby).  ``prefix``: prefix tuning.  ``subspace``: training in a
random subspace (intrinsic dimension).
"""
from .bottleneck import BottleneckAdapter, SublayerWithAdapter, bottleneck_adapters, insert_adapter_layers
from .conv1d import Conv1D, LoRAConv1D
from .layers import (
    GELU,
    Dropout,
    Embedding,
    LayerNorm,
    Linear,
    ReLU,
    Sequential,
    SoftmaxCrossEntropy,
    Tanh,
    as_rng,
    check_features,
    check_finite,
    check_ids,
)
from .lora import (
    VARIANT_CLASSES,
    LoRAEmbedding,
    LoRALayer,
    LoRALinear,
    LoRARankWarning,
    break_even_rank,
    lora_scaling,
    make_lora_layer,
)
from .module import Module, Parameter
from .prefix import PrefixAttention, add_prefix_tuning, prefix_layers, set_prefix_enabled
from .subspace import RandomSubspace, random_projection
from .variants import (
    DoRALinear,
    PiSSALinear,
    VeRALinear,
    VeRAShared,
    pissa_decompose,
    pissa_to_lora,
    variant_trainable_count,
)

__all__ = [
    "Module", "Parameter", "Linear", "ReLU", "GELU", "Tanh", "Dropout", "Sequential", "SoftmaxCrossEntropy",
    "Embedding", "LayerNorm", "as_rng", "check_features", "check_finite", "check_ids",
    "LoRALayer", "LoRALinear", "LoRAEmbedding", "LoRARankWarning", "break_even_rank", "lora_scaling",
    "make_lora_layer", "VARIANT_CLASSES", "Conv1D", "LoRAConv1D",
    "DoRALinear", "VeRALinear", "VeRAShared", "PiSSALinear", "pissa_decompose", "pissa_to_lora",
    "variant_trainable_count",
    "BottleneckAdapter", "SublayerWithAdapter", "insert_adapter_layers", "bottleneck_adapters",
    "PrefixAttention", "add_prefix_tuning", "prefix_layers", "set_prefix_enabled",
    "RandomSubspace", "random_projection",
]
