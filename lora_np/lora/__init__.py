"""LoRA at the model level: inject adapters, manage several, merge them, save them, count what is trained.

``manager``: inject_lora and the adapter operations.  ``inject``: LoraConfig, target matching,
building and merging layers.  ``state_dict``: adapters as dicts of arrays.  ``io``: the native
adapter files.  ``peft``: PEFT's files.  ``loraplus``: LoRA+ learning rates.  ``report``: counts.
"""
from .attach import base_model_fingerprint
from .inject import LoraConfig, build_lora_layers, find_target_layers, lora_layers, merge_lora, unmerge_lora
from .io import adapter_formats, load_adapter, read_adapter, save_adapter
from .loraplus import loraplus_param_groups
from .manager import (
    AdapterState,
    active_adapter,
    adapter_config,
    adapter_layers,
    adapter_state,
    adapters_disabled,
    add_adapter,
    add_weighted_adapter,
    base_modules,
    delete_adapter,
    disable_adapters,
    enable_adapters,
    inject_lora,
    list_adapters,
    merge_and_unload,
    set_adapter,
    set_adapter_strength,
    unload,
)
from .peft import export_peft, import_peft
from .report import TrainableReport, print_trainable_parameters, trainable_report
from .safetensors import read_safetensors, write_safetensors
from .state_dict import load_lora_state_dict, lora_state_dict

__all__ = [
    "LoraConfig", "inject_lora", "find_target_layers", "build_lora_layers", "lora_layers", "merge_lora",
    "unmerge_lora", "trainable_report", "print_trainable_parameters", "TrainableReport", "lora_state_dict",
    "load_lora_state_dict", "AdapterState", "adapter_state", "base_modules", "add_adapter", "set_adapter",
    "active_adapter", "list_adapters", "adapter_config", "adapter_layers", "delete_adapter",
    "disable_adapters", "enable_adapters", "adapters_disabled", "set_adapter_strength",
    "add_weighted_adapter", "merge_and_unload", "unload", "loraplus_param_groups", "save_adapter",
    "load_adapter", "read_adapter", "adapter_formats", "base_model_fingerprint", "export_peft", "import_peft",
    "read_safetensors",
    "write_safetensors",
]
