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
# The pause after a KPI event never exceeds this: on a slow or saturated machine the figures would
# otherwise stay stale for minutes after a burst (the job then takes more than 1/KPI_PAUSE_FACTOR of a core).
KPI_MAX_PAUSE_SECONDS = 30.0
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


async def publish_kpis_if_due(db: Database, debounce_seconds: float) -> float | None:
    """Emit `reporting.kpi.updated` if figures changed and the last one is `debounce_seconds` old;
    returns the CPU seconds the figures took to compute, or None when nothing was emitted."""
    async with unit_of_work(db) as uow:
        logged = await store.kpi_pending(uow.conn, debounce_seconds)
        if logged is None:
            return None
        facts = await store.load_facts(uow.conn)
        names = await store.node_names(uow.conn)
        started = time.thread_time()
        payload = kpi_updated(facts, names, datetime.now(UTC))
        computing = time.thread_time() - started
        uow.emit(make_event(RoutingKey.KPI_UPDATED, payload, source=SOURCE, subject="kpi-project"))
        await store.mark_kpi_emitted(uow.conn, logged)
    log.info("kpi.published", figures=len(payload.figures), logged_events=logged)
    return computing


def kpi_pause(poll: float, computing: float | None) -> float:
    """Seconds until the next look: `poll` when nothing was emitted, else a multiple of the CPU the
    figures took (they are recomputed from all facts), so the job stays a small share of a core."""
    if computing is None:
        return poll
    return min(KPI_MAX_PAUSE_SECONDS, max(poll, KPI_PAUSE_FACTOR * computing))


def kpi_job(db: Database, debounce_seconds: float) -> Callable[[], Awaitable[None]]:
    """The background loop for `runtime.add_job`: at most one KPI event per `debounce_seconds`."""

    async def run() -> None:
        poll = max(0.1, min(1.0, debounce_seconds / 4))
        while True:
            # CPU time, not wall time: on a saturated machine the wall time of the same work is many
            # times longer, and the pause derived from it kept the figures stale for minutes.
            computing = await publish_kpis_if_due(db, debounce_seconds)
            await asyncio.sleep(kpi_pause(poll, computing))

    return run
