"""PEFT's adapter folders (export_peft, import_peft) and the safetensors files they hold.

Every failure is produced by writing the bad file it is about, then loading it, and the error must
name the key, the file or the argument at fault: a config option this importer cannot honour (an
aLoRA's invocation tokens, DoRA, per-layer ranks, an option it does not know), a tensor of the
wrong shape, at the wrong place or holding NaN, a bias the config does not announce. Round trips
are checked bit for bit.

Optional cross-checks (skipped when the packages are missing):

* ``test_safetensors_matches_the_reference_package`` needs ``pip install safetensors``;
* ``test_peft_loads_our_export`` needs PyTorch and PEFT. On this project's machines the CPU wheel
  of PyTorch 2.13.0 is on disk, so in a throwaway virtual environment::

      python3 -m venv /tmp/peftvenv
      /tmp/peftvenv/bin/pip install torch==2.13.0          # first, so peft does not pull a CUDA build
      /tmp/peftvenv/bin/pip install peft safetensors numpy pytest hypothesis
      PYTHONPATH=. /tmp/peftvenv/bin/python -m pytest -q tests/test_peft_io.py
"""
import json
import os
import struct

import adapter_helpers
import numpy as np
import pytest
from adapter_helpers import adapted_lm, adapted_mlp, edit_config, lm, mlp, out, randomize, same_state

from lora_np import backend
from lora_np.lora import (
    LoraConfig,
    active_adapter,
    adapter_layers,
    adapters_disabled,
    base_modules,
    export_peft,
    import_peft,
    inject_lora,
    load_adapter,
    lora_state_dict,
    read_safetensors,
    save_adapter,
    set_adapter,
    write_safetensors,
)
from lora_np.nn import LoRARankWarning

X, ids = adapter_helpers.X, adapter_helpers.ids      # shared fixtures: a batch for mlp(), tokens for lm()

WEIGHTS, CONFIG = "adapter_model.safetensors", "adapter_config.json"

# --------------------------------------------------------------------------- safetensors

HOST_TENSORS = {"w": np.arange(12, dtype=np.float32).reshape(3, 4) / 7, "d": np.array([1e-300, -2.5]),
                "h": np.array([[0.5, -1.0]], np.float16), "i": np.array([-3, 2**40], np.int64),
                "u": np.arange(5, dtype=np.uint8), "b": np.array([True, False]),
                "s": np.array(3.25, np.float32), "empty": np.zeros((0, 3), np.float32)}


@pytest.mark.host_only
def test_safetensors_round_trip_is_bit_exact(tmp_path):
    path = tmp_path / "t.safetensors"
    write_safetensors(path, HOST_TENSORS, metadata={"format": "pt"})
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    w = json.loads(raw[8:8 + n])["w"]
    assert n % 8 == 0 and w == {"dtype": "F32", "shape": [3, 4], "data_offsets": w["data_offsets"]}
    back, meta = read_safetensors(path, return_metadata=True)
    assert meta == {"format": "pt"} and same_state(back, HOST_TENSORS)
    assert os.listdir(tmp_path) == ["t.safetensors"]


def test_safetensors_takes_device_arrays(tmp_path):
    write_safetensors(tmp_path / "t.safetensors", {"x": backend.asarray([[1.0, 2.0]])})
    back = read_safetensors(tmp_path / "t.safetensors")["x"]
    assert np.array_equal(back, np.array([[1.0, 2.0]], np.float32))


@pytest.mark.host_only
def test_safetensors_matches_the_reference_package(tmp_path):
    st = pytest.importorskip("safetensors.numpy")
    ours, theirs = tmp_path / "ours.safetensors", tmp_path / "theirs.safetensors"
    write_safetensors(ours, HOST_TENSORS, metadata={"format": "pt"})
    assert same_state(st.load_file(str(ours)), HOST_TENSORS)
    st.save_file(HOST_TENSORS, str(theirs), metadata={"format": "pt"})
    assert same_state(read_safetensors(theirs), HOST_TENSORS)


