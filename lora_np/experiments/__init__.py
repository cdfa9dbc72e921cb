"""Experiments as tested functions: each returns data; :mod:`lora_np.viz` draws them."""
from .finetune import FinetuneResult, finetune, format_table, grape_report, pretrain, rank_sweep

__all__ = ["pretrain", "finetune", "rank_sweep", "grape_report", "format_table", "FinetuneResult"]
from .lowrank import (low_rank_approx, lowrank_error_curve, lowrank_param_count, relative_error, singular_values,
                      structured_matrix)

__all__ += ["low_rank_approx", "lowrank_param_count", "lowrank_error_curve", "singular_values", "relative_error",
            "structured_matrix"]
