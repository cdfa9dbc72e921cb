"""The real round trip with transformers and PEFT: optional, skipped unless torch, transformers and peft
are importable (they stay out of .venv; see the README's "Optional tests" for the environment).

* our exported adapter, loaded by ``PeftModel.from_pretrained`` on transformers' ``GPT2LMHeadModel``,
  gives our logits;
* an adapter trained by PEFT imports into lora_np with PEFT's logits;
* a model merged and saved by lora_np loads in transformers with the same logits.
"""
from pathlib import Path

import numpy as np
import pytest

from lora_np import backend
from lora_np.gpt2 import load_gpt2, save_gpt2
from lora_np.lora import LoraConfig, export_peft, import_peft, inject_lora, merge_and_unload

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")

pytestmark = pytest.mark.host_only
DATA = Path(__file__).parent / "data" / "gpt2_tiny"
IDS = np.load(DATA / "reference.npz")["ids"]
TARGETS = ["c_attn", "c_proj", "c_fc", "lm_head"]


def torch_logits(model, ids=IDS):
    model.eval()
    with torch.no_grad():
        return model(torch.from_numpy(ids)).logits.numpy()


def ours(model, ids=IDS):
    return backend.to_numpy(model(backend.asarray(ids)))


def hf_base(dtype):
    return transformers.GPT2LMHeadModel.from_pretrained(DATA, dtype=dtype)


def our_trained_adapter(dtype):
    model = load_gpt2(DATA, dtype=dtype)
    inject_lora(model, LoraConfig(r=4, lora_alpha=8, target_modules=TARGETS + ["wte"], seed=3))
    rng = np.random.default_rng(3)
    for p in model.parameters():
        if p.trainable:                                   # A and B both random: every path is exercised
            p.data = backend.asarray(rng.standard_normal(p.shape) * 0.05, dtype=p.dtype)
    return model


@pytest.mark.parametrize("dtype, tol", [("float32", 1e-5), ("float64", 1e-10)])
def test_peft_loads_our_gpt2_adapter_with_our_logits(tmp_path, dtype, tol):
    model = our_trained_adapter(dtype)
    export_peft(model, tmp_path / "adapter")
    torch_dtype = {"float32": torch.float32, "float64": torch.float64}[dtype]
    theirs = peft.PeftModel.from_pretrained(hf_base(torch_dtype), tmp_path / "adapter")
    assert np.abs(torch_logits(theirs) - ours(model)).max() <= tol


def test_an_adapter_trained_by_peft_imports_with_peft_logits(tmp_path):
    torch.manual_seed(0)
    base = hf_base(torch.float64)
    config = peft.LoraConfig(r=4, lora_alpha=8, target_modules=TARGETS, fan_in_fan_out=True)
    trained = peft.get_peft_model(base, config)
    opt = torch.optim.Adam([p for p in trained.parameters() if p.requires_grad], lr=1e-2)
    ids = torch.from_numpy(IDS)
    losses = []
    for _ in range(5):                                    # a few real steps: B and A both move
        opt.zero_grad()
        loss = trained(ids, labels=ids).loss
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert losses[-1] < losses[0]
    trained.save_pretrained(tmp_path / "peft")
    model = load_gpt2(DATA, dtype="float64")
    import_peft(model, tmp_path / "peft")
    assert np.abs(ours(model) - torch_logits(trained)).max() <= 1e-10


def test_a_model_merged_by_lora_np_loads_in_transformers(tmp_path):
    model = our_trained_adapter("float64")
    before = ours(model)
    merge_and_unload(model)                               # the adapted head is untied, wte keeps W0
    save_gpt2(model, tmp_path / "merged")
    theirs = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "merged", dtype=torch.float64)
    assert np.abs(torch_logits(theirs) - before).max() <= 1e-10
