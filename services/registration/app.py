"""The registration service, declared once (`DEFINITION`); `python -m services.registration` serves it."""

from __future__ import annotations

import asyncio
from pathlib import Path

from fastapi import APIRouter

from qti_contracts import RoutingKey
from qti_runtime.definition import Job, ServiceDefinition
from services.registration import api, feedback_api, privacy
from services.registration.consumers import SERVICE, subscriptions
from services.registration.handlers import RegistrationService
from services.registration.settings import RegistrationSettings

MIGRATIONS = Path(__file__).with_name("migrations")

__all__ = ["DEFINITION", "MIGRATIONS", "RegistrationSettings", "build_runtime", "create_app"]


def jobs(service: RegistrationService, _settings: RegistrationSettings) -> list[Job]:
    async def expire_deferred() -> None:
        while True:
            if await service.expire_deferred() == 0:
                await asyncio.sleep(1.0)

    async def backfill_token_hashes() -> None:
        await service.backfill_token_hashes()  # once, for registrations from before personal tokens

    return [("expire-deferred-requests", expire_deferred), ("backfill-token-hashes", backfill_token_hashes)]


def routers(service: RegistrationService, settings: RegistrationSettings) -> list[APIRouter]:
    return [api.router(service, settings), feedback_api.router(service)]


DEFINITION: ServiceDefinition[RegistrationSettings, RegistrationService] = ServiceDefinition(
    name=SERVICE,
    title="qti-net Anmeldung (registration)",
    settings=RegistrationSettings,
    service=RegistrationService,
    subscriptions=subscriptions,
    publishes=(
        RoutingKey.REGISTRATION_CONFIRMED,
        RoutingKey.REGISTRATION_WAITLISTED,
        RoutingKey.REGISTRATION_REJECTED,
        RoutingKey.REGISTRATION_CANCELLED,
        RoutingKey.REGISTRATION_ATTENDANCE_RECORDED,
        RoutingKey.REGISTRATION_COMPLETED,
        RoutingKey.FEEDBACK_INVITED,
        RoutingKey.FEEDBACK_SUBMITTED,
    ),
    routers=routers,
    jobs=jobs,
    migrations=MIGRATIONS,
    forget_person=privacy.forget_person,
    # Attendance of up to 1,000 registrations in one request: about 60 KB, up to 140 KB with long ids.
    large_body_routes=[("PUT", "/offerings/{offering_id}/sessions/{session_id}/attendance")],
)


# For tests and benchmarks that build one service the same way its process does.
build_runtime = DEFINITION.build_runtime
create_app = DEFINITION.create_app
