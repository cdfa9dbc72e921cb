"""Every test runs once per backend: NumPy, the device-emulating backend (which refuses
host/device mixing as CuPy does) and, when a usable GPU answers, CuPy. Choose with
``--backends numpy,emulated,cupy`` or ``$LORA_NP_TEST_BACKENDS``. Tests marked ``host_only``
(host-side checks), ``once`` (a long experiment whose backend independence the quick tests already
show) or ``gpu`` (they compare backends themselves) run on the first backend only. Tests marked
``gpu`` need CuPy and a usable GPU and are skipped, with the reason, without one.
"""
import os
import warnings

import pytest

from lora_np import backend


def _probe_gpu():
    """(True, "") when CuPy is installed and a GPU computes; else (False, why not)."""
    try:
        backend._load_cupy()
        return True, ""
    except Exception as err:                      # not installed, no GPU, driver too old, ...
        return False, str(err)


GPU_AVAILABLE, GPU_REASON = _probe_gpu()
DEFAULT_BACKENDS = "numpy,emulated" + (",cupy" if GPU_AVAILABLE else "")


def pytest_addoption(parser):
    parser.addoption("--backends", default=os.environ.get("LORA_NP_TEST_BACKENDS", DEFAULT_BACKENDS),
                     help="comma-separated backends to run every test under (numpy, emulated, cupy)")


def _backends(config):
    return [b.strip() for b in config.getoption("backends").split(",") if b.strip()]


def pytest_configure(config):
    if "cupy" in _backends(config) and not GPU_AVAILABLE:
        raise pytest.UsageError(f"--backends asks for cupy, but it cannot run here: {GPU_REASON}")


def pytest_generate_tests(metafunc):
    if "backend_name" not in metafunc.fixturenames:
        return
    names = _backends(metafunc.config)
    if any(metafunc.definition.get_closest_marker(m) for m in ("host_only", "once", "gpu")):
        names = names[:1]
    metafunc.parametrize("backend_name", names)


def pytest_collection_modifyitems(config, items):
    if GPU_AVAILABLE:
        return
    skip = pytest.mark.skip(reason=f"needs CuPy and a usable GPU: {GPU_REASON}")
    for item in items:
        if item.get_closest_marker("gpu"):
            item.add_marker(skip)


@pytest.fixture
def backend_name():
    return "numpy"


@pytest.fixture(autouse=True)
def _use_backend(backend_name):
    """Run the test under ``backend_name`` with float32 as the default dtype, then restore."""
    with backend.use_backend(backend_name, dtype="float32"):
        yield backend_name


@pytest.fixture
def float64():
    """Switch the default dtype to float64 for this test (gradient checks)."""
    backend.set_default_dtype("float64")
    yield


@pytest.fixture
def xp():
    return backend.get_xp()


@pytest.fixture
def rng():
    return backend.Rng(0)


@pytest.fixture
def no_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield
