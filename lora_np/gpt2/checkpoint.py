"""Reading and writing a Hugging Face GPT-2 checkpoint folder, with lora_np's own safetensors reader.

A folder as ``transformers`` saves it (``save_pretrained``) or as the hub serves it:

* ``config.json`` — the sizes (:class:`~lora_np.gpt2.config.GPT2Config` reads it);
* ``model.safetensors`` — the weights, float32, float16 or bfloat16, under transformers' names with
  the ``transformer.`` prefix (``transformer.h.0.attn.c_attn.weight``) or without it (the original
  ``gpt2`` upload: ``h.0.attn.c_attn.weight``). ``lm_head.weight`` is usually absent (tied to
  ``wte``); when present it must equal ``wte``, unless ``config.json`` unties the head
  (``tie_word_embeddings: false``: then it is the head's own weight). Older files also hold
  each layer's causal mask as a buffer, ``h.{i}.attn.bias`` (and ``masked_bias``): these are
  checked for shape and skipped.
* ``vocab.json`` and ``merges.txt`` — the tokenizer (:mod:`lora_np.gpt2.tokenizer`), read separately.

Every tensor is checked against the model's own parameters before any is used: an unknown key, a
missing key or a wrong shape is a ValueError naming the key. ``save_gpt2`` replaces the folder's
files atomically, and ``load_gpt2`` reads ``config.json`` and the weights from one version of it, so
a load running beside a save never pairs one save's config with another's weights. Loading from a
local folder is the only path here; nothing is downloaded. GPT-2 small's files are at
https://huggingface.co/openai-community/gpt2 (``config.json``,
``model.safetensors``, ``vocab.json``, ``merges.txt``).

>>> model = load_gpt2("tests/data/gpt2_tiny")                    # float32
>>> model = load_gpt2("~/models/gpt2", dtype="float64")
>>> save_gpt2(merged_model, "out/gpt2-fruit")                   # GPT2LMHeadModel.from_pretrained reads it
"""
from __future__ import annotations

import json
import os
import re

from .. import backend
from ..lora.files import json_bytes, read_folder, replace_folder
from ..lora.safetensors import parse_safetensors, safetensors_bytes
from ..nn import LoRALayer
from .config import GPT2Config
from .model import GPT2LMHeadModel

CONFIG_NAME, WEIGHTS_NAME = "config.json", "model.safetensors"
PREFIX = "transformer."
MASK_BUFFER = re.compile(r"transformer\.h\.(\d+)\.attn\.(bias|masked_bias)$")


def read_config(directory) -> GPT2Config:
    """The :class:`GPT2Config` of ``directory/config.json``."""
    path = os.path.join(os.path.expanduser(os.fspath(directory)), CONFIG_NAME)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"GPT-2 checkpoint: {path} does not exist (a checkpoint folder holds "
                                f"{CONFIG_NAME} and {WEIGHTS_NAME})")
    with open(path, "rb") as f:
        return _parse_config(f.read(), path)


def _parse_config(raw: bytes, path: str) -> GPT2Config:
    try:
        cfg = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON ({err})") from err
    return GPT2Config.from_dict(cfg, path)


def load_gpt2(directory, dtype="float32") -> GPT2LMHeadModel:
    """A :class:`GPT2LMHeadModel` with the weights of the checkpoint in ``directory``, in ``dtype``
    (float16 and bfloat16 files are widened exactly), on the current backend."""
    directory = os.path.expanduser(os.fspath(directory))
    read_config(directory)                           # a missing or bad config.json, named, before the weights
    path = os.path.join(directory, WEIGHTS_NAME)
    if not os.path.isfile(path):
        hint = " (only model.safetensors is read, not the pickled pytorch_model.bin)" \
            if os.path.isfile(os.path.join(directory, "pytorch_model.bin")) else ""
        raise FileNotFoundError(f"GPT-2 checkpoint: {path} does not exist{hint}")
    files = read_folder(directory, (CONFIG_NAME, WEIGHTS_NAME))   # both from one version, even mid-save
    config = _parse_config(files[CONFIG_NAME], os.path.join(directory, CONFIG_NAME))
    model = GPT2LMHeadModel(config, dtype=backend.default_dtype() if dtype is None else dtype, init=False)
    params = dict(model.named_parameters())          # the names and shapes a checkpoint must hold
    tensors = _checkpoint_tensors(parse_safetensors(files[WEIGHTS_NAME], path), path, config,
                                  {name: tuple(p.shape) for name, p in params.items()})
    for name, p in params.items():
        p.data = backend.asarray(tensors[name], dtype=p.dtype)
    return model


