"""The services' OpenAPI documents, kept in the repository under docs/openapi/<service>.json.

`python -m qti_host.openapi` rewrites them; `--check` (and a test) fails when one drifts from its app.
Each app is built from the service's definition; building opens no connection.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from qti_contracts import SERVICES
from qti_host.services import definition_of

FOLDER = Path(__file__).resolve().parent.parent / "docs" / "openapi"


def document_path(service: str) -> Path:
    return FOLDER / f"{service}.json"


def openapi_document(service: str) -> dict[str, Any]:
    definition = definition_of(service)
    if definition is None:
        raise LookupError(f"services.{service} is not installed")
    document: dict[str, Any] = definition.create_app().openapi()
    return document


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False, sort_keys=True) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if a committed document is out of date")
    args = parser.parse_args(argv)
    stale = []
    for service in SERVICES:
        path, text = document_path(service), render(openapi_document(service))
        if args.check:
            if not path.exists() or path.read_text("utf-8") != text:
                stale.append(str(path))
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, "utf-8")
        print(f"wrote {path}")
    if stale:
        print(f"out of date (run python -m qti_host.openapi): {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
