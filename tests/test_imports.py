"""The import graph of lora_np: every module imports on its own, nothing imports in a circle,
and imports only point down the layers of DESIGN.md.

**Each module alone.** One fresh interpreter imports the modules one by one, and before each it
removes every ``lora_np`` module from ``sys.modules``: each import starts from nothing of ours, as
in a learner's first cell, so a module that works only after some other module of ours has been
imported fails here. (Third-party packages stay loaded between imports: they are not under test,
and importing matplotlib sixty times would take a minute.)

**No cycle.** The graph is read from the source with :mod:`ast`, without importing anything.
Every ``import`` and ``from … import`` counts, wherever it is: at module level, inside a function
or a class, under ``if`` or ``try`` (an import deferred into a function still ties the two modules
together; deferring it only hides the cycle from the interpreter). The rules:

* A package is its ``__init__`` module: ``lora_np.nn`` is ``lora_np/nn/__init__.py``, with edges to
  the submodules that ``__init__`` imports.
* ``import a.b.c`` runs ``a``, ``a.b`` and ``a.b.c``: an edge to each of them.
* ``from P import n`` is an edge to ``P.n`` when that is a module of lora_np (a submodule imported
  by name, as in ``from .. import functional as F``), else to ``P`` (``n`` is a name defined in
  ``P``). Either way it first runs ``P`` and the packages on the way to it: an edge to each too.
* Relative imports are resolved against the importing module's package (for an ``__init__``, the
  package itself).
* Except that the importing module's own enclosing packages are no edge when they are only on the
  way. Python has already started them before the module runs (importing ``lora_np.nn.layers`` runs
  ``lora_np/__init__`` and then ``lora_np/nn/__init__`` first), and a package importing its own
  submodules to build its namespace is what a package is for. An explicit ``from . import name``
  of a name defined in the enclosing ``__init__`` is an edge, though: it needs that ``__init__`` to
  have got as far as ``name``, which is exactly the fragile kind of cycle this test looks for.

**Layers.** DESIGN.md's list, lowest first: backend and validate; functional; nn; models; lora;
optim; train; data; experiments; viz; widgets (the list's "viz/, widgets/", in the order in which
they import each other). A module imports its own layer or lower ones. Modules the list does not
name: ``emulated`` (beside the backend), ``version`` and ``tables`` (text tables over ``validate``)
on the lowest layer; ``gradcheck`` (checks modules) on nn's; ``course`` (the notebooks' checkers)
above the widgets; ``demo``, ``__main__`` and the package's ``__init__`` above everything, as the
entry points that nothing of ours imports.
"""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.host_only

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "lora_np"


def module_files(root: Path = ROOT) -> dict[str, Path]:
    """{dotted module name: file} for every module of the package; a package is its ``__init__``."""
    found = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if "__pycache__" in parts:
            continue
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _prefixes(name: str) -> list[str]:
    """'a.b.c' -> ['a', 'a.b', 'a.b.c']."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def imports_of(name: str, path: Path, modules) -> set[str]:
    """The modules of the package that module ``name`` (in ``path``) imports, by the rules above."""
    is_package = path.name == "__init__.py"
    own_package = name if is_package else name.rpartition(".")[0]
    enclosing = set(_prefixes(own_package)) | {name}                  # started before `name` runs
    edges = set()

    def on_the_way(target):                                           # packages run before `target`
        edges.update(p for p in _prefixes(target)[:-1] if p in modules and p not in enclosing)

    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == PACKAGE:
                    on_the_way(alias.name)
                    edges.add(alias.name)                             # named: an edge even if enclosing
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = own_package.split(".")
                if node.level - 1 >= len(base):
                    raise ValueError(f"{path}: relative import beyond the top-level package")
                base = base[:len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if source.split(".")[0] != PACKAGE:
                continue
            on_the_way(source)
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                if sub in modules:                                    # a submodule, imported by name
                    edges.add(sub)
                    if source not in enclosing:
                        edges.add(source)                             # its package runs first
                else:
                    edges.add(source)                                 # a name defined in `source`
    edges.discard(name)
    unknown = edges - set(modules)
    if unknown:
        raise AssertionError(f"{name} imports modules that do not exist: {sorted(unknown)}")
    return edges


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    modules = module_files(root)
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles, each as a closed path that starts at its alphabetically first module.

    The strongly connected components of more than one module (Tarjan's algorithm), and in each
    a shortest cycle through every one of its modules (breadth-first), without repeats: enough to
    name every module involved and every short loop, without listing all the long ones.
    """
    index, low, on_stack, stack, components = {}, {}, set(), [], []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(component)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    found = set()
    for component in components:
        for start in sorted(component):
            paths, frontier = {start: [start]}, [start]
            while not any(start in graph[v] for v in frontier):
                nxt = []
                for v in frontier:
                    for w in sorted(graph[v] & component):
                        if w not in paths:
                            paths[w] = paths[v] + [w]
                            nxt.append(w)
                frontier = nxt
            loop = paths[min(v for v in frontier if start in graph[v])]
            first = loop.index(min(loop))
            found.add(tuple(loop[first:] + loop[:first] + [min(loop)]))
    return [list(c) for c in sorted(found)]


# --------------------------------------------------------------------------- layers (DESIGN.md)