def _file(header: dict, data: bytes, pad=True) -> bytes:
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8 if pad else 0)
    return struct.pack("<Q", len(head)) + head + data


def _one(dtype="F32", shape=(1,), offsets=(0, 4), data=4) -> bytes:
    """A file of one tensor "a" with this header entry and ``data`` zero bytes."""
    return _file({"a": {"dtype": dtype, "shape": list(shape), "data_offsets": list(offsets)}}, b"\0" * data)


@pytest.mark.host_only
@pytest.mark.parametrize("raw, error", [
    (b"\x08\x00\x00", r"truncated: 3 bytes"),
    (struct.pack("<Q", 64) + b'{"a":', r"truncated: the header should be 64 bytes"),
    (struct.pack("<Q", 2**40) + b"{}", r"bad header: its length field says"),
    (struct.pack("<Q", 6) + b"{oops}", r"bad header: not valid JSON"),
    (_one(shape=[2], offsets=[0, 8]), r"truncated: tensor 'a' ends at byte 8"),
    (_one(shape=[2], offsets=[0, 4]), r"needs 8 bytes"),
    (_one(offsets=[4, 8], data=8), r"starts at byte 4, expected 0"),
    (_one(offsets=[0, 4], data=8), r"cover 4 bytes of data, the file has 8"),
    (_one(dtype="C64", offsets=[0, 8], data=8), r"dtype 'C64'"),
    (_one(shape=[-1]), r"shape \[-1\]"),
    (_file({"a": {"dtype": "F32", "shape": [1]}}, b"\0" * 4), r"needs exactly dtype, shape and data_offsets"),
    (_file({"__metadata__": {"k": 1}}, b""), r"__metadata__ must map strings to strings"),
], ids=["short", "cut-header", "huge-length", "json", "cut-data", "size", "gap", "trailing", "dtype", "shape",
        "fields", "metadata"])
def test_bad_safetensors_files_are_named(tmp_path, raw, error):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(raw)
    with pytest.raises(ValueError, match=error):
        read_safetensors(path)


@pytest.mark.host_only
def test_safetensors_reads_bf16_and_refuses_what_it_cannot_write(tmp_path):
    bits = (np.array([1.5, -2.0], np.float32).view(np.uint32) >> 16).astype("<u2").tobytes()
    header = {"x": {"dtype": "BF16", "shape": [2], "data_offsets": [0, 4]}}
    (tmp_path / "b.safetensors").write_bytes(_file(header, bits))
    x = read_safetensors(tmp_path / "b.safetensors")["x"]
    assert x.dtype == np.float32 and x.tolist() == [1.5, -2.0]
    with pytest.raises(ValueError, match="tensor 'z' has dtype complex64"):
        write_safetensors(tmp_path / "c.safetensors", {"z": np.zeros(2, np.complex64)})
    assert os.listdir(tmp_path) == ["b.safetensors"]


# --------------------------------------------------------------------------- PEFT helpers


def _rename(old, new):
    def change(t):
        t[new] = t.pop(old)
    return change


def edit_tensors(d, change):
    """Rewrite the folder's adapter_model.safetensors with ``change`` applied to its tensors."""
    tensors = read_safetensors(os.path.join(d, WEIGHTS))
    change(tensors)
    write_safetensors(os.path.join(d, WEIGHTS), tensors)


def snapshot(d):
    return {n: (d / n).read_bytes() for n in sorted(os.listdir(d))}


def untouched(model) -> bool:
    """No adapter was left on the model and every parameter is trainable again, as in a fresh one."""
    return getattr(model, "_lora", None) is None and all(p.trainable for p in model.parameters())


# --------------------------------------------------------------------------- PEFT export and round trips


