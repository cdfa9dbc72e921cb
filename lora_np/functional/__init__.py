"""Pure forward/backward pairs: the maths of every operation, one pair per operation.

``dense``: linear, LoRA linear, activations, dropout, softmax cross-entropy.
``sequence``: embeddings (and their LoRA), LayerNorm, multi-head attention, image patches.
``variants``: DoRA and VeRA linear layers (LoRA variants from PEFT's feature set).
Each ``*_forward`` returns ``(out, cache)``; ``*_backward(dout, cache)`` returns the gradients.
"""
from .dense import (dropout_backward, dropout_forward, gelu_backward, gelu_forward, linear_backward,
                    linear_forward, log_softmax, lora_linear_backward, lora_linear_forward, relu_backward,
                    relu_forward, softmax, softmax_cross_entropy_backward, softmax_cross_entropy_forward,
                    tanh_backward, tanh_forward)
from .sequence import (attention_backward, attention_forward, causal_mask, embedding_backward,
                       embedding_forward, layernorm_backward, layernorm_forward, lora_embedding_backward,
                       lora_embedding_forward, merge_heads, one_hot, patchify_backward, patchify_forward,
                       softmax_backward, split_heads)
from .variants import (dora_linear_backward, dora_linear_forward, row_norms, vera_linear_backward,
                       vera_linear_forward)

from .prefix import (prefix_attention_backward, prefix_attention_forward, prefix_causal_mask, prefix_concat_backward,
                     prefix_concat_forward)

__all__ = [n for n in dir() if n.endswith(("_forward", "_backward"))] + [
    "softmax", "log_softmax", "one_hot", "split_heads", "merge_heads", "causal_mask", "prefix_causal_mask"]
__all__ += ["row_norms"]
