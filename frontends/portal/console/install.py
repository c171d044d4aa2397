"""Wires the console into the portal's application: its routers and its adapters."""

from __future__ import annotations

from fastapi import FastAPI

from frontends.portal.console import auth, certificates, offerings, registrations
from frontends.portal.console.core import Console
from frontends.portal.context import Portal
from frontends.portal.settings import PortalSettings


def install_console(app: FastAPI, settings: PortalSettings) -> None:
    """After `app.state.portal`: the console shares its Redis (sessions) and its error pages."""
    portal: Portal = app.state.portal
    app.state.console = Console.of_settings(settings, portal.replies.redis)
    for module in (auth, offerings, registrations, certificates):
        app.include_router(module.router)


async def close_console(app: FastAPI) -> None:
    await app.state.console.close()
