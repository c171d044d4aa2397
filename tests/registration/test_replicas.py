"""Three registration replicas as separate processes under load.

Never overbooked, every request answered exactly once, a killed replica loses nothing.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
from registration_kit import Frontend, offering_data, request_data

from qti_runtime import links
from qti_runtime.settings import Settings
from support import ServiceProcess, free_port

CAPACITY, WAITLIST, REQUESTS = 25, 100, 2000


@pytest.fixture
async def replicas(settings: Settings) -> AsyncIterator[list[ServiceProcess]]:
    env = {
        "QTI_AMQP_URL": settings.amqp_url,
        "QTI_DATABASE_URL": settings.database_url,
        "QTI_OFFERING_WAIT_SECONDS": "5",
        "QTI_LINK_SECRET": settings.link_secret.get_secret_value(),
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
    replicas: list[ServiceProcess], amqp_url: str, settings: Settings
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
        confirmed = [e["data"] for e in frontend.events if e["type"] == "registration.confirmed"]
        holders = [data["registration_id"] for data in confirmed]
        more = [("registration.requested", request_data(oid, 1000 + n), None) for n in range(1000)]
        cancels = [
            (
                "registration.cancellation_requested",
                {
                    "registration_id": data["registration_id"],
                    "personal_token": links.personal_token(settings.link_secret, data["request_id"]),
                },
                None,
            )
            for data in confirmed[:20]
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
