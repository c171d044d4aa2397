"""The catalogue's OpenAPI document, kept in the repository as docs/openapi/catalogue.json.

`python -m services.catalogue.openapi` rewrites the file; a test fails when it drifts from the app.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from qti_runtime.settings import Settings
from services.catalogue.app import create_app

DOCUMENT = Path(__file__).resolve().parents[2] / "docs" / "openapi" / "catalogue.json"


def openapi_document() -> dict[str, Any]:
    """Built without connecting anywhere: creating the app opens no connection."""
    document: dict[str, Any] = create_app(Settings()).openapi()
    return document


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False, sort_keys=True) + "\n"


def write(path: Path = DOCUMENT) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(openapi_document()), encoding="utf-8")
    return path


if __name__ == "__main__":
    print(f"geschrieben: {write()}")
