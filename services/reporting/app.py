"""The reporting service, declared once (`DEFINITION`); `python -m services.reporting` serves it."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

from qti_contracts import RoutingKey
from qti_runtime.definition import Job, ServiceDefinition
from qti_runtime.service import ServiceRuntime
from qti_runtime.settings import Settings
from services.reporting import privacy, rebuild
from services.reporting.api import build_router
from services.reporting.consumers import SERVICE, subscriptions
from services.reporting.feedback_api import feedback_router
from services.reporting.handlers import ReportingHandlers, kpi_job
from services.reporting.settings import MIGRATIONS, ReportingSettings, reporting_settings

__all__ = ["DEFINITION", "MIGRATIONS", "ReportingSettings", "build_runtime", "create_app"]


def jobs(handlers: ReportingHandlers, settings: ReportingSettings) -> list[Job]:
    return [("kpi-events", kpi_job(handlers.db, settings.kpi_debounce_seconds))]


def routers(handlers: ReportingHandlers, settings: ReportingSettings) -> list[APIRouter]:
    return [build_router(settings, handlers), feedback_router(settings, handlers)]


DEFINITION: ServiceDefinition[ReportingSettings, ReportingHandlers] = ServiceDefinition(
    name=SERVICE,
    title="qti-net reporting",
    settings=ReportingSettings,
    service=ReportingHandlers,
    subscriptions=subscriptions,
    publishes=(RoutingKey.KPI_UPDATED,),
    routers=routers,
    jobs=jobs,
    migrations=MIGRATIONS,
    forget_person=privacy.forget_person,
    maintenance={"rebuild": rebuild.rebuild},
)


# For tests and benchmarks; they may hand in the shared settings only.
def build_runtime(settings: Settings | None = None) -> ServiceRuntime:
    return DEFINITION.build(reporting_settings(settings)).runtime


def create_app(settings: Settings | None = None) -> FastAPI:
    return DEFINITION.create_app(reporting_settings(settings))
