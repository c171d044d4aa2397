"""Write the JSON Schema of every event type's full envelope to `qti_contracts/schemas/<type>.json`.

python -m qti_contracts.generate           # (re)write the schemas
python -m qti_contracts.generate --check   # exit 1 and list the files that differ from the models
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .registry import EVENT_TYPES, envelope_model

SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"
EXAMPLE_DIR = Path(__file__).resolve().parent / "examples"
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def schema_for(type_: str) -> dict[str, Any]:
    schema = envelope_model(type_).model_json_schema()
    schema["$schema"] = JSON_SCHEMA_DIALECT
    schema["title"] = type_
    schema["description"] = f"CloudEvents 1.0 envelope (structured JSON mode) of `{type_}`."
    # The envelope's `type` is fixed per schema, which the generic envelope model cannot express.
    schema["properties"]["type"] = {**schema["properties"]["type"], "const": type_}
    return schema


def render(schema: dict[str, Any]) -> str:
    """Deterministic JSON: sorted keys, indent 2, UTF-8 as is, trailing newline."""
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def render_schemas() -> dict[str, str]:
    """File name → content of every schema file."""
    return {f"{type_}.json": render(schema_for(type_)) for type_ in sorted(EVENT_TYPES)}


def drifted(directory: Path = SCHEMA_DIR) -> list[str]:
    """Names of schema files that are missing, stale or superfluous in `directory`."""
    expected = render_schemas()
    problems = [
        name
        for name, content in expected.items()
        if not (directory / name).is_file() or (directory / name).read_text(encoding="utf-8") != content
    ]
    if directory.is_dir():
        problems += sorted(p.name for p in directory.glob("*.json") if p.name not in expected)
    return problems


def write(directory: Path = SCHEMA_DIR) -> list[str]:
    directory.mkdir(parents=True, exist_ok=True)
    expected = render_schemas()
    for stale in directory.glob("*.json"):
        if stale.name not in expected:
            stale.unlink()
    written = []
    for name, content in expected.items():
        path = directory / name
        if not path.is_file() or path.read_text(encoding="utf-8") != content:
            path.write_text(content, encoding="utf-8")
            written.append(name)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m qti_contracts.generate", description=__doc__)
    parser.add_argument("--check", action="store_true", help="only report schema files that differ")
    parser.add_argument("--dir", type=Path, default=SCHEMA_DIR, help="schema directory")
    args = parser.parse_args(argv)
    if args.check:
        problems = drifted(args.dir)
        if problems:
            print("Schemas out of date (run `python -m qti_contracts.generate`):", file=sys.stderr)
            for name in problems:
                print(f"  {args.dir / name}", file=sys.stderr)
            return 1
        print(f"{len(EVENT_TYPES)} schemas up to date.")
        return 0
    written = write(args.dir)
    print(f"{len(written)} of {len(EVENT_TYPES)} schemas written to {args.dir}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
