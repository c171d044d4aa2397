"""Abuse limits of the runtime: the shared rate limiter (real Postgres) and the request-body limit that
every service's app has (413 with a German problem detail, by Content-Length and for chunked bodies)."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import uvicorn
from catalogue.harness import STAFF, offering_body, running_service
from fastapi import FastAPI

from qti_runtime.db import Database
from qti_runtime.migrations import migrate
from qti_runtime.ratelimit import RateLimiter, Rule, mailbox
from qti_runtime.settings import Settings
from services.catalogue.app import create_app as catalogue_app
from services.notification.app import create_app as notification_app
from services.notification.settings import NotificationSettings
from services.registration.app import RegistrationSettings
from services.registration.app import create_app as registration_app
from services.reporting.app import create_app as reporting_app
from support import eventually

DEFAULT_LIMIT = Settings().http_max_body_bytes
STAFF_LIMIT = Settings().http_max_staff_body_bytes
PROBLEM = "application/problem+json"


# ------------------------------------------------------------------------------------- rate limiter


@pytest.fixture
async def schema_db(settings: Settings) -> AsyncIterator[Database]:
    db = Database(settings.database_url, "limits_test")
    await db.connect()
    async with db.pool.acquire() as conn:
        await migrate(conn, "limits_test", None)
    yield db
    await db.close()


async def test_limiter_counts_across_instances_and_forgets_old_windows(schema_db: Database) -> None:
    rule = Rule("test.rule", 3, 3600)
    other = Rule("test.other", 1, 3600)
    # Two replicas: two limiters with the same secret, one table.
    first, second = RateLimiter("geheim"), RateLimiter("geheim", cleanup_seconds=0)
    async with schema_db.pool.acquire() as conn:
        now = float(await conn.fetchval("SELECT extract(epoch FROM clock_timestamp())::float8"))
        if 3600 - now % 3600 < 10:
            await asyncio.sleep(3600 - now % 3600 + 0.1)  # stay within one window
        verdicts = [
            (await limiter.hit(conn, [(rule, "Anna@Example.de")]))[0]
            for limiter in (first, second, first, second)
        ]
        assert [v.hits for v in verdicts] == [1, 2, 3, 4]
        assert [v.allowed for v in verdicts] == [True, True, True, False]
        assert all(1 <= v.retry_after <= 3600 for v in verdicts)
        # Rules and subjects count apart; `exceeded` names the rule that is over.
        over = await first.exceeded(conn, [(other, "x"), (rule, "b")])
        assert over is None
        over = await first.exceeded(conn, [(other, "x"), (rule, "b")])
        assert over is not None and over.rule == other
        # A different secret gives different buckets (nothing to correlate across deployments).
        assert RateLimiter("anders").bucket(rule, "a") != first.bucket(rule, "a")
        buckets = [r["bucket"] for r in await conn.fetch("SELECT bucket FROM rate_limits")]
        assert not any("anna" in b.lower() or "example" in b.lower() for b in buckets)
        # An expired window is deleted by the next hit after the cleanup interval.
        await conn.execute(
            "INSERT INTO rate_limits (bucket, window_start, window_end, hits) VALUES ('old', 0, 60, 9)"
        )
        await second.hit(conn, [(rule, "c")])
        assert await conn.fetchval("SELECT count(*) FROM rate_limits WHERE bucket = 'old'") == 0


def test_mailbox_normalises_case_space_and_tags() -> None:
    assert mailbox(" Anna.Schmidt+kurs1@Example.DE ") == "anna.schmidt@example.de"
    assert mailbox("anna@example.de") == "anna@example.de"


# ----------------------------------------------------------------------------------- body limits


def every_app(settings: Settings) -> dict[str, Callable[[], FastAPI]]:
    values = settings.model_dump()
    return {
        "catalogue": lambda: catalogue_app(settings),
        "registration": lambda: registration_app(RegistrationSettings(**values)),
        "notification": lambda: notification_app(NotificationSettings(**values)),
        "reporting": lambda: reporting_app(settings),
    }


def assert_too_large(response: httpx.Response, limit: int) -> None:
    assert response.status_code == 413, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["status"] == 413 and body["title"] == "Anfrage zu groß"
    assert "Die Anfrage ist zu groß" in body["detail"] and body["max_bytes"] == limit


async def chunks(total: int, size: int = 8192) -> AsyncIterator[bytes]:
    sent = 0
    while sent < total:
        piece = min(size, total - sent)
        sent += piece
        yield b"x" * piece


@pytest.mark.parametrize("service", ["catalogue", "registration", "notification", "reporting"])
async def test_every_service_refuses_a_body_over_the_limit(settings: Settings, service: str) -> None:
    app = every_app(settings)[service]()
    # The limit applies before routing and before any database work: the app needs no start for it.
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://svc") as client:
        declared = await client.post("/healthz", content=b"x" * (DEFAULT_LIMIT + 1))
        assert_too_large(declared, DEFAULT_LIMIT)
        chunked = await client.post("/healthz", content=chunks(DEFAULT_LIMIT + 1))
        assert "content-length" not in chunked.request.headers
        assert_too_large(chunked, DEFAULT_LIMIT)
        # At the limit the request goes through to the app (which has no POST /healthz).
        assert (await client.post("/healthz", content=b"x" * DEFAULT_LIMIT)).status_code == 405
        assert (await client.post("/healthz", content=chunks(DEFAULT_LIMIT))).status_code == 405


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_limit_over_real_http_with_and_without_content_length(settings: Settings) -> None:
    """The same through uvicorn and a TCP connection: chunked transfer encoding as a client sends it."""
    app = reporting_app(settings)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_config=None))
    task = asyncio.create_task(server.serve())
    try:
        await eventually(lambda: server.started)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            assert_too_large(await client.post("/kpis", content=b"x" * (10 * DEFAULT_LIMIT)), DEFAULT_LIMIT)
            chunked = await client.post("/kpis", content=chunks(10 * DEFAULT_LIMIT))
            assert chunked.request.headers["transfer-encoding"] == "chunked"
            assert_too_large(chunked, DEFAULT_LIMIT)
            assert (await client.post("/kpis", content=chunks(1000))).status_code == 405
            assert (await client.get("/healthz")).status_code == 200
        # A declared length far over the limit is answered at once: nothing of the body is awaited.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /kpis HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n")
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), timeout=30)  # the server closes after answering
        writer.close()
        assert answer.startswith(b"HTTP/1.1 413 ")
        assert b"connection: close" in answer.lower() and "zu groß".encode() in answer
    finally:
        server.should_exit = True
        await task


def big_offering() -> dict[str, Any]:
    """An offering at the limits of the contract: 500 sessions with 200-character places, a long text."""
    start = datetime.now(UTC).replace(hour=9, minute=0, second=0, microsecond=0) + timedelta(days=30)
    place = ("Weiterbildungszentrum Thüringer Zulieferer, Halle 3, Raum " + "Ä" * 200)[:200]
    sessions = [
        {
            "starts_at": (start + timedelta(days=i)).isoformat(),
            "ends_at": (start + timedelta(days=i, hours=6)).isoformat(),
            "location": place,
        }
        for i in range(500)
    ]
    return offering_body(sessions=sessions, description="Übersicht. " * 900, capacity=20)


async def test_staff_routes_that_need_more_get_the_staff_limit(settings: Settings) -> None:
    body = big_offering()
    size = len(json.dumps(body).encode())  # ASCII-escaped, as httpx sends it: the largest form
    assert DEFAULT_LIMIT < size < STAFF_LIMIT, size
    async with running_service(settings) as service:
        created = await service.client.post("/offerings", json=body, headers=STAFF)
        assert created.status_code == 201, created.text[:500]
        assert len(created.json()["sessions"]) == 500
        # The staff limit holds there too, and other routes keep the default.
        too_big = await service.client.post("/offerings", content=b"x" * (STAFF_LIMIT + 1), headers=STAFF)
        assert_too_large(too_big, STAFF_LIMIT)
        cancel = f"/offerings/{created.json()['offering_id']}/cancel"
        assert_too_large(
            await service.client.post(cancel, content=b"x" * (DEFAULT_LIMIT + 1), headers=STAFF),
            DEFAULT_LIMIT,
        )


async def test_attendance_of_a_thousand_registrations_fits(settings: Settings) -> None:
    records = [{"registration_id": f"reg-{n:04d}-" + "x" * 91, "attended": n % 2 == 0} for n in range(1000)]
    body = {"records": records}
    size = len(json.dumps(body).encode())
    assert DEFAULT_LIMIT < size < STAFF_LIMIT, size
    app = registration_app(RegistrationSettings(**settings.model_dump()))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://svc") as client:
        # Without a token the route answers 401: the body got past the limit to the app.
        response = await client.put("/offerings/o/sessions/s/attendance", json=body)
        assert response.status_code == 401, response.text
        registrations = await client.post("/registrations", content=json.dumps(body).encode())
        assert_too_large(registrations, DEFAULT_LIMIT)
