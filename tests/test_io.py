"""Saving and loading adapters (lora_np's own folder format and PEFT's), and safetensors.

Every failure is produced by writing the bad file it is about, then loading it: another base
model, missing/extra tensors, a wrong shape or dtype, a truncated or corrupted archive, an
unknown format version, a missing config, invalid JSON. Round trips are checked bit for bit.

Optional cross-checks (skipped when the packages are missing):

* ``test_safetensors_matches_the_reference_package`` needs ``pip install safetensors``;
* ``test_peft_loads_our_export`` needs PyTorch and PEFT. On this project's machines the CPU wheel
  of PyTorch 2.13.0 is on disk, so in a throwaway virtual environment::

      python3 -m venv /tmp/peftvenv
      /tmp/peftvenv/bin/pip install torch==2.13.0          # first, so peft does not pull a CUDA build
      /tmp/peftvenv/bin/pip install peft safetensors numpy pytest hypothesis
      PYTHONPATH=. /tmp/peftvenv/bin/python -m pytest -q tests/test_io.py
"""
import json
import os
import struct
import zipfile

import numpy as np
import pytest

from lora_np import backend
from lora_np.lora import (LoraConfig, active_adapter, adapter_layers, base_model_fingerprint, export_peft,
                          import_peft, inject_lora, list_adapters, load_adapter, lora_state_dict, read_safetensors,
                          save_adapter, set_adapter, set_adapter_strength, write_safetensors)
from lora_np.models import MLP, TransformerConfig, TransformerLM

# --------------------------------------------------------------------------- helpers


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
    return TransformerLM(TransformerConfig(d_model=16, n_heads=2, n_layers=1, context=8, vocab_size=11, seed=seed))


def adapted_lm():
    config = LoraConfig(r=2, lora_alpha=4.0, target_modules=["tok_emb", "q", "v"], use_rslora=True, seed=5)
    return randomize(inject_lora(lm(), config, adapter_name="verse"), "verse", seed=1)


def same_state(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]) for k in a)


@pytest.fixture
def X():
    return backend.Rng(7).standard_normal((5, 6))


@pytest.fixture
def ids():
    return backend.Rng(8).integers(0, 11, (2, 8))


@pytest.fixture
def saved(tmp_path):
    """(model, folder) with adapter "grapes" saved in the folder."""
    model = adapted_mlp()
    save_adapter(model, tmp_path / "a")
    return model, tmp_path / "a"


def npz_path(d):
    return os.path.join(d, "adapter.npz")


def rewrite_npz(d, change):
    with np.load(npz_path(d)) as z:
        arrays = {k: z[k] for k in z.files}
    change(arrays)
    with open(npz_path(d), "wb") as f:
        np.savez(f, **arrays)


def edit_config(d, change, name="adapter_config.json"):
    path = os.path.join(d, name)
    with open(path) as f:
        cfg = json.load(f)
    change(cfg)
    with open(path, "w") as f:
        json.dump(cfg, f)


# --------------------------------------------------------------------------- round trips


def test_round_trip_mlp_is_bit_exact(saved, X):
    model, d = saved
    assert sorted(os.listdir(d)) == ["adapter.npz", "adapter_config.json"]
    fresh = mlp()
    assert load_adapter(fresh, d) == "grapes" and active_adapter(fresh) == "grapes"
    assert same_state(lora_state_dict(fresh), lora_state_dict(model))
    assert np.array_equal(out(fresh, X), out(model, X))
    with open(os.path.join(d, "adapter_config.json")) as f:
        cfg = json.load(f)
    assert cfg["format_version"] == 1 and cfg["r"] == 2 and cfg["lora_alpha"] == 3.0
    assert cfg["scaling"] == "alpha/r" and cfg["target_modules"] == ["fc1", "fc2"] and cfg["dtype"] == "float32"
    assert cfg["layers"]["fc1"] == {"kind": "linear", "variant": "lora", "base_shape": [8, 6], "strength": 1.0,
                                    "tensors": {"lora_A": [2, 6], "lora_B": [8, 2]}}
    assert cfg["base_model_fingerprint"] == base_model_fingerprint(mlp())


