"""How the catalogue's HTTP API answers bad input and refused commands: German problem details."""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from typing import Any, TypeVar
from uuid import UUID

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response

from qti_runtime.http import Problem, problem_response
from services.catalogue import handlers
from services.catalogue.domain import ValidationProblem

T = TypeVar("T")


def uuid_or_404(value: str, what: str = handlers.OFFERING_NOT_FOUND) -> UUID:
    """A path id that is no UUID names nothing that exists: 404, not 422."""
    try:
        return UUID(value)
    except ValueError:
        raise Problem(404, what) from None


def field_problem(field: str, message: str) -> Problem:
    """A 422 about one field, in the shape of the validation problems."""
    return Problem(422, f"{field}: {message}", errors=[{"field": field, "message": message}])


def validation_problem(problems: Sequence[ValidationProblem]) -> Problem:
    errors = [{"field": p.field, "message": p.message} for p in problems]
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    return Problem(422, f"Die Angaben sind nicht gültig: {detail}", errors=errors)


def command_problem(exc: handlers.CatalogueError) -> Problem:
    """The problem details for a refused command."""
    if isinstance(exc, handlers.Invalid):
        return validation_problem(exc.problems)
    if isinstance(exc, handlers.NotFound):
        return Problem(404, exc.message)
    if isinstance(exc, handlers.PreconditionFailed):
        return Problem(412, exc.message, current_etag=exc.current_etag)
    return Problem(409, exc.message)


async def answered(command: Awaitable[T]) -> T:
    """The result of a catalogue command; a refusal becomes its problem details."""
    try:
        return await command
    except handlers.CatalogueError as exc:
        raise command_problem(exc) from None


# --- German validation messages ----------------------------------------------------------------

_MESSAGES: dict[str, str] = {
    "missing": "Pflichtangabe fehlt.",
    "int_parsing": "Bitte eine ganze Zahl angeben.",
    "int_type": "Bitte eine ganze Zahl angeben.",
    "int_from_float": "Bitte eine ganze Zahl angeben.",
    "decimal_parsing": "Bitte einen Betrag angeben (z. B. 49.00).",
    "decimal_type": "Bitte einen Betrag angeben (z. B. 49.00).",
    "float_parsing": "Bitte eine Zahl angeben.",
    "datetime_parsing": "Bitte Datum und Uhrzeit angeben, z. B. 2027-03-02T09:00:00+01:00.",
    "datetime_from_date_parsing": "Bitte Datum und Uhrzeit angeben, z. B. 2027-03-02T09:00:00+01:00.",
    "datetime_type": "Bitte Datum und Uhrzeit angeben, z. B. 2027-03-02T09:00:00+01:00.",
    "date_parsing": "Bitte ein Datum angeben, z. B. 2027-03-01.",
    "date_from_datetime_parsing": "Bitte ein Datum angeben, z. B. 2027-03-01.",
    "date_from_datetime_inexact": "Bitte ein Datum ohne Uhrzeit angeben, z. B. 2027-03-01.",
    "date_type": "Bitte ein Datum angeben, z. B. 2027-03-01.",
    "uuid_parsing": "Bitte eine gültige ID (UUID) angeben.",
    "uuid_type": "Bitte eine gültige ID (UUID) angeben.",
    "string_type": "Bitte einen Text angeben.",
    "string_too_long": "Der Text ist zu lang.",
    "string_unicode": "Der Text enthält ungültige Zeichen (kein gültiges Unicode).",
    "bool_parsing": "Bitte true oder false angeben.",
    "bool_type": "Bitte true oder false angeben.",
    "json_invalid": "Der Inhalt ist kein gültiges JSON.",
    "model_attributes_type": "Bitte ein JSON-Objekt angeben.",
    "dict_type": "Bitte ein JSON-Objekt angeben.",
    "list_type": "Bitte eine Liste angeben.",
    "extra_forbidden": "Dieses Feld ist unbekannt oder kann nicht geändert werden.",
}


def german_message(error: dict[str, Any]) -> str:
    """A German message for one of pydantic's validation errors."""
    kind = str(error.get("type", ""))
    ctx = error.get("ctx") or {}
    if kind in ("enum", "literal_error"):
        return f"Ungültiger Wert; erlaubt sind: {ctx.get('expected', '')}."
    if kind == "greater_than_equal":
        return f"Der Wert muss mindestens {ctx.get('ge')} betragen."
    if kind == "less_than_equal":
        return f"Der Wert darf höchstens {ctx.get('le')} betragen."
    return _MESSAGES.get(kind, "Ungültige Angabe.")


def field_path(loc: Sequence[Any]) -> str:
    """`("body", "sessions", 0, "ends_at")` → `sessions[0].ends_at` (the paths the domain uses)."""
    path = ""
    for part in loc:
        if part in ("body", "query", "path", "header") and not path:
            continue
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path or "body"


async def on_request_validation(_request: Request, exc: Exception) -> Response:
    """Request validation errors as a 422 problem with one German message per field."""
    assert isinstance(exc, RequestValidationError)
    errors: list[dict[str, str]] = []
    for err in exc.errors():
        item = {"field": field_path(err.get("loc", ())), "message": german_message(err)}
        if item not in errors:
            errors.append(item)
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    return problem_response(422, f"Die Anfrage enthält ungültige Angaben: {detail}", errors=errors)


def install_german_validation(app: FastAPI) -> None:
    """Replaces the runtime's handler for request validation: same shape, German messages."""
    app.add_exception_handler(RequestValidationError, on_request_validation)
