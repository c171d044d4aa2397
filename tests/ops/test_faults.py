"""Faults under load, with registration replicas as real processes against the real broker and database.

SIGTERM of a replica, a broker restart and dropped database connections: every request is answered
exactly once (one distinct outcome event per request id) and no offering is overbooked.
"""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest
from registration_kit import Frontend, offering_data, request_data

from qti_runtime.settings import Settings
from support import Backends, ServiceProcess, broker_away, eventually, free_port

CAPACITY, WAITLIST = 50, 50
GRACE_SECONDS = 5


def replica_env(settings: Settings) -> dict[str, str]:
    return {
        "QTI_AMQP_URL": settings.amqp_url,
        "QTI_DATABASE_URL": settings.database_url,
        "QTI_OFFERING_WAIT_SECONDS": "5",
        "QTI_SHUTDOWN_GRACE_SECONDS": str(GRACE_SECONDS),
    }


@pytest.fixture
async def replicas(settings: Settings) -> AsyncIterator[list[ServiceProcess]]:
    """Two registration replicas; the first one creates schema and topology before the second starts."""
    procs = [ServiceProcess("registration", replica_env(settings), free_port()) for _ in range(2)]
    try:
        procs[0].start()
        await procs[0].wait_ready()
        procs[1].start()
        await procs[1].wait_ready()
        yield procs
    finally:
        for proc in procs:
            proc.terminate()


async def publish_offerings(frontend: Frontend, count: int) -> list[str]:
    offerings = [offering_data(capacity=CAPACITY, waitlist_limit=WAITLIST) for _ in range(count)]
    for offering in offerings:
        await frontend.publish("catalogue.offering.published", offering)
    await asyncio.sleep(1.0)
    return [o["offering_id"] for o in offerings]


def requests_for(offering_ids: list[str], total: int) -> list[tuple[str, Any, str | None]]:
    return [
        ("registration.requested", request_data(offering_ids[n % len(offering_ids)], n), None)
        for n in range(total)
    ]


def check_invariants(frontend: Frontend, request_ids: list[str]) -> Counter[str]:
    """Each request answered by exactly one outcome event; no offering over capacity; counts per kind."""
    outcomes = frontend.outcomes()
    assert set(outcomes) == set(request_ids), f"{len(set(request_ids) - set(outcomes))} unanswered"
    twice = {r: ids for r, ids in outcomes.items() if len(ids) != 1}
    assert not twice, f"answered more than once: {list(twice.items())[:3]}"
    first: dict[str, dict[str, Any]] = {}
    for e in frontend.events:
        first.setdefault(e["id"], e)
    confirmed: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    for e in first.values():
        occupancy = e["data"].get("occupancy")
        if occupancy:
            assert occupancy["confirmed"] <= CAPACITY, f"overbooked: {occupancy}"
        if e["type"] == "registration.cancelled" or e["data"].get("from_waitlist"):
            continue
        if e["type"] == "registration.confirmed":
            confirmed[e["data"]["offering_id"]] += 1
        kinds[e["type"] if e["type"] != "registration.rejected" else e["data"]["reason"]] += 1
    assert all(n <= CAPACITY for n in confirmed.values()), f"overbooked: {confirmed}"
    return kinds


def expected_counts(offerings: int, requests: int) -> Counter[str]:
    return Counter(
        {
            "registration.confirmed": offerings * CAPACITY,
            "registration.waitlisted": offerings * WAITLIST,
            "waitlist_full": requests - offerings * (CAPACITY + WAITLIST),
        }
    )


