"""The backend: the emulated device refuses exactly what CuPy refuses, and allows what CuPy allows.

Tests of the emulated device's refusals build their arrays explicitly under
``backend.use_backend("emulated")`` and are marked ``host_only``, so they run once whatever
backends the suite runs under. The rest run under every backend.
"""
import numpy as np
import pytest

from lora_np import backend
from lora_np.backend import DeviceArray, Rng, to_numpy


def _usable_gpu() -> bool:
    try:
        import cupy
        return bool(cupy.is_available())
    except Exception:
        return False


@pytest.fixture
def emulated():
    with backend.use_backend("emulated") as xp:
        yield xp


# --------------------------------------------------------------------------- what is refused

@pytest.mark.host_only
def test_implicit_conversion_to_numpy_is_refused(emulated):
    d = backend.asarray([1.0, 2.0, 3.0])
    for convert in (np.asarray, np.array, np.ascontiguousarray, lambda a: np.array([a, a])):
        with pytest.raises(TypeError, match="to_numpy"):
            convert(d)
    assert isinstance(np.concatenate([d, d]), DeviceArray)      # dispatched to the device, as in CuPy


@pytest.mark.host_only
@pytest.mark.parametrize("op", [
    lambda d, h: d + h, lambda d, h: h + d, lambda d, h: d * h, lambda d, h: h - d,
    lambda d, h: d @ h, lambda d, h: h @ d, lambda d, h: d == h, lambda d, h: np.add(h, d),
    lambda d, h: np.maximum(d, h),
], ids=["d+h", "h+d", "d*h", "h-d", "d@h", "h@d", "d==h", "np.add(h,d)", "np.maximum(d,h)"])
def test_mixing_device_and_host_arrays_is_refused(emulated, op):
    d, h = backend.asarray([1.0, 2.0, 3.0]), np.ones(3)
    with pytest.raises(TypeError, match="host"):
        op(d, h)


@pytest.mark.host_only
@pytest.mark.parametrize("key", [np.array([0, 2]), np.array([True, False, True]), (np.array([0]),)])
def test_indexing_with_a_host_array_is_refused(emulated, key):
    d = backend.asarray([1.0, 2.0, 3.0])
    with pytest.raises(TypeError, match="host"):
        d[key]


@pytest.mark.host_only
def test_assigning_a_host_array_is_refused_and_changes_nothing(emulated):
    d = backend.asarray([1.0, 2.0, 3.0])
    with pytest.raises(TypeError, match="host"):
        d[0:2] = np.array([5.0, 6.0])
    with pytest.raises(TypeError, match="host"):
        d[backend.asarray([0])] = np.array([5.0])
    assert np.array_equal(to_numpy(d), [1.0, 2.0, 3.0])


# --------------------------------------------------------------------------- what is allowed

@pytest.mark.host_only
def test_explicit_transfers_work(emulated):
    host = np.array([[1.5, -2.0], [0.25, 4.0]])
    for d in (emulated.asarray(host), backend.asarray(host, dtype="float64")):
        assert isinstance(d, DeviceArray)
        back = to_numpy(d)
        assert type(back) is np.ndarray and np.array_equal(back, host)
        back[0, 0] = 99.0                                        # a copy: the device is unchanged
        assert float(d[0, 0]) == 1.5
    assert np.array_equal(emulated.asnumpy(emulated.asarray(host)), host)
    assert np.array_equal(emulated.asarray(host).get(), host)


@pytest.mark.host_only
def test_device_operations_stay_on_the_device(emulated):
    d = backend.asarray([[1.0, -2.0], [3.0, 4.0]])
    idx = backend.asarray([1, 0])
    results = [d + 1.0, 2.0 * d, d @ d.T, d.T, d[idx], d[d > 0], emulated.exp(d), emulated.zeros((2,)),
               emulated.maximum(d, 0), d.reshape(-1), emulated.where(d > 0, d, 0.0), -d]
    assert all(isinstance(r, DeviceArray) for r in results)
    d[0, 1] = 7.0                                                # Python scalars are fine
    d[idx[:1]] = backend.asarray([9.0, 9.0])                     # device values are fine
    assert np.array_equal(to_numpy(d), [[1.0, 7.0], [9.0, 9.0]])
    assert backend.get_array_module(d) is emulated
    with pytest.raises(AttributeError, match="Rng"):
        _ = emulated.random


