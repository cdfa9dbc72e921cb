"""lora_np: LoRA (low-rank adaptation) in NumPy, with every gradient derived by hand.

A frozen weight W0 plus a trainable low-rank update ΔW = s · B A, inside models whose
backward passes you can read line by line. Start with ``python -m lora_np demo``.
"""
from . import backend, functional, nn
from .backend import get_backend, set_backend, to_device, to_numpy
from .lora import (
           LoraConfig,
           inject_lora,
           merge_lora,
           print_trainable_parameters,
           trainable_report,
           unmerge_lora,
)
from .version import __version__

__all__ = ["__version__", "backend", "functional", "nn", "get_backend", "set_backend", "to_device",
           "to_numpy", "LoraConfig", "inject_lora", "merge_lora", "unmerge_lora", "trainable_report",
           "print_trainable_parameters"]
