"""The portal's ASGI application: adapters wired at start, routers, German error pages, middleware."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from redis.asyncio import Redis
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, Response
from starlette.staticfiles import StaticFiles

from frontends.portal import alerts, alternatives, find, followup, mine, nodes, register
from frontends.portal.backend import Backend, BackendUnavailable
from frontends.portal.commands import CommandBus, ReplyStore
from frontends.portal.console.install import close_console, install_console
from frontends.portal.context import Portal, portal_of, template_environment
from frontends.portal.security import BrowserSafety, FormKeys, Ownership, RateLimiter
from frontends.portal.settings import PortalSettings
from qti_runtime.bodylimit import BodyLimit
from qti_runtime.client_address import ClientAddress
from qti_runtime.logging import get_logger

log = get_logger(__name__)
STATIC = Path(__file__).parent / "static"
INFO_PAGES = {"/barrierefreiheit": "barrierefreiheit.html", "/datenschutz": "datenschutz.html",
              "/impressum": "impressum.html"}  # fmt: skip


def build_portal(settings: PortalSettings) -> Portal:
    redis = Redis.from_url(settings.redis_url)
    keys = FormKeys(settings.portal_form_secret.get_secret_value().encode())
    replies = ReplyStore(redis, settings.redis_prefix)
    return Portal(
        settings=settings,
        backend=Backend.connect(settings.catalogue_url, settings.registration_url),
        bus=CommandBus(settings.amqp_url, replies),
        replies=replies,
        ownership=Ownership(redis, settings.redis_prefix, keys),
        limiter=RateLimiter(redis, settings.redis_prefix, keys),
        keys=keys,
        templates=template_environment(),
        clients=ClientAddress(settings.trusted_proxies),
    )


def install_error_pages(app: FastAPI) -> None:
    async def on_http(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 400
        if status == 404:
            heading, message = "Seite nicht gefunden", "Diese Seite gibt es nicht."
        else:
            heading, message = "Anfrage nicht möglich", "Diese Anfrage kann das Portal nicht bearbeiten."
        return portal_of(request).error_page(request, status, heading, message)

    async def on_unavailable(request: Request, exc: Exception) -> Response:
        log.warning("backend.unavailable", error=str(exc)[:200])
        return portal_of(request).error_page(
            request, 503, "Vorübergehend nicht erreichbar",
            "Das Portal kann die Angebote gerade nicht abrufen. Bitte versuchen Sie es in einigen Minuten "
            "noch einmal.",
        )  # fmt: skip

    async def on_error(request: Request, exc: Exception) -> Response:
        # Type and place only: the message could quote submitted (personal) data.
        path = request.url.path.split("/meine-anmeldung/")[0].split("/rueckmeldung/")[0]
        log.error("portal.error", error=type(exc).__name__, path=path)
        return portal_of(request).error_page(
            request, 500, "Fehler im Portal",
            "Das hat leider nicht geklappt. Bitte versuchen Sie es in einigen Minuten noch einmal.",
        )  # fmt: skip

    app.add_exception_handler(Exception, on_error)
    app.add_exception_handler(HTTPException, on_http)
    app.add_exception_handler(RequestValidationError, on_http)
    app.add_exception_handler(BackendUnavailable, on_unavailable)


def install_info_pages(app: FastAPI) -> None:
    for path, template in INFO_PAGES.items():

        async def page(request: Request, template: str = template) -> Response:
            return portal_of(request).render(request, template)

        app.add_api_route(path, page, methods=["GET"], include_in_schema=False)


async def redis_ready(portal: Portal) -> bool:
    try:
        return bool(await portal.replies.redis.ping())
    except RedisError:
        return False


def install_health(app: FastAPI) -> None:
    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz(request: Request) -> Response:
        portal = portal_of(request)
        checks = {
            "broker": portal.bus.ready,
            "services": await portal.backend.ready(),
            "redis": await redis_ready(portal),
        }
        return JSONResponse(checks, status_code=200 if all(checks.values()) else 503)


def create_app(settings: PortalSettings | None = None) -> FastAPI:
    settings = settings or PortalSettings()
    portal = build_portal(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await portal.bus.start()
        try:
            yield
        finally:
            await portal.bus.close()
            await portal.backend.close()
            await _app.state.followup.close()
            await portal.replies.redis.aclose()
            await close_console(_app)

    app = FastAPI(title="QTI-Portal", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.portal = portal
    app.state.followup = followup.FollowUp.connect(settings.notification_url, settings.registration_url)
    routers = (find.router, nodes.router, register.router, mine.router, alerts.router,
               alternatives.router, followup.router)  # fmt: skip
    for router in routers:
        app.include_router(router)
    install_console(app, settings)
    install_info_pages(app)
    install_health(app)
    install_error_pages(app)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_middleware(BodyLimit, max_bytes=settings.portal_max_body_bytes)
    app.add_middleware(BrowserSafety, secure_cookie=settings.portal_url.startswith("https://"))
    return app