def test_peft_export_has_peft_keys_shapes_and_config(tmp_path):
    export_peft(adapted_lm(), tmp_path)
    tensors, meta = read_safetensors(tmp_path / WEIGHTS, return_metadata=True)
    assert meta == {"format": "pt"}
    assert {k: v.shape for k, v in tensors.items()} == {
        "base_model.model.tok_emb.lora_embedding_A": (2, 11),
        "base_model.model.tok_emb.lora_embedding_B": (16, 2),
        "base_model.model.blocks.0.attn.q.lora_A.weight": (2, 16),
        "base_model.model.blocks.0.attn.q.lora_B.weight": (16, 2),
        "base_model.model.blocks.0.attn.v.lora_A.weight": (2, 16),
        "base_model.model.blocks.0.attn.v.lora_B.weight": (16, 2)}
    cfg = json.loads((tmp_path / CONFIG).read_text())
    assert cfg["peft_type"] == "LORA" and cfg["task_type"] is None and cfg["r"] == 2
    assert cfg["lora_alpha"] == 4 and cfg["use_rslora"] is True
    assert cfg["target_modules"] == ["blocks.0.attn.q", "blocks.0.attn.v", "tok_emb"]
    assert (cfg["bias"], cfg["fan_in_fan_out"], cfg["init_lora_weights"], cfg["inference_mode"]) == (
        "none", False, True, True)
    assert cfg["modules_to_save"] is None and cfg["base_model_name_or_path"] is None
    assert cfg["revision"] is None
    assert (cfg["use_dora"], cfg["alora_invocation_tokens"], cfg["rank_pattern"]) == (False, None, {})


def test_peft_round_trip_is_bit_exact(tmp_path, X, ids):
    model = adapted_mlp()
    export_peft(model, tmp_path / "mlp")
    fresh = mlp()
    assert import_peft(fresh, tmp_path / "mlp") == "default"
    assert np.array_equal(out(fresh, X), out(model, X))
    assert same_state(lora_state_dict(fresh), lora_state_dict(model))
    model = adapted_lm()
    export_peft(model, tmp_path / "lm")
    fresh = randomize(inject_lora(lm(), LoraConfig(r=1, target_modules=["head"]), adapter_name="x"), "x")
    import_peft(fresh, tmp_path / "lm", adapter_name="verse")
    assert active_adapter(fresh) == "x"                            # added, not activated
    set_adapter(fresh, "verse")
    assert np.array_equal(out(fresh, ids), out(model, ids))


def test_peft_export_refuses_variants(tmp_path):
    with pytest.raises(ValueError, match="variant 'dora'"):
        export_peft(adapted_mlp(variant="dora"), tmp_path)


def test_peft_export_keeps_the_other_files_of_the_folder(tmp_path, X):
    """Both formats live in one folder: exporting to PEFT keeps lora_np's files (and a README), and
    each format loads on its own from the shared folder."""
    model = adapted_mlp()
    save_adapter(model, tmp_path)
    (tmp_path / "README.md").write_text("grapes\n")
    native = snapshot(tmp_path)
    export_peft(model, tmp_path)
    assert sorted(os.listdir(tmp_path)) == sorted([*native, CONFIG, WEIGHTS])
    assert {n: b for n, b in snapshot(tmp_path).items() if n in native} == native
    y_first = out(model, X)
    randomize(model, seed=4)
    export_peft(model, tmp_path)                           # a second export replaces only PEFT's files
    assert {n: b for n, b in snapshot(tmp_path).items() if n in native} == native
    via_peft, via_native = mlp(), mlp()
    import_peft(via_peft, tmp_path)
    load_adapter(via_native, tmp_path)
    assert np.array_equal(out(via_peft, X), out(model, X))
    assert np.array_equal(out(via_native, X), y_first)              # lora_np's files hold the first save
    assert not np.array_equal(y_first, out(model, X))


# --------------------------------------------------------------------------- bad PEFT adapters


def assert_refused(folder, source, change_config, change_tensors, error):
    """Export ``source``, damage the export as told, and check the import is refused as ``error`` says,
    leaving the model as it was."""
    export_peft(source, folder)
    if change_config:
        edit_config(folder, change_config)
    if change_tensors:
        edit_tensors(folder, change_tensors)
    model = mlp()
    with pytest.raises(ValueError, match=error):
        import_peft(model, folder)
    assert untouched(model)


