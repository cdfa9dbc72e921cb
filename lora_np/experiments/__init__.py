"""Experiments as tested functions: each returns data; :mod:`lora_np.viz` draws them."""
from .finetune import FinetuneResult, finetune, format_table, grape_report, pretrain, rank_sweep

__all__ = ["pretrain", "finetune", "rank_sweep", "grape_report", "format_table", "FinetuneResult"]
from .lowrank import (low_rank_approx, lowrank_error_curve, lowrank_param_count, relative_error, singular_values,
                      structured_matrix)

__all__ += ["low_rank_approx", "lowrank_param_count", "lowrank_error_curve", "singular_values", "relative_error",
            "structured_matrix"]
from .adapters import (VARIANT_RUNS, Harvest, VariantRun, accuracy_table, blend_accuracy, blend_adapters,
                       compare_variants, dora_gradient_gap, finetune_variant, format_accuracy_table,
                       format_variant_table, harvest_of, inference_latency, make_harvest)

__all__ += ["Harvest", "make_harvest", "harvest_of", "accuracy_table", "format_accuracy_table", "blend_adapters",
            "blend_accuracy", "inference_latency", "VariantRun", "VARIANT_RUNS", "finetune_variant",
            "format_variant_table", "compare_variants", "dora_gradient_gap"]
