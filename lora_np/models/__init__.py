"""Models built from :mod:`lora_np.nn`."""
from .mlp import MLP

__all__ = ["MLP"]
