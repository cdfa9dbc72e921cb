"""LoRA at the model level: inject adapters, merge them, count what is trained."""
from .inject import LoraConfig, find_target_layers, inject_lora, lora_layers, merge_lora, unmerge_lora
from .adapters import load_lora_state_dict, lora_state_dict, set_lora_strength
from .report import TrainableReport, print_trainable_parameters, trainable_report

__all__ = ["LoraConfig", "inject_lora", "find_target_layers", "lora_layers", "merge_lora", "unmerge_lora",
           "trainable_report", "print_trainable_parameters", "TrainableReport", "lora_state_dict", "load_lora_state_dict",
           "set_lora_strength"]
