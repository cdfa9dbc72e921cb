"""Models, adapters and small file helpers shared by the adapter file tests (test_io.py, test_peft_io.py).

The fixtures ``X`` (a batch for :func:`mlp`) and ``ids`` (token ids for :func:`lm`) reach a test
module that assigns them: ``X, ids = adapter_helpers.X, adapter_helpers.ids``.
"""
import json
import os

import numpy as np
import pytest

from lora_np import backend
from lora_np.lora import LoraConfig, adapter_layers, inject_lora
from lora_np.models import MLP, TransformerConfig, TransformerLM


def out(model, x):
    y = backend.to_numpy(model(x))
    model.clear_caches()
    return y


def randomize(model, name=None, seed=0):
    """Non-zero A and B everywhere (a fresh adapter has B = 0, or A = 0 for embeddings)."""
    rng = backend.Rng(seed)
    for layer in adapter_layers(model, name).values():
        for p in (layer.lora_A, layer.lora_B):
            p.data = rng.standard_normal(p.shape, dtype=p.dtype) * 0.3
    return model


def mlp(seed=1):
    return MLP(6, (8, 8), 3, seed=seed)


def adapted_mlp(name="grapes", **kw):
    config = LoraConfig(**{"r": 2, "lora_alpha": 3.0, "target_modules": ["fc1", "fc2"], "seed": 3, **kw})
    return randomize(inject_lora(mlp(), config, adapter_name=name), name)


def lm(seed=0):
    config = TransformerConfig(d_model=16, n_heads=2, n_layers=1, context=8, vocab_size=11, seed=seed)
    return TransformerLM(config)


def adapted_lm():
    config = LoraConfig(r=2, lora_alpha=4.0, target_modules=["tok_emb", "q", "v"], use_rslora=True, seed=5)
    return randomize(inject_lora(lm(), config, adapter_name="verse"), "verse", seed=1)


def same_state(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]) for k in a)


def edit_config(d, change, name="adapter_config.json"):
    path = os.path.join(d, name)
    with open(path) as f:
        cfg = json.load(f)
    change(cfg)
    with open(path, "w") as f:
        json.dump(cfg, f)


@pytest.fixture
def X():
    return backend.Rng(7).standard_normal((5, 6))


@pytest.fixture
def ids():
    return backend.Rng(8).integers(0, 11, (2, 8))
