"""Adapter folders under crashes and concurrent readers, both formats side by side, and every
bad file refused before it costs anything.

The crash test forks a process that saves two different adapters (other tensors AND another
alpha) into one folder in a loop, SIGKILLs it at a random instant, and loads: the folder must
always load, and hold exactly one of the two adapters, never the tensors of one with the config of
the other. The reader test saves 200 times in a second process while this one reads.
"""
import json
import os
import random
import signal
import stat
import time
import tracemalloc
import zipfile

import numpy as np
import pytest

from lora_np import backend
from lora_np.lora import (
    LoraConfig,
    adapter_formats,
    adapter_layers,
    adapters_disabled,
    export_peft,
    files,
    import_peft,
    inject_lora,
    load_adapter,
    lora_state_dict,
    save_adapter,
)
from lora_np.lora.checks import config_checksum
from lora_np.models import MLP

pytestmark = pytest.mark.host_only
KILLS_PER_FORMAT = 30
READER_SAVES = 200


def mlp():
    return MLP(6, (8, 8), 3, seed=1)


def adapter(alpha: float, seed: int):
    """An MLP with adapter "grapes" whose A, B (seeded) and alpha tell it apart from another."""
    model = inject_lora(mlp(), LoraConfig(r=2, lora_alpha=alpha, target_modules=["fc1", "fc2"]),
                        adapter_name="grapes")
    rng = backend.Rng(seed)
    for layer in adapter_layers(model).values():
        for p in (layer.lora_A, layer.lora_B):
            p.data = rng.standard_normal(p.shape, dtype=p.dtype)
    return model


SAVERS = {"lora_np": (save_adapter, load_adapter), "peft": (export_peft, import_peft)}


def which(model, candidates):
    """The name of the candidate adapter that ``model`` holds exactly (tensors AND alpha), or None."""
    state, alphas = lora_state_dict(model), {layer.alpha for layer in adapter_layers(model).values()}
    for name, cand in candidates.items():
        ref = lora_state_dict(cand)
        same = state.keys() == ref.keys() and all(np.array_equal(state[k], ref[k]) for k in ref)
        if same and alphas == {layer.alpha for layer in adapter_layers(cand).values()}:
            return name
    return None


def siblings(d):
    return sorted(n for n in os.listdir(d.parent) if n != d.name)


def _save_forever(save, models, d, tick):
    """In a forked child: save the models in turn until killed, writing a byte to ``tick`` after each."""
    try:
        i = 0
        while True:
            save(models[i % 2], d)
            os.write(tick, b".")
            i += 1
    finally:
        os._exit(0)


@pytest.mark.parametrize("fmt", ["lora_np", "peft"])
def test_killed_saves_never_leave_an_unloadable_or_mixed_folder(tmp_path, fmt):
    save, load = SAVERS[fmt]
    models = {"A": adapter(3.0, 1), "B": adapter(5.0, 2)}
    d = tmp_path / "a"
    save(models["A"], d)
    rnd, seen = random.Random(0), set()
    for _ in range(KILLS_PER_FORMAT):
        tick, tock = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(tick)
            _save_forever(save, [models["B"], models["A"]], d, tock)
        os.close(tock)
        for _ in range(rnd.randint(1, 3)):                 # let 1 to 3 saves finish, however busy the machine
            assert os.read(tick, 1) == b"."
        time.sleep(rnd.uniform(0.0, 0.008))                # then kill it somewhere in the next ones
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(tick)
        fresh = mlp()
        load(fresh, d)                                     # never an error
        got = which(fresh, models)
        assert got is not None, "the folder holds a mix of the two adapters"
        seen.add(got)
    assert seen == {"A", "B"}                             # the kills did land at different moments
    save(models["A"], d)                                  # the next save removes a killed save's leftovers
    assert siblings(d) == []


def test_a_reader_during_repeated_saves_never_fails_and_never_mixes(tmp_path):
    models = {"A": adapter(3.0, 1), "B": adapter(5.0, 2)}
    d = tmp_path / "a"
    save_adapter(models["A"], d)
    export_peft(models["A"], d)
    pid = os.fork()
    if pid == 0:                                          # the writer: both formats, 200 times each
        try:
            for i in range(READER_SAVES):
                save_adapter(models["AB"[i % 2]], d)
                export_peft(models["AB"[(i + 1) % 2]], d)
        finally:
            os._exit(0)
    reads, seen = 0, set()
    while os.waitpid(pid, os.WNOHANG) == (0, 0) or reads < 20:
        for load in (load_adapter, import_peft):
            fresh = mlp()
            load(fresh, d)
            got = which(fresh, models)
            assert got is not None, f"{load.__name__} read a mix of two saves"
            seen.add(got)
            reads += 1
    assert reads >= 20 and seen == {"A", "B"}
    assert sorted(adapter_formats(d)) == ["lora_np", "peft"] and siblings(d) == []