def test_round_trip_transformer_with_embedding_lora(tmp_path, ids):
    model = adapted_lm()
    set_adapter_strength(model, 0.5)
    save_adapter(model, tmp_path)
    fresh = lm()
    assert load_adapter(fresh, tmp_path) == "verse"
    assert same_state(lora_state_dict(fresh), lora_state_dict(model))
    assert np.array_equal(out(fresh, ids), out(model, ids))
    cfg = json.loads((tmp_path / "adapter_config.json").read_text())
    assert cfg["scaling"] == "alpha/sqrt(r)" and cfg["use_rslora"] is True
    assert cfg["layers"]["tok_emb"]["kind"] == "embedding"
    assert cfg["layers"]["tok_emb"]["tensors"] == {"lora_A": [2, 11], "lora_B": [16, 2]}      # (r, V), (d, r)
    assert cfg["target_modules"] == ["tok_emb", "blocks.0.attn.q", "blocks.0.attn.v"]


@pytest.mark.parametrize("variant", ["dora", "vera", "pissa"])
def test_round_trip_variants(tmp_path, X, variant):
    """Variants load too: DoRA's magnitude, VeRA's λ vectors (its shared pair is rebuilt from the
    seed), PiSSA's A and B (its residual is recomputed from W0 by the same SVD)."""
    model = inject_lora(mlp(), LoraConfig(r=2, target_modules=["fc1", "fc2"], variant=variant, seed=4))
    for layer in adapter_layers(model).values():
        for p in layer.adapter_parameters().values():
            p.data = p.data + 0.1
    save_adapter(model, tmp_path)
    fresh = mlp()
    load_adapter(fresh, tmp_path)
    assert same_state(lora_state_dict(fresh), lora_state_dict(model))
    assert np.array_equal(out(fresh, X), out(model, X))


def test_loading_next_to_another_adapter_adds_it_without_activating(saved, X):
    model, d = saved
    other = randomize(inject_lora(mlp(), LoraConfig(r=1, target_modules=["head"]), adapter_name="other"), "other")
    y_other = out(other, X)
    assert load_adapter(other, d, adapter_name="grapes2") == "grapes2"
    assert list_adapters(other) == ["other", "grapes2"] and active_adapter(other) == "other"
    assert np.array_equal(out(other, X), y_other)
    set_adapter(other, "grapes2")
    assert np.array_equal(out(other, X), out(model, X))
    with pytest.raises(ValueError, match="'grapes2' already exists"):
        load_adapter(other, d, adapter_name="grapes2")


# --------------------------------------------------------------------------- atomic writes


def snapshot(d):
    return {n: (d / n).read_bytes() for n in sorted(os.listdir(d))}


def test_a_failing_save_leaves_the_previous_save_intact_and_no_temp_file(saved, monkeypatch):
    model, d = saved
    before = snapshot(d)
    randomize(model, seed=9)

    def savez_dies_midway(f, **arrays):
        f.write(b"PK\x03\x04 half an archive")
        raise OSError("disk full")
    monkeypatch.setattr(np, "savez", savez_dies_midway)
    with pytest.raises(OSError, match="disk full"):
        save_adapter(model, d)
    assert snapshot(d) == before                          # same two files, same bytes, no .tmp left
    with pytest.raises(OSError, match="disk full"):
        save_adapter(model, d / "new")
    assert os.listdir(d / "new") == []                   # no final file, no temporary file


def test_a_failing_rename_leaves_no_temp_file(saved, monkeypatch):
    model, d = saved
    before = snapshot(d)

    def rename_fails(src, dst):
        raise OSError("rename refused")
    monkeypatch.setattr(os, "replace", rename_fails)
    with pytest.raises(OSError, match="rename refused"):
        save_adapter(model, d)
    assert snapshot(d) == before


