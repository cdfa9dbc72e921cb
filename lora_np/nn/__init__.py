"""Stateful modules over :mod:`lora_np.functional`: each forward keeps a cache, each backward fills grads."""
from .layers import (GELU, Dropout, Embedding, LayerNorm, Linear, ReLU, Sequential, SoftmaxCrossEntropy, Tanh,
                     as_rng, check_features, check_ids)
from .lora import LoRAEmbedding, LoRALayer, LoRALinear, LoRARankWarning, break_even_rank, lora_scaling
from .module import Module, Parameter

__all__ = ["Module", "Parameter", "Linear", "ReLU", "GELU", "Tanh", "Dropout", "Sequential",
           "SoftmaxCrossEntropy", "Embedding", "LayerNorm", "LoRALayer", "LoRALinear", "LoRAEmbedding", "LoRARankWarning", "break_even_rank", "lora_scaling",
           "as_rng", "check_features", "check_ids"]
from .variants import (VARIANT_CLASSES, DoRALinear, PiSSALinear, VeRALinear, VeRAShared, make_lora_layer,
                       pissa_decompose, pissa_to_lora, variant_trainable_count)

__all__ += ["DoRALinear", "VeRALinear", "VeRAShared", "PiSSALinear", "pissa_decompose", "pissa_to_lora",
            "make_lora_layer", "VARIANT_CLASSES", "variant_trainable_count"]
from .bottleneck import BottleneckAdapter, SublayerWithAdapter, bottleneck_adapters, insert_adapter_layers
from .prefix import PrefixAttention, add_prefix_tuning, prefix_layers, set_prefix_enabled

__all__ += ["BottleneckAdapter", "SublayerWithAdapter", "insert_adapter_layers", "bottleneck_adapters",
            "PrefixAttention", "add_prefix_tuning", "prefix_layers", "set_prefix_enabled"]
from .subspace import RandomSubspace, random_projection

__all__ += ["RandomSubspace", "random_projection"]
