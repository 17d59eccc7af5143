"""The architecture's arrows, read from every module's imports (AST; function-body imports included).

Rooms and the arrows allowed between them::

    runtime      <- convert <- distill
       ^            ^
       '-------- benchmarks

* ``runtime`` (the device side) imports no other room;
* ``convert`` imports ``runtime`` only (never ``benchmarks`` or ``distill``);
* ``benchmarks`` imports ``runtime`` and ``convert`` (to build what it measures), never ``distill``;
* ``distill`` may import ``convert`` and ``runtime``.

Also: no import cycle between modules, no private name (``_x``) of another room, and no private
LiteRT API (``interp._get_ops_details()`` and the like) outside :mod:`headpose.runtime.interpreter`,
whose public helpers (``op_names``, ``op_details``, ``xnnpack_partitions``) are the one way in.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, Iterator, List, Set, Tuple

import pytest

ROOT = Path(__file__).resolve().parents[2]
ROOMS = ("runtime", "convert", "benchmarks", "distill")
FORBIDDEN = {"runtime": {"convert", "distill", "benchmarks"}, "convert": {"benchmarks", "distill"},
             "benchmarks": {"distill"}}
# LiteRT's interpreter objects are read through these functions only
LITERT_HOME = "headpose.runtime.interpreter"
LITERT_MODULES = ("ai_edge_litert", "tflite_runtime", "tensorflow.lite")
# files another engineer owns right now (issue 12); they move onto the public helper when it lands
LITERT_PENDING: set = set()


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = ["headpose", *path.relative_to(root).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def room_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "headpose" else ""


def modules(root: Path = ROOT) -> Dict[str, Path]:
    return {module_name(p, root): p for room in ROOMS if (root / room).is_dir() for p in (root / room).rglob("*.py")}


def imports(name: str, path: Path, known) -> Iterator[Tuple[int, str, str]]:
    """(line, imported module, imported name or "") of every ``headpose`` import in a module."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "headpose":
                    yield node.lineno, a.name, ""
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.split(".")[0] != "headpose":
                continue
            for a in node.names:
                sub = f"{mod}.{a.name}"
                yield (node.lineno, sub, "") if sub in known else (node.lineno, mod, a.name)


def violations(root: Path = ROOT) -> List[str]:
    """Every broken rule under ``root`` (a checkout), one line each, ``file:line: what``."""
    mods = modules(root)
    found: List[str] = []
    graph: Dict[str, Set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        rel, room = path.relative_to(root), room_of(name)
        for line, mod, what in imports(name, path, mods):
            target = room_of(mod)
            if target in FORBIDDEN.get(room, ()):
                found.append(f"{rel}:{line}: {room} -> {target} ({mod}) is not an allowed arrow")
            if what.startswith("_") and not what.startswith("__") and target and target != room:
                found.append(f"{rel}:{line}: private name {mod}.{what} of the {target} room")
            if mod in mods and mod != name:
                graph[name].add(mod)
        found += private_litert(path, rel, name)
    found += [f"import cycle: {' -> '.join(c)}" for c in cycles(graph)]
    return found


def private_litert(path: Path, rel, name: str = "") -> List[str]:
    """Uses of LiteRT's private API: ``x._get_*()`` calls on anything, private names from its modules."""
    if name == LITERT_HOME:
        return []
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_get_"):
            out.append(f"{rel}:{node.lineno}: LiteRT private API .{node.attr} (use headpose.runtime.interpreter's "
                       f"op_names / op_details / xnnpack_partitions)")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(LITERT_MODULES):
            out += [f"{rel}:{node.lineno}: LiteRT private name {node.module}.{a.name}" for a in node.names
                    if a.name.startswith("_")]
    return out


def cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """The strongly connected groups of more than one module (Tarjan), each as a closed path."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on: Set[str] = set()
    groups: List[List[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group) + [min(group)])

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return groups


def test_the_rooms_keep_their_arrows():
    found = violations()
    assert not found, "import rules broken:\n" + "\n".join(found)


def test_tests_use_no_private_litert_api():
    found = [f for p in sorted((ROOT / "tests").rglob("*.py")) if str(p.relative_to(ROOT)) not in LITERT_PENDING
             for f in private_litert(p, p.relative_to(ROOT))]
    assert not found, "\n".join(found)


def test_every_room_is_installed():
    """Each room is a package under ``headpose`` (src/headpose/<room> -> ../../<room>)."""
    for room in ROOMS:
        link = ROOT / "src" / "headpose" / room
        assert link.is_symlink() and link.resolve() == (ROOT / room).resolve(), link
        assert (ROOT / room / "__init__.py").is_file()


PLANTED = {
    "runtime -> convert": ("runtime/bad.py", "from ..convert import pipeline\n", "runtime -> convert"),
    "lazy convert -> benchmarks": ("convert/bad.py", "def f():\n    from ..benchmarks import artifacts\n",
                                   "convert -> benchmarks"),
    "benchmarks -> distill": ("benchmarks/bad.py", "import headpose.distill.cli\n", "benchmarks -> distill"),
    "private name": ("convert/bad.py", "from ..runtime.interpreter import _private\n", "private name"),
    "LiteRT private": ("benchmarks/bad.py", "def f(it):\n    return it._get_ops_details()\n", "LiteRT private"),
    "cycle": ("distill/bad.py", "from . import distill\n", "import cycle"),
}


@pytest.mark.parametrize("case", sorted(PLANTED))
def test_a_planted_violation_fails(tmp_path, case):
    """Each rule catches a violation planted in a copy of the rooms."""
    for src in modules().values():  # the Python files of the rooms, nothing else
        dst = tmp_path / src.relative_to(ROOT)
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(src.read_bytes())
    rel, code, expected = PLANTED[case]
    (tmp_path / rel).write_text(code)
    if case == "cycle":  # distill.distill imports distill.bad back
        target = tmp_path / "distill" / "distill.py"
        target.write_text(target.read_text() + "\nfrom . import bad  # noqa\n")
    found = violations(tmp_path)
    assert any(expected in f for f in found), found
