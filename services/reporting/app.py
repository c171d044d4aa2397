"""Composition root of the reporting service."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from pydantic import Field

from qti_runtime.service import ServiceRuntime, serve
from qti_runtime.settings import Settings
from services.reporting.api import build_router
from services.reporting.consumers import SERVICE, subscriptions
from services.reporting.handlers import ReportingHandlers, kpi_job

MIGRATIONS = Path(__file__).with_name("migrations")


class ReportingSettings(Settings):
    # `pseudonym_key` (QTI_PSEUDONYM_KEY) is shared: `Settings`. Changing it breaks counting unique persons
    # across the change (docs/operations.md, "Secrets").
    kpi_debounce_seconds: float = Field(default=5.0, gt=0)
    # Figures may lag a moment; registration's answers may not (see `Settings.cpu_nice`).
    cpu_nice: int = Field(default=10, ge=0, le=19, description="figures yield the CPU to registration")


def reporting_settings(settings: Settings | None) -> ReportingSettings:
    if settings is None:
        return ReportingSettings()
    if isinstance(settings, ReportingSettings):
        return settings
    return ReportingSettings(**{**ReportingSettings().model_dump(), **settings.model_dump()})


def build_runtime(settings: Settings | None = None) -> ServiceRuntime:
    config = reporting_settings(settings)
    handlers = ReportingHandlers(config.pseudonym_key.get_secret_value().encode())
    runtime = ServiceRuntime(
        SERVICE, config, migrations=MIGRATIONS, subscriptions=subscriptions(handlers, config.prefetch)
    )
    handlers.bind(runtime.db)
    runtime.add_job("kpi-events", kpi_job(runtime.db, config.kpi_debounce_seconds))
    return runtime


def create_app(settings: Settings | None = None) -> FastAPI:
    config = reporting_settings(settings)
    runtime = build_runtime(config)
    return runtime.create_app([build_router(config, runtime)], title="qti-net reporting")


def main() -> None:
    config = ReportingSettings()
    serve(
        create_app(config),
        config.http_host,
        config.reporting_port,
        grace_seconds=config.shutdown_grace_seconds,
        nice=config.cpu_nice,
    )