def test_a_save_cut_between_the_two_files_is_detected(saved, monkeypatch):
    """New tensors, old config: the checksums refuse the mix instead of loading it silently."""
    model, d = saved
    randomize(model, seed=9)
    real, calls = os.replace, []

    def second_rename_fails(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError("power cut")
        real(src, dst)
    monkeypatch.setattr(os, "replace", second_rename_fails)
    with pytest.raises(OSError, match="power cut"):
        save_adapter(model, d)
    monkeypatch.undo()
    assert sorted(os.listdir(d)) == ["adapter.npz", "adapter_config.json"]
    with pytest.raises(ValueError, match="corrupted: its SHA-256"):
        load_adapter(mlp(), d)


# --------------------------------------------------------------------------- bad files


def test_another_base_model_is_refused(saved):
    _, d = saved
    with pytest.raises(ValueError, match="adapter was trained on another base model: fingerprint [0-9a-f]{64} != "):
        load_adapter(mlp(seed=2), d)
    nudged = mlp()
    nudged.head.bias.data = nudged.head.bias.data + 1e-6     # same architecture, one weight changed
    with pytest.raises(ValueError, match="another base model"):
        load_adapter(nudged, d)
    assert getattr(nudged, "_lora", None) is None


@pytest.mark.parametrize("change, error", [
    (lambda a: a.pop("fc2.lora_B"), r"missing tensors \['fc2.lora_B'\]"),
    (lambda a: a.update({"fc3.lora_A": np.zeros((2, 8), np.float32)}), r"unexpected tensors \['fc3.lora_A'\]"),
    (lambda a: a.update({"fc1.lora_A": np.zeros((3, 6), np.float32)}),
     r"tensor fc1.lora_A has the wrong shape: expected \(2, 6\), got \(3, 6\)"),
    (lambda a: a.update({"fc1.lora_B": a["fc1.lora_B"].astype(np.float64)}),
     r"tensor fc1.lora_B has the wrong dtype: expected float32, got float64"),
    (lambda a: a["fc2.lora_A"].__setitem__((0, 0), a["fc2.lora_A"][0, 0] + 1),
     r"tensor fc2.lora_A is corrupted: its SHA-256 checksum does not match"),
], ids=["missing", "extra", "shape", "dtype", "edited"])
def test_bad_tensors_are_named(saved, change, error):
    _, d = saved
    rewrite_npz(d, change)
    model = mlp()
    with pytest.raises(ValueError, match=error):
        load_adapter(model, d)
    assert getattr(model, "_lora", None) is None


def test_a_truncated_archive_is_refused(saved):
    _, d = saved
    data = (d / "adapter.npz").read_bytes()
    (d / "adapter.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="adapter.npz is truncated or corrupted"):
        load_adapter(mlp(), d)


def test_a_flipped_byte_inside_a_valid_zip_is_caught_by_the_checksum(saved):
    """Rewrite the archive with one byte of a tensor flipped and correct zip CRCs: only our SHA-256 sees it."""
    _, d = saved
    with zipfile.ZipFile(npz_path(d)) as z:
        members = {i.filename: z.read(i) for i in z.infolist()}
    data = bytearray(members["fc1.lora_B.npy"])
    data[-3] ^= 0x40                                      # inside the array's bytes, after the .npy header
    members["fc1.lora_B.npy"] = bytes(data)
    with zipfile.ZipFile(npz_path(d), "w") as z:
        for name, blob in members.items():
            z.writestr(name, blob)
    with pytest.raises(ValueError, match="tensor fc1.lora_B is corrupted"):
        load_adapter(mlp(), d)


@pytest.mark.parametrize("how", ["raw byte flip", "garbage"])
def test_damaged_archive_bytes_are_refused(saved, how):
    _, d = saved
    data = bytearray((d / "adapter.npz").read_bytes())
    if how == "garbage":
        data = bytearray(b"\x13\x37 not an archive" * 20)
    else:                                                  # the zip's CRC-32 no longer matches
        i = data.find(b"fc2.lora_A.npy") + 200
        data[i] ^= 0xFF
    (d / "adapter.npz").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="truncated or corrupted"):
        load_adapter(mlp(), d)


@pytest.mark.parametrize("change, error", [
    (lambda c: c.update(format_version=99), r"unknown format_version 99"),
    (lambda c: c.pop("format_version"), r"missing format_version"),
    (lambda c: c.pop("library_version"), r"missing 'library_version'"),
    (lambda c: c.update(variant="lokr"), r"variant 'lokr' cannot be loaded"),
    (lambda c: c["tensors"].pop("fc1.lora_A"), r"the config is inconsistent"),
], ids=["version", "no-version", "no-library-version", "variant", "inconsistent"])
def test_bad_configs_are_named(saved, change, error):
    _, d = saved
    edit_config(d, change)
    with pytest.raises(ValueError, match=error):
        load_adapter(mlp(), d)


def test_a_config_that_disagrees_with_its_tensors_leaves_the_model_untouched(saved, X):
    _, d = saved
    edit_config(d, lambda c: c.update(r=3))                     # the tensors are rank 2
    model = mlp()
    y = out(model, X)
    with pytest.raises(ValueError, match=r"fc1.lora_A: this model expects shape \(3, 6\)"):
        load_adapter(model, d)
    assert getattr(model, "_lora", None) is None and all(p.trainable for p in model.parameters())
    assert np.array_equal(out(model, X), y)


def test_missing_files_and_invalid_json(saved):
    _, d = saved
    (d / "adapter_config.json").write_text('{"format_version": 1, "r": ')
    with pytest.raises(ValueError, match="adapter_config.json is not valid JSON"):
        load_adapter(mlp(), d)
    (d / "adapter_config.json").unlink()
    with pytest.raises(FileNotFoundError, match="adapter_config.json does not exist"):
        load_adapter(mlp(), d)


def test_missing_tensor_file_and_other_library_version(saved):
    model, d = saved
    edit_config(d, lambda c: c.update(library_version="0.0.1"))
    with pytest.warns(UserWarning, match="saved with lora_np 0.0.1"):
        load_adapter(mlp(), d)
    os.remove(npz_path(d))
    with pytest.warns(UserWarning), pytest.raises(FileNotFoundError, match="adapter.npz does not exist"):
        load_adapter(mlp(), d)


# --------------------------------------------------------------------------- safetensors

HOST_TENSORS = {"w": np.arange(12, dtype=np.float32).reshape(3, 4) / 7, "d": np.array([1e-300, -2.5]),
                "h": np.array([[0.5, -1.0]], np.float16), "i": np.array([-3, 2**40], np.int64),
                "u": np.arange(5, dtype=np.uint8), "b": np.array([True, False]), "s": np.array(3.25, np.float32),
                "empty": np.zeros((0, 3), np.float32)}


@pytest.mark.host_only
def test_safetensors_round_trip_is_bit_exact(tmp_path):
    path = tmp_path / "t.safetensors"
    write_safetensors(path, HOST_TENSORS, metadata={"format": "pt"})
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    assert n % 8 == 0 and json.loads(raw[8:8 + n])["w"] == {"dtype": "F32", "shape": [3, 4],
                                                            "data_offsets": json.loads(raw[8:8 + n])["w"]["data_offsets"]}
    back, meta = read_safetensors(path, return_metadata=True)
    assert meta == {"format": "pt"} and same_state(back, HOST_TENSORS)
    assert os.listdir(tmp_path) == ["t.safetensors"]


def test_safetensors_takes_device_arrays(tmp_path):
    write_safetensors(tmp_path / "t.safetensors", {"x": backend.asarray([[1.0, 2.0]])})
    assert np.array_equal(read_safetensors(tmp_path / "t.safetensors")["x"], np.array([[1.0, 2.0]], np.float32))


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


@pytest.mark.host_only
@pytest.mark.parametrize("raw, error", [
    (b"\x08\x00\x00", r"truncated: 3 bytes"),
    (struct.pack("<Q", 64) + b'{"a":', r"truncated: the header should be 64 bytes"),
    (struct.pack("<Q", 2**40) + b"{}", r"bad header: its length field says"),
    (struct.pack("<Q", 6) + b"{oops}", r"bad header: not valid JSON"),
    (_file({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 4), r"truncated: tensor 'a' ends at byte 8"),
    (_file({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}, b"\0" * 4), r"needs 8 bytes"),
    (_file({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, b"\0" * 8), r"starts at byte 4, expected 0"),
    (_file({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 8), r"cover 4 bytes of data, the file has 8"),
    (_file({"a": {"dtype": "C64", "shape": [1], "data_offsets": [0, 8]}}, b"\0" * 8), r"dtype 'C64'"),
    (_file({"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, b"\0" * 4), r"shape \[-1\]"),
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
    (tmp_path / "b.safetensors").write_bytes(_file({"x": {"dtype": "BF16", "shape": [2], "data_offsets": [0, 4]}}, bits))
    x = read_safetensors(tmp_path / "b.safetensors")["x"]
    assert x.dtype == np.float32 and x.tolist() == [1.5, -2.0]
    with pytest.raises(ValueError, match="tensor 'z' has dtype complex64"):
        write_safetensors(tmp_path / "c.safetensors", {"z": np.zeros(2, np.complex64)})
    assert os.listdir(tmp_path) == ["b.safetensors"]


# --------------------------------------------------------------------------- PEFT


def test_peft_export_has_peft_keys_shapes_and_config(tmp_path):
    export_peft(adapted_lm(), tmp_path)
    tensors, meta = read_safetensors(tmp_path / "adapter_model.safetensors", return_metadata=True)
    assert meta == {"format": "pt"}
    assert {k: v.shape for k, v in tensors.items()} == {
        "base_model.model.tok_emb.lora_embedding_A": (2, 11), "base_model.model.tok_emb.lora_embedding_B": (16, 2),
        "base_model.model.blocks.0.attn.q.lora_A.weight": (2, 16), "base_model.model.blocks.0.attn.q.lora_B.weight": (16, 2),
        "base_model.model.blocks.0.attn.v.lora_A.weight": (2, 16), "base_model.model.blocks.0.attn.v.lora_B.weight": (16, 2)}
    cfg = json.loads((tmp_path / "adapter_config.json").read_text())
    assert cfg["peft_type"] == "LORA" and cfg["task_type"] is None and cfg["r"] == 2 and cfg["lora_alpha"] == 4
    assert cfg["target_modules"] == ["blocks.0.attn.q", "blocks.0.attn.v", "tok_emb"] and cfg["use_rslora"] is True
    assert (cfg["bias"], cfg["fan_in_fan_out"], cfg["init_lora_weights"], cfg["inference_mode"]) == ("none", False, True, True)
    assert cfg["modules_to_save"] is None and cfg["base_model_name_or_path"] is None and cfg["revision"] is None


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


def _rename(old, new):
    def change(t):
        t[new] = t.pop(old)
    return change


@pytest.mark.parametrize("change_config, change_tensors, error", [
    (lambda c: c.update(peft_type="PREFIX_TUNING"), None, r"peft_type must be 'LORA', got 'PREFIX_TUNING'"),
    (lambda c: c.update(fan_in_fan_out=True), None, r"fan_in_fan_out=True"),
    (lambda c: c.update(use_dora=True), None, r"use_dora=True \(DoRA\) is not supported"),
    (lambda c: c.update(bias="all"), None, r"bias='all'"),
    (lambda c: c.update(rank_pattern={"fc1": 4}), None, r"rank_pattern=\{'fc1': 4\} \(per-layer ranks\)"),
    (lambda c: c.update(init_lora_weights="pissa"), None, r"init_lora_weights='pissa'"),
    (lambda c: c.update(r=3), None, r"has rank 2 .* but the config says r=3"),
    (None, _rename("base_model.model.fc1.lora_A.weight", "base_model.model.fc9.lora_A.weight"),
     r"key 'base_model.model.fc9.lora_A.weight' maps to 'fc9', which is no Linear layer"),
    (None, _rename("base_model.model.fc1.lora_A.weight", "base_model.model.fc1.lora_embedding_A"),
     r"maps to 'fc1', which is no Embedding layer of this model \(it is a Linear\)"),
    (None, _rename("base_model.model.fc1.lora_A.weight", "base_model.model.fc1.lora_A.default.weight"),
     r"key 'base_model.model.fc1.lora_A.default.weight' is not a LoRA tensor"),
    (None, lambda t: t.pop("base_model.model.fc2.lora_B.weight"), r"'fc2' has no lora_B tensor"),
    (None, lambda t: t.update({"base_model.model.fc1.lora_B.weight": np.zeros((7, 2), np.float32)}),
     r"has shape \(7, 2\), but 'fc1' needs \(8, 2\)"),
], ids=["type", "fan_in_fan_out", "dora", "bias", "rank_pattern", "pissa", "r", "nowhere", "kind", "suffix",
        "pair", "shape"])
def test_bad_peft_adapters_are_named(tmp_path, change_config, change_tensors, error):
    export_peft(adapted_mlp(), tmp_path)
    if change_config:
        edit_config(tmp_path, change_config)
    if change_tensors:
        tensors = read_safetensors(tmp_path / "adapter_model.safetensors")
        change_tensors(tensors)
        write_safetensors(tmp_path / "adapter_model.safetensors", tensors)
    model = mlp()
    with pytest.raises(ValueError, match=error):
        import_peft(model, tmp_path)
    assert getattr(model, "_lora", None) is None


@pytest.mark.host_only
def test_peft_loads_our_export(tmp_path):
    """PEFT itself (PyTorch) loads our export onto the same MLP and gives our outputs."""
    torch = pytest.importorskip("torch")
    peft = pytest.importorskip("peft")
    from collections import OrderedDict
    model = adapted_mlp()
    export_peft(model, tmp_path)
    nn = torch.nn
    net = nn.Sequential(OrderedDict(fc1=nn.Linear(6, 8), act1=nn.ReLU(), fc2=nn.Linear(8, 8), act2=nn.ReLU(),
                                    head=nn.Linear(8, 3)))
    net.load_state_dict({k: torch.from_numpy(v) for k, v in mlp().state_dict().items()})
    peft_model = peft.PeftModel.from_pretrained(net, str(tmp_path)).eval()
    x = np.random.default_rng(0).standard_normal((5, 6)).astype(np.float32)
    with torch.no_grad():
        theirs = peft_model(torch.from_numpy(x)).numpy()
    ours = out(model, backend.asarray(x))
    np.testing.assert_allclose(theirs, ours, rtol=1e-5, atol=1e-6)
    with torch.no_grad(), peft_model.disable_adapter():
        assert not np.allclose(peft_model(torch.from_numpy(x)).numpy(), ours, atol=1e-3)
