"""The two install routes name the same packages, and the README's commands are CI's."""
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.host_only


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[ ;]", req.strip(), maxsplit=1)[0].lower()


def _pyproject_lists():
    text = (ROOT / "pyproject.toml").read_text()

    def block(key):
        m = re.search(rf"^{key}\s*=\s*\[(.*?)\]", text, re.S | re.M)
        assert m, f"pyproject.toml has no {key} list"
        return {_name(s) for s in re.findall(r'"([^"]+)"', m.group(1))}
    return block("dependencies"), block("test"), block("gpu") | block("gpu-cuda13")


def _conda(commented: bool):
    text = (ROOT / "environment.yml").read_text()
    lines = text[text.index("dependencies:"):].splitlines()
    pat = r"^\s*#\s*-\s+(\S+)" if commented else r"^\s*-\s+(\S+)\s*$"
    return {_name(m.group(1)) for m in map(lambda l: re.match(pat, l), lines) if m}


def test_environment_yml_names_the_same_packages_as_pyproject():
    deps, test, gpu = _pyproject_lists()
    conda = _conda(commented=False) - {"python", "pip"}
    assert conda == deps | test, f"only in environment.yml: {conda - deps - test}; only in pyproject: {(deps | test) - conda}"
    assert {"numpy", "matplotlib", "jupyterlab", "ipywidgets", "tqdm"} <= deps
    assert {"pytest", "hypothesis", "nbmake"} <= test


def test_gpu_extra_is_offered_on_both_routes():
    _, _, gpu = _pyproject_lists()
    assert gpu == {"cupy-cuda12x", "cupy-cuda13x"}          # the extras gpu (CUDA 12) and gpu-cuda13
    assert "cupy" in _conda(commented=True)
    readme = (ROOT / "README.md").read_text()
    assert all(name in readme for name in ("cupy-cuda12x", "cupy-cuda13x", "[gpu]", "[gpu-cuda13]"))


def test_ci_runs_the_readme_commands():
    readme, ci = (ROOT / "README.md").read_text(), (ROOT / ".ci" / "run").read_text()
    for cmd in ("make demo", "make test"):
        assert cmd in readme and cmd in ci
