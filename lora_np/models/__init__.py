"""Models built from :mod:`lora_np.nn`: an MLP and a small Transformer (image classifier, char LM)."""
from .mlp import MLP
from .transformer import TransformerConfig, TransformerLM, ViTClassifier, generate

__all__ = ["MLP", "TransformerConfig", "TransformerLM", "ViTClassifier", "generate"]
