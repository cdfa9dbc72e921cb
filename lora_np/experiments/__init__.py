"""Experiments as tested functions: each returns data; :mod:`lora_np.viz` draws them."""
from .budget import (
    MODEL_PRESETS,
    PRECISION_PRESETS,
    MemoryBreakdown,
    ModelPreset,
    PrecisionSpec,
    break_even,
    compare_memory,
    format_bytes,
    format_memory_table,
    full_finetune_memory,
    full_param_count,
    lora_memory,
    lora_param_count,
    lora_trainable_params,
    parameter_budget,
)
from .finetune import FinetuneResult, finetune, format_table, grape_report, pretrain, rank_sweep
from .geometry_studies import (
    DeltaSpectrum,
    SimilarityStudy,
    amplification_table,
    delta_spectra,
    format_amplification_table,
    full_finetune_deltas,
    initial_adapter_A,
    similarity_study,
    train_adapter_A,
)
from .intrinsic import (
    IntrinsicStudy,
    IntrinsicSweep,
    LoraComparison,
    SubspaceResult,
    d_int90,
    intrinsic_dimension_sweep,
    lora_comparison,
    pretraining_study,
    said_comparison,
    subspace_finetune,
    width_study,
)
from .lowrank import (
    low_rank_approx,
    lowrank_error_curve,
    lowrank_param_count,
    relative_error,
    singular_values,
    structured_matrix,
)
from .multi_adapter import (
    VARIANT_RUNS,
    Harvest,
    VariantRun,
    VariantSpread,
    accuracy_table,
    blend_accuracy,
    blend_adapters,
    compare_variants,
    compare_variants_over_seeds,
    dora_gradient_gap,
    finetune_variant,
    format_accuracy_table,
    format_variant_spread,
    format_variant_table,
    harvest_of,
    inference_latency,
    make_harvest,
)
from .peft_methods import (
    PeftCost,
    PeftRow,
    compare_peft_methods,
    format_peft_table,
    make_peft_model,
    peft_costs,
)
from .ranks import (
    PlantedRankSweep,
    ScalingSweep,
    find_knee,
    planted_rank_sweep,
    planted_rank_task,
    scaling_sweep,
)
from .update_geometry import (
    amplification,
    chance_similarity,
    energy_spectrum,
    random_like,
    shift_alignment,
    subspace_similarity,
)

__all__ = [
    # the fruit story (finetune)
    "pretrain", "finetune", "rank_sweep", "grape_report", "format_table", "FinetuneResult",
    # low-rank matrices (lowrank)
    "low_rank_approx", "lowrank_param_count", "lowrank_error_curve", "singular_values", "relative_error",
    "structured_matrix",
    # several adapters on one base (multi_adapter)
    "Harvest", "make_harvest", "harvest_of", "accuracy_table", "format_accuracy_table", "blend_adapters",
    "blend_accuracy", "inference_latency", "VariantRun", "VARIANT_RUNS", "finetune_variant",
    "format_variant_table", "compare_variants", "dora_gradient_gap",
    "VariantSpread", "compare_variants_over_seeds", "format_variant_spread",
    # the parameter and memory budget (budget), rank sweeps (ranks)
    "full_param_count", "lora_param_count", "break_even", "parameter_budget", "ModelPreset", "MODEL_PRESETS",
    "PrecisionSpec", "PRECISION_PRESETS", "MemoryBreakdown", "lora_trainable_params", "full_finetune_memory",
    "lora_memory", "compare_memory", "format_bytes", "format_memory_table",
    "planted_rank_task", "find_knee", "PlantedRankSweep", "planted_rank_sweep", "ScalingSweep",
    "scaling_sweep",
    # LoRA, adapters and prefix tuning on a ViT (peft_methods)
    "PeftCost", "PeftRow", "compare_peft_methods", "format_peft_table", "make_peft_model", "peft_costs",
    # intrinsic dimension (intrinsic)
    "SubspaceResult", "subspace_finetune", "IntrinsicSweep", "intrinsic_dimension_sweep", "d_int90",
    "IntrinsicStudy", "width_study", "pretraining_study", "said_comparison", "LoraComparison",
    "lora_comparison",
    # the geometry of an update: the measurements (update_geometry) and the studies (geometry_studies)
    "energy_spectrum", "random_like", "DeltaSpectrum", "full_finetune_deltas", "delta_spectra",
    "shift_alignment", "subspace_similarity", "chance_similarity", "train_adapter_A", "initial_adapter_A",
    "SimilarityStudy", "similarity_study", "amplification", "amplification_table",
    "format_amplification_table",
]
