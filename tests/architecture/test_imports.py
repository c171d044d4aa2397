"""The import arrows of the project, read from the source (ast), not from a running interpreter.

Layers, from the floor up: `qti_contracts` (the public contract) ← `qti_runtime` (shared mechanics, knows
no service) ← `services.<svc>` (each declares itself once) ← `qti_host` (CLI, `make run`, documents) and
`devtools` (mail sink, demo data). Every import counts: at module level, inside functions and under
`TYPE_CHECKING`, since each of them is an arrow a reader has to follow.
"""

from __future__ import annotations

import ast
from collections.abc import Collection, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {
    "qti_contracts": ROOT / "contracts" / "qti_contracts",
    "qti_runtime": ROOT / "qti_runtime",
    "qti_host": ROOT / "qti_host",
    "services": ROOT / "services",
    "devtools": ROOT / "devtools",
}
# What each layer may import from the project (besides itself).
ALLOWED = {
    "qti_contracts": set(),
    "qti_runtime": {"qti_contracts"},
    "services": {"qti_contracts", "qti_runtime"},
    "devtools": {"qti_contracts", "qti_runtime", "services"},
    "qti_host": {"qti_contracts", "qti_runtime", "services"},
}


def module_name(path: Path, package: str) -> str:
    relative = path.relative_to(PACKAGES[package].parent).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    return {
        module_name(path, package): path
        for package, folder in PACKAGES.items()
        for path in sorted(folder.rglob("*.py"))
    }


def imported_modules(path: Path, module: str, modules: Collection[str]) -> Iterator[str]:
    """The project modules the file's import statements name (relative imports resolved).

    `from a import b` is an arrow to `a.b` when that is a module, else to `a` (b is a name in it).
    """
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text("utf-8"), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names if alias.name in modules)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor if is_package else anchor[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                target = f"{base}.{alias.name}"
                if target in modules:
                    yield target
                elif base in modules:
                    yield base


def graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports."""
    modules = project_modules()
    return {
        module: set(imported_modules(path, module, modules)) - {module} for module, path in modules.items()
    }


def layer(module: str) -> str:
    return module.split(".", 1)[0]


def test_every_layer_imports_only_the_layers_below() -> None:
    wrong = sorted(
        f"{module} imports {target}"
        for module, targets in graph().items()
        for target in targets
        if layer(target) != layer(module) and layer(target) not in ALLOWED[layer(module)]
    )
    assert wrong == [], "imports against the layering:\n" + "\n".join(wrong)


def test_services_do_not_import_each_other() -> None:
    def service_of(module: str) -> str | None:
        parts = module.split(".")
        return parts[1] if parts[0] == "services" and len(parts) > 1 else None

    crossing = sorted(
        f"{module} imports {target}"
        for module, targets in graph().items()
        for target in targets
        if service_of(module) and service_of(target) and service_of(module) != service_of(target)
    )
    assert crossing == [], "services talk through contracts and events only:\n" + "\n".join(crossing)


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(edges.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_no_module_imports_in_a_circle() -> None:
    found = cycles(graph())
    assert found == [], "import circles:\n" + "\n".join(" <-> ".join(c) for c in found)


@pytest.mark.parametrize(
    ("edges", "expected"),
    [
        ({"a": {"b"}, "b": {"a"}}, [["a", "b"]]),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [["a", "b", "c"]]),
        ({"a": {"b"}, "b": set()}, []),
    ],
)
def test_the_circle_finder_finds_circles(edges: dict[str, set[str]], expected: list[list[str]]) -> None:
    assert cycles(edges) == expected


def test_the_import_reader_sees_every_kind_of_import() -> None:
    edges = graph()
    assert "qti_runtime.delivery" in edges["qti_runtime.batching"]
    assert "qti_runtime.definition" in edges["services.catalogue.app"]
    assert "services" not in {layer(t) for t in edges["qti_runtime.definition"]}


def test_the_service_image_holds_no_development_tools() -> None:
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    copied = [
        line.split()[1]
        for line in dockerfile.splitlines()
        if line.startswith("COPY ") and "--from" not in line
    ]
    assert "services" in copied and "qti_runtime" in copied
    assert not any(source.startswith(("devtools", "tests", "bench")) for source in copied), copied
    assert not (ROOT / "services" / "notification" / "sink.py").exists()
    assert not list((ROOT / "services").rglob("demo*.py"))