@pytest.mark.parametrize("change_config, change_tensors, error", [
    (lambda c: c.update(peft_type="PREFIX_TUNING"), None, r"peft_type must be 'LORA', got 'PREFIX_TUNING'"),
    (lambda c: c.update(fan_in_fan_out="yes"), None, r"fan_in_fan_out must be True or False, got 'yes'"),
    (lambda c: c.update(use_dora=True), None,
     r"use_dora=True is not supported: lora_np imports plain LoRA, so use_dora must have PEFT's default, "
     r"False"),
    (lambda c: c.update(bias="all"), None, r"bias='all' is not supported"),
    (lambda c: c.update(rank_pattern={"fc1": 4}), None,
     r"rank_pattern=\{'fc1': 4\} is not supported: .* so rank_pattern must have PEFT's default, \{\}"),
    (lambda c: c.update(init_lora_weights="pissa"), None, r"init_lora_weights='pissa' is not supported"),
    (lambda c: c.update(r=3), None,
     r"key 'base_model.model.fc1.lora_A.weight' has shape \(2, 6\) and dtype float32, but 'fc1' needs a "
     r"floating tensor of shape \(3, 6\) \(the config says r=3\)"),
    (None, _rename("base_model.model.fc1.lora_A.weight", "base_model.model.fc9.lora_A.weight"),
     r"key 'base_model.model.fc9.lora_A.weight' maps to 'fc9', which is no Linear or Conv1D layer"),
    (None, _rename("base_model.model.fc1.lora_A.weight", "base_model.model.fc1.lora_embedding_A"),
     r"maps to 'fc1', which is no Embedding layer of this model \(it is a Linear\)"),
    (None, _rename("base_model.model.fc1.lora_A.weight", "base_model.model.fc1.lora_A.default.weight"),
     r"key 'base_model.model.fc1.lora_A.default.weight' is not a LoRA tensor"),
    (None, lambda t: t.pop("base_model.model.fc2.lora_B.weight"), r"'fc2' has no lora_B tensor"),
    (None, lambda t: t.update({"base_model.model.fc1.lora_B.weight": np.zeros((7, 2), np.float32)}),
     r"key 'base_model.model.fc1.lora_B.weight' has shape \(7, 2\) and dtype float32, but 'fc1' needs a "
     r"floating tensor of shape \(8, 2\)"),
    (None, lambda t: t.update({"base_model.model.fc1.lora_B.weight": np.zeros((8, 2), np.int32)}),
     r"key 'base_model.model.fc1.lora_B.weight' has shape \(8, 2\) and dtype int32, but 'fc1' needs a "
     r"floating tensor of shape \(8, 2\)"),
], ids=["type", "fan_in_fan_out", "dora", "bias", "rank_pattern", "pissa", "r", "nowhere", "kind", "suffix",
        "pair", "shape", "dtype"])
def test_bad_peft_adapters_are_named(tmp_path, change_config, change_tensors, error):
    assert_refused(tmp_path, adapted_mlp(), change_config, change_tensors, error)


# --------------------------------------------------------------------------- the config's allow-list


# Options whose value changes what PEFT computes, each set to something other than PEFT's default.
SET_OPTIONS = [
    ("alora_invocation_tokens", [5, 7]),               # aLoRA: PEFT applies it only after these tokens
    ("use_bdlora", {"target_modules_bd_a": ["fc1"]}),
    ("kasa_config", {"kasa_dim": 4}),
    ("arrow_config", {"top_k": 2}),
    ("use_qalora", True),
    ("megatron_config", {"tensor_model_parallel_size": 2}),
    ("lora_bias", True),
    ("layer_replication", [[0, 1]]),
    ("trainable_token_indices", [1, 2]),
    ("modules_to_save", ["head"]),
    ("target_parameters", ["fc1.weight"]),
]


@pytest.mark.parametrize("key, value", SET_OPTIONS, ids=[key for key, _ in SET_OPTIONS])
def test_peft_options_that_change_the_adapter_are_refused_naming_the_key(tmp_path, X, key, value):
    export_peft(adapted_mlp(), tmp_path)
    edit_config(tmp_path, lambda c: c.update({key: value}))
    model = mlp()
    y = out(model, X)
    error = rf"adapter_config.json: {key}=.* is not supported: lora_np imports plain LoRA, so {key} must "
    with pytest.raises(ValueError, match=error + "have PEFT's default, "):
        import_peft(model, tmp_path)
    assert untouched(model) and np.array_equal(out(model, X), y)


