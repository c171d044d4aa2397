"""The cap on unsolicited mails (issue: "mail cannon"): requests in a stranger's name make the system
mail that stranger a rejection or a waiting-list notice; an address that never had a confirmed
registration gets at most `unsolicited_mails_per_day` of them a day, the rest are logged as suppressed.

Real RabbitMQ, Postgres and SMTP server (aiosmtpd), as in test_service.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from notification.test_service import (
    Harness,
    SmtpServer,
    catalogue,
    notification_settings,
    outcome,
    participant,
    rejection,
    smtp,
    start_harness,
    stop_harness,
)

from qti_runtime.settings import Settings
from support import eventually

__all__ = ["smtp"]  # the SMTP server fixture

CAP = 3


@pytest.fixture
async def capped(settings: Settings, smtp: SmtpServer) -> AsyncIterator[Harness]:
    harness = await start_harness(notification_settings(settings, smtp, unsolicited_mails_per_day=CAP), smtp)
    yield harness
    await stop_harness(harness)


async def reject(h: Harness, email: str, request_id: str, reason: str = "consent_missing") -> None:
    """The rejection of a request in `email`'s name, as registration would publish it."""
    person = participant("Opfer", "Unbekannt", email)
    await h.publish("registration.rejected", rejection(request_id, person, reason, "Abgelehnt."))


async def settled(h: Harness, count: int) -> list[dict[str, str]]:
    """Wait until `count` delivery rows exist and none is pending or being sent (reminders, due in
    years, left out)."""

    async def done() -> list[dict[str, str]] | None:
        rows = await h.deliveries("template <> 'reminder'")
        final = [r for r in rows if r["status"] not in ("pending", "sending")]
        return [dict(r) for r in rows] if len(rows) >= count and len(final) == len(rows) else None

    result: list[dict[str, str]] = await eventually(done, timeout=30)
    return result


async def test_many_rejections_for_a_never_confirmed_address_send_only_the_cap(capped: Harness) -> None:
    h = capped
    await catalogue(h)
    victim = "opfer@example.de"
    for n in range(6):
        await reject(h, victim, f"req-cannon-{n}")
    # A waiting-list notice counts as well; a `+tag` reaches the same mailbox and counts with it.
    await h.publish(
        "registration.waitlisted",
        outcome("reg-w", "req-w", participant("Opfer", "Unbekannt", "Opfer+spam@example.de"), position=1),
    )
    rows = await settled(h, 7)
    sent = [r for r in rows if r["status"] == "sent"]
    suppressed = [r for r in rows if r["status"] == "skipped"]
    assert len(sent) == CAP
    assert len(suppressed) == 7 - CAP
    assert len(h.smtp.to(victim)) + len(h.smtp.to("Opfer+spam@example.de")) == CAP
    assert len(h.smtp.messages) == CAP
    for row in suppressed:
        assert row["last_error"].startswith("unterdrückt: mehr als 3 unaufgeforderte Mails")
        assert "opfer" not in row["last_error"].lower()
    # Another address is not affected by the victim's cap.
    await reject(h, "jemand@example.de", "req-other")
    rows = await settled(h, 8)
    assert len(h.smtp.to("jemand@example.de")) == 1
    # The counters hold no address in clear.
    async with h.runtime.db.pool.acquire() as conn:
        buckets = [r["bucket"] for r in await conn.fetch("SELECT bucket FROM rate_limits")]
    assert buckets
    assert not any("example.de" in bucket or "opfer" in bucket for bucket in buckets)


async def test_an_address_with_a_confirmed_registration_is_not_capped(capped: Harness) -> None:
    h = capped
    await catalogue(h)
    anna = participant("Anna", "Schmidt", "anna@example.de", "female")
    await h.publish("registration.confirmed", outcome("reg-a", "req-a", anna, from_waitlist=False))
    await settled(h, 1)
    assert len(h.smtp.to("anna@example.de")) == 1
    for n in range(CAP + 3):
        await reject(h, "anna@example.de", f"req-anna-{n}", reason="duplicate_registration")
    rows = await settled(h, 1 + CAP + 3)
    assert [r["status"] for r in rows] == ["sent"] * (1 + CAP + 3)
    assert len(h.smtp.to("anna@example.de")) == 1 + CAP + 3
