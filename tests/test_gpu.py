"""CuPy as a first-class backend, proven as far as a machine without a GPU allows.

* What a learner sees when CuPy cannot run (missing, or installed without a usable GPU).
* Moving models (every adapter kept aside included) and tasks between backends, and back.
* Same weights ⇒ same outputs and gradients, and a short LoRA fine-tune reaching the same
  accuracy: each check runs here against the device-emulating backend (which proves the check
  itself works) and, marked ``gpu``, against CuPy (skipped with the reason without a GPU).
* The emulated device catching an array that leaks to the host.

Tests that compare backends themselves are marked ``once`` (or ``gpu``): they run a single time,
whatever backends the suite runs under.
"""
import copy
import subprocess
import sys
import types

import numpy as np
import pytest

from lora_np import backend
from lora_np import functional as F
from lora_np.backend import to_device, to_numpy
from lora_np.data import make_fruit_task, make_image_task
from lora_np.experiments import finetune, grape_report, pretrain
from lora_np.lora import (
    LoraConfig,
    adapter_layers,
    adapter_state,
    add_adapter,
    inject_lora,
    merge_lora,
    set_adapter,
    unmerge_lora,
)
from lora_np.models import MLP, TransformerConfig, TransformerLM, ViTClassifier
from lora_np.nn import SoftmaxCrossEntropy
from lora_np.optim import Adam
from lora_np.train import fit

# The backend each comparison runs on, against NumPy: the emulated device everywhere, CuPy on a GPU.
TARGETS = ["emulated", pytest.param("cupy", marks=pytest.mark.gpu)]
F32_TOL = 1e-4          # max |a − b| / max |a|: float32 rounding, summed in a different order on a GPU


# --------------------------------------------------------------------------- when CuPy cannot run

@pytest.fixture
def no_cupy_cached(monkeypatch):
    """Forget a CuPy found earlier, so that _load_cupy probes again (and meets the fakes below)."""
    monkeypatch.setattr(backend, "_cupy", [])


def _fake_cupy(available=True, fails=None):
    def arange(n):
        raise RuntimeError(fails)
    return types.SimpleNamespace(is_available=lambda: available, arange=arange)


def _names_both_wheels(message):
    return "cupy-cuda12x" in message and "cupy-cuda13x" in message and "pip install" in message


@pytest.mark.host_only
def test_cupy_not_installed_says_how_to_install_both_wheels(no_cupy_cached, monkeypatch, backend_name):
    monkeypatch.setitem(sys.modules, "cupy", None)                    # `import cupy` raises ImportError
    with pytest.raises(RuntimeError, match="not installed") as err:
        backend.set_backend("cupy")
    assert _names_both_wheels(str(err.value)), str(err.value)
    assert backend.get_backend() == backend_name                      # nothing changed
    with pytest.raises(RuntimeError, match="cupy-cuda12x"):
        to_device(np.ones(3), "cupy")


@pytest.mark.host_only
@pytest.mark.parametrize("fake, reason", [
    (_fake_cupy(available=False), "is_available"),
    (_fake_cupy(fails="CUDA driver version is insufficient for CUDA runtime version"), "driver version"),
], ids=["no-gpu", "old-driver"])
def test_cupy_without_a_usable_gpu_says_why_and_what_to_do(no_cupy_cached, monkeypatch, backend_name, fake,
                                                            reason):
    monkeypatch.setitem(sys.modules, "cupy", fake)
    with pytest.raises(RuntimeError, match="no usable CUDA GPU") as err:
        backend.set_backend("cupy")
    message = str(err.value)
    assert reason in message and _names_both_wheels(message) and "set_backend('numpy')" in message, message
    assert backend.get_backend() == backend_name


