"""Experiments as tested functions: each returns data; :mod:`lora_np.viz` draws them."""
from .finetune import FinetuneResult, finetune, format_table, grape_report, pretrain, rank_sweep

__all__ = ["pretrain", "finetune", "rank_sweep", "grape_report", "format_table", "FinetuneResult"]
