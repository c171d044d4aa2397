"""Print the configuration table (every QTI_* variable) as Markdown, from the settings classes.

python scripts/settings_table.py > /tmp/table.md
"""

from __future__ import annotations

import importlib
import inspect

from pydantic import SecretStr
from pydantic_settings import BaseSettings

from qti_contracts.topology import SERVICES
from qti_runtime.settings import Settings


def _settings_classes() -> list[tuple[str, type[BaseSettings]]]:
    found: list[tuple[str, type[BaseSettings]]] = [("all", Settings)]
    for service in SERVICES:
        for module_name in (f"services.{service}.settings", f"services.{service}.app"):
            try:
                module = importlib.import_module(module_name)
            except ModuleNotFoundError:
                continue
            for _, cls in inspect.getmembers(module, inspect.isclass):
                if issubclass(cls, Settings) and cls is not Settings and cls.__module__ == module_name:
                    found.append((service, cls))
    return found


def table() -> str:
    rows = ["| variable | default | used by | meaning |", "|---|---|---|---|"]
    seen: set[str] = set()
    for owner, cls in _settings_classes():
        prefix = str(cls.model_config.get("env_prefix", ""))
        for name, field in cls.model_fields.items():
            variable = f"{prefix}{name}".upper()
            if variable in seen:
                continue
            seen.add(variable)
            default = field.default
            shown = "(secret)" if isinstance(default, SecretStr) else f"`{default}`"
            rows.append(f"| `{variable}` | {shown} | {owner} | {field.description or ''} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(table())
