"""GPT-2 in lora_np: the model, a Hugging Face checkpoint folder, and GPT-2's byte-level BPE tokenizer.

``model``: :class:`GPT2LMHeadModel` (Conv1D projections, fused ``c_attn``, tied head), every
gradient by hand.  ``config``: :class:`GPT2Config`, read from ``config.json``.  ``checkpoint``:
:func:`load_gpt2` / :func:`save_gpt2` with the project's own safetensors reader.  ``tokenizer``:
:class:`GPT2Tokenizer` from ``vocab.json`` and ``merges.txt``.

>>> model, tok = load_gpt2("tests/data/gpt2_tiny"), GPT2Tokenizer.from_folder("tests/data/gpt2_tiny")
>>> inject_lora(model, LoraConfig(r=8, target_modules=["c_attn"]))     # as PEFT users write it
"""
from .checkpoint import load_gpt2, read_config, save_gpt2
from .config import GPT2Config
from .model import GPT2MLP, GPT2Attention, GPT2Block, GPT2LMHeadModel, GPT2Model
from .tokenizer import GPT2Tokenizer

__all__ = ["GPT2Config", "GPT2LMHeadModel", "GPT2Model", "GPT2Block", "GPT2Attention", "GPT2MLP",
           "load_gpt2", "save_gpt2", "read_config", "GPT2Tokenizer"]