@pytest.mark.host_only
def test_demo_with_cupy_unavailable_prints_the_message_and_exits_2(no_cupy_cached, monkeypatch, capsys):
    from lora_np.__main__ import main
    monkeypatch.setitem(sys.modules, "cupy", None)
    assert main(["demo", "--backend", "cupy"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: backend 'cupy'") and _names_both_wheels(err) and "Traceback" not in err


def _usable_gpu():
    try:
        backend._load_cupy()
        return True
    except RuntimeError:
        return False


@pytest.mark.host_only
@pytest.mark.skipif(_usable_gpu(), reason="a usable GPU is present: the cupy backend works here")
def test_on_this_machine_cupy_fails_cleanly_whether_installed_or_not(backend_name):
    """The real thing, no fakes: with CuPy missing or installed without a GPU."""
    with pytest.raises(RuntimeError) as err:
        backend.set_backend("cupy")
    assert _names_both_wheels(str(err.value)) and backend.get_backend() == backend_name
    proc = subprocess.run([sys.executable, "-m", "lora_np", "demo", "--backend", "cupy"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and _names_both_wheels(proc.stderr), proc.stderr


@pytest.mark.gpu
def test_a_usable_gpu_joins_the_default_backends():
    import conftest
    assert conftest.GPU_AVAILABLE and "cupy" in conftest.DEFAULT_BACKENDS.split(",")
    with backend.use_backend("cupy") as xp:
        x = backend.asarray([1.0, 2.0, 3.0])
        assert backend.get_array_module(x) is xp and x.dtype == np.float32
        assert np.array_equal(to_numpy(x * 2), [2.0, 4.0, 6.0])


# --------------------------------------------------------------------------- moving between backends

def _other(name):
    return "emulated" if name == "numpy" else "numpy"


def _arrays(obj, seen=None):
    """Every array reachable from obj (attributes of lora_np objects, lists, tuples, dicts)."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return []
    seen.add(id(obj))
    if backend.is_array(obj):
        return [obj]
    if isinstance(obj, dict):
        obj = list(obj.values())
    if isinstance(obj, (list, tuple)):
        return [a for o in obj for a in _arrays(o, seen)]
    if type(obj).__module__.startswith("lora_np"):
        names = list(getattr(obj, "__dict__", {})) + [s for s in getattr(type(obj), "__slots__", ())
                                                       if hasattr(obj, s)]
        return [a for n in names for a in _arrays(getattr(obj, n), seen)]
    return []


def _outputs(model, x):
    y = to_numpy(model(x))
    model.clear_caches()
    return y


def test_to_moves_a_lora_model_with_every_adapter_and_back(backend_name, rng):
    """Adapters kept aside, base layers, VeRA's shared matrices, PiSSA's A0/B0, a merge backup
    and the gradients all move; shared Parameters stay shared; the outputs do not change."""
    model = inject_lora(MLP(12, (16, 16), 5, seed=3), LoraConfig(r=4, target_modules=["fc1", "fc2"]),
                        adapter_name="plain")
    add_adapter(model, "vera", LoraConfig(r=4, target_modules=["fc1", "fc2"], variant="vera"))
    add_adapter(model, "pissa", LoraConfig(r=4, target_modules=["fc1"], variant="pissa"))
    add_adapter(model, "dora", LoraConfig(r=4, target_modules=["fc2"], variant="dora"))
    for layer in adapter_layers(model, "plain").values():
        layer.lora_B.data = rng.standard_normal(layer.lora_B.shape) * 0.3
    x_host = to_numpy(rng.standard_normal((6, 12)))
    expected = {}
    for name in ("vera", "pissa", "dora", "plain"):                   # "plain" ends up active
        set_adapter(model, name)
        expected[name] = _outputs(model, backend.asarray(x_host))
    ce = SoftmaxCrossEntropy()
    ce(model(backend.asarray(x_host)), backend.asarray(np.arange(6) % 5))
    model.backward(ce.backward())                                     # gradients to move too
    merge_lora(model)                                                 # W0 + ΔW, the backup in _W0
    reg, other = adapter_state(model), _other(backend_name)

    with backend.use_backend(other) as xp:
        assert model.to(other) is model
        found = _arrays(model)
        assert len(found) >= 30 and all(backend.get_array_module(a) is xp for a in found)
        plain_fc1 = reg.adapters["plain"]["fc1"]
        for a in (plain_fc1._W0, plain_fc1.lora_A.grad, reg.adapters["vera"]["fc2"]._shared.A,
                  reg.adapters["pissa"]["fc1"]._A0, reg.bases["fc2"].weight.data):
            assert backend.get_array_module(a) is xp
        assert plain_fc1.weight is reg.bases["fc1"].weight                # still one shared W0
        unmerge_lora(model)
        x = backend.asarray(x_host)
        for name, want in expected.items():
            set_adapter(model, name)
            np.testing.assert_allclose(_outputs(model, x), want, rtol=1e-5, atol=1e-5)

    model.to(backend_name)
    assert all(backend.get_array_module(a) is backend.get_xp() for a in _arrays(model))
    np.testing.assert_allclose(_outputs(model, backend.asarray(x_host)), expected["plain"],
                               rtol=1e-5, atol=1e-5)


def test_an_optimizer_created_after_moving_trains_on_the_new_device(backend_name):
    task = make_fruit_task(n_pretrain=200, n_finetune=20, n_test=100)
    model = MLP(task.d_in, (16,), task.n_classes)
    other = _other(backend_name)
    with backend.use_backend(other) as xp:
        model.to(other)
        task.to(other)
        hist = fit(model, Adam(model, lr=1e-2), *task.source_train, epochs=2, batch_size=50,
                   val=task.source_test)
        assert all(backend.get_array_module(p.data) is xp for p in model.parameters())
    assert hist.epoch_loss[-1] < hist.epoch_loss[0]


def test_tasks_move_with_their_splits_and_keep_their_dtypes(backend_name):
    fruit = make_fruit_task(n_pretrain=30, n_finetune=20, n_test=20)
    images = make_image_task(n_pretrain=20, n_finetune=10, n_test=10, size=8)
    for task in (fruit, images):
        before = {k: tuple(to_numpy(a) for a in getattr(task, k)) for k in ("source_train", "shift_test")}
        other = _other(backend_name)
        with backend.use_backend(other) as xp:
            assert task.to(other) is task
            for k, (X, y) in before.items():
                X2, y2 = getattr(task, k)
                assert backend.get_array_module(X2) is xp and backend.get_array_module(y2) is xp
                assert X2.dtype == np.float32 and y2.dtype.kind == "i"
                assert np.array_equal(to_numpy(X2), X) and np.array_equal(to_numpy(y2), y)
        task.to(backend_name)
        assert all(backend.get_array_module(a) is backend.get_xp() for a in _arrays(task))


def test_to_device_on_arrays_and_containers(backend_name, xp):
    host = np.arange(6.0).reshape(2, 3)
    d = to_device(host)                                                # the current backend
    assert backend.get_array_module(d) is xp and d.dtype == np.float64
    assert to_device(d) is d                                           # already there: no copy
    back = to_device({"w": d, "pair": (d, 3), "list": [d]}, "numpy")
    assert type(back["w"]) is np.ndarray and back["pair"][1] == 3 and type(back["list"][0]) is np.ndarray
    assert np.array_equal(back["pair"][0], host)
    with pytest.raises(ValueError, match="backend must be one of"):
        to_device(host, "tpu")


# ------------------------------------------------------------------------- the same results on another device

def _mlp(host):
    model = inject_lora(MLP(20, (32, 32), 10, seed=1), r=4, lora_alpha=8, target_modules=["fc1", "fc2"])
    return model, host.standard_normal((16, 20)), host.integers(0, 10, 16)


def _lm(host):
    cfg = TransformerConfig(d_model=32, n_heads=4, n_layers=2, context=12, vocab_size=17, seed=1)
    model = inject_lora(TransformerLM(cfg), r=4, lora_alpha=8, target_modules=["q", "v"])
    return model, host.integers(0, 17, (4, 12)), host.integers(0, 17, (4, 12))


def _vit(host):
    cfg = TransformerConfig(d_model=32, n_heads=4, n_layers=2, n_classes=10, image_size=8, patch_size=4,
                            seed=1)
    model = inject_lora(ViTClassifier(cfg), r=4, lora_alpha=8, target_modules=["q", "v"])
    return model, host.random((4, 8, 8, 3)), host.integers(0, 10, 4)


def _forward_backward(model, x, labels):
    """Logits, loss and every trainable gradient, as host arrays (inputs moved to the current backend)."""
    ce = SoftmaxCrossEntropy()
    logits = model(backend.asarray(x))
    loss = ce(logits, backend.asarray(labels))
    model.backward(ce.backward())
    grads = {n: p.grad for n, p in model.named_parameters() if p.trainable}
    xp = backend.get_xp()
    assert all(backend.get_array_module(g) is xp for g in grads.values()), "a gradient left the device"
    return to_numpy(logits), float(loss), {n: to_numpy(g) for n, g in grads.items()}


def _close(a, b):
    return float(np.abs(a - b).max()) <= F32_TOL * max(float(np.abs(a).max()), 1e-3)


@pytest.mark.once
@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("make", [_mlp, _lm, _vit], ids=["mlp", "transformer-lm", "vit"])
def test_same_weights_give_the_same_outputs_and_gradients(target, make):
    host = np.random.default_rng(0)
    with backend.use_backend("numpy", dtype="float32"):
        model, x, labels = make(host)
        for name, p in model.named_parameters():
            if name.endswith("lora_B"):                               # B ≠ 0, so the LoRA path counts
                p.data = backend.asarray(host.standard_normal(p.shape) * 0.3)
        device_model = copy.deepcopy(model)
        want = _forward_backward(model, x, labels)
    with backend.use_backend(target, dtype="float32"):
        device_model.to(target)
        got = _forward_backward(device_model, x, labels)
    assert _close(want[0], got[0]), "logits differ"
    assert abs(want[1] - got[1]) <= F32_TOL * max(abs(want[1]), 1.0), (want[1], got[1])
    assert sorted(want[2]) == sorted(got[2]) and len(want[2]) > 0
    bad = [n for n in want[2] if not _close(want[2][n], got[2][n])]
    assert not bad, f"gradients differ beyond float32 tolerance: {bad}"


@pytest.mark.once
@pytest.mark.parametrize("target", TARGETS)
def test_a_short_lora_finetune_reaches_the_same_accuracy(target):
    with backend.use_backend("numpy", dtype="float32"):
        task = make_fruit_task(n_pretrain=1500, n_finetune=300, n_test=1000)
        base, _ = pretrain(task, hidden=(64, 64), epochs=4)
        before = grape_report(base, task.shift_test)["accuracy"]
        ref = finetune(base, task, r=4, epochs=8)
    with backend.use_backend(target, dtype="float32") as xp:
        device_task, device_base = copy.deepcopy(task).to(target), copy.deepcopy(base).to(target)
        res = finetune(device_base, device_task, r=4, epochs=8)
        assert all(backend.get_array_module(p.data) is xp for p in res.model.parameters())
    assert ref.accuracy > before + 0.05, "the fine-tune should fix part of the shift"
    assert abs(res.accuracy - ref.accuracy) <= 0.01, (ref.accuracy, res.accuracy)


# --------------------------------------------------------------------------- catching a leak

_linear_forward = F.linear_forward


def _leaky_linear_forward(x, W, b=None):
    """linear_forward with the bug a careless edit could add: a host array joins the computation."""
    y, cache = _linear_forward(x, W, b)
    return y + np.zeros(y.shape[-1], dtype=y.dtype), cache            # fine on NumPy, fatal on a GPU


@pytest.mark.once
def test_the_emulated_device_catches_an_array_leaking_to_the_host(monkeypatch):
    """A layer that mixes a host (NumPy) array into a device computation works on NumPy and
    crashes on CuPy; the emulated device raises CuPy's TypeError, so the suite catches it.

    To see the whole suite catch it, add this one line to ``linear_forward`` in
    ``lora_np/functional/dense.py`` (with ``import numpy as np`` at the top), just before its return:

        y = y + np.zeros(y.shape[-1], dtype=y.dtype)

    ``pytest tests --backends emulated -x`` then stops at the first test that runs a Linear layer,
    ``tests/test_adapters.py::test_switching_shows_each_adapter_and_keeps_the_other[emulated]``,
    with this TypeError. Without ``-x``, every test that runs a model fails under the emulated
    backend (75 failed and 9 errors when this was checked on a scratch copy of the repository),
    while under ``--backends numpy`` only the tests here that switch to the emulated device
    notice: NumPy itself cannot tell.
    """
    host = np.random.default_rng(0)
    with backend.use_backend("numpy"):
        model, x, _ = _mlp(host)
        want = _outputs(model, backend.asarray(x))
        monkeypatch.setattr(F, "linear_forward", _leaky_linear_forward)
        np.testing.assert_array_equal(_outputs(model, backend.asarray(x)), want)   # NumPy cannot tell
    with backend.use_backend("emulated"):
        model.to("emulated")
        with pytest.raises(TypeError, match="host"):
            model(backend.asarray(x))
        monkeypatch.undo()
        np.testing.assert_array_equal(_outputs(model, backend.asarray(x)), want)   # fixed: fine again
