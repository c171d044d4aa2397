"""Reporting's read side: the figures of one filter as a full report, node names, frozen snapshots."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol

import asyncpg

from qti_runtime.db import Database
from services.reporting import feedback, store
from services.reporting.domain import Facts, Filters
from services.reporting.report import FullReport, full_report


class DatabaseSource(Protocol):
    """Whatever holds reporting's database once the service is started (the runtime, the service)."""

    @property
    def db(self) -> Database: ...


class ReportingQueries:
    """What the HTTP API reads; given to it as a dependency when the router is built."""

    def __init__(self, source: DatabaseSource) -> None:
        self._source = source

    async def _facts(self) -> tuple[Facts, dict[str, str]]:
        async with (
            self._source.db.pool.acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            return await store.load_facts(conn), await store.node_names(conn)

    async def report(self, filters: Filters, now: datetime | None = None) -> FullReport:
        facts, names = await self._facts()
        return full_report(facts, filters, names, now or datetime.now(UTC))

    async def feedback_sums(self) -> list[feedback.OfferingSums]:
        async with self._source.db.pool.acquire() as conn:
            return await feedback.offering_sums(conn)

    async def node_names(self) -> dict[str, str]:
        async with self._source.db.pool.acquire() as conn:
            return await store.node_names(conn)

    async def save_snapshot(self, snapshot: store.Snapshot) -> datetime:
        async with self._source.db.pool.acquire() as conn, conn.transaction():
            return await store.save_snapshot(conn, snapshot)

    async def snapshots(self) -> list[asyncpg.Record]:
        async with self._source.db.pool.acquire() as conn:
            return await store.list_snapshots(conn)

    async def snapshot(self, snapshot_id: str, media_type: str | None = None) -> asyncpg.Record | None:
        async with self._source.db.pool.acquire() as conn:
            return await store.get_snapshot(conn, snapshot_id, media_type)
