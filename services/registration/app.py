"""Composition root of the registration service."""

from __future__ import annotations

import asyncio
from pathlib import Path

from fastapi import FastAPI

from qti_runtime.service import ServiceRuntime, serve
from services.registration import api
from services.registration.consumers import SERVICE, subscriptions
from services.registration.handlers import RegistrationService
from services.registration.settings import RegistrationSettings

MIGRATIONS = Path(__file__).with_name("migrations")


def build(settings: RegistrationSettings | None = None) -> tuple[ServiceRuntime, RegistrationService]:
    settings = settings or RegistrationSettings()
    runtime = ServiceRuntime(SERVICE, settings, migrations=MIGRATIONS)
    service = RegistrationService(runtime.db, settings)
    for subscription in subscriptions(service, settings.delivery_limit, settings.prefetch):
        runtime.add_subscription(subscription)

    async def expire_deferred() -> None:
        while True:
            if await service.expire_deferred() == 0:
                await asyncio.sleep(1.0)

    runtime.add_job("expire-deferred-requests", expire_deferred)

    async def backfill_token_hashes() -> None:
        await service.backfill_token_hashes()  # once, for registrations from before personal tokens

    runtime.add_job("backfill-token-hashes", backfill_token_hashes)
    return runtime, service


def build_runtime(settings: RegistrationSettings | None = None) -> ServiceRuntime:
    return build(settings)[0]


def create_app(settings: RegistrationSettings | None = None) -> FastAPI:
    settings = settings or RegistrationSettings()
    runtime, service = build(settings)
    return runtime.create_app(
        [api.router(service, settings)],
        title="qti-net Anmeldung (registration)",
        # Attendance of up to 1,000 registrations in one request: about 60 KB, up to 140 KB with long ids.
        large_body_routes=[("PUT", "/offerings/{offering_id}/sessions/{session_id}/attendance")],
    )


def main() -> None:
    settings = RegistrationSettings()
    serve(
        create_app(settings),
        settings.http_host,
        settings.registration_port,
        grace_seconds=settings.shutdown_grace_seconds,
        nice=settings.cpu_nice,
    )