@pytest.mark.host_only
def test_reductions_give_zero_d_device_arrays(emulated):
    d = backend.asarray([1.0, 2.0, 3.5])
    for r in (d.sum(), d.max(), emulated.mean(d), (d > 3).any(), d.argmax()):
        assert isinstance(r, DeviceArray) and r.shape == ()
    assert float(d.sum()) == 6.5
    assert int(d.argmax()) == 2
    assert bool((d > 3).any()) is True and bool((d > 4).any()) is False
    assert backend.to_float(emulated.mean(d)) == pytest.approx(6.5 / 3)


def test_reductions_convert_to_python_scalars_on_every_backend(xp):
    d = backend.asarray([1.0, 2.0, 3.5])
    assert float(d.sum()) == 6.5
    assert int(d.argmax()) == 2
    assert bool((d > 3).any()) is True
    assert backend.get_array_module(d) is xp


def test_asarray_uses_the_default_float_dtype_and_keeps_integers(xp):
    assert backend.asarray([1.0, 2.0]).dtype == np.float32
    assert backend.asarray(np.array([1.0, 2.0])).dtype == np.float32
    assert backend.asarray([1, 2]).dtype.kind == "i"
    assert backend.asarray([1.0], dtype="float64").dtype == np.float64
    assert backend.is_array(backend.asarray([1.0])) and not backend.is_array([1.0])


@pytest.mark.host_only
def test_same_seed_gives_identical_numbers_on_every_backend():
    draws = {}
    for name in ("numpy", "emulated"):
        with backend.use_backend(name, dtype="float64"):
            rng = Rng(7)
            draws[name] = [to_numpy(a) for a in (
                rng.standard_normal((3, 4)), rng.uniform(-1, 1, (5,)), rng.random((2, 2)),
                rng.integers(0, 10, (6,)), rng.permutation(8), rng.spawn().standard_normal((3,)),
                rng.standard_normal((2,), dtype="float32"))]
    for a, b in zip(draws["numpy"], draws["emulated"], strict=True):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    with backend.use_backend("numpy"):
        assert not np.array_equal(to_numpy(Rng(8).standard_normal((3, 4))), draws["numpy"][0])


@pytest.mark.host_only
def test_the_emulated_device_lives_beside_the_backend_without_importing_it():
    """``lora_np.emulated`` holds the device; ``lora_np.backend`` re-exports it (no import cycle)."""
    import ast
    import inspect

    from lora_np import emulated
    assert backend.DeviceArray is emulated.DeviceArray and backend.EMULATED_XP is emulated.EMULATED_XP
    assert DeviceArray.__module__ == "lora_np.emulated"
    tree = ast.parse(inspect.getsource(emulated))
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not any("backend" in name or name.startswith("lora_np") for name in imported), imported
    assert not any(isinstance(n, ast.ImportFrom) and n.level for n in ast.walk(tree))   # no relative imports
    with backend.use_backend("emulated") as xp:
        assert xp is emulated.EMULATED_XP and isinstance(backend.asarray([1.0]), emulated.DeviceArray)


# --------------------------------------------------------------------------- selection

def test_unknown_backend_is_refused_and_nothing_changes(backend_name):
    with pytest.raises(ValueError, match="backend must be one of"):
        backend.set_backend("bogus")
    assert backend.get_backend() == backend_name


@pytest.mark.skipif(_usable_gpu(), reason="a usable GPU is present: the cupy backend works here")
def test_cupy_without_a_gpu_says_what_to_do(backend_name):
    with pytest.raises(RuntimeError, match="install|GPU"):
        backend.set_backend("cupy")
    assert backend.get_backend() == backend_name


def test_use_backend_restores_backend_and_dtype(backend_name):
    with backend.use_backend("emulated", dtype="float64"):
        assert backend.get_backend() == "emulated" and backend.default_dtype() == np.float64
    assert backend.get_backend() == backend_name and backend.default_dtype() == np.float32


@pytest.mark.parametrize("dtype", ["int32", "float16", "complex64"])
def test_only_float32_and_float64_are_default_dtypes(dtype):
    with pytest.raises(ValueError, match="float32 or float64"):
        backend.set_default_dtype(dtype)
    assert backend.default_dtype() == np.float32
