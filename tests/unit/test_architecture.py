"""The shape of the code, checked from its syntax: Faust only in the application shell, no
private attribute of anyone else's object (faust, mode, aiokafka or our own), a pure core, and
no import cycle among the worker's modules, and the worker in small pieces."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("handlers", "schemas", "streams")
SHELL = {"streams/worker/app.py"}  # the Faust application: the App, its lifecycle, web server and timers
BASELINES = {"benchmarks/naive_faust.py"}  # the naive Faust worker the benchmarks compare with


def sources(*roots: str) -> Iterator[tuple[str, ast.Module]]:
    for root in roots:
        for path in sorted((ROOT / root).rglob("*.py")):
            yield str(path.relative_to(ROOT)), ast.parse(path.read_text("utf-8"))


def imported(tree: ast.AST) -> Iterator[tuple[int, str]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.lineno, node.module
            yield from ((node.lineno, f"{node.module}.{alias.name}") for alias in node.names)


def test_only_the_application_shell_imports_faust() -> None:
    found = [(path, line, name) for path, tree in sources(*PACKAGES, "benchmarks", "tests")
             for line, name in imported(tree) if name.split(".")[0] in ("faust", "mode")
             and path not in SHELL | BASELINES]
    assert found == []


def test_no_private_attribute_of_another_object_is_touched() -> None:
    """``x._name`` only on ``self`` or ``cls``; nothing private imported from another module."""
    found = []
    for path, tree in sources(*PACKAGES, "benchmarks", "tests"):
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
                    and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))):
                found.append((path, node.lineno, ast.unparse(node)))
        found += [(path, line, name) for line, name in imported(tree)
                  if any(part.startswith("_") and not part.startswith("__") for part in name.split("."))]
    assert found == []


def test_the_core_is_pure() -> None:
    """handlers/ and schemas/ do no I/O and know nothing of Kafka, Redis, Faust or the worker."""
    forbidden = ("faust", "mode", "aiokafka", "redis", "asyncio", "streams", "socket", "prometheus_client")
    found = [(path, line, name) for path, tree in sources("handlers", "schemas") for line, name in imported(tree)
             if name.split(".")[0] in forbidden]
    assert found == []


def test_the_worker_modules_import_no_cycle() -> None:
    graph: dict[str, set[str]] = {}
    for path, tree in sources("streams"):
        module = path.removesuffix(".py").replace("/", ".").removesuffix(".__init__")
        graph[module] = {name for _, name in imported(tree) if name.startswith("streams.")}
    graph = {m: {d for d in deps if d in graph and d != m} for m, deps in graph.items()}
    cycles = []

    def visit(module: str, trail: list[str]) -> None:
        if module in trail:
            cycles.append(trail[trail.index(module):] + [module])
            return
        for dep in sorted(graph[module]):
            visit(dep, trail + [module])

    for module in sorted(graph):
        visit(module, [])
    assert cycles == []


def test_each_room_leans_only_on_the_rooms_below_it() -> None:
    """streams/worker runs on the core and streams/ops (topics, metrics, pages, the read model);
    ops knows nothing of the worker's insides; the offline replays use both; the developer
    tools use anything, and nothing uses them but the command line. Every room connects to
    Kafka through streams.connect."""
    allowed = {
        "streams.worker": {"streams.worker", "streams.ops", "streams.settings", "streams.bus", "streams.connect"},
        "streams.ops": {"streams.ops", "streams.settings", "streams.bus", "streams.connect"},
        "streams.offline": {"streams.offline", "streams.worker", "streams.ops", "streams.settings", "streams.bus",
                            "streams.connect"},
    }
    found = []
    for path, tree in sources("streams"):
        room = ".".join(path.removesuffix(".py").split("/")[:2])
        if room not in allowed:
            continue
        for line, name in imported(tree):
            if name.startswith("streams.") and ".".join(name.split(".")[:2]) not in allowed[room]:
                found.append((path, line, name))
    assert found == []


def test_the_worker_reads_in_small_pieces() -> None:
    """In streams/worker no function runs over 60 lines and no class has over 12 methods, and every
    module opens with what it does and what may be touched there (its first two sentences)."""
    for path, tree in sources("streams/worker"):
        opening = (ast.get_docstring(tree) or "").split("\n\n")[0]
        assert "touch" in opening.lower() and opening.endswith("."), f"{path}: its opening does not say what may be touched"
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                assert length <= 60, f"{path}:{node.lineno} {node.name} runs {length} lines"
            if isinstance(node, ast.ClassDef):
                methods = [n for n in node.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
                assert len(methods) <= 12, f"{path}:{node.lineno} {node.name} has {len(methods)} methods"