# --------------------------------------------------------------------------- both formats in one folder

def test_both_formats_side_by_side_load_to_identical_outputs(tmp_path):
    model = adapter(3.0, 1)
    save_adapter(model, tmp_path / "a")
    export_peft(model, tmp_path / "a")
    save_adapter(model, tmp_path / "a")                   # a later save keeps the other format's files
    assert sorted(os.listdir(tmp_path / "a")) == ["adapter_config.json", "adapter_model.safetensors",
                                                  "lora_np_adapter.json", "lora_np_adapter.npz"]
    assert adapter_formats(tmp_path / "a") == ["lora_np", "peft"]
    x = backend.Rng(3).standard_normal((5, 6))
    native, peft = mlp(), mlp()
    load_adapter(native, tmp_path / "a")
    import_peft(peft, tmp_path / "a")
    assert np.array_equal(backend.to_numpy(native(x)), backend.to_numpy(peft(x)))
    assert np.array_equal(backend.to_numpy(native(x)), backend.to_numpy(model(x)))


def test_loading_says_which_format_it_found(tmp_path):
    export_peft(adapter(3.0, 1), tmp_path / "p")
    with pytest.raises(FileNotFoundError, match="It holds a PEFT adapter: load it with "
                                                "lora_np.lora.import_peft"):
        load_adapter(mlp(), tmp_path / "p")


def test_a_format_1_folder_still_loads(tmp_path):
    """lora_np 0.1 wrote adapter_config.json + adapter.npz (format 1, no config checksum)."""
    model = adapter(3.0, 1)
    save_adapter(model, tmp_path / "a")
    d = tmp_path / "a"
    cfg = json.loads((d / "lora_np_adapter.json").read_text())
    for key in ("format", "checksum", "bias"):
        cfg.pop(key)
    cfg["format_version"] = 1
    (d / "adapter_config.json").write_text(json.dumps(cfg))
    (d / "lora_np_adapter.npz").rename(d / "adapter.npz")
    (d / "lora_np_adapter.json").unlink()
    assert adapter_formats(d) == ["lora_np (format 1)"]
    fresh = mlp()
    load_adapter(fresh, d)
    assert which(fresh, {"A": model}) == "A"
    save_adapter(fresh, d)                                 # saving again writes format 2 in its place
    assert sorted(os.listdir(d)) == ["lora_np_adapter.json", "lora_np_adapter.npz"]


# --------------------------------------------------------------------------- modes and leftovers

def test_files_get_the_umask_mode_and_an_overwrite_keeps_the_mode(tmp_path):
    old = os.umask(0o027)
    try:
        save_adapter(adapter(3.0, 1), tmp_path / "a")
    finally:
        os.umask(old)
    cfg = tmp_path / "a" / "lora_np_adapter.json"
    assert stat.S_IMODE(os.stat(cfg).st_mode) == 0o640
    os.chmod(cfg, 0o644)
    save_adapter(adapter(5.0, 2), tmp_path / "a")
    assert stat.S_IMODE(os.stat(cfg).st_mode) == 0o644
    assert stat.S_IMODE(os.stat(tmp_path / "a" / "lora_np_adapter.npz").st_mode) == 0o640


def test_leftovers_of_a_dead_save_are_removed_by_the_next_save_and_ignored_by_loading(tmp_path):
    model = adapter(3.0, 1)
    save_adapter(model, tmp_path / "a")
    dead = tmp_path / ".a.lora_np-new-999999999-deadbeef"          # a pid that cannot be alive
    dead.mkdir()
    (dead / "lora_np_adapter.npz").write_bytes(b"half a file")
    fresh = mlp()
    load_adapter(fresh, tmp_path / "a")                            # ignored
    save_adapter(model, tmp_path / "a")
    assert not dead.exists()


# --------------------------------------------------------------------------- resources and values

