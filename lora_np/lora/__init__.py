"""LoRA at the model level: inject adapters, merge them, count what is trained."""
from .inject import LoraConfig, build_lora_layers, find_target_layers, inject_lora, lora_layers, merge_lora, unmerge_lora
from .state_dict import load_lora_state_dict, lora_state_dict
from .loraplus import loraplus_param_groups
from .manager import (active_adapter, adapter_config, adapter_layers, adapters_disabled, add_adapter,
                      add_weighted_adapter, delete_adapter, disable_adapters, enable_adapters, list_adapters,
                      merge_and_unload, set_adapter, set_adapter_strength)
from .report import TrainableReport, print_trainable_parameters, trainable_report

__all__ = ["LoraConfig", "inject_lora", "find_target_layers", "lora_layers", "merge_lora", "unmerge_lora",
           "trainable_report", "print_trainable_parameters", "TrainableReport", "lora_state_dict", "load_lora_state_dict",
           "add_adapter", "set_adapter", "active_adapter", "list_adapters", "adapter_config",
           "adapter_layers", "delete_adapter", "disable_adapters", "enable_adapters", "adapters_disabled",
           "set_adapter_strength", "add_weighted_adapter", "merge_and_unload", "loraplus_param_groups"]
from .io import base_model_fingerprint, load_adapter, save_adapter
from .peft import export_peft, import_peft, read_safetensors, write_safetensors

__all__ += ["save_adapter", "load_adapter", "base_model_fingerprint", "export_peft", "import_peft",
            "read_safetensors", "write_safetensors"]