def readyz_status(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def readyz_body(port: int) -> str | None:
    """The readiness document when ready; None (with the failing checks logged by `eventually`) otherwise."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
            return str(response.read().decode())
    except urllib.error.HTTPError as exc:
        print(f"/readyz {exc.code}: {exc.read().decode()}")
        return None
    except OSError:
        return None


@pytest.mark.slow
async def test_sigterm_during_load_loses_no_message(replicas: list[ServiceProcess], amqp_url: str) -> None:
    total = 1200
    async with Frontend(amqp_url) as frontend:
        offering_ids = await publish_offerings(frontend, 3)
        sent = asyncio.create_task(frontend.publish_all(requests_for(offering_ids, total)))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while len(frontend.outcomes()) < 60:  # mid-load: both replicas busy, most requests still queued
            assert loop.time() < deadline, "no progress before the SIGTERM"
            await asyncio.sleep(0.05)
        answered_before = len(frontend.outcomes())
        started = time.monotonic()
        code = await asyncio.to_thread(replicas[0].terminate, GRACE_SECONDS + 10.0)
        assert code == 0, f"replica exited with {code}"
        assert time.monotonic() - started < GRACE_SECONDS + 5
        assert answered_before < total, "the load was over before the SIGTERM"
        request_ids = await sent
        await frontend.wait_for(total, timeout=120)
        await asyncio.sleep(2)  # late duplicates would show up now
        assert check_invariants(frontend, request_ids) == expected_counts(3, total)


@pytest.mark.slow
async def test_broker_restart_during_load(
    replicas: list[ServiceProcess], amqp_url: str, test_backends: Backends
) -> None:
    total = 400
    async with Frontend(amqp_url, publish_retry_seconds=90) as frontend:
        offering_ids = await publish_offerings(frontend, 2)
        sent = asyncio.create_task(frontend.publish_all(requests_for(offering_ids, total)))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while len(frontend.outcomes()) < 40:
            assert loop.time() < deadline, "no progress before the broker restart"
            await asyncio.sleep(0.05)
        port = replicas[0].port
        with broker_away(test_backends.rabbitmqctl) as start_again:
            statuses = [await asyncio.to_thread(readyz_status, port)]
            for _ in range(6):
                await asyncio.sleep(0.5)
                statuses.append(await asyncio.to_thread(readyz_status, port))
            await asyncio.to_thread(start_again)
        assert 503 in statuses, f"readiness while the broker was away: {statuses}"
        for proc in replicas:
            deadline = loop.time() + 60
            while await asyncio.to_thread(readyz_status, proc.port) != 200:
                assert proc.process is not None and proc.process.poll() is None, "a replica died"
                assert loop.time() < deadline, f"replica on {proc.port} not ready again"
                await asyncio.sleep(0.5)
        request_ids = await sent
        await frontend.wait_for(total, timeout=120)
        await asyncio.sleep(2)
        assert check_invariants(frontend, request_ids) == expected_counts(2, total)


@pytest.mark.slow
async def test_database_connections_dropped_during_load(
    replicas: list[ServiceProcess], amqp_url: str, database_url: str
) -> None:
    total = 400
    database = urlsplit(database_url).path.lstrip("/")
    async with Frontend(amqp_url) as frontend:
        offering_ids = await publish_offerings(frontend, 2)
        sent = asyncio.create_task(frontend.publish_all(requests_for(offering_ids, total)))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        killed = 0
        admin = await asyncpg.connect(database_url)
        try:
            for threshold in (40, 140, 240):
                while len(frontend.outcomes()) < threshold:
                    assert loop.time() < deadline, "no progress between connection drops"
                    await asyncio.sleep(0.05)
                killed += await admin.fetchval(
                    "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = $1 AND pid <> pg_backend_pid()) AS t",
                    database,
                )
        finally:
            await admin.close()
        assert killed > 0
        request_ids = await sent
        await frontend.wait_for(total, timeout=120)
        await asyncio.sleep(2)
        assert check_invariants(frontend, request_ids) == expected_counts(2, total)
        for proc in replicas:
            # Ready again without a manual step (right after the kills a pool may still be reconnecting).
            await eventually(lambda port=proc.port: asyncio.to_thread(readyz_body, port), timeout=15)
