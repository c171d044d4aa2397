"""Offer alerts ("Angebotsalarm") and interest ("Interesse melden") end to end: real RabbitMQ, Postgres
and SMTP server (aiosmtpd), the notification service as its process runs it, its HTTP API in process.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from email.message import EmailMessage
from typing import Any

import httpx
import pytest
from notification.test_service import (
    NODE,
    Harness,
    SmtpServer,
    notification_settings,
    offering,
    smtp,
    start_harness,
    stop_harness,
)

from qti_runtime.settings import Settings
from services.notification.alert_api import alerts_router
from services.notification.alert_handlers import AlertService
from support import eventually

__all__ = ["smtp"]

STAFF = {"Authorization": "Bearer dev-staff-token"}
LINK = re.compile(r"http://127\.0\.0\.1:8000/angebotsalarm/(bestaetigen|abmelden)/([A-Za-z0-9_-]{43})")


@pytest.fixture
async def service(settings: Settings, smtp: SmtpServer) -> AsyncIterator[Harness]:
    harness = await start_harness(notification_settings(settings, smtp, alert_digest_period_seconds=0), smtp)
    yield harness
    await stop_harness(harness)


@pytest.fixture
async def api(service: Harness) -> AsyncIterator[httpx.AsyncClient]:
    h = service
    router = alerts_router(h.runtime.db, h.settings, AlertService(h.runtime.db, h.settings))
    app = h.runtime.create_app([router], title="t")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        yield client


def signup(email: str, **extra: Any) -> dict[str, Any]:
    return {
        "email": email,
        "topics": ["wasserstoff"],
        "counties": ["erfurt"],
        "privacy_consent": True,
        "consent_text_version": "2026-12-alarm-v1",
        **extra,
    }


def body_text(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    return str(part.get_content())


def link_in(message: EmailMessage, kind: str) -> str:
    found = [m.group(2) for m in LINK.finditer(body_text(message)) if m.group(1) == kind]
    assert found, body_text(message)
    return found[0]


async def settled(h: Harness) -> None:
    """Nothing left to send (every queued mail sent or skipped)."""

    async def done() -> bool:
        return not await h.deliveries("status IN ('pending', 'sending')")

    await eventually(done, timeout=30)


async def published(h: Harness, offering_id: str, **data: Any) -> None:
    """Publish an offering and wait until its alerts are matched (the inbox took it)."""
    await h.publish("catalogue.offering.published", offering(offering_id=offering_id, **data))

    async def matched() -> bool:
        async with h.runtime.db.pool.acquire() as conn:
            return bool(
                await conn.fetchval(
                    "SELECT 1 FROM alert_offerings_matched WHERE offering_id = $1", offering_id
                )
            )

    await eventually(matched, timeout=20)
    await settled(h)


async def node(h: Harness) -> None:
    await h.publish("catalogue.node.published", NODE)

    async def replicated() -> bool:
        async with h.runtime.db.pool.acquire() as conn:
            return bool(await conn.fetchval("SELECT count(*) FROM nodes"))

    await eventually(replicated)


async def subscribed(h: Harness, api: httpx.AsyncClient, email: str, **extra: Any) -> str:
    """Sign up; returns the confirmation token from the one mail that arrives."""
    response = await api.post("/alerts", json=signup(email, **extra))
    assert response.status_code == 202, response.text
    await eventually(lambda: len(h.smtp.to(email)) == 1, timeout=20)
    [mail] = h.smtp.to(email)
    assert "bestätigen" in str(mail["Subject"])
    assert mail["List-Unsubscribe"] is None  # nothing to unsubscribe from before the opt-in
    return link_in(mail, "bestaetigen")


async def test_sign_up_confirm_one_alert_for_the_matching_offering_then_unsubscribe_stops_it(
    service: Harness, api: httpx.AsyncClient
) -> None:
    h = service
    await node(h)
    token = await subscribed(h, api, "anna@example.de")
    # Confirming is idempotent; a made-up token is a German 404.
    for _ in range(2):
        response = await api.post("/alerts/confirm", json={"token": token})
        assert response.json() == {"status": "confirmed", "kind": "alert"}
    unknown = await api.post("/alerts/confirm", json={"token": "x" * 43})
    assert unknown.status_code == 404 and "ungültig" in unknown.json()["detail"]

    await published(h, "off-h2", topic="wasserstoff", title="Wasserstoff im Betrieb")
    await published(h, "off-ki", topic="innovation", title="Innovationsmanagement")
    alerts = h.smtp.to("anna@example.de")[1:]
    assert [str(m["Subject"]) for m in alerts] == ["Angebotsalarm: „Wasserstoff im Betrieb“"]
    [alert] = alerts
    assert alert["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    unsubscribe_url = str(alert["List-Unsubscribe"]).strip("<>")
    assert unsubscribe_url.startswith("http://127.0.0.1:8000/angebotsalarm/abmelden/")
    text = body_text(alert)
    # The link names its source, so that a registration through it is counted as coming from an alert.
    assert "http://127.0.0.1:8000/angebote/off-h2?quelle=angebotsalarm" in text and unsubscribe_url in text

    ended = await api.post("/alerts/unsubscribe", json={"token": unsubscribe_url.rsplit("/", 1)[1]})
    assert ended.json() == {"status": "ended", "kind": "alert"}
    again = await api.post("/alerts/unsubscribe", json={"token": unsubscribe_url.rsplit("/", 1)[1]})
    assert again.status_code == 200  # idempotent
    await published(h, "off-h2b", topic="wasserstoff", title="Wasserstoff, zweiter Kurs")
    assert len(h.smtp.to("anna@example.de")) == 2  # confirmation and the one alert, nothing since

    async with h.runtime.db.pool.acquire() as conn:
        row = await conn.fetchrow("SELECT * FROM alert_subscriptions")
    assert row["status"] == "ended" and row["email"] is None and row["end_cause"] == "unsubscribed"
    assert (
        row["consent_text_version"] == "2026-12-alarm-v1" and row["consent_source"] == "portal Angebotsalarm"
    )
    assert row["confirmed_at"] is not None and row["confirm_hash"] != token  # only the hash is stored

    events = await h.events(expect=8)
    changes = [e for e in events if e["type"].startswith("notification.alert.")]
    assert [e["type"] for e in changes] == [
        "notification.alert.subscribed",
        "notification.alert.confirmed",
        "notification.alert.ended",
    ]
    assert "anna" not in json.dumps(events)  # a pseudonym, never the address


async def test_an_unconfirmed_sign_up_gets_nothing_but_its_confirmation_and_expires(
    settings: Settings, smtp: SmtpServer
) -> None:
    h = await start_harness(notification_settings(settings, smtp, alert_confirm_hours=1e-6), smtp)
    try:
        router = alerts_router(h.runtime.db, h.settings, AlertService(h.runtime.db, h.settings))
        app = h.runtime.create_app([router], title="t")
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as api:
            await node(h)
            token = await subscribed(h, api, "bert@example.de")
            await published(h, "off-h2", topic="wasserstoff")
            assert len(h.smtp.to("bert@example.de")) == 1  # only the confirmation
            maintenance = await api.post("/alerts/maintenance", headers=STAFF)
            assert maintenance.json() == {"digests": 0, "purged": 1}
            late = await api.post("/alerts/confirm", json={"token": token})
            assert late.status_code == 404
            assert (await api.post("/alerts/maintenance")).status_code == 401
        async with h.runtime.db.pool.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM alert_subscriptions") == 0
        events = [e for e in await h.events(expect=3) if e["type"].startswith("notification.alert.")]
        assert [e["type"] for e in events] == ["notification.alert.subscribed", "notification.alert.ended"]
        assert events[1]["data"]["cause"] == "expired" and events[1]["data"]["was_confirmed"] is False
    finally:
        await stop_harness(h)


async def test_interest_is_told_once_when_a_matching_offering_is_published(
    service: Harness, api: httpx.AsyncClient
) -> None:
    h = service
    await node(h)
    token = await subscribed(h, api, "carla@example.de", kind="interest", topics=["foerdermittel"])
    assert "Interessensmeldung" in str(h.smtp.to("carla@example.de")[0]["Subject"])
    assert (await api.post("/alerts/confirm", json={"token": token})).json()["kind"] == "interest"
    await published(h, "off-other-topic", topic="wasserstoff")
    await published(h, "off-fm-1", topic="foerdermittel", title="Fördermittel für KMU")
    await published(h, "off-fm-2", topic="foerdermittel", title="Fördermittel, Teil 2")
    told = h.smtp.to("carla@example.de")[1:]
    assert [str(m["Subject"]) for m in told] == ["Ihr gemeldetes Interesse: „Fördermittel für KMU“"]
    assert told[0]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "/angebote/off-fm-1?quelle=interesse" in body_text(told[0])
    async with h.runtime.db.pool.acquire() as conn:
        row = await conn.fetchrow("SELECT status, end_cause, email FROM alert_subscriptions")
    assert dict(row) == {"status": "ended", "end_cause": "fulfilled", "email": None}


async def test_weekly_subscribers_get_one_digest_with_every_new_offering(
    service: Harness, api: httpx.AsyncClient
) -> None:
    h = service
    await node(h)
    token = await subscribed(h, api, "dora@example.de", frequency="weekly", topics=[], counties=[])
    await api.post("/alerts/confirm", json={"token": token})
    await published(h, "off-a", title="Erstes Angebot")
    await published(h, "off-b", title="Zweites Angebot", topic="innovation")
    assert len(h.smtp.to("dora@example.de")) == 1  # nothing at once for weekly subscribers
    assert (await api.post("/alerts/maintenance", headers=STAFF)).json() == {"digests": 1, "purged": 0}
    assert (await api.post("/alerts/maintenance", headers=STAFF)).json()["digests"] == 0
    await settled(h)
    [digest] = h.smtp.to("dora@example.de")[1:]
    assert str(digest["Subject"]) == "Angebotsalarm: 2 neue passende Angebote"
    text = body_text(digest)
    assert "Erstes Angebot" in text and "Zweites Angebot" in text and digest["List-Unsubscribe"]


async def test_the_same_answer_for_known_addresses_and_german_422s_for_bad_input(
    service: Harness, api: httpx.AsyncClient
) -> None:
    first = await api.post("/alerts", json=signup("eva@example.de"))
    second = await api.post("/alerts", json=signup("eva@example.de"))
    assert first.status_code == second.status_code == 202 and first.json() == second.json()
    bad = [
        signup("keine-adresse"),
        signup("a@example.de", privacy_consent=False),
        signup("a@example.de", topics=["erfunden"]),
        signup("a@example.de", topics=["wasserstoff"] * 50),
        signup("a@example.de", nodes=["<script>alert(1)</script>"]),
        signup("a@example.de", kind="interest", topics=["wasserstoff", "innovation"]),
        signup("a@example.de", consent_text_version='=HYPERLINK("x")' * 10),
        {"email": {"nested": ["x"] * 100}},
    ]
    for body in bad:
        response = await api.post("/alerts", json=body)
        assert response.status_code == 422, (body, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["detail"].startswith(("Die Anfrage", "Für eine"))
    for token in ("kurz", "ä" * 43, "a/" * 30):
        assert (await api.post("/alerts/unsubscribe", json={"token": token})).status_code == 422
    huge = await api.post("/alerts", content=b"{" + b" " * 200_000 + b"}")
    assert huge.status_code == 413


async def test_repeated_sign_ups_for_one_address_are_limited(settings: Settings, smtp: SmtpServer) -> None:
    h = await start_harness(
        notification_settings(settings, smtp, alert_rate_per_email=2, unsolicited_mails_per_day=1), smtp
    )
    try:
        router = alerts_router(h.runtime.db, h.settings, AlertService(h.runtime.db, h.settings))
        app = h.runtime.create_app([router], title="t")
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as api:
            answers = [(await api.post("/alerts", json=signup("Opfer+1@Example.de"))) for _ in range(2)]
            answers.append(await api.post("/alerts", json=signup("opfer+2@example.de")))
        assert [a.status_code for a in answers] == [202, 202, 429]
        assert int(answers[2].headers["Retry-After"]) >= 1
        await settled(h)
        # Two sign-ups passed the rate limit, but the mail cap lets one confirmation a day through.
        assert len(h.smtp.messages) == 1
        rows = await h.deliveries("template = 'alert_confirm'")
        assert sorted(r["status"] for r in rows) == ["sent", "skipped"]
    finally:
        await stop_harness(h)
