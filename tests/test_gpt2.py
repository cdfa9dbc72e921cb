"""GPT-2: the committed tiny checkpoint against transformers' reference logits, bad checkpoints named,
LoRA on GPT-2's Conv1D layers and tied head, and PEFT's GPT-2 adapters both ways — no torch needed.

The data (tests/data/gpt2_tiny/) was made once by transformers, tokenizers and PEFT with the script
beside it (make_tiny_gpt2.py): a random GPT-2 with 2 layers, d = 64, a 512-token BPE vocabulary.
"""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from lora_np import backend
from lora_np.gpt2 import GPT2Config, GPT2LMHeadModel, load_gpt2, read_config, save_gpt2
from lora_np.lora import (
    LoraConfig,
    export_peft,
    import_peft,
    inject_lora,
    load_adapter,
    merge_and_unload,
    merge_lora,
    read_safetensors,
    save_adapter,
    trainable_report,
    unmerge_lora,
    write_safetensors,
)
from lora_np.models import generate
from lora_np.nn import LoRAConv1D, SoftmaxCrossEntropy
from lora_np.optim import Adam

DATA = Path(__file__).parent / "data" / "gpt2_tiny"
REF = dict(np.load(DATA / "reference.npz"))
PEFT_REF = dict(np.load(DATA / "peft_reference.npz"))


def logits(model, ids=None):
    return backend.to_numpy(model(backend.asarray(REF["ids"] if ids is None else ids)))


def copy_checkpoint(tmp_path, weights="model.safetensors"):
    folder = tmp_path / "ckpt"
    folder.mkdir()
    shutil.copy(DATA / "config.json", folder / "config.json")
    shutil.copy(DATA / weights, folder / "model.safetensors")
    return folder


# --------------------------------------------------------------------------- the reference logits

def test_float32_logits_match_transformers():
    err = np.abs(logits(load_gpt2(DATA)) - REF["logits_f64"]).max()          # transformers' float64 logits
    assert err <= 1e-5, err


def test_float64_logits_match_transformers():
    model = load_gpt2(DATA, dtype="float64")
    assert model.transformer.wte.weight.dtype == np.float64
    err = np.abs(logits(model) - REF["logits_f64"]).max()
    assert err <= 1e-10, err


def test_the_loss_matches_transformers():
    model = load_gpt2(DATA, dtype="float64")
    ids = backend.asarray(REF["ids"])
    loss = float(SoftmaxCrossEntropy()(model(ids[:, :-1]), ids[:, 1:]))      # next-token prediction
    assert abs(loss - float(REF["loss_f64"])) < 1e-10


@pytest.mark.parametrize("weights, key", [("model.float16.safetensors", "logits_from_f16"),
                                          ("model.bfloat16.safetensors", "logits_from_bf16")])
def test_half_precision_files_load_exactly(tmp_path, weights, key):
    raw = read_safetensors(DATA / weights)
    widened = "bfloat16" in weights                              # NumPy has no bfloat16: read as float32
    assert {a.dtype for a in raw.values()} == {np.dtype("float32" if widened else "float16")}
    err = np.abs(logits(load_gpt2(copy_checkpoint(tmp_path, weights))) - REF[key]).max()
    assert err <= 1e-5, err


def test_keys_without_the_transformer_prefix_and_with_mask_buffers_load(tmp_path):
    """The original gpt2 upload: no 'transformer.' prefix, a causal-mask buffer per layer, lm_head present."""
    folder = copy_checkpoint(tmp_path)
    raw = read_safetensors(folder / "model.safetensors")
    flat = {k.removeprefix("transformer."): v for k, v in raw.items()}
    for i in range(2):
        flat[f"h.{i}.attn.bias"] = np.tril(np.ones((64, 64), np.float32))[None, None]
    flat["lm_head.weight"] = raw["transformer.wte.weight"]
    write_safetensors(folder / "model.safetensors", flat)
    assert np.abs(logits(load_gpt2(folder)) - REF["logits_f64"]).max() <= 1e-5


# --------------------------------------------------------------------------- bad checkpoints

def edit_weights(folder, change):
    flat = read_safetensors(folder / "model.safetensors")
    change(flat)
    write_safetensors(folder / "model.safetensors", flat)


def edit_config(folder, change):
    cfg = json.loads((folder / "config.json").read_text())
    change(cfg)
    (folder / "config.json").write_text(json.dumps(cfg))


