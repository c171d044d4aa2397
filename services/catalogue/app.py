"""The catalogue service, declared once (`DEFINITION`); `python -m services.catalogue` serves it."""

from __future__ import annotations

from fastapi import APIRouter

from qti_contracts import RoutingKey
from qti_runtime.definition import ServiceDefinition
from qti_runtime.settings import Settings
from services.catalogue import privacy
from services.catalogue.api import install_german_validation, public_router, staff_read_router, staff_router
from services.catalogue.consumers import SERVICE, subscriptions
from services.catalogue.migrations_path import MIGRATIONS
from services.catalogue.open_api import open_data_router
from services.catalogue.service import CatalogueService
from services.catalogue.staff_api import staff_directory_router


class CatalogueSettings(Settings):
    """Catalogue reads the shared settings only (demo data is loaded by `devtools.demo`, not here)."""


def routers(service: CatalogueService, settings: Settings) -> list[APIRouter]:
    return [
        public_router(service.db),
        open_data_router(service.db),
        staff_router(service.db, settings),
        staff_read_router(service.db, settings),
        staff_directory_router(service.db, settings),
    ]


DEFINITION: ServiceDefinition[Settings, CatalogueService] = ServiceDefinition(
    name=SERVICE,
    title="qti-net Katalog",
    settings=CatalogueSettings,
    service=CatalogueService,
    subscriptions=subscriptions,
    publishes=(
        RoutingKey.OFFERING_PUBLISHED,
        RoutingKey.OFFERING_UPDATED,
        RoutingKey.OFFERING_CANCELLED,
        RoutingKey.NODE_PUBLISHED,
        RoutingKey.NODE_UPDATED,
    ),
    routers=routers,
    migrations=MIGRATIONS,
    forget_person=privacy.forget_person,
    # An offering may have 500 sessions: up to about 520 KB as JSON (tests/runtime/test_limits.py).
    large_body_routes=[("POST", "/offerings"), ("PATCH", "/offerings/{offering_id}")],
    finish_app=install_german_validation,
)


# For tests and benchmarks that build one service the same way its process does.
build_runtime = DEFINITION.build_runtime
create_app = DEFINITION.create_app