def test_an_unknown_option_that_is_set_is_refused_naming_it(tmp_path):
    export_peft(adapted_mlp(), tmp_path)
    edit_config(tmp_path, lambda c: c.update(my_new_option=3))
    model = mlp()
    with pytest.raises(ValueError, match=r"adapter_config.json: my_new_option=3 is an option this importer "
                                         r"does not know; it refuses unknown options that are set"):
        import_peft(model, tmp_path)
    assert untouched(model)


@pytest.mark.parametrize("value", [0, 0.0])
def test_an_unknown_option_set_to_zero_is_refused(tmp_path, value):
    export_peft(adapted_mlp(), tmp_path)
    edit_config(tmp_path, lambda c: c.update(my_new_scale=value))
    with pytest.raises(ValueError, match=rf"adapter_config.json: my_new_scale={value!r} is an option"):
        import_peft(mlp(), tmp_path)


def test_unset_unknown_options_and_ignored_keys_import(tmp_path, X):
    """Options PEFT added later, left unset (null, false, empty), and the keys that do not change what
    the adapter computes (which task, which base model, which PEFT wrote it, how it is run) import."""
    model = adapted_mlp()
    export_peft(model, tmp_path)
    edit_config(tmp_path, lambda c: c.update(
        my_new_option=None, my_new_flag=False, my_new_list=[], my_new_table={}, my_new_name="",
        task_type="CAUSAL_LM", base_model_name_or_path="gpt2", peft_version="0.18.0",
        runtime_config={"ephemeral_gpu_offload": False}, revision="main", inference_mode=False))
    fresh = mlp()
    assert import_peft(fresh, tmp_path) == "default"
    assert np.array_equal(out(fresh, X), out(model, X))


# --------------------------------------------------------------------------- a folder built by hand


@pytest.mark.parametrize("use_rslora", [False, True])
def test_a_rank_above_min_d_in_d_out_imports_with_a_warning(tmp_path, X, use_rslora):
    """PEFT allows r > min(d_in, d_out); the import warns, and the layer computes y = h (W0 + s B A)ᵀ + b0.

    The folder is written by hand with only the keys an older PEFT writes."""
    rng = np.random.default_rng(0)
    A, B = rng.standard_normal((4, 8)).astype(np.float32), rng.standard_normal((3, 4)).astype(np.float32)
    tensors = {"base_model.model.head.lora_A.weight": A, "base_model.model.head.lora_B.weight": B}
    write_safetensors(tmp_path / WEIGHTS, tensors, metadata={"format": "pt"})
    config = {"peft_type": "LORA", "r": 4, "lora_alpha": 6, "target_modules": ["head"],
              "use_rslora": use_rslora, "bias": "none"}
    (tmp_path / CONFIG).write_text(json.dumps(config))
    model = mlp()
    with pytest.warns(LoRARankWarning, match=r"head: r=4 is above min\(d_in, d_out\) = min\(8, 3\) = 3"):
        import_peft(model, tmp_path)
    assert list(adapter_layers(model)) == ["head"]
    base = {n: backend.to_numpy(p.data).astype(np.float64) for n, p in mlp().named_parameters()}
    h = backend.to_numpy(X).astype(np.float64)
    for i in (1, 2):
        h = np.maximum(h @ base[f"fc{i}.weight"].T + base[f"fc{i}.bias"], 0)
    s = 6 / 2 if use_rslora else 6 / 4                                # alpha/√r or alpha/r
    y = h @ (base["head.weight"] + s * B.astype(np.float64) @ A).T + base["head.bias"]
    np.testing.assert_allclose(out(model, X), y, rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- named adapters in subfolders


def test_a_named_adapter_is_found_in_its_subfolder(tmp_path, X):
    """PEFT's save_pretrained puts every adapter but "default" in ``<dir>/<adapter_name>/``."""
    model = adapted_mlp()
    export_peft(model, tmp_path / "x" / "named")
    fresh = mlp()
    assert import_peft(fresh, tmp_path / "x", adapter_name="named") == "named"
    assert active_adapter(fresh) == "named" and np.array_equal(out(fresh, X), out(model, X))
    other = mlp()
    error = r"x/adapter_config.json does not exist\. .*the subfolders with an adapter here are \['named'\]: "
    with pytest.raises(FileNotFoundError, match=error + "pass adapter_name="):
        import_peft(other, tmp_path / "x", adapter_name="other")
    assert untouched(other)


def test_a_named_subfolder_is_preferred_to_the_default_adapter_beside_it(tmp_path, X):
    """PEFT's layout for two adapters: "default" at the top, the other one in its subfolder."""
    default, named = adapted_mlp(), randomize(adapted_mlp(), "grapes", seed=5)
    export_peft(default, tmp_path / "x")
    export_peft(named, tmp_path / "x" / "named")
    a, b = mlp(), mlp()
    import_peft(a, tmp_path / "x")
    import_peft(b, tmp_path / "x", adapter_name="named")
    assert np.array_equal(out(a, X), out(default, X)) and np.array_equal(out(b, X), out(named, X))
    assert not np.array_equal(out(a, X), out(b, X))


def test_a_missing_folder_and_a_lora_np_folder_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"PEFT adapter folder not found: .*nowhere does not exist"):
        import_peft(mlp(), tmp_path / "nowhere")
    save_adapter(adapted_mlp(), tmp_path / "ours")
    error = r"ours/adapter_config.json does not exist\. It holds a lora_np adapter: load it with "
    with pytest.raises(FileNotFoundError, match=error + r"lora_np.lora.load_adapter\(model, directory\)"):
        import_peft(mlp(), tmp_path / "ours")


