"""HTTP conventions: RFC 9457 problem details, staff bearer tokens, health and metrics routes."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import SecretStr
from starlette.exceptions import HTTPException as StarletteHTTPException

PROBLEM_JSON = "application/problem+json"

_TITLES = {
    400: "Ungültige Anfrage",
    401: "Anmeldung erforderlich",
    403: "Keine Berechtigung",
    404: "Nicht gefunden",
    405: "Methode nicht erlaubt",
    409: "Konflikt",
    412: "Vorbedingung fehlgeschlagen",
    413: "Anfrage zu groß",
    422: "Eingaben ungültig",
    428: "Vorbedingung erforderlich",
    429: "Zu viele Anfragen",
    503: "Dienst nicht bereit",
}


class Problem(Exception):
    """Raise in an endpoint to answer with problem details (RFC 9457)."""

    def __init__(self, status: int, detail: str, *, title: str | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.title = title or _TITLES.get(status, "Fehler")
        self.extra = extra


def problem_response(
    status: int, detail: str, *, title: str | None = None, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    body = {
        "type": "about:blank",
        "title": title or _TITLES.get(status, "Fehler"),
        "status": status,
        "detail": detail,
        **extra,
    }
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _field_path(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(part) for part in loc if part not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


# FastAPI's answer to a body its JSON parser gave up on (other than a syntax error), e.g. nesting deeper
# than the parser recurses: a German 422 like every other invalid body.
_FASTAPI_UNPARSABLE_BODY = "There was an error parsing the body"
UNPARSABLE_BODY = "Der Inhalt ist kein gültiges JSON oder zu tief verschachtelt."


def install_problem_handlers(app: FastAPI) -> None:
    async def on_problem(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Problem)
        return problem_response(exc.status, exc.detail, title=exc.title, **exc.extra)

    async def on_http(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 400 and exc.detail == _FASTAPI_UNPARSABLE_BODY:  # e.g. nested too deep
            return problem_response(
                422, UNPARSABLE_BODY, errors=[{"field": "body", "message": UNPARSABLE_BODY}]
            )
        return problem_response(
            exc.status_code, str(exc.detail), headers=dict(exc.headers) if exc.headers else None
        )

    async def on_validation(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = [
            {"field": _field_path(err.get("loc", ())), "message": str(err.get("msg", ""))}
            for err in exc.errors()
        ]
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        return problem_response(422, f"Die Anfrage enthält ungültige Angaben: {detail}", errors=errors)

    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(RequestValidationError, on_validation)


_bearer = HTTPBearer(auto_error=False)


def staff_guard(token: SecretStr) -> Callable[..., Awaitable[None]]:
    """A dependency that admits requests carrying `Authorization: Bearer <staff token>`."""

    async def require_staff(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> None:
        if credentials is None:
            raise Problem(
                401, "Für diese Funktion ist ein Mitarbeiter-Token nötig (Authorization: Bearer …)."
            )
        if not secrets.compare_digest(credentials.credentials.encode(), token.get_secret_value().encode()):
            raise Problem(403, "Das angegebene Token berechtigt nicht zu dieser Funktion.")

    return require_staff


def operations_router(readiness: Callable[[], Awaitable[dict[str, bool]]]) -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get("/healthz", summary="Liveness: the process answers")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz", summary="Readiness: broker and database reachable, consumers running")
    async def readyz() -> Response:
        checks = await readiness()
        ready = all(checks.values())
        return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)

    @router.get("/metrics", summary="Prometheus metrics")
    async def prometheus_metrics() -> Response:
        return PlainTextResponse(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router
