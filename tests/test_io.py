"""Saving and loading adapters in lora_np's own format (``lora_np_adapter.json`` + ``.npz``).

Every failure is produced by writing the bad file it is about, then loading it: another base
model, missing/extra tensors, a wrong shape or dtype, a truncated or corrupted archive, an
unknown format version, a missing config, invalid JSON, a field of the wrong type, an edited field
that the checksum catches, a save that fails at any step. Round trips are checked bit for bit.
PEFT's format and safetensors: ``tests/test_peft_io.py``; crashes and concurrent readers:
``tests/test_adapter_files.py``.
"""
import json
import os
import zipfile

import adapter_helpers
import numpy as np
import pytest
from adapter_helpers import adapted_lm, adapted_mlp, lm, mlp, out, randomize, same_state

from lora_np.lora import (
    LoraConfig,
    active_adapter,
    adapter_layers,
    base_model_fingerprint,
    files,
    inject_lora,
    list_adapters,
    load_adapter,
    lora_state_dict,
    save_adapter,
    set_adapter,
    set_adapter_strength,
)
from lora_np.lora.checks import config_checksum

# --------------------------------------------------------------------------- helpers


X, ids = adapter_helpers.X, adapter_helpers.ids      # shared fixtures: a batch for mlp(), tokens for lm()


@pytest.fixture
def saved(tmp_path):
    """(model, folder) with adapter "grapes" saved in the folder."""
    model = adapted_mlp()
    save_adapter(model, tmp_path / "a")
    return model, tmp_path / "a"


NATIVE = ["lora_np_adapter.json", "lora_np_adapter.npz"]


def npz_path(d):
    return os.path.join(d, "lora_np_adapter.npz")


def rewrite_npz(d, change):
    with np.load(npz_path(d)) as z:
        arrays = {k: z[k] for k in z.files}
    change(arrays)
    with open(npz_path(d), "wb") as f:
        np.savez(f, **arrays)


# --------------------------------------------------------------------------- round trips


def test_round_trip_mlp_is_bit_exact(saved, X):
    model, d = saved
    assert sorted(os.listdir(d)) == NATIVE
    fresh = mlp()
    assert load_adapter(fresh, d) == "grapes" and active_adapter(fresh) == "grapes"
    assert same_state(lora_state_dict(fresh), lora_state_dict(model))
    assert np.array_equal(out(fresh, X), out(model, X))
    with open(os.path.join(d, "lora_np_adapter.json")) as f:
        cfg = json.load(f)
    assert cfg["format_version"] == 2 and cfg["r"] == 2 and cfg["lora_alpha"] == 3.0
    assert cfg["format"] == "lora_np adapter" and cfg["checksum"] == config_checksum(cfg)
    assert cfg["bias"] == "none" and cfg["scaling"] == "alpha/r" and cfg["dtype"] == "float32"
    assert cfg["target_modules"] == ["fc1", "fc2"]
    assert cfg["layers"]["fc1"] == {"kind": "linear", "variant": "lora", "base_shape": [8, 6],
                                    "strength": 1.0, "tensors": {"lora_A": [2, 6], "lora_B": [8, 2]}}
    assert cfg["base_model_fingerprint"] == base_model_fingerprint(mlp())


def test_round_trip_transformer_with_embedding_lora(tmp_path, ids):
    model = adapted_lm()
    set_adapter_strength(model, 0.5)
    save_adapter(model, tmp_path)
    fresh = lm()
    assert load_adapter(fresh, tmp_path) == "verse"
    assert same_state(lora_state_dict(fresh), lora_state_dict(model))
    assert np.array_equal(out(fresh, ids), out(model, ids))
    cfg = json.loads((tmp_path / "lora_np_adapter.json").read_text())
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
    other = inject_lora(mlp(), LoraConfig(r=1, target_modules=["head"]), adapter_name="other")
    randomize(other, "other")
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
    assert snapshot(d) == before                          # same two files, same bytes
    with pytest.raises(OSError, match="disk full"):
        save_adapter(model, d.parent / "new")
    assert sorted(os.listdir(d.parent)) == ["a"]           # no new folder, no temporary sibling


