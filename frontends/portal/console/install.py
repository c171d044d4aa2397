"""Wires the console into the portal's application: its routers, its adapters and its 503 page."""

from __future__ import annotations

from fastapi import FastAPI, Request
from starlette.responses import Response

from frontends.portal.console import auth, offerings, registrations
from frontends.portal.console.core import Console
from frontends.portal.console.db import ConsoleUnavailable
from frontends.portal.context import portal_of
from frontends.portal.settings import PortalSettings


async def on_unavailable(request: Request, _exc: Exception) -> Response:
    return portal_of(request).error_page(
        request, 503, "Verwaltung vorübergehend nicht erreichbar",
        "Die Verwaltung kann ihre Daten gerade nicht abrufen. Bitte versuchen Sie es in einigen Minuten "
        "noch einmal.",
    )  # fmt: skip


def install_console(app: FastAPI, settings: PortalSettings) -> None:
    app.state.console = Console.of_settings(settings)
    for module in (auth, offerings, registrations):
        app.include_router(module.router)
    app.add_exception_handler(ConsoleUnavailable, on_unavailable)


async def close_console(app: FastAPI) -> None:
    await app.state.console.close()