C_ATTN = "transformer.h.0.attn.c_attn.weight"


@pytest.mark.parametrize("weights_change, config_change, error", [
    (lambda t: t.pop("transformer.h.1.mlp.c_fc.bias"), None,
     r"missing key 'transformer.h.1.mlp.c_fc.bias' \(a truncated or partial checkpoint\?\)"),
    (lambda t: t.update({"transformer.h.2.ln_1.weight": t["transformer.h.0.ln_1.weight"]}), None,
     r"key 'transformer.h.2.ln_1.weight' is not a parameter of GPT-2 with 2 layers"),
    (lambda t: t.update({C_ATTN: t[C_ATTN][:, :100]}), None,
     r"key 'transformer.h.0.attn.c_attn.weight' has shape \(64, 100\), expected \(64, 192\)"),
    (lambda t: t.update({C_ATTN: np.ascontiguousarray(t[C_ATTN].T)}), None,
     r"has shape \(192, 64\), expected \(64, 192\) — the transpose of what a GPT-2 checkpoint stores"),
    (lambda t: t.update({C_ATTN: t[C_ATTN].astype(np.int32)}), None,
     r"key 'transformer.h.0.attn.c_attn.weight' has dtype int32"),
    (lambda t: t.update({"lm_head.weight": t["transformer.wte.weight"] + 1}), None,
     r"key 'lm_head.weight' differs from transformer.wte.weight: an untied head"),
    (lambda t: t.update({"wte.weight": t["transformer.wte.weight"]}), None,
     r"key 'wte.weight' appears both with and without the 'transformer.' prefix"),
    (None, lambda c: c.update(activation_function="gelu"),
     r"activation_function='gelu' is not supported: this GPT-2 uses the tanh approximation"),
    (None, lambda c: c.update(scale_attn_by_inverse_layer_idx=True),
     r"scale_attn_by_inverse_layer_idx=True is not supported"),
    (None, lambda c: c.update(model_type="llama"), r"model_type='llama' is not supported"),
    (None, lambda c: c.update(rope_theta=1e4), r"rope_theta=10000.0 is an option this loader does not know"),
    (None, lambda c: c.update(n_embd=66), r"n_embd \(66\) must be divisible by n_head \(4\)"),
    (None, lambda c: c.update(n_layer=3), r"missing key 'transformer.h.2.ln_1.weight'"),
    (None, lambda c: c.update(vocab_size=520),
     r"key 'transformer.wte.weight' has shape \(512, 64\), expected \(520, 64\); does config.json describe"),
], ids=["missing", "unknown", "shape", "transposed", "dtype", "untied", "twice", "gelu", "layer-scale",
        "model-type", "unknown-option", "heads", "layers", "vocab"])
def test_bad_checkpoints_are_refused_naming_the_key(tmp_path, weights_change, config_change, error):
    folder = copy_checkpoint(tmp_path)
    if weights_change:
        edit_weights(folder, weights_change)
    if config_change:
        edit_config(folder, config_change)
    with pytest.raises(ValueError, match=error):
        load_gpt2(folder)


def test_a_truncated_file_is_refused(tmp_path):
    folder = copy_checkpoint(tmp_path)
    raw = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(raw[:len(raw) // 2])
    with pytest.raises(ValueError, match=r"model.safetensors is truncated: tensor '.*' ends at byte"):
        load_gpt2(folder)


def test_missing_files_and_bad_json_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"config.json does not exist"):
        load_gpt2(tmp_path)
    folder = copy_checkpoint(tmp_path)
    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=r"model.safetensors does not exist \(only model.safetensors"):
        load_gpt2(folder)
    (folder / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"config.json is not valid JSON"):
        read_config(folder)


def test_save_then_load_round_trips_and_transformers_names_are_kept(tmp_path):
    model = load_gpt2(DATA, dtype="float64")
    save_gpt2(model, tmp_path / "again", dtype="float32")
    assert sorted(read_safetensors(tmp_path / "again" / "model.safetensors")) == \
        sorted(read_safetensors(DATA / "model.safetensors"))
    assert np.abs(logits(load_gpt2(tmp_path / "again")) - REF["logits_f64"]).max() <= 1e-5
    assert read_config(tmp_path / "again") == read_config(DATA)


# --------------------------------------------------------------------------- LoRA on GPT-2

