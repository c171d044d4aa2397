"""Reporting's settings and where its schema's migrations live (read by the app, rebuild and privacy)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from qti_runtime.settings import Settings

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
