"""The notification service end to end: real RabbitMQ, real Postgres, a real SMTP server (aiosmtpd).

Events are published to `qti.events` as the other services would; mails are checked as they arrive.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import socket
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any

import asyncpg
import httpx
import pytest
from aiosmtpd.controller import Controller
from faststream.rabbit import RabbitBroker
from icalendar import Calendar
from pydantic import BaseModel

from qti_contracts import make_event
from qti_runtime.broker import QueueSpec, create_broker, declare_service_topology, publish_event_bytes
from qti_runtime.service import ServiceRuntime
from qti_runtime.settings import Settings
from services.notification.api import notifications_router
from services.notification.app import build_runtime
from services.notification.render import REJECTION_TEXTS
from services.notification.settings import NotificationSettings
from support import eventually, get_messages

BERLIN_TZ = "Europe/Berlin"
WATCH = "test.notifications"


# --------------------------------------------------------------------------------------- SMTP server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RecordingHandler:
    """Accepts every mail (parsed into `messages`); refuses recipients whose address starts with bounce."""

    def __init__(self, messages: list[EmailMessage], lock: threading.Lock) -> None:
        self.messages = messages
        self.lock = lock

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if address.startswith("bounce"):
            return "550 5.1.1 Mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        with self.lock:
            self.messages.append(message)
        return "250 Message accepted"


class SmtpServer:
    def __init__(self) -> None:
        self.port = free_port()
        self.messages: list[EmailMessage] = []
        self._lock = threading.Lock()
        self._controller: Controller | None = None

    def start(self) -> None:
        controller = Controller(
            RecordingHandler(self.messages, self._lock),
            hostname="127.0.0.1",
            port=self.port,
            enable_SMTPUTF8=True,
        )
        controller.start()
        self._controller = controller

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def to(self, address: str) -> list[EmailMessage]:
        with self._lock:
            return [m for m in self.messages if address in str(m["To"])]


@pytest.fixture
def smtp() -> AsyncIterator[SmtpServer]:
    server = SmtpServer()
    server.start()
    yield server  # type: ignore[misc]
    server.stop()


# ------------------------------------------------------------------------------------------ service


@dataclass
class Harness:
    settings: NotificationSettings
    runtime: ServiceRuntime
    broker: RabbitBroker
    smtp: SmtpServer
    amqp_url: str

    async def publish(self, type_: str, data: BaseModel | dict[str, Any], event_id: str | None = None) -> str:
        event = make_event(type_, data, source="/tests", id_=event_id, correlationid="corr-test")
        await publish_event_bytes(
            self.broker, event.model_dump_json().encode(), routing_key=type_, message_id=event.id
        )
        return event.id

    async def publish_raw(self, type_: str, body: bytes, event_id: str) -> None:
        await publish_event_bytes(self.broker, body, routing_key=type_, message_id=event_id)

    async def deliveries(self, where: str = "true") -> list[asyncpg.Record]:
        async with self.runtime.db.pool.acquire() as conn:
            return list(await conn.fetch(f"SELECT * FROM deliveries WHERE {where} ORDER BY created_at"))

    async def events(self, expect: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        messages = await get_messages(self.amqp_url, WATCH, expect=expect, timeout=timeout)
        return [json.loads(m.body) for m in messages]


def notification_settings(settings: Settings, smtp: SmtpServer, **overrides: Any) -> NotificationSettings:
    values: dict[str, Any] = {
        **settings.model_dump(),
        "smtp_port": smtp.port,
        "smtp_timeout": 5.0,
        "send_lease_seconds": 10.0,
        "sender_poll_seconds": 0.1,
        "retry_base_seconds": 0.2,
        "retry_max_seconds": 0.5,
        "max_attempts": 100,
        **overrides,
    }
    return NotificationSettings(**values)


async def start_harness(settings: NotificationSettings, smtp: SmtpServer) -> Harness:
    runtime = build_runtime(settings)
    await runtime.start()
    broker = create_broker(settings, "test")
    await broker.connect()
    await declare_service_topology(broker, "test", [QueueSpec("test", "notifications", ["notification.#"])])
    return Harness(settings, runtime, broker, smtp, settings.amqp_url)


async def stop_harness(harness: Harness) -> None:
    await harness.broker.stop()
    await harness.runtime.stop()


@pytest.fixture
async def service(settings: Settings, smtp: SmtpServer) -> AsyncIterator[Harness]:
    harness = await start_harness(notification_settings(settings, smtp), smtp)
    yield harness
    await stop_harness(harness)


# ------------------------------------------------------------------------------------------- events

NODE = {
    "node_id": "node-erfurt",
    "name": "QTI-Knoten Erfurt",
    "town": "Erfurt",
    "county": "Erfurt",
    "host": "Bildungswerk Thüringen",
    "address": "Juri-Gagarin-Ring 1, 99084 Erfurt",
    "opened_on": "2024-01-15",
}
# 08:00 UTC in March = 09:00 CET; 07:00 UTC in July = 09:00 CEST.
SESSIONS = [
    {
        "session_id": "s-1",
        "starts_at": "2030-03-12T08:00:00Z",
        "ends_at": "2030-03-12T15:00:00Z",
        "location": "Raum 2",
    },
    {
        "session_id": "s-2",
        "starts_at": "2030-07-02T07:00:00Z",
        "ends_at": "2030-07-02T14:30:00Z",
        "location": "Werkhalle",
    },
]


def offering(revision: int = 1, sessions: list[dict[str, Any]] | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "offering_id": "off-hv",
        "node_id": "node-erfurt",
        "kind": "certificate_course",
        "topic": "elektromobilitaet",
        "title": "Hochvolt-Sicherheit für Elektrofahrzeuge",
        "description": "Grundlagen der Arbeit an HV-Systemen.",
        "sessions": sessions or SESSIONS,
        "capacity": 12,
        "registration_deadline": "2030-03-01T12:00:00Z",
        "fee_eur": 0,
        "revision": revision,
        **extra,
    }


def participant(given: str, family: str, email_: str, gender: str = "unspecified") -> dict[str, Any]:
    return {"given_name": given, "family_name": family, "email": email_, "gender": gender}


COMPANY = {"name": "Muster Zulieferer GmbH", "postal_code": "99610", "county": "Sömmerda"}


def outcome(registration_id: str, request_id: str, person: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "registration_id": registration_id,
        "request_id": request_id,
        "offering_id": extra.pop("offering_id", "off-hv"),
        "participant": person,
        "company": COMPANY,
        **extra,
    }


def rejection(request_id: str, person: dict[str, Any] | None, reason: str, detail: str) -> dict[str, Any]:
    """`registration.rejected` as registration publishes it: with the recipient when the request named a
    valid participant."""
    data = {"request_id": request_id, "offering_id": "off-hv", "reason": reason, "detail": detail}
    return {**data, "recipient": person} if person is not None else data


ART_14 = "Informationen zum Datenschutz (Art. 14 DSGVO)"


async def catalogue(harness: Harness, **offering_extra: Any) -> None:
    """Node and offering first, as in production (the service also copes with the reverse order)."""
    await harness.publish("catalogue.node.published", NODE)
    await harness.publish("catalogue.offering.published", offering(**offering_extra))

    async def replicated() -> bool:
        async with harness.runtime.db.pool.acquire() as conn:
            return bool(await conn.fetchval("SELECT count(*) FROM offerings, nodes"))

    await eventually(replicated)


# ------------------------------------------------------------------------------------------ helpers


def text_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    content = part.get_content()
    assert isinstance(content, str)
    return content


def html_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("html",))
    assert part is not None
    content = part.get_content()
    assert isinstance(content, str)
    return content


def calendar_of(message: EmailMessage) -> Calendar | None:
    for part in message.walk():
        if part.get_content_type() == "text/calendar":
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            return Calendar.from_ical(payload)
    return None


def assert_clean(message: EmailMessage) -> None:
    for part in (str(message["Subject"]), text_of(message), html_of(message)):
        assert "None" not in part
        for marker in ("{{", "}}", "{%", "%}"):
            assert marker not in part


def vevents(cal: Calendar) -> list[Any]:
    return sorted(cal.walk("VEVENT"), key=lambda e: e.decoded("dtstart"))


def assert_calendar(cal: Calendar, *, method: str, sequence: int, starts: list[datetime]) -> None:
    assert str(cal["method"]) == method
    assert [str(tz["tzid"]) for tz in cal.walk("VTIMEZONE")] == [BERLIN_TZ]
    events = vevents(cal)
    assert [str(e["uid"]) for e in events] == ["s-1@qti-net", "s-2@qti-net"]
    assert [int(e["sequence"]) for e in events] == [sequence] * 2
    for event, expected in zip(events, starts, strict=True):
        start = event.decoded("dtstart")
        assert str(start.tzinfo) == BERLIN_TZ
        assert start == expected
        assert event["dtstart"].params["TZID"] == BERLIN_TZ


async def wait_for_mails(harness: Harness, count: int, timeout: float = 15.0) -> None:
    await eventually(lambda: len(harness.smtp.messages) >= count, timeout=timeout)


def one(harness: Harness, address: str, subject_start: str) -> EmailMessage:
    found = [m for m in harness.smtp.to(address) if str(m["Subject"]).startswith(subject_start)]
    assert len(found) == 1, [str(m["Subject"]) for m in harness.smtp.to(address)]
    assert_clean(found[0])
    return found[0]


UTC_0900_MARCH = datetime(2030, 3, 12, 8, 0, tzinfo=UTC)
UTC_0900_JULY = datetime(2030, 7, 2, 7, 0, tzinfo=UTC)


# -------------------------------------------------------------------------------------------- tests


async def test_every_case_arrives_once_in_german_with_calendar(service: Harness) -> None:  # noqa: PLR0915
    h = service
    anna = participant("Anna", "Schmidt", "anna@example.de", "female")
    bernd = participant("Bernd", "Krause", "bernd@example.de", "male")
    clara = participant("Clara", "Weiß", "clara@example.de")
    await catalogue(h)
    req_b = "req-b"
    await h.publish("registration.confirmed", outcome("reg-a", "req-a", anna))
    await h.publish("registration.waitlisted", outcome("reg-b", req_b, bernd, position=2))
    await h.publish(
        "registration.rejected",
        rejection(
            "req-c", clara, "company_limit_reached", "Für Ihr Unternehmen sind bereits alle Plätze belegt."
        ),
    )
    await wait_for_mails(h, 3)

    confirmation = one(h, "anna@example.de", "Anmeldebestätigung: „Hochvolt-Sicherheit")
    text = text_of(confirmation)
    assert "Guten Tag Frau Schmidt," in text
    assert "Dienstag, 12. März 2030, 09:00–16:00 Uhr" in text
    assert "Dienstag, 2. Juli 2030, 09:00–16:30 Uhr" in text
    assert "QTI-Knoten Erfurt" in text and "Ihre Anmeldenummer: reg-a" in text
    assert confirmation["Message-ID"].endswith("@notification.qti-net>")
    cal = calendar_of(confirmation)
    assert cal is not None
    assert_calendar(cal, method="REQUEST", sequence=1, starts=[UTC_0900_MARCH, UTC_0900_JULY])
    # 09:00 local time in winter (CET) and in summer (CEST).
    assert [e.decoded("dtstart").hour for e in vevents(cal)] == [9, 9]

    waitlisted = one(h, "bernd@example.de", "Warteliste (Platz 2)")
    assert "Guten Tag Herr Krause," in text_of(waitlisted)
    assert calendar_of(waitlisted) is None

    rejected = one(h, "clara@example.de", "Ihre Anmeldung konnte nicht angenommen werden")
    assert REJECTION_TEXTS["company_limit_reached"].next_step in text_of(rejected)
    assert "Guten Tag Clara Weiß," in text_of(rejected)
    # The first mail to each address says what is done with data someone else may have given us.
    for first in (confirmation, waitlisted, rejected):
        assert ART_14 in text_of(first) and ART_14 in html_of(first)
        assert "Thüringer Landesbeauftragten für den Datenschutz" in text_of(first)

    # Bernd moves up, Anna cancels.
    await h.publish("registration.confirmed", outcome("reg-b", req_b, bernd, from_waitlist=True))
    await h.publish(
        "registration.cancelled",
        {"registration_id": "reg-a", "offering_id": "off-hv", "cause": "participant", "reason": "Krank"},
    )
    await wait_for_mails(h, 5)
    promoted = one(h, "bernd@example.de", "Nachgerückt")
    assert calendar_of(promoted) is not None
    cancelled = one(h, "anna@example.de", "Stornierung bestätigt")
    for later in (promoted, cancelled):
        assert ART_14 not in text_of(later) and ART_14 not in html_of(later)
    cancel_cal = calendar_of(cancelled)
    assert cancel_cal is not None
    assert str(cancel_cal["method"]) == "CANCEL"
    assert {str(e["status"]) for e in vevents(cancel_cal)} == {"CANCELLED"}
    assert "Krank" in text_of(cancelled)

    # New date for session 2: only the live registration (Bernd) hears, with SEQUENCE = revision.
    moved = [
        SESSIONS[0],
        {**SESSIONS[1], "starts_at": "2030-07-09T07:00:00Z", "ends_at": "2030-07-09T14:30:00Z"},
    ]
    await h.publish("catalogue.offering.updated", offering(revision=2, sessions=moved))
    await wait_for_mails(h, 6)
    changed = one(h, "bernd@example.de", "Geänderte Termine oder Orte")
    changed_text = text_of(changed)
    assert "Dienstag, 9. Juli 2030, 09:00–16:30 Uhr" in changed_text
    assert "Bisherige Planung" in changed_text and "2. Juli 2030" in changed_text
    changed_cal = calendar_of(changed)
    assert changed_cal is not None
    assert_calendar(
        changed_cal,
        method="REQUEST",
        sequence=2,
        starts=[UTC_0900_MARCH, datetime(2030, 7, 9, 7, tzinfo=UTC)],
    )

    # A new description (no date or place change) and a stale revision: no mail.
    await h.publish("catalogue.offering.updated", offering(revision=3, sessions=moved, description="Neu."))
    await h.publish("catalogue.offering.updated", offering(revision=1))
    await h.publish(
        "catalogue.offering.cancelled",
        {"offering_id": "off-hv", "reason": "Die Referentin ist erkrankt.", "revision": 4},
    )
    await wait_for_mails(h, 7)
    called_off = one(h, "bernd@example.de", "Abgesagt: „Hochvolt")
    assert "Die Referentin ist erkrankt." in text_of(called_off)
    off_cal = calendar_of(called_off)
    assert off_cal is not None and str(off_cal["method"]) == "CANCEL"
    assert {int(e["sequence"]) for e in vevents(off_cal)} == {4}

    # Registration later confirms the cancellation per registration: no second mail.
    await h.publish(
        "registration.cancelled",
        {"registration_id": "reg-b", "offering_id": "off-hv", "cause": "offering_cancelled"},
    )
    sent = await h.events(expect=7)
    await asyncio.sleep(1.0)
    assert len(h.smtp.messages) == 7
    assert len({str(m["Message-ID"]) for m in h.smtp.messages}) == 7
    assert sorted(e["data"]["template"] for e in sent) == sorted(
        [
            "confirmation",
            "waitlisted",
            "rejected",
            "promoted",
            "cancelled",
            "offering_changed",
            "offering_cancelled",
        ]
    )
    assert all(e["type"] == "notification.sent" and "@" not in json.dumps(e) for e in sent)
    assert await h.events(expect=1, timeout=0.5) == []


async def test_same_event_five_times_gives_one_mail(service: Harness) -> None:
    h = service
    await catalogue(h)
    anna = participant("Anna", "Schmidt", "anna@example.de", "female")
    event = make_event("registration.confirmed", outcome("reg-a", "req-a", anna), source="/registration")
    body = event.model_dump_json().encode()
    for _ in range(5):
        await h.publish_raw("registration.confirmed", body, event.id)
    await wait_for_mails(h, 1)
    sent = await h.events(expect=1)
    await asyncio.sleep(1.5)
    assert len(h.smtp.messages) == 1
    assert len(await h.deliveries("template = 'confirmation'")) == 1
    assert [e["data"]["trigger_event_id"] for e in sent] == [event.id]
    assert await h.events(expect=1, timeout=0.5) == []


async def test_outcomes_in_bulk_are_mailed_once_each_and_in_order(service: Harness) -> None:
    """Outcomes arriving together are handled many to a transaction: a registration waitlisted and
    promoted back to back gets both mails, copies change nothing, every confirmation goes out once."""
    h = service
    await catalogue(h)
    people = [participant(f"Teil{n}", f"Nehmer{n}", f"p{n}@example.de") for n in range(30)]
    confirmed = [
        make_event("registration.confirmed", outcome(f"reg-{n}", f"req-{n}", p), source="/registration")
        for n, p in enumerate(people)
    ]
    wolf = participant("Wolf", "Lange", "wolf@example.de", "male")
    waitlisted = make_event(
        "registration.waitlisted", outcome("reg-w", "req-w", wolf, position=1), source="/r"
    )
    promoted = make_event(
        "registration.confirmed", outcome("reg-w", "req-w", wolf, from_waitlist=True), source="/registration"
    )
    for event in [*confirmed[:15], waitlisted, promoted, *confirmed[15:], *confirmed[:5], waitlisted]:
        await h.publish_raw(event.type, event.model_dump_json().encode(), event.id)
    await wait_for_mails(h, 32)
    await asyncio.sleep(1.0)
    assert len(h.smtp.messages) == 32
    for n in range(30):
        one(h, f"p{n}@example.de", "Anmeldebestätigung")
    one(h, "wolf@example.de", "Warteliste (Platz 1)")
    one(h, "wolf@example.de", "Nachgerückt")
    async with h.runtime.db.pool.acquire() as conn:
        status = await conn.fetchval("SELECT status FROM recipients WHERE registration_id = 'reg-w'")
    assert status == "confirmed"


async def test_a_rejection_is_mailed_once_to_its_recipient_and_one_without_recipient_to_nobody(
    service: Harness,
) -> None:
    h = service
    await catalogue(h)
    clara = participant("Clara", "Weiß", "clara@example.de")
    told = make_event(
        "registration.rejected",
        rejection("req-told", clara, "waitlist_full", "Das Angebot ist ausgebucht."),
        source="/registration",
    )
    for _ in range(3):
        await h.publish_raw("registration.rejected", told.model_dump_json().encode(), told.id)
    # A request that named no valid participant is rejected without recipient: nobody to tell.
    await h.publish("registration.rejected", rejection("req-nobody", None, "invalid_request", "Name fehlt."))
    await wait_for_mails(h, 1)
    await h.events(expect=1)
    await asyncio.sleep(1.0)
    [mail] = h.smtp.messages
    assert one(h, "clara@example.de", "Ihre Anmeldung konnte nicht angenommen werden") is mail
    [row] = await h.deliveries()
    assert (row["template"], row["request_id"], row["trigger_event_id"]) == ("rejected", "req-told", told.id)
    assert await h.events(expect=1, timeout=0.5) == []


async def test_smtp_down_for_a_while_nothing_lost_nothing_doubled(service: Harness) -> None:
    h = service
    await catalogue(h)
    h.smtp.stop()
    count = 12
    for i in range(count):
        person = participant("Teil", f"Nehmer {i}", f"p{i}@example.de")
        await h.publish("registration.confirmed", outcome(f"reg-{i}", f"req-{i}", person))

    async def all_retried() -> bool:
        rows = await h.deliveries("template = 'confirmation'")
        return len(rows) == count and all(r["attempts"] >= 2 and r["last_error"] for r in rows)

    await eventually(all_retried, timeout=15)
    rows = await h.deliveries("template = 'confirmation'")
    assert {r["status"] for r in rows} <= {"pending", "sending"}
    assert all("SMTP" in r["last_error"] for r in rows)
    assert h.smtp.messages == []

    h.smtp.start()
    await wait_for_mails(h, count)
    sent = await h.events(expect=count)
    await asyncio.sleep(1.5)
    assert len(h.smtp.messages) == count
    assert sorted(str(m["To"]) for m in h.smtp.messages) == sorted(
        f"Teil Nehmer {i} <p{i}@example.de>" for i in range(count)
    )
    assert len(sent) == count
    assert {r["status"] for r in await h.deliveries("template = 'confirmation'")} == {"sent"}


async def test_permanent_failure_yields_notification_failed(service: Harness) -> None:
    h = service
    await catalogue(h)
    bounce = participant("Bodo", "Bounce", "bounce@example.de")
    fine = participant("Fiona", "Fine", "fiona@example.de")
    await h.publish("registration.confirmed", outcome("reg-bounce", "req-1", bounce))
    await h.publish("registration.confirmed", outcome("reg-fine", "req-2", fine))
    events = await h.events(expect=2)
    by_type = {e["type"]: e for e in events}
    failed = by_type["notification.failed"]["data"]
    assert failed["registration_id"] == "reg-bounce"
    assert failed["permanent"] is True
    assert failed["attempts"] == 1
    assert "550" in failed["error"]
    assert "@" not in json.dumps(by_type["notification.failed"])
    assert failed["recipient_ref"].startswith("rcpt-")
    assert by_type["notification.sent"]["data"]["registration_id"] == "reg-fine"
    [row] = await h.deliveries("registration_id = 'reg-bounce' AND template = 'confirmation'")
    assert (row["status"], row["attempts"]) == ("failed", 1)
    assert [str(m["To"]) for m in h.smtp.messages] == ["Fiona Fine <fiona@example.de>"]


async def test_odd_names_are_safe(service: Harness) -> None:
    h = service
    await catalogue(h, title='Wasserstoff & „H₂“ <Praxis> "live" 🚀')
    zoe = participant('Zoë "Zo"', "O'Brien-Müller 🚗" + "x" * 80, "zoe@example.de")
    await h.publish("registration.confirmed", outcome("reg-z", "req-z", zoe))
    # A name that tries to look like a header (line breaks are refused by the contract already).
    eve = participant("Eve Bcc: victim@example.org", "<Evil> =?utf-8?q?x?=", "eve@example.de")
    await h.publish(
        "registration.rejected", rejection("req-eve", eve, "consent_missing", "Ohne Einwilligung.")
    )
    await wait_for_mails(h, 2)
    [zoe_mail] = h.smtp.to("zoe@example.de")
    assert_clean(zoe_mail)
    assert "Zoë" in str(zoe_mail["To"]) and "O'Brien-Müller" in str(zoe_mail["To"])
    assert "Wasserstoff & „H₂“ <Praxis>" in str(zoe_mail["Subject"])
    assert "🚀" in str(zoe_mail["Subject"])
    assert "&lt;Praxis&gt;" in html_of(zoe_mail) and "<Praxis>" not in html_of(zoe_mail)
    assert 'Guten Tag Zoë "Zo" O\'Brien-Müller' in text_of(zoe_mail)
    [eve_mail] = h.smtp.to("eve@example.de")
    assert_clean(eve_mail)
    assert eve_mail["Bcc"] is None
    assert len(eve_mail.get_all("To") or []) == 1
    assert "\n" not in str(eve_mail["To"]) and eve_mail["To"].addresses[0].addr_spec == "eve@example.de"


async def test_reminder_sent_once_before_first_session_and_not_after_cancellation(
    settings: Settings, smtp: SmtpServer
) -> None:
    h = await start_harness(notification_settings(settings, smtp, reminder_lead_days=3.0), smtp)
    try:
        # Due in a few seconds (a reminder whose moment has passed is not sent at all).
        start = datetime.now(UTC) + timedelta(days=3, seconds=5)
        sessions = [
            {
                "session_id": "s-1",
                "starts_at": start.isoformat(),
                "ends_at": (start + timedelta(hours=7)).isoformat(),
                "location": "Raum 2",
            },
            {
                "session_id": "s-2",
                "starts_at": (start + timedelta(days=7)).isoformat(),
                "ends_at": (start + timedelta(days=7, hours=7)).isoformat(),
                "location": "Raum 2",
            },
        ]
        await catalogue(h, sessions=sessions)
        anna = participant("Anna", "Schmidt", "anna@example.de", "female")
        bernd = participant("Bernd", "Krause", "bernd@example.de", "male")
        await h.publish("registration.confirmed", outcome("reg-a", "req-a", anna))
        await h.publish("registration.confirmed", outcome("reg-b", "req-b", bernd))
        await eventually(lambda: h.smtp.to("bernd@example.de"))
        await h.publish(
            "registration.cancelled",
            {"registration_id": "reg-b", "offering_id": "off-hv", "cause": "participant"},
        )
        await wait_for_mails(h, 4, timeout=20)
        reminder = one(h, "anna@example.de", "Erinnerung: „Hochvolt")
        assert calendar_of(reminder) is not None
        await asyncio.sleep(1.0)
        assert len(h.smtp.to("anna@example.de")) == 2
        assert sorted(str(m["Subject"]).split(":")[0] for m in h.smtp.to("bernd@example.de")) == [
            "Anmeldebestätigung",
            "Stornierung bestätigt",
        ]
        [skipped] = await h.deliveries("registration_id = 'reg-b' AND template = 'reminder'")
        assert skipped["status"] == "skipped"
    finally:
        await stop_harness(h)


async def test_delivery_log_view_masks_addresses(service: Harness) -> None:
    h = service
    await catalogue(h)
    anna = participant("Anna", "Schmidt", "anna.schmidt@example.de", "female")
    await h.publish("registration.confirmed", outcome("reg-a", "req-a", anna))
    await wait_for_mails(h, 1)
    await h.events(expect=1)
    app = h.runtime.create_app([notifications_router(h.runtime.db, h.settings)], title="t")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        assert (await client.get("/notifications", params={"registration_id": "reg-a"})).status_code == 401
        response = await client.get(
            "/notifications",
            params={"registration_id": "reg-a"},
            headers={"Authorization": "Bearer dev-staff-token"},
        )
    assert response.status_code == 200
    [entry] = [e for e in response.json() if e["template"] == "confirmation"]
    assert entry["status"] == "sent" and entry["recipient"] == "a***@e***.de"
    assert "anna.schmidt@example.de" not in response.text
