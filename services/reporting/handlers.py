"""Reporting's reactions: every consumed event is scrubbed, logged and projected in one transaction;
the KPI job publishes changed aggregates through the outbox, debounced."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

from qti_contracts import RawEvent, RoutingKey, make_event
from qti_runtime.consumer import Delivery
from qti_runtime.db import Database
from qti_runtime.logging import get_logger
from qti_runtime.settings import Settings
from qti_runtime.unit_of_work import unit_of_work
from services.reporting import feedback, store
from services.reporting.domain import scrub
from services.reporting.report import kpi_updated

log = get_logger(__name__)

CONSUMER = "reporting.events"
KPI_PAUSE_FACTOR = 20
SOURCE = "/reporting"


class ReportingHandlers:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self.key = settings.pseudonym_key.get_secret_value().encode()

    def scrubbed(self, event: RawEvent) -> store.ScrubbedEvent:
        return store.ScrubbedEvent(
            event_id=event.id,
            type=event.type,
            occurred_at=event.time or datetime.now(UTC),
            data=scrub(self.key, event.type, event.data),
        )

    async def handle(self, event: RawEvent, delivery: Delivery) -> None:
        """Inbox claim, scrubbed raw-log entry and projection updates: all or nothing, once per event id.
        (The one-message path of the batch consumer, used when a batch fails.)"""
        await self.handle_batch([(event, delivery)])

    async def handle_batch(self, items: Sequence[tuple[RawEvent, Delivery]]) -> None:
        """`handle` for many events in one transaction: one inbox insert, one log insert, batched upserts."""
        # A batch may hold the same event twice (a redelivery next to its original).
        unique = {event.id: self.scrubbed(event) for event, _ in items}
        async with unit_of_work(self.db) as uow:
            fresh = await uow.claim_many(CONSUMER, list(unique))
            if not fresh:
                return
            logged = await store.append_log_many(uow.conn, [e for i, e in unique.items() if i in fresh])
            await store.apply(uow.conn, logged)
            await feedback.keep_comments(uow.conn, [event for event, _ in items], set(fresh))


async def publish_kpis_if_due(db: Database, debounce_seconds: float) -> bool:
    """Emit `reporting.kpi.updated` if figures changed and the last one is `debounce_seconds` old."""
    async with unit_of_work(db) as uow:
        logged = await store.kpi_pending(uow.conn, debounce_seconds)
        if logged is None:
            return False
        facts = await store.load_facts(uow.conn)
        names = await store.node_names(uow.conn)
        payload = kpi_updated(facts, names, datetime.now(UTC))
        uow.emit(make_event(RoutingKey.KPI_UPDATED, payload, source=SOURCE, subject="kpi-project"))
        await store.mark_kpi_emitted(uow.conn, logged)
    log.info("kpi.published", figures=len(payload.figures), logged_events=logged)
    return True


def kpi_job(db: Database, debounce_seconds: float) -> Callable[[], Awaitable[None]]:
    """The background loop for `runtime.add_job`: at most one KPI event per `debounce_seconds`."""

    async def run() -> None:
        poll = max(0.1, min(1.0, debounce_seconds / 4))
        while True:
            started = time.perf_counter()
            published = await publish_kpis_if_due(db, debounce_seconds)
            took = time.perf_counter() - started
            # The figures are recomputed from all facts: with much data that takes a while, so the pause
            # grows with it and the job never takes more than about 1/KPI_PAUSE_FACTOR of a core.
            await asyncio.sleep(max(poll, KPI_PAUSE_FACTOR * took) if published else poll)

    return run
