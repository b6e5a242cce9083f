"""The package's layers: each imports only the layers below it; old import paths still work (with a
DeprecationWarning, except the public fastgru.functional / reference / checkpoint / export) and give the
very same module object; nothing in the package itself uses an old path."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import fastgru
from fastgru import _moved

PACKAGE = Path(fastgru.__file__).parent
# a layer may import the layers listed for it (and itself); lazy imports inside functions count too
ALLOWED = {
    "core": {"core", "backends"},
    "backends": {"core", "backends", "mingru"},
    "mingru": {"core", "backends", "mingru"},
    "nn": {"core", "backends", "mingru", "nn"},
    "io": {"core", "io", "nn", "interop"},
    "interop": {"core", "backends", "nn", "io", "interop"},
    "train": {"core", "nn", "io", "train"},
    "apps": {"core", "backends", "nn", "mingru", "io", "interop", "train", "apps"},
}
# utilities that import nothing else of fastgru, usable from every layer
LEAVES = {"fastgru.io.atomic", "fastgru.io.markdown", "fastgru.io.settings", "fastgru.core.errors", "fastgru.config"}


def _fastgru_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            if node.module == "fastgru":
                names.update(f"fastgru.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return {n for n in names if n.startswith("fastgru.")}


def test_each_layer_imports_only_the_layers_below_it():
    wrong = []
    for layer, allowed in ALLOWED.items():
        for path in (PACKAGE / layer).rglob("*.py"):
            for name in _fastgru_imports(path):
                top = name.split(".")[1]
                if name in LEAVES:
                    continue
                if top in {"functional", "reference", "checkpoint", "export"}:
                    wrong.append(f"{path.relative_to(PACKAGE)} uses the public alias {name}; import the module")
                elif top not in allowed and not top.startswith("_"):
                    wrong.append(f"{path.relative_to(PACKAGE)} (layer {layer}) imports {name}")
    for leaf in LEAVES:
        path = PACKAGE / (leaf.removeprefix("fastgru.").replace(".", "/") + ".py")
        wrong += [f"the leaf {leaf} imports {name}" for name in _fastgru_imports(path) - LEAVES]
    assert not wrong, "\n".join(wrong)


def test_no_module_of_the_package_uses_an_old_path():
    """Importing every module with DeprecationWarning as an error, in a fresh interpreter."""
    code = (
        "import importlib, pkgutil, warnings, sys\n"
        "warnings.simplefilter('error', DeprecationWarning)\n"
        "import fastgru\n"
        "skip = ('fastgru.backends.triton', 'fastgru.mingru.triton_scan', 'fastgru.__main__')\n"
        "for m in pkgutil.walk_packages(fastgru.__path__, 'fastgru.'):\n"
        "    if not m.name.startswith(skip):\n"
        "        importlib.import_module(m.name)\n"
        "print('imported', len(sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.parametrize("old", sorted(_moved.PUBLIC) + sorted(_moved.DEPRECATED))
def test_old_paths_give_the_same_module(old):
    new = _moved.new_name(old)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sys.modules.pop(old, None)
        module = importlib.import_module(old)
    assert module is importlib.import_module(new)
    deprecations = [w for w in caught if issubclass(w.category, DeprecationWarning) and old in str(w.message)]
    assert bool(deprecations) == (old not in _moved.PUBLIC)


def test_a_submodule_under_an_old_package_path_is_not_loaded_twice():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        old = importlib.import_module("fastgru.tasks.forecast")
    assert old is importlib.import_module("fastgru.apps.forecast")
    assert _moved.new_name("fastgru.data.tabular") == "fastgru.apps.data.tabular"
    assert _moved.new_name("fastgru.nn.gru") is None  # not moved: the normal import system handles it
    assert {m.name for m in pkgutil.iter_modules(fastgru.__path__)} >= {"core", "nn", "io", "apps", "train"}


def test_min_gru_has_one_triton_dispatch():
    """Only the scan module chooses the Triton scan (the AOT compile check compiles it, without running it)."""
    importers = {str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
                 if "fastgru.mingru.triton_scan" in _fastgru_imports(p)
                 or "from fastgru.mingru import triton_scan" in p.read_text(encoding="utf-8")}
    assert importers <= {"mingru/scan.py", "backends/triton/aot.py"}, importers
    assert "mingru/scan.py" in importers