def test_a_lora_np_format_1_folder_is_named(tmp_path):
    """lora_np 0.1 saved adapter_config.json (with "library": "lora_np") and adapter.npz."""
    (tmp_path / CONFIG).write_text(json.dumps({"format_version": 1, "library": "lora_np", "r": 2}, indent=2))
    np.savez(tmp_path / "adapter.npz", **{"fc1.lora_A": np.zeros((2, 6), np.float32)})
    with pytest.raises((FileNotFoundError, ValueError), match=r"lora_np.lora.load_adapter"):
        import_peft(mlp(), tmp_path)


# --------------------------------------------------------------------------- bias="lora_only"


def biased_mlp():
    """An adapter with bias="lora_only" whose own biases differ from the base's b0."""
    model = adapted_mlp(bias="lora_only")
    for i, layer in enumerate(adapter_layers(model).values()):
        layer.bias.data = layer.bias.data + 0.25 * (i + 1)
    return model


def test_peft_round_trip_of_bias_lora_only(tmp_path, X):
    model = biased_mlp()
    export_peft(model, tmp_path)
    tensors = read_safetensors(tmp_path / WEIGHTS)
    for path in ("fc1", "fc2"):
        bias = tensors[f"base_model.model.{path}.base_layer.bias"]
        own = backend.to_numpy(adapter_layers(model)[path].bias.data)
        assert bias.shape == (8,) and np.array_equal(bias, own)
    assert "base_model.model.head.base_layer.bias" not in tensors
    assert json.loads((tmp_path / CONFIG).read_text())["bias"] == "lora_only"
    fresh, base = mlp(), mlp()
    import_peft(fresh, tmp_path)
    assert np.array_equal(out(fresh, X), out(model, X))
    assert same_state(lora_state_dict(fresh), lora_state_dict(model))
    b0 = backend.to_numpy(base_modules(fresh)["fc1"].bias.data)
    assert np.array_equal(b0, backend.to_numpy(base.fc1.bias.data))       # the base's b0 was not overwritten
    with adapters_disabled(fresh):
        assert np.array_equal(out(fresh, X), out(base, X))


