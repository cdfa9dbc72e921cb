"""The version of lora_np, in a module of its own so that every layer of the package can read it."""
__version__ = "0.1.0"
