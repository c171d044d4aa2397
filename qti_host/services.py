"""The installed services' definitions, in the order of `qti_contracts.SERVICES`.

A service is installed when its package `services.<name>` is importable; an image or checkout with only
some of them works with those (the others are reported as missing, never guessed).
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

from qti_contracts.topology import SERVICES

if TYPE_CHECKING:  # the definitions load FastAPI and FastStream: only the commands that need them pay
    from qti_runtime.definition import ServiceDefinition

AnyDefinition: TypeAlias = "ServiceDefinition[Any, Any]"


def module_available(module: str) -> bool:
    """Whether `module` can be imported (without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def definition_of(name: str) -> AnyDefinition | None:
    """The definition in `services.<name>.app`; None when that service is not installed."""
    module_name = f"services.{name}.app"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        # Only the service's own package missing means "not installed"; a missing dependency inside is a bug.
        if exc.name is not None and module_name.startswith(exc.name):
            return None
        raise
    definition: AnyDefinition = module.DEFINITION
    return definition


def definitions(names: Sequence[str] = SERVICES) -> list[AnyDefinition]:
    """The definitions of the installed services among `names`."""
    return [d for d in (definition_of(name) for name in names) if d is not None]


def runnable_module(name: str) -> str:
    """What `python -m` runs for one replica of the service (its `__main__` calls `DEFINITION.main()`)."""
    return f"services.{name}"