LAYERS = [                                   # lowest first; a module may import its own layer or lower
    ("backend", ["backend", "emulated", "validate", "tables", "version"]),
    ("functional", ["functional"]),
    ("nn", ["nn", "gradcheck"]),
    ("models", ["models"]),
    ("lora", ["lora"]),
    ("optim", ["optim"]),
    ("train", ["train"]),
    ("data", ["data"]),
    ("gpt2", ["gpt2"]),                                             # GPT-2: model, checkpoint, tokenizer
    ("experiments", ["experiments"]),
    ("viz", ["viz"]),
    ("widgets", ["widgets"]),                                       # dashboards over viz's figures
    ("course", ["course"]),                                         # the notebooks' checkers and exercises
    ("entry points", ["", "demo", "__main__"]),                     # "": the package's __init__
]


def layer_of(module: str) -> int:
    rest = module[len(PACKAGE) + 1:] if module != PACKAGE else ""
    head = rest.split(".")[0]
    for rank, (_, names) in enumerate(LAYERS):
        if head in names:
            return rank
    raise AssertionError(f"{module} is on no layer of DESIGN.md's list: add it to LAYERS")


def upward_imports(graph) -> list[str]:
    return sorted(f"{a} ({LAYERS[layer_of(a)][0]}) imports {b} ({LAYERS[layer_of(b)][0]})"
                  for a, targets in graph.items() for b in targets if layer_of(b) > layer_of(a))


# --------------------------------------------------------------------------- the tests


@pytest.fixture(scope="module")
def graph():
    return import_graph()


def test_the_graph_reader_follows_the_rules(tmp_path):
    """The rules of the module docstring, on a small made-up package with two cycles."""
    files = {
        "lora_np/__init__.py": "from . import a\nfrom .pkg import thing\n",
        "lora_np/a.py": "from . import b as B\nimport lora_np.pkg.sub\n",
        "lora_np/b.py": "import os\n\n\ndef later():\n    from .a import x\n    return x\n",
        "lora_np/c.py": "import lora_npx\n",
        "lora_np/d.py": "import lora_np\n",
        "lora_np/pkg/__init__.py": "from .sub import f as thing\n",
        "lora_np/pkg/sub.py": "from .. import c as C\nimport lora_np.pkg.helper\n",
        "lora_np/pkg/helper.py": "from . import thing\n",
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    graph = import_graph(tmp_path)
    assert graph == {
        "lora_np": {"lora_np.a", "lora_np.pkg"},
        "lora_np.a": {"lora_np.b", "lora_np.pkg", "lora_np.pkg.sub"},   # a package on the way: an edge
        "lora_np.b": {"lora_np.a"},                                      # inside a function: counted
        "lora_np.c": set(),                                              # not our package
        "lora_np.d": {"lora_np"},                                        # named: an edge
        "lora_np.pkg": {"lora_np.pkg.sub"},
        "lora_np.pkg.sub": {"lora_np.c", "lora_np.pkg.helper"},          # its own packages: no edge
        "lora_np.pkg.helper": {"lora_np.pkg"},                           # a name from its __init__: an edge
    }
    assert cycles(graph) == [["lora_np.a", "lora_np.b", "lora_np.a"],
                             ["lora_np.pkg", "lora_np.pkg.sub", "lora_np.pkg.helper", "lora_np.pkg"]]
    assert cycles({"x": {"y"}, "y": {"z"}, "z": set()}) == []


def test_no_two_modules_import_each_other(graph):
    found = cycles(graph)
    assert not found, "import cycles:\n" + "\n".join("  " + " -> ".join(c) for c in found)


def test_imports_only_point_down_the_layers(graph):
    upward = upward_imports(graph)
    assert not upward, "imports that point up DESIGN.md's layers:\n" + "\n".join("  " + u for u in upward)


CHILD = """
import importlib, importlib.machinery, json, sys, traceback
sys.path.insert(0, sys.argv[1])

# Compile each source file once, not once per import (without bytecode files, compiling is most of
# the time): a code object can run any number of times, each time making a new module.
compiled, compile_source = {}, importlib.machinery.SourceFileLoader.source_to_code
def source_to_code(loader, data, path, *args, **kwargs):
    if (path, data) not in compiled:
        compiled[path, data] = compile_source(loader, data, path, *args, **kwargs)
    return compiled[path, data]
importlib.machinery.SourceFileLoader.source_to_code = source_to_code

failures = {}
for name in json.loads(sys.argv[2]):
    for loaded in [m for m in sys.modules if m == "lora_np" or m.startswith("lora_np.")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except BaseException:
        failures[name] = traceback.format_exc(limit=-6)
print(json.dumps(failures))
"""


@pytest.fixture(scope="module")
def import_failures():
    """{module: traceback} for every module that fails to import on its own (one interpreter)."""
    names = sorted(module_files())
    env = {**os.environ, "MPLBACKEND": "Agg"}
    done = subprocess.run([sys.executable, "-c", CHILD, str(ROOT), json.dumps(names)], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("module", sorted(module_files()))
def test_each_module_imports_on_its_own(import_failures, module):
    assert module not in import_failures, f"`import {module}` alone fails:\n{import_failures.get(module)}"
