"""Rate limits of `POST /registrations` (issue: "mail cannon"): per client address and per e-mail
address, shared by the replicas through the database; 429 with `Retry-After` and a German problem detail.

The limits count in fixed windows (a minute per client, an hour per e-mail address by default). A test
that must stay within one window first waits, by the database's clock, for a fresh one if the current
one is about to end (a window change would reset the count and let the N+1st request through).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from registration_kit import Harness, offering_data, registration_settings, request_data

from qti_runtime.service import ServiceRuntime
from qti_runtime.settings import Settings
from services.registration.app import RegistrationSettings, create_app

PROBLEM = "application/problem+json"
PER_CLIENT = RegistrationSettings().registration_rate_per_client
PER_EMAIL = RegistrationSettings().registration_rate_per_email


async def fresh_window(runtime: ServiceRuntime, seconds: int, needed: float = 20.0) -> None:
    """Wait for the next window of `seconds` if less than `needed` seconds are left of the current one."""
    async with runtime.db.pool.acquire() as conn:
        now = float(await conn.fetchval("SELECT extract(epoch FROM clock_timestamp())::float8"))
    left = seconds - now % seconds
    if left < needed:
        await asyncio.sleep(left + 0.1)


async def offering(harness: Harness) -> str:
    data = offering_data(capacity=50, waitlist_limit=10)
    await harness.publish_offering(data)
    await harness.wait_offering(data["offering_id"])
    return str(data["offering_id"])


def assert_too_many(response: httpx.Response, window: int, wording: str) -> None:
    assert response.status_code == 429, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    assert 1 <= int(response.headers["retry-after"]) <= window
    body = response.json()
    assert body["status"] == 429 and body["title"] == "Zu viele Anfragen"
    assert wording in body["detail"] and "Bitte versuchen Sie es in" in body["detail"]


async def test_one_client_address_gets_429_after_the_limit(harness: Harness) -> None:
    offering_id = await offering(harness)
    await fresh_window(harness.runtime, harness.settings.registration_rate_client_window_seconds)
    for n in range(PER_CLIENT):
        # X-Forwarded-For is not trusted by default: choosing one's own address changes nothing.
        response = await harness.client.post(
            "/registrations",
            json=request_data(offering_id, n),
            headers={"X-Forwarded-For": f"198.51.100.{n}"},
        )
        assert response.status_code == 202, response.text
    response = await harness.client.post(
        "/registrations", json=request_data(offering_id, PER_CLIENT), headers={"X-Forwarded-For": "192.0.2.1"}
    )
    assert_too_many(response, harness.settings.registration_rate_client_window_seconds, "Anschluss")
    # Nothing of the refused request was taken: only the accepted ones are decided.
    decided = await harness.events(PER_CLIENT, timeout=30)
    assert len(decided) == PER_CLIENT
    # The counters hold neither the client's address nor the e-mail addresses in clear.
    async with harness.runtime.db.pool.acquire() as conn:
        buckets = [r["bucket"] for r in await conn.fetch("SELECT bucket FROM rate_limits")]
    assert len(buckets) == 1 + PER_CLIENT + 1
    assert not any("127.0.0.1" in b or "example.de" in b or "anna" in b for b in buckets)


@asynccontextmanager
async def replica(settings: RegistrationSettings) -> AsyncIterator[httpx.AsyncClient]:
    """A second registration replica on the same database, with its own HTTP client."""
    app = create_app(settings)
    runtime: ServiceRuntime = app.state.runtime
    await runtime.start()
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://registration-b"
        ) as client:
            yield client
    finally:
        await runtime.stop()


async def test_per_email_limit_holds_across_client_addresses_and_replicas(settings: Settings) -> None:
    # Both replicas sit behind a trusted proxy (the test client's address), which names the clients.
    reg_settings = registration_settings(settings, trusted_proxies="127.0.0.1, ::1")
    app = create_app(reg_settings)
    runtime: ServiceRuntime = app.state.runtime
    await runtime.start()
    try:
        async with (
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://registration-a") as a,
            replica(reg_settings) as b,
        ):
            harness = Harness(reg_settings, runtime, a)
            await harness.start()
            try:
                offering_id = await offering(harness)
                await fresh_window(runtime, reg_settings.registration_rate_email_window_seconds)
                data: dict[str, Any] = request_data(offering_id, 7)
                for n in range(PER_EMAIL):
                    client = a if n % 2 == 0 else b
                    headers = {"X-Forwarded-For": f"203.0.113.{n}"}
                    response = await client.post("/registrations", json=data, headers=headers)
                    assert response.status_code == 202, response.text
                # The same mailbox with a +tag, from yet another address, through the other replica.
                tagged = {**data, "participant": {**data["participant"], "email": "Anna.7+neu@example.de"}}
                response = await b.post(
                    "/registrations", json=tagged, headers={"X-Forwarded-For": "203.0.113.99"}
                )
                assert_too_many(
                    response, reg_settings.registration_rate_email_window_seconds, "E-Mail-Adresse"
                )
                # Another person from the same client address is still welcome.
                response = await a.post(
                    "/registrations",
                    json=request_data(offering_id, 8),
                    headers={"X-Forwarded-For": "203.0.113.99"},
                )
                assert response.status_code == 202, response.text
            finally:
                await harness.stop()
    finally:
        await runtime.stop()


async def test_a_company_registering_ten_employees_is_not_limited(harness: Harness) -> None:
    """The HR person of one office registers ten employees, then two of them for a second offering."""
    first, second = await offering(harness), await offering(harness)
    company = request_data(first)["company"]
    for offering_id, people in ((first, range(10)), (second, range(2))):
        for n in people:
            data = request_data(offering_id, n, company=company)
            response = await harness.client.post("/registrations", json=data)
            assert response.status_code == 202, response.text
    decided = await harness.events(12, timeout=30)
    assert sorted(e["type"] for e in decided) == ["registration.confirmed"] * 12
