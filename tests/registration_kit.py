"""A running registration service (in-process) with a broker-side view of its outcomes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aio_pika
import httpx
import pytest

from qti_contracts import FRONTEND_REPLY_PREFIX, make_event
from qti_runtime import links
from qti_runtime.broker import create_broker, publish_event_bytes
from qti_runtime.service import ServiceRuntime
from qti_runtime.settings import Settings
from services.registration.app import RegistrationSettings, create_app

OUTCOME_KEYS = (
    "registration.confirmed",
    "registration.waitlisted",
    "registration.rejected",
    "registration.cancelled",
    "registration.attendance_recorded",
    "registration.completed",
)
STAFF = {"Authorization": "Bearer dev-staff-token"}


def offering_data(offering_id: str | None = None, **overrides: Any) -> dict[str, Any]:
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=30)
    data: dict[str, Any] = {
        "offering_id": offering_id or f"off-{uuid.uuid4().hex[:10]}",
        "node_id": "qti-soemmerda",
        "kind": "course",
        "topic": "elektromobilitaet",
        "title": "Pilotlehrgang Elektromobilität",
        "description": "Grundlagen der Elektromobilität für Beschäftigte in der Zulieferindustrie.",
        "sessions": [
            {
                "session_id": f"s{i}",
                "starts_at": (start + timedelta(days=7 * i)).isoformat(),
                "ends_at": (start + timedelta(days=7 * i, hours=6)).isoformat(),
                "location": "Kreisvolkshochschule Sömmerda",
                "teaching_units": 8,
            }
            for i in range(3)
        ],
        "capacity": 3,
        "registration_deadline": (start - timedelta(days=2)).isoformat(),
        "fee_eur": 0,
        "max_per_company": None,
        "waitlist_limit": 2,
        "status": "published",
        "revision": 1,
    }
    data.update(overrides)
    return data


def request_data(offering_id: str, n: int = 0, **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "offering_id": offering_id,
        "participant": {
            "given_name": "Anna",
            "family_name": f"Schmidt{n}",
            "email": f"anna.{n}@example.de",
            "gender": "female",
            "age_band": "30_54",
        },
        "company": {
            "name": f"Muster Zulieferer {n} GmbH",
            "postal_code": "99610",
            "county": "Sömmerda",
            "size_class": "small",
            "automotive_supplier": True,
        },
        "privacy_consent": True,
    }
    data.update(overrides)
    return data


class Harness:
    def __init__(
        self, settings: RegistrationSettings, runtime: ServiceRuntime, client: httpx.AsyncClient
    ) -> None:
        self.settings = settings
        self.runtime = runtime
        self.client = client
        self.broker = create_broker(settings, "test-frontend")
        self._connection: aio_pika.abc.AbstractRobustConnection | None = None
        self.outcomes: aio_pika.abc.AbstractQueue | None = None

    async def start(self) -> None:
        await self.broker.connect()
        self._connection = await aio_pika.connect_robust(self.settings.amqp_url)
        channel = await self._connection.channel()
        self.channel = channel
        exchange = await channel.get_exchange("qti.events")
        self.outcomes = await channel.declare_queue("test.registration-events", durable=False)
        for key in OUTCOME_KEYS:
            await self.outcomes.bind(exchange, key)

    async def stop(self) -> None:
        await self.broker.stop()
        if self._connection is not None:
            await self._connection.close()

    async def publish(
        self,
        type_: str,
        data: Any,
        *,
        id_: str | None = None,
        reply_to: str | None = None,
        correlation_id: str | None = None,
    ) -> str:
        event = make_event(type_, data, source="/tests", id_=id_)
        await publish_event_bytes(
            self.broker,
            event.model_dump_json().encode(),
            routing_key=type_,
            message_id=event.id,
            reply_to=reply_to,
            correlation_id=correlation_id,
        )
        return event.id

    def token(self, request_id: str) -> str:
        """The personal token of the registration that answers `request_id` (as notification mails it)."""
        return links.personal_token(self.settings.link_secret, request_id)

    async def reply_queue(self) -> aio_pika.abc.AbstractQueue:
        """A frontend's reply queue: registration answers only queues named `frontend.reply.…`."""
        name = f"{FRONTEND_REPLY_PREFIX}test-{uuid.uuid4().hex[:8]}"
        return await self.channel.declare_queue(name, exclusive=True)

    async def publish_offering(
        self, data: dict[str, Any], type_: str = "catalogue.offering.published"
    ) -> None:
        await self.publish(type_, data)

    async def events(
        self, expect: int, *, timeout: float = 15.0, settle: float = 0.3
    ) -> list[dict[str, Any]]:
        """Collect `expect` events from the outcome queue, then make sure no more arrive for `settle` s."""
        assert self.outcomes is not None
        received: list[dict[str, Any]] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            message = await self.outcomes.get(fail=False, no_ack=True)
            if message is None:
                if len(received) >= expect:
                    await asyncio.sleep(settle)
                    if (extra := await self.outcomes.get(fail=False, no_ack=True)) is None:
                        break
                    received.append(json.loads(extra.body))
                    continue
                await asyncio.sleep(0.02)
                continue
            received.append(json.loads(message.body))
        return received

    async def wait_offering(self, offering_id: str) -> None:
        async def known() -> bool:
            async with self.runtime.db.pool.acquire() as conn:
                return bool(
                    await conn.fetchval("SELECT 1 FROM offerings WHERE offering_id = $1", offering_id)
                )

        deadline = asyncio.get_running_loop().time() + 10
        while not await known():
            assert asyncio.get_running_loop().time() < deadline, "offering never arrived"
            await asyncio.sleep(0.05)