@pytest.mark.parametrize("step", ["write", "fsync", "swap"])
def test_a_save_that_fails_at_any_step_leaves_the_old_adapter_and_no_temp_folder(saved, monkeypatch, X, step):
    model, d = saved
    before, y_old = snapshot(d), out(model, X)
    randomize(model, seed=9)

    def fails(*args, **kwargs):
        raise OSError(f"{step} failed")
    monkeypatch.setattr(files, {"write": "_create", "fsync": "_fsync_dir", "swap": "_swap"}[step], fails)
    with pytest.raises(OSError, match=f"{step} failed"):
        save_adapter(model, d)
    monkeypatch.undo()
    assert snapshot(d) == before and sorted(os.listdir(d.parent)) == ["a"]
    fresh = mlp()
    load_adapter(fresh, d)
    assert np.array_equal(out(fresh, X), y_old)


# --------------------------------------------------------------------------- bad files


def test_another_base_model_is_refused(saved):
    _, d = saved
    with pytest.raises(ValueError, match="adapter was trained on another base model: fingerprint "
                                         "[0-9a-f]{64} != "):
        load_adapter(mlp(seed=2), d)
    nudged = mlp()
    nudged.head.bias.data = nudged.head.bias.data + 1e-6     # same architecture, one weight changed
    with pytest.raises(ValueError, match="another base model"):
        load_adapter(nudged, d)
    assert getattr(nudged, "_lora", None) is None


