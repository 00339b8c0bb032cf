"""The import graph of `buildtool/` has no circle, as docs/ARCHITECTURE.md draws it.

The imports are read from the source with `ast`, not by importing: absolute and relative ones, at the top of a
module, inside a function, and under `if TYPE_CHECKING:`. A type-only import is an edge too: the module needs
the other one's types to be understood, so a circle through it is a circle of the design, even where Python
would never run into it. A package's own `__init__.py` running before its modules is not an edge.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = "buildtool"
ROOT = Path(__file__).resolve().parents[2] / PACKAGE


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = [root.name, *path.relative_to(root).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(root: Path = ROOT) -> dict[str, Path]:
    return {module_name(path, root): path for path in sorted(root.rglob("*.py"))}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The modules of `known` that module `name` (at `path`) imports, anywhere in its source."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # `from X import y`: y is module X.y when such a module exists, else a name defined in X.
            found.update(
                f"{target}.{alias.name}" if f"{target}.{alias.name}" in known else target for alias in node.names
            )
    # `import a.b.c` names module a.b.c; keep the longest prefix that is one of ours.
    edges = set()
    for target in found:
        while target and target not in known:
            target = target.rpartition(".")[0]
        if target and target != name:
            edges.add(target)
    return edges


def graph(root: Path = ROOT) -> dict[str, set[str]]:
    found = modules(root)
    return {name: imports_of(name, path, set(found)) for name, path in found.items()}


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of two or more modules (Tarjan), each sorted; sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return sorted(groups)


def test_buildtool_has_no_import_circle() -> None:
    edges = graph()
    assert len(edges) > 20 and edges["buildtool.cli"]  # the reader found the package and its imports
    found = circles(edges)
    assert found == [], "import circles in buildtool/ (break them; see docs/ARCHITECTURE.md): " + "; ".join(
        " <-> ".join(group) for group in found
    )


def reachable(edges: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for nxt in edges.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


@pytest.mark.parametrize(
    "module",
    [
        "buildtool.push.registry",
        "buildtool.push.registry_auth",
        "buildtool.push.registry_retry",
        "buildtool.push.registry_tls",
        "buildtool.push.registry_transport",
        "buildtool.push.skopeo",
        "buildtool.credentials",
    ],
)
def test_the_registry_and_its_credentials_need_no_engine(module: str) -> None:
    """The registry's HTTP API and the engine's credential store are read without the engine package."""
    edges = graph()
    assert module in edges  # the reader knows the module
    found = reachable(edges, module)
    assert not {name for name in found if name == "buildtool.engine" or name.startswith("buildtool.engine.")}


def test_only_the_cli_exits() -> None:
    """Library code raises a BuildtoolError; `cli.main` alone turns it into an exit."""
    offenders = []
    for name, path in modules().items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "exit"
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "sys"
                and name not in ("buildtool.cli", "buildtool.__main__")
            ):
                offenders.append(f"{name}:{node.lineno}")
    assert offenders == []


def _write(root: Path, files: dict[str, str]) -> Path:
    for relative, source in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)
    return root


@pytest.mark.parametrize(
    "files, expected",
    [
        pytest.param(
            {"a.py": "from . import b\n", "b.py": "from .a import x\n"}, [["pkg.a", "pkg.b"]], id="relative-top-level"
        ),
        pytest.param(
            {"a.py": "import pkg.b\n", "b.py": "def f():\n    from pkg import a\n"},
            [["pkg.a", "pkg.b"]],
            id="absolute-and-in-a-function",
        ),
        pytest.param(
            {
                "a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .b import B\n",
                "b.py": "from .a import A\n",
            },
            [["pkg.a", "pkg.b"]],
            id="type-checking-counts",
        ),
        pytest.param(
            {"sub/__init__.py": "", "sub/c.py": "from ..a import x\n", "a.py": "from .sub import c\n"},
            [["pkg.a", "pkg.sub.c"]],
            id="parent-package",
        ),
        pytest.param(
            {"a.py": "from .b import x\n", "b.py": "from .c import y\n", "c.py": "import pkg.a.thing\n"},
            [["pkg.a", "pkg.b", "pkg.c"]],
            id="three-modules",
        ),
        pytest.param(
            {"__init__.py": "from .a import x\n", "a.py": "from .b import y\n", "b.py": "import json\n"},
            [],
            id="no-circle",
        ),
        pytest.param(
            {"sub/__init__.py": "from .c import x\n", "sub/c.py": "from . import d\n", "sub/d.py": ""},
            [],
            id="a-package-face-running-first-is-no-edge",
        ),
    ],
)
def test_the_reader_finds_each_kind_of_circle(tmp_path: Path, files: dict[str, str], expected: list[list[str]]) -> None:
    root = _write(tmp_path / "pkg", {"__init__.py": "", **files})
    assert circles(graph(root)) == expected