def test_a_lora_only_bias_on_another_adapter_leaves_the_base_bias(tmp_path, X):
    """Added next to an active adapter, the imported bias belongs to the new adapter only."""
    model = biased_mlp()
    export_peft(model, tmp_path)
    host = randomize(inject_lora(mlp(), LoraConfig(r=1, target_modules=["fc1"]), adapter_name="x"), "x")
    y_host = out(host, X)
    import_peft(host, tmp_path, adapter_name="biased")
    assert np.array_equal(out(host, X), y_host)
    set_adapter(host, "biased")
    assert np.array_equal(out(host, X), out(model, X))
    b0 = backend.to_numpy(base_modules(host)["fc1"].bias.data)
    assert np.array_equal(b0, backend.to_numpy(mlp().fc1.bias.data))


@pytest.mark.parametrize("change_config, change_tensors, error", [
    (lambda c: c.update(bias="all"), None, r"adapter_config.json: bias='all' is not supported"),
    (lambda c: c.update(bias="none"), None,
     r"adapter_model.safetensors: 'fc1' has a bias tensor, but the config's bias is 'none'"),
    (None, lambda t: t.pop("base_model.model.fc2.base_layer.bias"),
     r"adapter_model.safetensors: 'fc2' has no bias tensor \(the config's bias is 'lora_only'"),
    (None, lambda t: t.update({"base_model.model.fc1.base_layer.bias": np.zeros(7, np.float32)}),
     r"key 'base_model.model.fc1.base_layer.bias' has shape \(7,\) and dtype float32, but 'fc1' needs a "
     r"floating tensor of shape \(8,\)$"),
    (None, lambda t: t.update({"base_model.model.head.base_layer.bias": np.zeros(3, np.float32)}),
     r"adapter_model.safetensors: 'head' has no lora_A tensor"),
], ids=["all", "none-with-bias", "missing", "shape", "bias-without-adapter"])
def test_bad_biases_are_named(tmp_path, change_config, change_tensors, error):
    assert_refused(tmp_path, biased_mlp(), change_config, change_tensors, error)


# --------------------------------------------------------------------------- NaN and inf


@pytest.mark.parametrize("key, bad, named", [
    ("base_model.model.fc2.lora_B.weight", np.nan, r"fc2\.lora_B"),
    ("base_model.model.fc1.lora_A.weight", np.inf, r"fc1\.lora_A"),
    ("base_model.model.fc1.base_layer.bias", -np.inf, r"fc1\.(base_layer\.)?bias"),
], ids=["nan-B", "inf-A", "inf-bias"])
def test_a_non_finite_tensor_in_a_folder_is_refused(tmp_path, X, key, bad, named):
    export_peft(biased_mlp(), tmp_path)

    def spoil(t):
        t[key].flat[1] = bad
    edit_tensors(tmp_path, spoil)
    model = mlp()
    y = out(model, X)
    error = rf"adapter_model.safetensors: tensor \S*{named}\S* holds 1 NaN or infinite value\(s\); "
    with pytest.raises(ValueError, match=error + "an adapter must be finite"):
        import_peft(model, tmp_path)
    assert untouched(model) and np.array_equal(out(model, X), y)


def test_a_non_finite_tensor_is_named_by_its_key_in_the_file(tmp_path):
    export_peft(biased_mlp(), tmp_path)

    def spoil(t):
        t["base_model.model.fc1.base_layer.bias"][0] = np.nan
    edit_tensors(tmp_path, spoil)
    with pytest.raises(ValueError, match=r"tensor base_model\.model\.fc1\.base_layer\.bias holds 1 NaN"):
        import_peft(mlp(), tmp_path)


