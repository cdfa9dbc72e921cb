"""Stateful modules over :mod:`lora_np.functional`: each forward keeps a cache, each backward fills grads."""
from .layers import GELU, Dropout, Linear, ReLU, Sequential, SoftmaxCrossEntropy, Tanh, as_rng, check_features
from .lora import LoRALinear, LoRARankWarning, break_even_rank, lora_scaling
from .module import Module, Parameter

__all__ = ["Module", "Parameter", "Linear", "ReLU", "GELU", "Tanh", "Dropout", "Sequential",
           "SoftmaxCrossEntropy", "LoRALinear", "LoRARankWarning", "break_even_rank", "lora_scaling",
           "as_rng", "check_features"]
