"""The architecture rules (docs/architecture.md), checked: the import-linter contracts of pyproject.toml (each layer
imports only the layers below it; no import cycle inside a subpackage), every subpackage placed in a layer, and no
function-level import of a marketsim module outside the CLI (whose commands are loaded lazily on purpose)."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

from .conftest import ROOT

PACKAGE = ROOT / "src" / "marketsim"
#: Function-level imports of a marketsim module allowed outside cli/ (module, imported module): each is a known,
#: documented exception (pyproject.toml, [tool.importlinter] ignore_imports).
ALLOWED_LATE = {("marketsim.io.store", "marketsim.io.dataset")}


def _contracts() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"]


def test_import_contracts_are_kept(monkeypatch, capsys):
    pytest.importorskip("importlinter")
    from importlinter import configuration
    from importlinter.application.use_cases import lint_imports

    configuration.configure()  # what the lint-imports command does first
    monkeypatch.chdir(ROOT)
    ok = lint_imports(config_filename=str(ROOT / "pyproject.toml"), cache_dir=None, no_logo=True)
    out = capsys.readouterr().out
    assert ok, f"an import breaks the layers (see docs/architecture.md):\n{out}"
    assert "2 kept, 0 broken" in out, out


def test_every_subpackage_is_in_a_layer():
    layers = next(c for c in _contracts()["contracts"] if c["type"] == "layers")["layers"]
    named = {part.strip() for layer in layers for part in layer.split("|")}
    on_disk = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert on_disk == named, f"subpackages not in the layers contract: {on_disk - named}; gone: {named - on_disk}"


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _late_imports(path: Path) -> list[tuple[int, str]]:
    """(line, imported name) of every import from a marketsim module inside a function or class body."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        for sub in ast.walk(node):
            if isinstance(sub, ast.ImportFrom):
                mod = "." * sub.level + (sub.module or "")
                if sub.level or mod == "marketsim" or mod.startswith("marketsim."):
                    found += [(sub.lineno, f"{mod}.{a.name}") for a in sub.names]
            elif isinstance(sub, ast.Import):
                found += [(sub.lineno, a.name) for a in sub.names if a.name.split(".")[0] == "marketsim"]
    return sorted(set(found))


def test_no_function_level_import_of_marketsim_outside_the_cli():
    late = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.relative_to(PACKAGE).parts[0] == "cli":
            continue
        me = _module_name(path)
        late += [
            f"{path.relative_to(ROOT)}:{line}: {name}"
            for line, name in _late_imports(path)
            if not any(me == a and (name == b or name.startswith(b + ".")) for a, b in ALLOWED_LATE)
        ]
    assert not late, "import these at the top of the module (a late import hides a wrong-way edge):\n" + "\n".join(late)


def test_no_relative_imports():
    """Absolute imports only: a module's imports say which layer they reach."""
    rel = [
        f"{p.relative_to(ROOT)}:{n.lineno}"
        for p in sorted(PACKAGE.rglob("*.py"))
        for n in ast.walk(ast.parse(p.read_text(encoding="utf-8")))
        if isinstance(n, ast.ImportFrom) and n.level
    ]
    assert not rel, rel