def test_exporting_a_non_finite_adapter_is_refused_and_writes_nothing(tmp_path):
    model = adapted_mlp()
    export_peft(model, tmp_path / "old")
    before = snapshot(tmp_path / "old")
    B = adapter_layers(model)["fc2"].lora_B
    host = backend.to_numpy(B.data).copy()
    host[3, 1] = np.inf
    B.data = backend.asarray(host, dtype=host.dtype)
    error = (r"export_peft: adapter 'grapes': tensor base_model.model.fc2.lora_B.weight holds 1 NaN or "
             r"infinite value\(s\)")
    with pytest.raises(ValueError, match=error):
        export_peft(model, tmp_path / "new")
    with pytest.raises(ValueError, match=error):
        export_peft(model, tmp_path / "old")
    assert not (tmp_path / "new").exists() and snapshot(tmp_path / "old") == before
    assert sorted(os.listdir(tmp_path)) == ["old"]                     # no temporary folder left


# --------------------------------------------------------------------------- PEFT itself


def torch_mlp(torch):
    """The same MLP in PyTorch, with mlp()'s weights: torch.nn.Sequential names its layers as ours."""
    from collections import OrderedDict
    nn = torch.nn
    net = nn.Sequential(OrderedDict(fc1=nn.Linear(6, 8), act1=nn.ReLU(), fc2=nn.Linear(8, 8), act2=nn.ReLU(),
                                    head=nn.Linear(8, 3)))
    net.load_state_dict({k: torch.from_numpy(v) for k, v in mlp().state_dict().items()})
    return net


@pytest.mark.host_only
def test_peft_loads_our_export(tmp_path):
    """PEFT itself (PyTorch) loads our export onto the same MLP and gives our outputs."""
    torch = pytest.importorskip("torch")
    peft = pytest.importorskip("peft")
    model = adapted_mlp()
    export_peft(model, tmp_path)
    net = torch_mlp(torch)
    peft_model = peft.PeftModel.from_pretrained(net, str(tmp_path)).eval()
    x = np.random.default_rng(0).standard_normal((5, 6)).astype(np.float32)
    with torch.no_grad():
        theirs = peft_model(torch.from_numpy(x)).numpy()
    ours = out(model, backend.asarray(x))
    np.testing.assert_allclose(theirs, ours, rtol=1e-5, atol=1e-6)
    with torch.no_grad(), peft_model.disable_adapter():
        assert not np.allclose(peft_model(torch.from_numpy(x)).numpy(), ours, atol=1e-3)


@pytest.mark.host_only
def test_an_adapter_trained_by_peft_with_its_own_biases_imports_with_the_same_outputs(tmp_path):
    """PEFT writes an adapter with bias="lora_only" (random A, B and changed biases); we import it."""
    torch = pytest.importorskip("torch")
    peft = pytest.importorskip("peft")
    net = torch_mlp(torch)
    config = peft.LoraConfig(r=2, lora_alpha=3, target_modules=["fc1", "fc2"], bias="lora_only",
                             init_lora_weights=False)                    # B random too: not a no-op
    peft_model = peft.get_peft_model(net, config)
    with torch.no_grad():
        peft_model.base_model.model.fc1.base_layer.bias.add_(0.5)
        peft_model.base_model.model.fc2.base_layer.bias.sub_(0.25)
    peft_model.save_pretrained(str(tmp_path))
    x = np.random.default_rng(1).standard_normal((5, 6)).astype(np.float32)
    with torch.no_grad():
        theirs = peft_model.eval()(torch.from_numpy(x)).numpy()
    model = mlp()
    import_peft(model, tmp_path)
    np.testing.assert_allclose(out(model, backend.asarray(x)), theirs, rtol=1e-5, atol=1e-6)


@pytest.mark.host_only
def test_peft_loads_our_export_of_an_adapter_with_its_own_biases(tmp_path):
    torch = pytest.importorskip("torch")
    peft = pytest.importorskip("peft")
    model = adapted_mlp(bias="lora_only")
    for layer in adapter_layers(model, "grapes").values():
        layer.bias.data = layer.bias.data + 0.5
    export_peft(model, tmp_path)
    net = torch_mlp(torch)
    peft_model = peft.PeftModel.from_pretrained(net, str(tmp_path)).eval()
    x = np.random.default_rng(2).standard_normal((5, 6)).astype(np.float32)
    with torch.no_grad():
        theirs = peft_model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(theirs, out(model, backend.asarray(x)), rtol=1e-5, atol=1e-6)