def test_target_modules_select_what_a_peft_user_expects():
    model = inject_lora(load_gpt2(DATA), LoraConfig(r=4, target_modules=["c_attn"]))
    adapted = [n for n, m in model.named_modules() if isinstance(m, LoRAConv1D)]
    assert adapted == ["transformer.h.0.attn.c_attn", "transformer.h.1.attn.c_attn"]
    assert model.num_parameters(trainable_only=True) == 2 * 4 * (64 + 192)
    assert model.num_parameters() == 2 * 4 * 256 + sum(a.size for a in read_safetensors(
        DATA / "model.safetensors").values())                   # the tied head is counted once


@pytest.mark.parametrize("targets", [["c_attn"], ["c_attn", "lm_head"]])
def test_the_trainable_report_counts_the_tied_weight_once(targets):
    model = inject_lora(load_gpt2(DATA), LoraConfig(r=4, target_modules=targets))
    report = trainable_report(model)
    assert report.total == model.num_parameters() == 136_960 + report.trainable
    assert report.trainable == model.num_parameters(trainable_only=True)


def test_variants_other_than_plain_lora_are_refused_on_conv1d():
    with pytest.raises(ValueError, match=r"transformer.h.0.attn.c_attn is a Conv1D layer \(GPT-2's\): "
                                         r"variant 'dora' is not available"):
        inject_lora(load_gpt2(DATA), LoraConfig(r=4, target_modules=["c_attn"], variant="dora"))


def fruit_batch(seed=0, B=4, T=32):
    ids = np.random.default_rng(seed).integers(0, 512, (B, T + 1))
    return backend.asarray(ids[:, :-1]), backend.asarray(ids[:, 1:])


def test_a_lora_fine_tune_moves_the_loss_and_leaves_the_base_untouched():
    model = load_gpt2(DATA)
    base = {n: backend.to_numpy(p.data).copy() for n, p in model.named_parameters()}
    inject_lora(model, LoraConfig(r=4, lora_alpha=8, target_modules=["c_attn", "c_fc", "lm_head"]))
    x, y = fruit_batch()
    loss_fn, opt = SoftmaxCrossEntropy(), None
    opt = Adam(model, lr=1e-2)
    losses = []
    for _ in range(30):
        opt.zero_grad()
        losses.append(float(loss_fn(model(x), y)))
        model.backward(loss_fn.backward())
        opt.step()
    assert losses[-1] < 0.8 * losses[0], losses
    for n, p in model.named_parameters():
        if n in base:
            assert (backend.to_numpy(p.data) == base[n]).all(), n


def trained_adapter(dtype="float32", targets=("c_attn", "c_proj", "c_fc", "lm_head"), seed=1):
    model = load_gpt2(DATA, dtype=dtype)
    inject_lora(model, LoraConfig(r=4, lora_alpha=8, target_modules=list(targets), seed=seed))
    rng = np.random.default_rng(seed)
    for n, p in model.named_parameters():
        if n.endswith("lora_B"):
            p.data = backend.asarray(rng.standard_normal(p.shape) * 0.05, dtype=p.dtype)
    return model


@pytest.mark.parametrize("save, load", [(export_peft, import_peft), (save_adapter, load_adapter)],
                         ids=["peft", "lora_np"])
def test_saving_then_loading_an_adapter_is_bit_exact(tmp_path, save, load):
    model = trained_adapter()
    before = logits(model)
    save(model, tmp_path / "adapter")
    again = load_gpt2(DATA)
    load(again, tmp_path / "adapter")
    assert (logits(again) == before).all()
    ours = {n: backend.to_numpy(p.data) for n, p in model.named_parameters() if p.trainable}
    theirs = {n: backend.to_numpy(p.data) for n, p in again.named_parameters() if p.trainable}
    assert sorted(ours) == sorted(theirs) and all((ours[n] == theirs[n]).all() for n in ours)


def test_the_export_uses_peft_names_and_fan_in_fan_out(tmp_path):
    export_peft(trained_adapter(targets=("c_attn",)), tmp_path / "a")
    cfg = json.loads((tmp_path / "a" / "adapter_config.json").read_text())
    assert cfg["fan_in_fan_out"] is True and cfg["target_modules"] == [
        "transformer.h.0.attn.c_attn", "transformer.h.1.attn.c_attn"]
    keys = sorted(read_safetensors(tmp_path / "a" / "adapter_model.safetensors"))
    assert keys[:2] == ["base_model.model.transformer.h.0.attn.c_attn.lora_A.weight",
                        "base_model.model.transformer.h.0.attn.c_attn.lora_B.weight"]
    peft_keys = sorted(k for k in read_safetensors(DATA / "peft_adapter" / "adapter_model.safetensors")
                       if "h.0.attn.c_attn" in k)
    assert keys[:2] == peft_keys                                 # the names PEFT itself wrote


