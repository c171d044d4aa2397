"""Fixtures for the reporting service: a started runtime, an HTTP client, publishing through the broker."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import asyncpg
import httpx
import pytest

from qti_contracts import CloudEvent
from qti_runtime.broker import create_broker, publish_event_bytes
from qti_runtime.service import ServiceRuntime
from qti_runtime.settings import Settings
from services.reporting.api import build_router
from services.reporting.app import ReportingSettings, build_runtime
from support import eventually


@pytest.fixture
def reporting_settings(settings: Settings) -> ReportingSettings:
    return ReportingSettings(
        **{**settings.model_dump(), "pseudonym_key": "test-pseudonym-key"}, kpi_debounce_seconds=1.0
    )


class Reporting:
    def __init__(self, runtime: ServiceRuntime, settings: ReportingSettings) -> None:
        self.runtime = runtime
        self.settings = settings
        self.app = runtime.create_app([build_router(settings, runtime)], title="reporting-test")
        self.http = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://test")

    async def publish(self, events: Sequence[CloudEvent[Any]]) -> None:
        broker = create_broker(self.settings, "test")
        await broker.connect()
        try:
            for event in events:
                await publish_event_bytes(
                    broker, event.model_dump_json().encode(), routing_key=event.type, message_id=event.id
                )
        finally:
            await broker.stop()

    async def wait_ingested(self, distinct: int, timeout: float = 30.0) -> None:
        async def logged() -> bool:
            async with self.runtime.db.pool.acquire() as conn:
                count = await conn.fetchval("SELECT count(*) FROM inbox")
            return bool(count == distinct)

        await eventually(logged, timeout=timeout)

    async def connect(self) -> asyncpg.Connection:
        return await asyncpg.connect(self.settings.database_url)


@pytest.fixture
async def reporting(reporting_settings: ReportingSettings) -> AsyncIterator[Reporting]:
    runtime = build_runtime(reporting_settings)
    await runtime.start()
    service = Reporting(runtime, reporting_settings)
    try:
        yield service
    finally:
        await service.http.aclose()
        await runtime.stop()
