"""Pure forward/backward pairs: the maths of every operation, one pair per operation.

``lora``: LoRA's own pairs, the linear layer and the embedding with an adapter.
``dense``: linear, activations, dropout, softmax cross-entropy.
``sequence``: embeddings, LayerNorm, multi-head attention, image patches.
``variants``: DoRA and VeRA linear layers (LoRA variants from PEFT's feature set).
``prefix``: prefix tuning's attention.
``gpt2``: what GPT-2 adds: Conv1D's transposed layout and the fused q, k, v projection.
Each ``*_forward`` returns ``(out, cache)``; ``*_backward(dout, cache)`` returns the gradients.
"""
from .dense import (
    dropout_backward,
    dropout_forward,
    gelu_backward,
    gelu_forward,
    linear_backward,
    linear_forward,
    log_softmax,
    relu_backward,
    relu_forward,
    softmax,
    softmax_cross_entropy_backward,
    softmax_cross_entropy_forward,
    tanh_backward,
    tanh_forward,
)
from .gpt2 import conv1d_backward, conv1d_forward, split_qkv_backward, split_qkv_forward
from .lora import lora_embedding_backward, lora_embedding_forward, lora_linear_backward, lora_linear_forward
from .prefix import (
    prefix_attention_backward,
    prefix_attention_forward,
    prefix_causal_mask,
    prefix_concat_backward,
    prefix_concat_forward,
)
from .sequence import (
    attention_backward,
    attention_forward,
    causal_mask,
    embedding_backward,
    embedding_forward,
    layernorm_backward,
    layernorm_forward,
    merge_heads,
    one_hot,
    patchify_backward,
    patchify_forward,
    softmax_backward,
    split_heads,
)
from .variants import (
    dora_linear_backward,
    dora_linear_forward,
    row_norms,
    vera_linear_backward,
    vera_linear_forward,
)

__all__ = [
    "linear_forward", "linear_backward", "lora_linear_forward", "lora_linear_backward",
    "lora_embedding_forward", "lora_embedding_backward", "relu_forward", "relu_backward",
    "gelu_forward", "gelu_backward", "tanh_forward", "tanh_backward", "dropout_forward", "dropout_backward",
    "softmax", "log_softmax", "softmax_cross_entropy_forward", "softmax_cross_entropy_backward",
    "one_hot", "embedding_forward", "embedding_backward", "layernorm_forward", "layernorm_backward",
    "softmax_backward", "split_heads", "merge_heads", "causal_mask",
    "attention_forward", "attention_backward",
    "patchify_forward", "patchify_backward", "row_norms", "dora_linear_forward", "dora_linear_backward",
    "vera_linear_forward", "vera_linear_backward", "prefix_concat_forward", "prefix_concat_backward",
    "prefix_causal_mask", "prefix_attention_forward", "prefix_attention_backward",
    "conv1d_forward", "conv1d_backward", "split_qkv_forward", "split_qkv_backward",
]