def _checkpoint_tensors(flat: dict, path: str, config: GPT2Config, shapes: dict) -> dict:
    """``{parameter name: host array}``, every key of the file accounted for and checked against
    ``shapes`` (``{name: shape}`` of the model's parameters: a tied head's weight is wte's, listed once)."""
    out, head = {}, None
    for key, a in flat.items():
        name = key if key.startswith(PREFIX) or key == "lm_head.weight" else PREFIX + key
        if name in out:
            raise ValueError(f"{path}: key {key!r} appears both with and without the {PREFIX!r} prefix")
        mask = MASK_BUFFER.match(name)
        if mask and int(mask.group(1)) < config.n_layer:
            if a.ndim != 4 or a.shape[:2] != (1, 1) or a.shape[2] != a.shape[3]:
                raise ValueError(f"{path}: key {key!r} should be a causal-mask buffer of shape (1, 1, n, n), "
                                 f"got {a.shape}")
            continue
        if name == "lm_head.weight" and config.tie_word_embeddings:
            head = (key, a)
            continue
        if name not in shapes:
            raise ValueError(f"{path}: key {key!r} is not a parameter of GPT-2 with {config.n_layer} layers "
                             f"(expected names like 'transformer.h.0.attn.c_attn.weight')")
        want = shapes[name]
        if a.dtype.kind != "f":
            raise ValueError(f"{path}: key {key!r} has dtype {a.dtype}; GPT-2's weights are floating point")
        if a.shape != want:
            hint = (" — the transpose of what a GPT-2 checkpoint stores: its Conv1D weights are "
                    "(d_in, d_out), not Linear's (d_out, d_in)" if a.shape == want[::-1] and len(want) == 2
                    else "; does config.json describe this checkpoint?")
            raise ValueError(f"{path}: key {key!r} has shape {a.shape}, expected {want}{hint}")
        out[name] = a
    missing = [n for n in shapes if n not in out]
    if missing:
        raise ValueError(f"{path}: missing key {missing[0]!r}" + (f" and {len(missing) - 1} more"
                                                                    if len(missing) > 1 else "")
                         + " (a truncated or partial checkpoint?)")
    if head is not None:
        key, a = head
        wte = out["transformer.wte.weight"]
        if a.shape != wte.shape or not (a == wte).all():
            raise ValueError(f"{path}: key {key!r} differs from transformer.wte.weight: an untied head is "
                             "not supported (GPT-2 ties its head to the token embedding)")
    return out


def save_gpt2(model: GPT2LMHeadModel, directory, dtype=None) -> str:
    """Write ``config.json`` and ``model.safetensors`` (transformers' names, ``dtype`` default the
    model's) into ``directory``, replacing them atomically and keeping its other files (the
    tokenizer's); returns the folder. A model with adapters is refused: merge them first
    (``merge_and_unload``) or save the adapter alone."""
    if not isinstance(model, GPT2LMHeadModel):
        raise TypeError(f"save_gpt2: model must be a GPT2LMHeadModel, got {type(model).__name__}")
    if any(isinstance(m, LoRALayer) for _, m in model.named_modules()):
        raise ValueError("save_gpt2: the model has LoRA layers; call lora_np.lora.merge_and_unload(model) "
                         "to save the merged model, or export_peft(model, ...) to save the adapter alone")
    tensors = {name: backend.to_numpy(p.data) for name, p in model.named_parameters()}
    if dtype is not None:
        tensors = {k: v.astype(dtype) for k, v in tensors.items()}
    config = model.config.to_dict()
    config["tie_word_embeddings"] = "lm_head.weight" not in tensors   # merging a head adapter unties it
    files = {WEIGHTS_NAME: safetensors_bytes(tensors, metadata={"format": "pt"}),
             CONFIG_NAME: json_bytes(config)}
    return replace_folder(directory, files)
