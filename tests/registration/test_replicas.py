"""Three registration replicas as separate processes under load.

Never overbooked, every request answered exactly once, a killed replica loses nothing.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import pytest
from registration_kit import OUTCOME_KEYS, offering_data, request_data

from qti_contracts import make_event
from qti_runtime.settings import Settings
from support import ServiceProcess, free_port

CAPACITY, WAITLIST, REQUESTS = 25, 100, 2000


class Frontend:
    """Publishes with confirms and watches every outcome, like a busy web frontend would."""

    def __init__(self, amqp_url: str) -> None:
        self.amqp_url = amqp_url
        self.events: list[dict[str, Any]] = []

    async def __aenter__(self) -> Frontend:
        self.connection = await aio_pika.connect_robust(self.amqp_url)
        self.channel = await self.connection.channel(publisher_confirms=True)
        self.exchange = await self.channel.get_exchange("qti.events")
        self.queue = await self.channel.declare_queue(f"test.outcomes.{uuid.uuid4().hex[:6]}", durable=True)
        for key in OUTCOME_KEYS:
            await self.queue.bind(self.exchange, key)
        await self.queue.consume(self._on_message, no_ack=True)
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.connection.close()

    async def _on_message(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        self.events.append(json.loads(message.body))

    async def publish(self, type_: str, data: Any, id_: str | None = None) -> str:
        event = make_event(type_, data, source="/tests/load", id_=id_)
        await self.exchange.publish(
            aio_pika.Message(
                event.model_dump_json().encode(),
                message_id=event.id,
                content_type="application/cloudevents+json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            routing_key=type_,
            mandatory=True,
        )
        return event.id

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


@pytest.fixture
async def replicas(settings: Settings) -> AsyncIterator[list[ServiceProcess]]:
    env = {
        "QTI_AMQP_URL": settings.amqp_url,
        "QTI_DATABASE_URL": settings.database_url,
        "QTI_OFFERING_WAIT_SECONDS": "5",
        "QTI_SHUTDOWN_GRACE_SECONDS": "5",
    }
    procs = [ServiceProcess("registration", env, free_port()) for _ in range(3)]
    procs[0].start()
    await procs[0].wait_ready()  # the first one creates schema and topology; the others race anyway
    for p in procs[1:]:
        p.start()
    await asyncio.gather(*(p.wait_ready() for p in procs[1:]))
    yield procs
    for p in procs:
        p.terminate()


def check_invariants(frontend: Frontend, request_ids: list[str]) -> Counter[str]:
    outcomes = frontend.outcomes()
    assert set(outcomes) == set(request_ids)
    assert all(len(ids) == 1 for ids in outcomes.values()), "a request was answered twice"
    first: dict[str, dict[str, Any]] = {}
    for e in frontend.events:
        first.setdefault(e["id"], e)
    decided = [
        e
        for e in first.values()
        if e["type"] != "registration.cancelled" and not e["data"].get("from_waitlist")
    ]
    for e in first.values():
        occupancy = e["data"].get("occupancy")
        if occupancy:
            assert occupancy["confirmed"] <= CAPACITY, f"overbooked: {occupancy}"
    return Counter(
        e["type"] if e["type"] != "registration.rejected" else e["data"]["reason"] for e in decided
    )


@pytest.mark.slow
async def test_three_replicas_2000_requests_one_offering(
    replicas: list[ServiceProcess], amqp_url: str
) -> None:
    offering = offering_data(capacity=CAPACITY, waitlist_limit=WAITLIST)
    async with Frontend(amqp_url) as frontend:
        await frontend.publish("catalogue.offering.published", offering)
        await asyncio.sleep(1.0)
        items = [
            ("registration.requested", request_data(offering["offering_id"], n), None)
            for n in range(REQUESTS)
        ]
        ids = await frontend.publish_all(items)
        await frontend.wait_for(REQUESTS)
        counts = check_invariants(frontend, ids)
        assert counts == {
            "registration.confirmed": CAPACITY,
            "registration.waitlisted": WAITLIST,
            "waitlist_full": REQUESTS - CAPACITY - WAITLIST,
        }
        positions = sorted(
            e["data"]["position"] for e in frontend.events if e["type"] == "registration.waitlisted"
        )
        assert positions == list(range(1, WAITLIST + 1))
        seen = len(frontend.events)
        # Everything again, with the same ids: no effect, no new event.
        await frontend.publish_all([(t, d, i) for (t, d, _), i in zip(items, ids, strict=True)])
        await asyncio.sleep(5)
        assert len(frontend.events) == seen


@pytest.mark.slow
async def test_cancellations_race_new_requests_and_a_replica_is_killed(
    replicas: list[ServiceProcess], amqp_url: str
) -> None:
    offering = offering_data(capacity=CAPACITY, waitlist_limit=WAITLIST)
    oid = offering["offering_id"]
    async with Frontend(amqp_url) as frontend:
        await frontend.publish("catalogue.offering.published", offering)
        await asyncio.sleep(1.0)
        first = await frontend.publish_all(
            [("registration.requested", request_data(oid, n), None) for n in range(60)]
        )
        await frontend.wait_for(60)
        holders = [
            e["data"]["registration_id"] for e in frontend.events if e["type"] == "registration.confirmed"
        ]
        more = [("registration.requested", request_data(oid, 1000 + n), None) for n in range(1000)]
        cancels = [
            ("registration.cancellation_requested", {"registration_id": r}, None) for r in holders[:20]
        ]
        mixed = more[:500] + cancels + more[500:]
        task = asyncio.create_task(frontend.publish_all(mixed))
        await asyncio.sleep(0.5)
        replicas[1].kill()  # SIGKILL in the middle of the load
        sent = await task
        request_ids = first + [
            i for i, item in zip(sent, mixed, strict=True) if item[0] == "registration.requested"
        ]
        await frontend.wait_for(len(request_ids), timeout=180)
        await asyncio.sleep(3)
        check_invariants(frontend, request_ids)
        cancelled = {
            e["data"]["registration_id"] for e in frontend.events if e["type"] == "registration.cancelled"
        }
        assert cancelled == set(holders[:20])
        confirmed_now = {
            e["data"]["registration_id"] for e in frontend.events if e["type"] == "registration.confirmed"
        } - cancelled
        assert len(confirmed_now) == CAPACITY  # the freed seats went to the waiting list or new requests
