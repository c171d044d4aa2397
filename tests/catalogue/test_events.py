"""Events in and out: exactly one published event despite a relay crash, and seats from registration."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID, uuid4

import aio_pika
import pytest
import pytest_asyncio
from catalogue.harness import STAFF, Service, drain, isolated_service, offering_body, participant, watch_queue

from qti_contracts.topology import RoutingKey
from qti_runtime.outbox import OutboxRow
from qti_runtime.unit_of_work import unit_of_work
from services.catalogue.handlers import event_id_for
from support import Isolation, eventually, get_messages


async def published_offering(service: Service, capacity: int = 3) -> str:
    created = await service.client.post("/offerings", json=offering_body(capacity=capacity), headers=STAFF)
    offering_id: str = created.json()["offering_id"]
    published = await service.client.post(f"/offerings/{offering_id}/publish", headers=STAFF)
    assert published.status_code == 200, published.text
    return offering_id


async def test_publish_emits_one_event_even_when_the_relay_crashes(service: Service) -> None:
    async with watch_queue(service.settings.amqp_url, RoutingKey.OFFERING_PUBLISHED) as watch:
        relay = service.runtime.relay
        assert relay is not None
        crashes: list[list[str]] = []

        async def crash_once_after_confirm(rows: list[OutboxRow]) -> None:
            # The broker has confirmed these rows; crashing now rolls back their deletion.
            if not crashes:
                crashes.append([row.event_id for row in rows])
                raise ConnectionResetError("simulated crash between confirm and commit")

        relay.after_publish = crash_once_after_confirm
        try:
            await _publish_through_crash(service, watch, crashes)
        finally:
            relay.after_publish = None


async def _publish_through_crash(
    service: Service, watch: aio_pika.abc.AbstractQueue, crashes: list[list[str]]
) -> None:
    created = await service.client.post("/offerings", json=offering_body(), headers=STAFF)
    offering_id = created.json()["offering_id"]
    # Two staff members press "publish" at once: one wins, the other gets 409.
    results = await asyncio.gather(
        *(service.client.post(f"/offerings/{offering_id}/publish", headers=STAFF) for _ in range(2))
    )
    assert sorted(r.status_code for r in results) == [200, 409]
    await eventually(service.outbox_empty, timeout=15)

    deliveries = await drain(watch, settle=0.7)
    assert crashes, "the hook must have simulated the crash"
    expected_id = event_id_for(RoutingKey.OFFERING_PUBLISHED, UUID(offering_id), 2)
    # At-least-once delivery: the crash may cause a second delivery, but of the very same event.
    assert 1 <= len(deliveries) <= 2
    assert {d["id"] for d in deliveries} == {expected_id}
    assert {d["_message_id"] for d in deliveries} == {expected_id}
    assert len(deliveries) == 2  # the crash really re-sent it
    # A consumer with an inbox applies it once.
    effects = 0
    for delivery in deliveries:
        async with unit_of_work(service.runtime.db) as uow:
            if await uow.claim("test.consumer", delivery["id"]):
                effects += 1
    assert effects == 1


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def service(isolation: Isolation) -> AsyncIterator[Service]:
    async with isolated_service(isolation) as running:
        yield running


pytestmark = pytest.mark.asyncio(loop_scope="session")


def snapshot(version: int, confirmed: int, waitlisted: int = 0, capacity: int = 3) -> dict[str, int]:
    return {"version": version, "confirmed": confirmed, "waitlisted": waitlisted, "capacity": capacity}


async def test_seats_left_follow_registration_events(service: Service) -> None:
    offering_id = await published_offering(service, capacity=3)
    path = f"/offerings/{offering_id}"

    async def seats() -> tuple[int, int, int]:
        body = (await service.client.get(path)).json()
        return body["confirmed"], body["waitlisted"], body["seats_left"]

    assert await seats() == (0, 0, 3)
    common: dict[str, Any] = {"offering_id": offering_id, "request_id": str(uuid4()), **participant()}
    confirmed_1 = await service.publish_raw(
        "registration.confirmed",
        {**common, "registration_id": "r1", "occupancy": snapshot(1, 1)},
    )
    await eventually(lambda: _equals(seats(), (1, 0, 2)))
    body = (await service.client.get(path)).json()
    assert body["seats_as_of"] is not None

    # Out of order: version 3 arrives before version 2; version 2 must not win afterwards.
    await service.publish_raw(
        "registration.confirmed", {**common, "registration_id": "r3", "occupancy": snapshot(3, 3)}
    )
    await eventually(lambda: _equals(seats(), (3, 0, 0)))
    await service.publish_raw(
        "registration.confirmed", {**common, "registration_id": "r2", "occupancy": snapshot(2, 2)}
    )
    await service.publish_raw(
        "registration.waitlisted",
        {**common, "registration_id": "r4", "position": 1, "occupancy": snapshot(4, 3, 1)},
    )
    await eventually(lambda: _equals(seats(), (3, 1, 0)))
    listed = (await service.client.get("/offerings", params={"available": "true"})).json()
    assert offering_id not in [item["offering_id"] for item in listed["items"]]

    # A cancellation frees a seat; its duplicate delivery (same id) changes nothing.
    cancelled = {
        "registration_id": "r1",
        "offering_id": offering_id,
        "cause": "participant",
        "was_confirmed": True,
        "occupancy": snapshot(5, 2, 1),
    }
    cancel_id = await service.publish_raw("registration.cancelled", cancelled)
    await service.publish_raw("registration.cancelled", cancelled, id_=cancel_id)
    await eventually(lambda: _equals(seats(), (2, 1, 1)))
    # An old duplicate of the very first confirmation is ignored as well.
    await service.publish_raw(
        "registration.confirmed",
        {**common, "registration_id": "r1", "occupancy": snapshot(1, 1)},
        id_=confirmed_1,
    )
    # Without a snapshot (older producers) the counters move by the event's meaning.
    await service.publish_raw(
        "registration.confirmed", {**common, "registration_id": "r5", "from_waitlist": True}
    )
    await eventually(lambda: _equals(seats(), (3, 0, 0)))
    listed = (await service.client.get("/offerings", params={"available": "false"})).json()
    assert [item["offering_id"] for item in listed["items"]] == [offering_id]

    async with service.runtime.db.pool.acquire() as conn:
        handled = await conn.fetchval("SELECT count(*) FROM inbox WHERE consumer = 'catalogue.registrations'")
    assert handled == 6  # 8 deliveries, two of them duplicates

    # A payload that can never be valid ends in the dead-letter queue with the reason.
    await service.publish_raw("registration.confirmed", {"offering_id": offering_id})
    dead = await get_messages(service.settings.amqp_url, "catalogue.dead-letter", expect=1, timeout=10)
    assert len(dead) == 1
    assert "registration_id" in str(dead[0].headers.get("x-qti-error", ""))
    assert await seats() == (3, 0, 0)


async def _equals(value: Any, expected: Any) -> bool:
    return bool(await value == expected)


async def test_one_statement_keeps_the_newest_snapshot_of_each_offering(service: Service) -> None:
    """A batch's snapshots go in as one statement: each offering moves only to a higher version."""
    from datetime import UTC, datetime

    from services.catalogue import store

    first, second, third = [UUID(await published_offering(service)) for _ in range(3)]
    now = datetime.now(UTC)

    def snap(offering_id: UUID, version: int, confirmed: int) -> store.OccupancySnapshot:
        return store.OccupancySnapshot(offering_id, version, confirmed, 0, 3, now)

    async with service.runtime.db.pool.acquire() as conn:
        assert await store.apply_occupancy_snapshots(conn, [snap(first, 5, 2), snap(second, 1, 1)]) == {
            first,
            second,
        }
        replaced = await store.apply_occupancy_snapshots(
            conn, [snap(third, 2, 1), snap(second, 3, 3), snap(first, 4, 1)]
        )
        assert replaced == {second, third}  # version 4 of `first` is older than the stored 5
        assert await store.apply_occupancy_snapshots(conn, []) == set()
        rows = await conn.fetch(
            "SELECT offering_id, version, confirmed FROM occupancy WHERE offering_id = ANY($1::uuid[])",
            [first, second, third],
        )
    assert {(r["offering_id"], r["version"], r["confirmed"]) for r in rows} == {
        (first, 5, 2),
        (second, 3, 3),
        (third, 2, 1),
    }
