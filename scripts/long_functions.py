"""List the production functions longer than a limit (default 60 lines), longest first.

    python scripts/long_functions.py            # services, qti_runtime, qti_host, contracts, devtools
    python scripts/long_functions.py --limit 40 services/registration

A function's length runs from its `def` (decorators excluded) to its last line, nested functions
included. Exit code 1 when any is found, so that a test or CI step can use it once the code complies.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PRODUCTION = ("services", "qti_runtime", "qti_host", "contracts/qti_contracts", "devtools")
LIMIT = 60


@dataclass(frozen=True)
class LongFunction:
    path: Path
    line: int
    name: str
    length: int

    def __str__(self) -> str:
        return f"{self.length:4d}  {self.path}:{self.line}  {self.name}"


def functions(
    tree: ast.AST, prefix: str = ""
) -> Iterator[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    """Every function and method with its qualified name (`Class.method`, `outer.<locals>.inner`)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            name = f"{prefix}{node.name}"
            yield name, node
            yield from functions(node, f"{name}.<locals>.")
        elif isinstance(node, ast.ClassDef):
            yield from functions(node, f"{prefix}{node.name}.")


def long_functions(paths: Sequence[Path], limit: int = LIMIT) -> list[LongFunction]:
    found = []
    for path in paths:
        tree = ast.parse(path.read_text("utf-8"), str(path))
        for name, node in functions(tree):
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            if length > limit:
                shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
                found.append(LongFunction(shown, node.lineno, name, length))
    return sorted(found, key=lambda f: (-f.length, str(f.path), f.line))


def python_files(roots: Sequence[Path]) -> list[Path]:
    return sorted(p for root in roots for p in ([root] if root.is_file() else root.rglob("*.py")))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("paths", nargs="*", type=Path, help="files or folders (default: production code)")
    parser.add_argument("--limit", type=int, default=LIMIT, help="longest allowed function, in lines")
    args = parser.parse_args(argv)
    roots = [p if p.is_absolute() else ROOT / p for p in (args.paths or [Path(p) for p in PRODUCTION])]
    found = long_functions(python_files(roots), args.limit)
    for item in found:
        print(item)
    print(f"{len(found)} function(s) over {args.limit} lines", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main())
