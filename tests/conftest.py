"""Every test runs once per backend: NumPy and the device-emulating backend (which refuses
host/device mixing as CuPy does). Choose with ``--backends numpy,emulated`` or
``$LORA_NP_TEST_BACKENDS``. Tests marked ``host_only`` (host-side checks) or ``once`` (a long
experiment whose backend independence the quick tests already show) run on the first backend only.
"""
import os
import warnings

import pytest

from lora_np import backend

DEFAULT_BACKENDS = "numpy,emulated"


def pytest_addoption(parser):
    parser.addoption("--backends", default=os.environ.get("LORA_NP_TEST_BACKENDS", DEFAULT_BACKENDS),
                     help="comma-separated backends to run every test under (numpy, emulated, cupy)")


def pytest_generate_tests(metafunc):
    if "backend_name" not in metafunc.fixturenames:
        return
    names = [b.strip() for b in metafunc.config.getoption("backends").split(",") if b.strip()]
    if metafunc.definition.get_closest_marker("host_only") or metafunc.definition.get_closest_marker("once"):
        names = names[:1]
    metafunc.parametrize("backend_name", names)


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