def registration_settings(settings: Settings, **overrides: Any) -> RegistrationSettings:
    return RegistrationSettings(**{**settings.model_dump(), "offering_wait_seconds": 1.0, **overrides})


@pytest.fixture
async def harness(settings: Settings) -> AsyncIterator[Harness]:
    reg_settings = registration_settings(settings)
    app = create_app(reg_settings)
    runtime: ServiceRuntime = app.state.runtime
    await runtime.start()
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://registration")
    h = Harness(reg_settings, runtime, client)
    await h.start()
    try:
        yield h
    finally:
        await h.stop()
        await client.aclose()
        await runtime.stop()


class Frontend:
    """Publishes with confirms and watches every outcome, like a busy web frontend would.

    A publish that is not confirmed (broker away, channel closed, timeout) is retried until it is, for
    up to `publish_retry_seconds`: ids are idempotency keys, so a duplicate does no harm.
    """

    def __init__(self, amqp_url: str, *, publish_retry_seconds: float = 0.0) -> None:
        self.amqp_url = amqp_url
        self.publish_retry_seconds = publish_retry_seconds
        self.events: list[dict[str, Any]] = []
        self.publish_failures = 0

    async def __aenter__(self) -> Frontend:
        self.connection = await aio_pika.connect_robust(self.amqp_url)
        self.channel = await self.connection.channel(publisher_confirms=True)
        self.exchange = await self.channel.get_exchange("qti.events")
        self.queue = await self.channel.declare_queue(f"test.outcomes.{uuid.uuid4().hex[:6]}", durable=True)
        for key in OUTCOME_KEYS:
            await self.queue.bind(self.exchange, key)
        # Acknowledged after recording: an outcome in flight when the connection drops is redelivered.
        await self.queue.consume(self._on_message)
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.connection.close()

    async def _on_message(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        self.events.append(json.loads(message.body))
        with contextlib.suppress(Exception):  # the connection is gone: it comes again, and collapses
            await message.ack()

    async def publish(self, type_: str, data: Any, id_: str | None = None) -> str:
        event = make_event(type_, data, source="/tests/load", id_=id_)
        body = event.model_dump_json().encode()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.publish_retry_seconds
        delay = 0.1
        while True:
            try:
                await self.exchange.publish(
                    aio_pika.Message(
                        body,
                        message_id=event.id,
                        content_type="application/cloudevents+json",
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    ),
                    routing_key=type_,
                    mandatory=True,
                    timeout=10,
                )
                return event.id
            except Exception:  # not confirmed: the broker is away, the channel closed or it timed out
                self.publish_failures += 1
                if loop.time() > deadline:
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def publish_all(self, items: list[tuple[str, Any, str | None]]) -> list[str]:
        sem = asyncio.Semaphore(200)

        async def one(item: tuple[str, Any, str | None]) -> str:
            async with sem:
                return await self.publish(*item)

        return list(await asyncio.gather(*(one(i) for i in items)))

    def outcomes(self) -> dict[str, set[str]]:
        """Distinct outcome event ids per request id (duplicated deliveries of one event collapse)."""
        by_request: dict[str, set[str]] = defaultdict(set)
        for e in self.events:
            outcome = e["type"] in (
                "registration.confirmed",
                "registration.waitlisted",
                "registration.rejected",
            )
            if outcome and not e["data"].get("from_waitlist"):
                by_request[e["data"]["request_id"]].add(e["id"])
        return by_request

    async def wait_for(self, requests: int, timeout: float = 120.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while len(self.outcomes()) < requests:
            assert asyncio.get_running_loop().time() < deadline, f"only {len(self.outcomes())} answered"
            await asyncio.sleep(0.2)