@pytest.mark.parametrize("dtype, tol", [("float64", 1e-10), ("float32", 1e-5)])
def test_an_adapter_peft_wrote_for_gpt2_imports_with_its_logits(dtype, tol):
    model = load_gpt2(DATA, dtype=dtype)
    import_peft(model, DATA / "peft_adapter")                    # fan_in_fan_out false, lm_head included
    assert np.abs(logits(model) - PEFT_REF["logits_f64"]).max() <= tol


def test_peft_rslora_adapter_with_its_own_biases_imports():
    model = load_gpt2(DATA, dtype="float64")
    import_peft(model, DATA / "peft_adapter_rslora")
    assert np.abs(logits(model) - PEFT_REF["rslora_logits_f64"]).max() <= 1e-10


def test_peft_base_weight_of_another_model_is_refused(tmp_path):
    shutil.copytree(DATA / "peft_adapter", tmp_path / "a")
    path = tmp_path / "a" / "adapter_model.safetensors"
    flat = read_safetensors(path)
    flat["base_model.model.lm_head.base_layer.weight"] += 1
    write_safetensors(path, flat)
    with pytest.raises(ValueError, match=r"lm_head.base_layer.weight' holds a base weight that differs"):
        import_peft(load_gpt2(DATA), tmp_path / "a")


def test_merging_into_conv1d_gives_the_same_outputs_and_unmerging_restores_w0():
    model = trained_adapter(dtype="float64")
    before = logits(model)
    W0 = backend.to_numpy(model.transformer.h[0].attn.c_attn.weight.data).copy()
    merge_lora(model)
    assert model.transformer.h[0].attn.c_attn.weight.shape == (64, 192)
    assert np.abs(logits(model) - before).max() < 1e-12
    unmerge_lora(model)
    assert (backend.to_numpy(model.transformer.h[0].attn.c_attn.weight.data) == W0).all()
    assert np.abs(logits(model) - before).max() == 0


def test_merge_and_unload_unties_an_adapted_head_and_keeps_the_outputs(tmp_path):
    """PEFT's merge_and_unload adds the head's ΔW into the weight it shares with wte, so the input
    embedding changes too and the outputs move (by 0.32 in the reference); here the head is untied."""
    model = load_gpt2(DATA, dtype="float64")
    import_peft(model, DATA / "peft_adapter")
    wte = backend.to_numpy(model.transformer.wte.weight.data).copy()
    merge_and_unload(model)
    assert model.lm_head.weight is not model.transformer.wte.weight and model.lm_head.tied_to is None
    assert (backend.to_numpy(model.transformer.wte.weight.data) == wte).all()
    assert np.abs(logits(model) - PEFT_REF["logits_f64"]).max() <= 1e-10
    assert np.abs(PEFT_REF["merged_logits_f64"] - PEFT_REF["logits_f64"]).max() > 0.1
    save_gpt2(model, tmp_path / "merged")
    assert json.loads((tmp_path / "merged" / "config.json").read_text())["tie_word_embeddings"] is False
    reloaded = load_gpt2(tmp_path / "merged", dtype="float64")
    assert np.abs(logits(reloaded) - PEFT_REF["logits_f64"]).max() <= 1e-10


def test_save_refuses_a_model_with_adapters(tmp_path):
    with pytest.raises(ValueError, match=r"save_gpt2: the model has LoRA layers; call .*merge_and_unload"):
        save_gpt2(trained_adapter(), tmp_path / "x")


def test_generate_runs_on_gpt2_and_is_seeded():
    model = load_gpt2(DATA)
    prompt = backend.asarray(REF["ids"][0, :5])
    a, b = generate(model, prompt, 10, seed=3), generate(model, prompt, 10, seed=3)
    assert a.shape == (15,) and (backend.to_numpy(a) == backend.to_numpy(b)).all()
    assert (backend.to_numpy(a[:5]) == REF["ids"][0, :5]).all()


