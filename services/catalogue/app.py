"""Composition root of the catalogue service."""

from __future__ import annotations

from fastapi import FastAPI
from pydantic import Field

from qti_runtime.logging import get_logger
from qti_runtime.service import ServiceRuntime, serve
from qti_runtime.settings import Settings
from services.catalogue.api import (
    install_german_validation,
    public_router,
    staff_read_router,
    staff_router,
)
from services.catalogue.consumers import SERVICE, subscriptions
from services.catalogue.migrations_path import MIGRATIONS

log = get_logger(__name__)


class CatalogueSettings(Settings):
    demo_data: bool = Field(default=False, description="QTI_DEMO_DATA=1: load the demo catalogue on start.")


def build_runtime(settings: Settings) -> ServiceRuntime:
    holder: list[ServiceRuntime] = []
    runtime = ServiceRuntime(
        SERVICE,
        settings,
        migrations=MIGRATIONS,
        subscriptions=subscriptions(
            lambda: holder[0].db, delivery_limit=settings.delivery_limit, prefetch=settings.prefetch
        ),
    )
    holder.append(runtime)
    if isinstance(settings, CatalogueSettings) and settings.demo_data:

        async def load_demo() -> None:
            from services.catalogue.demo import load_demo_data

            counts = await load_demo_data(runtime.db)
            log.info("demo_data.loaded", **counts)

        runtime.add_job("demo-data", load_demo)
    return runtime


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or CatalogueSettings()
    runtime = build_runtime(settings)
    app = runtime.create_app(
        [
            public_router(runtime.db),
            staff_router(runtime.db, runtime),
            staff_read_router(runtime.db, runtime),
        ],
        title="qti-net Katalog",
        version="1.0.0",
        # An offering may have 500 sessions: up to about 520 KB as JSON (tests/runtime/test_limits.py).
        large_body_routes=[("POST", "/offerings"), ("PATCH", "/offerings/{offering_id}")],
    )
    install_german_validation(app)
    return app


def main() -> None:
    settings = CatalogueSettings()
    serve(
        create_app(settings),
        settings.http_host,
        settings.catalogue_port,
        grace_seconds=settings.shutdown_grace_seconds,
        nice=settings.cpu_nice,
    )
