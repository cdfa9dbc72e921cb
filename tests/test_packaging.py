"""The two install routes name the same packages with the same version bounds, what the code imports
is declared (and nothing it does not use), and the README's commands are CI's."""
import ast
import pathlib
import re
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.host_only

# Declared but never imported, each for a reason a user would accept.
NOT_IMPORTED = {
    "jupyterlab": "make lab: the notebooks are the course",
    "ipykernel": "the kernel that runs the notebooks (tests/test_notebooks.py, JupyterLab)",
    "ruff": "make lint",
}
# Imported but optional: each import is guarded, and says how to install it.
OPTIONAL_IMPORTS = {"cupy", "torch", "peft", "transformers"}
# Scripts that made committed test data once, in an environment of their own (their docstrings say
# which): what they import is not a dependency of the project.
DATA_SCRIPTS = ROOT / "tests" / "data"


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()                  # PEP 503: jupyter_client == jupyter-client


def _parse(req: str) -> tuple[str, str]:
    """'numpy>=1.25' -> ('numpy', '>=1.25'); 'ipykernel >=6.29, <7' -> ('ipykernel', '<7,>=6.29').
    Extras and environment markers are left out; clauses are sorted so their order does not matter."""
    m = re.fullmatch(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*([^;]*?)\s*(?:;.*)?", req)
    assert m, f"cannot parse requirement {req!r}"
    clauses = sorted(c.replace(" ", "") for c in m.group(2).split(",") if c.strip())
    return _norm(m.group(1)), ",".join(clauses)


def _pyproject_lists():
    """(dependencies, test extra, gpu extras) of pyproject.toml, each as {name: specifier}."""
    text = re.sub(r"#.*", "", (ROOT / "pyproject.toml").read_text())   # no '#' inside our requirements

    def block(key):
        m = re.search(rf"^{key}\s*=\s*\[(.*?)\]", text, re.S | re.M)
        assert m, f"pyproject.toml has no {key} list"
        reqs = [_parse(s) for s in re.findall(r'"([^"]+)"', m.group(1))]
        assert len(reqs) == len(dict(reqs)), f"a package is listed twice in {key}"
        return dict(reqs)
    return block("dependencies"), block("test"), block("gpu") | block("gpu-cuda13")


def _conda(commented: bool) -> dict:
    """environment.yml's dependencies as {name: specifier}; ``commented``: the commented-out ones."""
    text = (ROOT / "environment.yml").read_text()
    lines = text[text.index("dependencies:"):].splitlines()
    pat = r"^\s*#\s*-\s+([^#]+)" if commented else r"^\s*-\s+([^#]+)"
    return dict(_parse(m.group(1)) for m in (re.match(pat, line) for line in lines) if m)


def test_parse_requirements():
    assert _parse("numpy>=1.25") == ("numpy", ">=1.25")
    assert _parse("ipykernel >=6.29, <7") == ("ipykernel", "<7,>=6.29")
    assert _parse("jupyter_client>=8.0") == _parse("jupyter-client >=8.0")
    assert _parse("lora_np[test]==0.1 ; python_version>'3'") == ("lora-np", "==0.1")
    assert _parse("pip") == ("pip", "")


def test_environment_yml_pins_the_same_versions_as_pyproject():
    deps, test, _ = _pyproject_lists()
    pip = deps | test
    conda = _conda(commented=False)
    conda.pop("pip", None)
    python = conda.pop("python")
    assert conda.keys() == pip.keys(), (f"only in environment.yml: {conda.keys() - pip.keys()}; "
                                        f"only in pyproject: {pip.keys() - conda.keys()}")
    differ = {name: (pip[name], conda[name]) for name in pip if pip[name] != conda[name]}
    assert not differ, f"pyproject.toml and environment.yml pin differently (pip, conda): {differ}"
    no_minimum = [name for name, spec in pip.items() if not re.search(r"(^|,)(>=|==)", spec)]
    assert not no_minimum, f"every package needs a minimum version (>= or ==): {no_minimum}"
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert f'requires-python = "{python}"' in pyproject


def test_the_expected_packages_are_declared():
    deps, test, _ = _pyproject_lists()
    assert {"numpy", "matplotlib", "jupyterlab", "ipywidgets", "tqdm"} <= deps.keys()
    assert {"pytest", "hypothesis", "safetensors", "nbformat", "jupyter-client", "ruff"} <= test.keys()
    assert deps["numpy"] == ">=1.25"                             # Generator.spawn (lora_np.backend.Rng.spawn)
    assert test["ruff"].startswith("==")                         # lint findings change between versions


def test_the_website_and_browser_tools_are_pinned_exactly():
    text = (ROOT / "pyproject.toml").read_text()
    docs = re.search(r"^docs\s*=\s*\[(.*?)\]", text, re.S | re.M).group(1)
    pins = dict(_parse(s) for s in re.findall(r'"([^"]+)"', docs))
    tools = {"mkdocs", "mkdocs-material", "mkdocs-jupyter", "mkdocstrings", "mkdocstrings-python"}
    assert tools <= pins.keys()
    assert all(spec.startswith("==") for spec in pins.values()), pins
    browser = re.search(r"^browser\s*=\s*\[(.*?)\]", text, re.S | re.M).group(1)
    assert [_parse(s) for s in re.findall(r'"([^"]+)"', browser)] == [("playwright", "==1.65.2")]


def _imported_top_level_names() -> set:
    names = set()
    for folder in ("lora_np", "tests", "tests_browser", "benchmarks"):
        for path in (ROOT / folder).rglob("*.py"):
            if DATA_SCRIPTS in path.parents:
                continue
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if isinstance(node, ast.Import):
                    names |= {a.name.split(".")[0] for a in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names.add(node.module.split(".")[0])
                elif (isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "importorskip"
                      and node.args and isinstance(node.args[0], ast.Constant)):
                    names.add(node.args[0].value.split(".")[0])   # pytest.importorskip("safetensors.numpy")
    folders = ("tests", "tests_browser", "benchmarks")
    local = {"lora_np"} | {p.stem for folder in folders for p in (ROOT / folder).glob("*.py")}
    return names - set(sys.stdlib_module_names) - local


def test_what_the_code_imports_is_declared_and_what_is_declared_is_used():
    deps, test, _ = _pyproject_lists()
    declared = deps.keys() | test.keys() | {"playwright"}          # the browser extra (make test-browser)
    imported = {_norm(name) for name in _imported_top_level_names()}     # IPython -> ipython, as on PyPI
    undeclared = imported - OPTIONAL_IMPORTS - declared
    assert not undeclared, f"imported but not declared in pyproject.toml: {undeclared}"
    assert declared - imported <= NOT_IMPORTED.keys(), f"declared but never imported: {declared - imported}"


def test_gpu_extra_is_offered_on_both_routes():
    _, _, gpu = _pyproject_lists()
    assert gpu.keys() == {"cupy-cuda12x", "cupy-cuda13x"}      # the extras gpu (CUDA 12) and gpu-cuda13
    assert "cupy" in _conda(commented=True)
    readme = (ROOT / "README.md").read_text()
    assert all(name in readme for name in ("cupy-cuda12x", "cupy-cuda13x", "[gpu]", "[gpu-cuda13]"))


def test_ci_runs_the_readme_commands():
    readme, ci = (ROOT / "README.md").read_text(), (ROOT / ".ci" / "run").read_text()
    for cmd in ("make demo", "make test", "make lint", "make test-min", "make docs",
                "make test-browser"):
        assert cmd in readme and cmd in ci, cmd
    makefile = (ROOT / "Makefile").read_text()
    for target in ("demo", "test", "lint", "test-min", "lab", "reset-notebooks", "gpu", "bench", "docs",
                   "docs-serve", "test-browser", "clean"):
        assert re.search(rf"^{re.escape(target)}:", makefile, re.M), f"Makefile has no {target} target"