def test_a_random_gpt2_small_has_124m_parameters():
    cfg = GPT2Config()
    d, V, L = cfg.n_embd, cfg.vocab_size, cfg.n_layer
    count = V * d + cfg.n_positions * d + 2 * d + L * (12 * d * d + 13 * d)
    assert count == 124_439_808                                 # GPT-2 small, as published
    assert GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=40, n_positions=8)) \
        .num_parameters() == 40 * 16 + 8 * 16 + 2 * 16 + 12 * 16 * 16 + 13 * 16


def test_merging_both_tied_layers_keeps_the_outputs_and_unmerging_reties_them():
    """An adapter on wte changes the lookup only, one on lm_head the head only: merged, each gets its
    own weight (merging in place would leak one into the other through the shared Parameter)."""
    model = trained_adapter(dtype="float64", targets=("c_attn", "lm_head", "wte"))
    rng = np.random.default_rng(5)
    for n, p in model.named_parameters():
        if "wte.lora_A" in n:                                        # A starts at zero on an embedding
            p.data = backend.asarray(rng.standard_normal(p.shape) * 0.05)
    before = logits(model)
    shared = model.transformer.wte.weight
    merge_lora(model)
    assert np.abs(logits(model) - before).max() < 1e-12
    W0 = backend.to_numpy(load_gpt2(DATA, "float64").lm_head.weight.data)
    assert (backend.to_numpy(shared.data) == W0).all()                 # the shared Parameter kept W0
    unmerge_lora(model)
    assert model.transformer.wte.weight is shared and model.lm_head.weight is shared
    merge_and_unload(model)
    assert model.lm_head.weight is not model.transformer.wte.weight
    assert np.abs(logits(model) - before).max() < 1e-12


def test_lora_nps_own_adapter_files_refuse_another_base(tmp_path):
    save_adapter(trained_adapter(), tmp_path / "a")
    other = load_gpt2(DATA)
    other.transformer.ln_f.bias.data = other.transformer.ln_f.bias.data + 1
    with pytest.raises(ValueError, match="fingerprint|base model"):
        load_adapter(other, tmp_path / "a")


def test_moving_between_backends_keeps_the_head_tied():
    model = load_gpt2(DATA)
    model.to("emulated")
    assert model.lm_head.weight is model.transformer.wte.weight
    with backend.use_backend("emulated"):
        out = model(backend.asarray(REF["ids"]))
        assert np.abs(backend.to_numpy(out) - REF["logits_f64"]).max() <= 1e-5


def test_a_wider_mlp_and_an_untied_head_round_trip(tmp_path):
    """n_inner (the MLP's width) and tie_word_embeddings=False are honoured on the way out and back in."""
    config = GPT2Config(vocab_size=30, n_positions=8, n_embd=16, n_layer=1, n_head=2, n_inner=24,
                        tie_word_embeddings=False)
    model = GPT2LMHeadModel(config, dtype="float64")
    assert model.transformer.h[0].mlp.c_fc.weight.shape == (16, 24)
    assert model.lm_head.weight is not model.transformer.wte.weight
    save_gpt2(model, tmp_path / "m")
    assert "lm_head.weight" in read_safetensors(tmp_path / "m" / "model.safetensors")
    again = load_gpt2(tmp_path / "m", dtype="float64")
    ids = np.arange(12).reshape(2, 6)
    assert (logits(again, ids) == logits(model, ids)).all()


def test_gpt2_smalls_own_config_json_is_accepted():
    """The config.json of openai-community/gpt2, as published: every key is honoured or ignored."""
    published = {
        "activation_function": "gelu_new", "architectures": ["GPT2LMHeadModel"], "attn_pdrop": 0.1,
        "bos_token_id": 50256, "embd_pdrop": 0.1, "eos_token_id": 50256, "initializer_range": 0.02,
        "layer_norm_epsilon": 1e-05, "model_type": "gpt2", "n_ctx": 1024, "n_embd": 768, "n_head": 12,
        "n_layer": 12, "n_positions": 1024, "resid_pdrop": 0.1, "summary_activation": None,
        "summary_first_dropout": 0.1, "summary_proj_to_labels": True, "summary_type": "cls_index",
        "summary_use_proj": True, "task_specific_params": {"text-generation": {"do_sample": True,
                                                                                "max_length": 50}},
        "vocab_size": 50257}
    assert GPT2Config.from_dict(published) == GPT2Config(bos_token_id=50256, eos_token_id=50256)