def test_an_archive_member_that_declares_a_huge_array_is_refused_before_it_is_read(tmp_path):
    """1.2 GB of zeros compress to ~1 MB: the declared size is checked, nothing of it is allocated."""
    d = tmp_path / "a"
    save_adapter(adapter(3.0, 1), d)
    with zipfile.ZipFile(d / "lora_np_adapter.npz") as z:
        members = {i.filename: z.read(i) for i in z.infolist()}
    header = b"\x93NUMPY\x01\x00" + b"v\x00" + b"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 6), }"
    header = header[:8] + (len(header) - 10).to_bytes(2, "little") + header[10:]
    with zipfile.ZipFile(d / "lora_np_adapter.npz", "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name, blob in members.items():
            if name == "fc1.lora_A.npy":
                # the header of (2, 6), then 300 MB of zeros
                with z.open(name, "w", force_zip64=True) as f:
                    f.write(header)
                    chunk = bytes(1 << 22)
                    for _ in range(75):
                        f.write(chunk)
            else:
                z.writestr(name, blob)
    assert os.path.getsize(d / "lora_np_adapter.npz") < 2_000_000
    tracemalloc.start()
    try:
        with pytest.raises(ValueError,
                           match=r"tensor fc1.lora_A declares 314,572,8\d\d bytes, but its config"):
            load_adapter(mlp(), d)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20_000_000


def test_nan_or_inf_in_an_adapter_is_refused_on_save_and_on_load(tmp_path):
    model = adapter(3.0, 1)
    layer = adapter_layers(model)["fc2"]
    layer.lora_B.data = layer.lora_B.data * backend.asarray(np.array(np.inf, np.float32))
    with pytest.raises(ValueError, match=r"save_adapter: adapter 'grapes': tensor fc2.lora_B holds 16 NaN"):
        save_adapter(model, tmp_path / "a")
    assert not (tmp_path / "a").exists()
    save_adapter(adapter(3.0, 1), tmp_path / "b")                   # now smuggle a NaN into a valid file
    d = tmp_path / "b"
    with np.load(d / "lora_np_adapter.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays["fc1.lora_A"][0, 0] = np.nan
    np.savez(d / "lora_np_adapter.npz", **arrays)
    cfg = json.loads((d / "lora_np_adapter.json").read_text())
    digest = __import__("hashlib").sha256(arrays["fc1.lora_A"].tobytes()).hexdigest()
    cfg["tensors"]["fc1.lora_A"]["sha256"] = digest
    cfg["checksum"] = config_checksum(cfg)
    (d / "lora_np_adapter.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"lora_np_adapter.npz: tensor fc1.lora_A holds 1 NaN"):
        load_adapter(mlp(), d)


def test_a_bias_trained_by_the_adapter_is_saved_with_it_and_leaves_the_base_alone(tmp_path):
    model = inject_lora(mlp(), LoraConfig(r=2, target_modules=["fc1"], bias="lora_only"), adapter_name="b")
    layer = adapter_layers(model)["fc1"]
    assert layer.owns_bias and layer.bias.trainable and "bias" in layer.adapter_parameters()
    layer.bias.data = layer.bias.data + 1.0
    save_adapter(model, tmp_path / "a")
    fresh = mlp()
    load_adapter(fresh, tmp_path / "a")
    x = backend.Rng(3).standard_normal((4, 6))
    assert np.array_equal(backend.to_numpy(fresh(x)), backend.to_numpy(model(x)))
    with adapters_disabled(fresh):
        assert np.array_equal(backend.to_numpy(fresh(x)), backend.to_numpy(mlp()(x)))


def test_replace_folder_without_an_atomic_exchange_still_replaces_the_folder(tmp_path, monkeypatch):
    """Where the OS has no renameat2 (not Linux) the swap is two renames; the result is the same."""
    monkeypatch.setattr(files, "_RENAMEAT2", None)
    model = adapter(3.0, 1)
    save_adapter(model, tmp_path / "a")
    save_adapter(adapter(5.0, 2), tmp_path / "a")
    fresh = mlp()
    load_adapter(fresh, tmp_path / "a")
    assert fresh.fc1.alpha == 5.0 and siblings(tmp_path / "a") == []


def test_a_listing_torn_by_a_swap_is_not_used(tmp_path, monkeypatch):
    """A save swaps the folder away and deletes the old version while a reader lists it: the reader
    saw only part of the old files. list_folder notices the path now names another folder and lists
    again (adapter_formats once reported a complete PEFT adapter missing this way, under load)."""
    from lora_np.lora import files
    d, new = tmp_path / "a", tmp_path / "new"
    d.mkdir()
    new.mkdir()
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        (d / name).write_bytes(b"old")
        (new / name).write_bytes(b"new")
    real_listdir, calls = os.listdir, []

    def torn_listdir(fd):
        calls.append(fd)
        if len(calls) == 1:                               # the save lands in the middle of the listing
            os.rename(d, tmp_path / "gone")
            os.rename(new, d)
            return ["adapter_model.safetensors"]          # what was read before the old files went
        return real_listdir(fd)

    monkeypatch.setattr(files.os, "listdir", torn_listdir)
    assert files.list_folder(d) == {"adapter_config.json", "adapter_model.safetensors"}
    assert len(calls) == 2