@pytest.mark.parametrize("change, error", [
    (lambda a: a.pop("fc2.lora_B"), r"missing tensors \['fc2.lora_B'\]"),
    (lambda a: a.update({"fc3.lora_A": np.zeros((2, 8), np.float32)}),
     r"unexpected tensors \['fc3.lora_A'\]"),
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
    data = (d / "lora_np_adapter.npz").read_bytes()
    (d / "lora_np_adapter.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="lora_np_adapter.npz is truncated or corrupted"):
        load_adapter(mlp(), d)


def test_a_flipped_byte_inside_a_valid_zip_is_caught_by_the_checksum(saved):
    """Rewrite the archive with one byte of a tensor flipped and correct zip CRCs: only our SHA-256
    sees it."""
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
    data = bytearray((d / "lora_np_adapter.npz").read_bytes())
    if how == "garbage":
        data = bytearray(b"\x13\x37 not an archive" * 20)
    else:                                                  # the zip's CRC-32 no longer matches
        i = data.find(b"fc2.lora_A.npy") + 200
        data[i] ^= 0xFF
    (d / "lora_np_adapter.npz").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="truncated or corrupted"):
        load_adapter(mlp(), d)


def edit_native(d, change, sign=True):
    """Edit lora_np_adapter.json; with ``sign`` recompute its checksum, so that the checks behind it run."""
    path = os.path.join(d, "lora_np_adapter.json")
    with open(path) as f:
        cfg = json.load(f)
    change(cfg)
    if sign:
        cfg["checksum"] = config_checksum(cfg)
    with open(path, "w") as f:
        json.dump(cfg, f)


@pytest.mark.parametrize("change, error", [
    (lambda c: c.update(format_version=99), r"lora_np_adapter.json: unknown format_version 99"),
    (lambda c: c.pop("format_version"), r"lora_np_adapter.json: missing format_version"),
    (lambda c: c.pop("library_version"), r"lora_np_adapter.json: missing field 'library_version'"),
    (lambda c: c.update(variant="lokr"), r"lora_np_adapter.json: field 'variant' must be one of"),
    (lambda c: c["tensors"].pop("fc1.lora_A"), r"lora_np_adapter.json: the config is inconsistent"),
    (lambda c: c.update(use_rslora="false"), r"field 'use_rslora' must be true or false, got 'false'"),
    (lambda c: c.update(scaling="alpha/sqrt(r)"), r"field 'scaling' must be 'alpha/r' \(it must agree with "
                                                  r"use_rslora\)"),
    (lambda c: c.update(r="2"), r"field 'r' must be a positive integer, got '2'"),
    (lambda c: c.update(lora_alpha=float("inf")), r"field 'lora_alpha' must be a finite positive number"),
    (lambda c: c.update(dtype="float16"), r"field 'dtype' must be one of"),
    (lambda c: c.update(target_modules=["fc1"]), r"field 'target_modules' must be the list of the adapted "
                                                 r"layers"),
    (lambda c: c["layers"]["fc1"].update(strength="1"),
     r"field 'layers.fc1.strength' must be a finite number"),
    (lambda c: c["layers"]["fc2"].update(kind="conv"), r"field 'layers.fc2.kind' must be 'linear' or "
                                                       r"'embedding'"),
    (lambda c: c.update(bias="all"), r"field 'bias' must be 'none' or 'lora_only'"),
    (lambda c: c["tensors"]["fc1.lora_A"].update(shape=[3, 6]), r"field 'tensors.fc1.lora_A' must be"),
], ids=["version", "no-version", "no-library-version", "variant", "inconsistent", "bool-string", "scaling",
        "r-string", "alpha-inf", "dtype", "targets", "strength", "kind", "bias", "tensor-shape"])
def test_bad_configs_are_named(saved, change, error):
    _, d = saved
    edit_native(d, change)
    model = mlp()
    with pytest.raises(ValueError, match=error):
        load_adapter(model, d)
    assert getattr(model, "_lora", None) is None


@pytest.mark.parametrize("field, value", [("lora_alpha", 30.0), ("use_rslora", True), ("r", 3),
                                          ("variant", "dora"), ("dtype", "float64")])
def test_an_edited_field_that_changes_the_outputs_is_refused_by_the_checksum(saved, field, value):
    _, d = saved
    edit_native(d, lambda c: c.update({field: value}), sign=False)
    with pytest.raises(ValueError, match=r"lora_np_adapter.json: the config was changed after it was saved"):
        load_adapter(mlp(), d)


@pytest.mark.parametrize("change", [lambda c: c["layers"]["fc1"].update(strength=0.5),
                                    lambda c: c.update(target_modules=["fc2", "fc1"]),
                                    lambda c: c.update(scaling="alpha/sqrt(r)")],
                         ids=["strength", "targets", "scaling"])
def test_every_output_changing_field_is_under_the_checksum(saved, change):
    _, d = saved
    edit_native(d, change, sign=False)
    with pytest.raises(ValueError, match="changed after it was saved"):
        load_adapter(mlp(), d)


def test_a_config_that_disagrees_with_its_tensors_leaves_the_model_untouched(saved, X):
    _, d = saved
    edit_native(d, lambda c: c.update(r=3))                     # the tensors are rank 2
    model = mlp()
    y = out(model, X)
    with pytest.raises(ValueError, match=r"fc1.lora_A: this model expects shape \(3, 6\)"):
        load_adapter(model, d)
    assert getattr(model, "_lora", None) is None and all(p.trainable for p in model.parameters())
    assert np.array_equal(out(model, X), y)


def test_missing_files_and_invalid_json(saved):
    _, d = saved
    (d / "lora_np_adapter.json").write_text('{"format_version": 2, "r": ')
    with pytest.raises(ValueError, match="lora_np_adapter.json is not valid JSON"):
        load_adapter(mlp(), d)
    (d / "lora_np_adapter.json").unlink()
    with pytest.raises(FileNotFoundError, match="no lora_np adapter here: .*lora_np_adapter.json does not "
                                                "exist"):
        load_adapter(mlp(), d)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_adapter(mlp(), d / "nowhere")


def test_missing_tensor_file_and_other_library_version(saved):
    model, d = saved
    edit_native(d, lambda c: c.update(library_version="0.0.1"))
    with pytest.warns(UserWarning, match="saved with lora_np 0.0.1"):
        load_adapter(mlp(), d)
    os.remove(npz_path(d))
    with pytest.raises(FileNotFoundError, match="lora_np_adapter.npz does not exist"):
        load_adapter(mlp(), d)

