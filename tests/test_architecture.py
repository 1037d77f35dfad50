"""The shape of the code: no import cycle, layers import downwards only, small modules, and an
install that puts nothing but ``automc`` into site-packages."""

from __future__ import annotations

import ast
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.one_pass  # asserts nothing torch's thread count can change: the 1-thread pass covers it

# Folder → installed package (pyproject's package-dir).
ROOTS = {"automc": "automc", "agents": "automc.agents", "search_spaces": "automc.search_spaces", "device_profiles": "automc.device_profiles"}

# Lower layers never import higher ones (docs/design.md has the map). Plugins sit above the
# core they use; the core reaches them only through the registry, never by import.
LAYERS: list[set[str]] = [
    {"automc", "automc.errors", "automc.settings", "automc.atomic", "automc.hashing", "automc.client"},
    {"automc.registry", "automc.targets", "automc.recipes", "automc.config", "automc.run"},
    {"automc.datasets", "automc.models"},
    {"automc.compress"},
    {"automc.measure"},
    {"automc.train"},
    {"automc.build"},
    {"automc.search"},
    {"automc.results"},
    {"automc.recover"},
    {"automc.testing", "automc.agents", "automc.search_spaces", "automc.device_profiles"},
    {"automc.service"},
    {"automc.cli", "automc.__main__"},
]
PLUGINS = {"automc.agents", "automc.search_spaces", "automc.device_profiles"}
MAX_LINES = 300


def _modules() -> dict[str, Path]:
    out = {}
    for folder, package in ROOTS.items():
        for path in sorted((REPO / folder).rglob("*.py")):
            rel = path.relative_to(REPO / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            out[".".join([package, *parts])] = path
    return out


def _imports(path: Path, module: str, known: set[str]) -> set[str]:
    """automc modules ``path`` imports anywhere (top level or inside functions)."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join(anchor + ([base] if base else []))
            names = [f"{base}.{a.name}" for a in node.names] + [base]
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != module:
                found.add(name)
    return found


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    return {m: _imports(p, m, set(mods)) for m, p in mods.items()}


def _layer(module: str) -> int:
    for i, layer in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in layer if p != "automc") or module == "automc":
            return i
    raise AssertionError(f"{module} is in no layer of tests/test_architecture.py: add its package to LAYERS (and docs/design.md)")


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle_anywhere() -> None:
    cycles = _cycles(_graph())
    assert not cycles, f"import cycles: {cycles}"


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_layers_import_downwards_and_the_core_never_imports_a_plugin() -> None:
    bad = []
    for module, deps in _graph().items():
        for dep in deps:
            core_to_plugin = _layer(module) != _layer(dep) and any(dep.startswith(p) for p in PLUGINS) and not any(module.startswith(p) for p in PLUGINS)
            if _layer(dep) > _layer(module) or core_to_plugin:
                bad.append(f"{module} -> {dep}")
    assert not bad, "imports against the layering of docs/design.md: " + ", ".join(sorted(bad))


def test_no_module_over_300_lines() -> None:
    long = {m: n for m, p in _modules().items() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"split these by concept (limit {MAX_LINES} lines): {long}"


def test_pyproject_lists_every_package_folder() -> None:
    import tomllib

    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {m for m, p in _modules().items() if p.name == "__init__.py"}
    assert listed == on_disk, f"pyproject [tool.setuptools] packages differs from the tree: missing {on_disk - listed}, extra {listed - on_disk}"


def test_the_wheel_installs_nothing_but_automc(tmp_path: Path) -> None:
    """What ``pip show -f automc`` lists after a (non-editable) install: the wheel's files."""
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(REPO)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    [wheel] = tmp_path.glob("automc-*.whl")
    tops = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert tops == {"automc", next(t for t in tops if t.endswith(".dist-info"))}, tops
    names = zipfile.ZipFile(wheel).namelist()
    assert "automc/agents/sb3_agents.py" in names and "automc/device_profiles/lut.py" in names
