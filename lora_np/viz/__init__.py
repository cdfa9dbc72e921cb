"""Matplotlib figures used by the demo and the notebooks. Every axis is labelled.

Each function draws on an ``ax`` you pass (or a new figure) and returns the figure, so a
notebook can place it in a grid and the demo can save it. One module per topic:
:mod:`.figures` (low rank, rank sweeps, styles, adapters) and the modules of the later notebooks.
"""
from .budget import plot_memory, plot_parameter_budget
from .figures import (
           plot_blend,
           plot_blend_rank,
           plot_confusion,
           plot_harvest_accuracy,
           plot_loss_curves,
           plot_lowrank,
           plot_lowrank_error_curve,
           plot_rank_sweep,
           plot_singular_values,
           plot_style_strength,
           plot_table5,
           plot_variants,
           smooth,
)
from .intrinsic import plot_intrinsic_sweep, plot_normalized_sweeps, plot_pretraining_study, plot_width_study
from .peft_methods import plot_peft_comparison, plot_peft_latency, plot_peft_params, plot_peft_tradeoff
from .ranks import plot_planted_sweep, plot_rank_outcomes, plot_scaling
from .update_geometry import plot_amplification, plot_delta_spectra, plot_similarity
from .variants import plot_variant_spread

__all__ = ["smooth", "plot_loss_curves", "plot_rank_sweep", "plot_confusion", "plot_lowrank",
           "plot_singular_values", "plot_lowrank_error_curve", "plot_table5", "plot_style_strength",
           "plot_blend", "plot_blend_rank", "plot_variants", "plot_harvest_accuracy",
           "plot_parameter_budget", "plot_memory", "plot_planted_sweep", "plot_scaling", "plot_rank_outcomes",
           "plot_peft_tradeoff", "plot_peft_latency", "plot_peft_params", "plot_peft_comparison",
           "plot_intrinsic_sweep", "plot_normalized_sweeps", "plot_width_study", "plot_pretraining_study",
           "plot_delta_spectra", "plot_similarity", "plot_amplification", "plot_variant_spread"]
