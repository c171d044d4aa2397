"""Real SMTP round trips: the built-in mail sink, and error classification of `send`."""

from __future__ import annotations

import email
import email.policy
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from icalendar import Calendar

from devtools.mail_sink import MailSink, list_mails, store_message
from services.notification.calendar import build_ics
from services.notification.mail import (
    MailAddress,
    PermanentMailError,
    SmtpSettings,
    TransientMailError,
    build_message,
    send,
)
from services.notification.render import (
    MailContext,
    NodeInfo,
    OfferingInfo,
    Recipient,
    SessionInfo,
    render_mail,
)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


SESSION = SessionInfo(
    "s-1", datetime(2027, 3, 9, 8, tzinfo=UTC), datetime(2027, 3, 9, 15, tzinfo=UTC), "Erfurt, Raum 2"
)
OFFERING = OfferingInfo("o-1", "Wasserstoff im Fahrzeugbau – Grundlagen", "workshop", sessions=(SESSION,))
NODE = NodeInfo("QTI-Knoten Erfurt", "Juri-Gagarin-Ring 1, 99084 Erfurt", email="erfurt@qti.example")


def make_message(to: str = "anna@example.de", message_id: str = "<evt-1.r-1@qti-net>") -> EmailMessage:
    ctx = MailContext(recipient=Recipient("Änne", "Schmidt", to, "female"), offering=OFFERING, node=NODE)
    rendered = render_mail("confirmation", ctx)
    ics = build_ics(
        offering_id="o-1",
        title=OFFERING.title,
        sessions=OFFERING.sessions,
        sequence=0,
        organizer_email="erfurt@qti.example",
    )
    return build_message(
        rendered=rendered,
        sender=MailAddress("noreply@qti.example", "QTI-Knoten Erfurt"),
        recipient=MailAddress(to, "Änne Schmidt"),
        message_id=message_id,
        ics=ics,
    )


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[MailSink]:
    mail_sink = MailSink(tmp_path / "mail", smtp_port=free_port(), http_port=free_port())
    mail_sink.start()
    try:
        yield mail_sink
    finally:
        mail_sink.stop()


async def test_round_trip_through_sink(sink: MailSink) -> None:
    message = make_message()
    await send(message, SmtpSettings(host="127.0.0.1", port=sink.smtp_port, timeout=10))

    files = list(sink.folder.iterdir())
    assert [f.suffix for f in files] == [".eml"]  # exactly one file, no temp leftovers
    parsed = email.message_from_bytes(files[0].read_bytes(), policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    assert str(parsed["Subject"]) == str(message["Subject"])
    assert parsed["Message-ID"] == "<evt-1.r-1@qti-net>"
    calendar_part = next(p for p in parsed.walk() if p.get_content_type() == "text/calendar")
    assert calendar_part.get_param("method") == "REQUEST"
    payload = calendar_part.get_payload(decode=True)
    assert isinstance(payload, bytes)
    cal = Calendar.from_ical(payload)
    assert [str(e["UID"]) for e in cal.walk("VEVENT")] == ["s-1@qti-net"]
    body = parsed.get_body(preferencelist=("plain",))
    assert body is not None and "Guten Tag Frau Schmidt," in body.get_content()

    name = files[0].name
    async with httpx.AsyncClient(base_url=sink.http_url, timeout=10) as client:
        listing = await client.get("/")
        assert listing.status_code == 200
        assert "Posteingang (Testpostfach)" in listing.text
        assert "Anmeldebestätigung: „Wasserstoff im Fahrzeugbau – Grundlagen“" in listing.text
        assert "Änne Schmidt" in listing.text

        api = (await client.get("/api/mails")).json()
        assert [m["name"] for m in api] == [name]
        assert api[0]["has_calendar"] is True

        detail = await client.get(f"/mail/{name}")
        assert detail.status_code == 200
        assert "Guten Tag Frau Schmidt," in detail.text

        raw = await client.get(f"/mail/{name}/raw")
        assert raw.content == files[0].read_bytes()
        assert raw.headers["content-type"] == "message/rfc822"

        ics = await client.get(f"/mail/{name}/termine.ics")
        assert ics.headers["content-type"].startswith("text/calendar")
        assert b"BEGIN:VCALENDAR" in ics.content

        for bad in ("/mail/..%2F..%2Fetc%2Fpasswd", "/mail/nope.eml", "/etc/passwd", f"/mail/{name}/x"):
            assert (await client.get(bad)).status_code == 404
        assert (await client.post("/")).status_code == 501  # read-only


async def test_sink_stores_each_message_once(sink: MailSink) -> None:
    for i in range(3):
        await send(make_message(message_id=f"<m{i}@qti-net>"), SmtpSettings(port=sink.smtp_port))
    mails = list_mails(sink.folder)
    assert len(mails) == 3
    assert len({m.name for m in mails}) == 3


def test_store_message_is_atomic(tmp_path: Path) -> None:
    path = store_message(tmp_path, b"Subject: x\r\n\r\nhi\r\n")
    assert path.read_bytes() == b"Subject: x\r\n\r\nhi\r\n"
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


async def test_stopped_port_is_transient() -> None:
    with pytest.raises(TransientMailError):
        await send(make_message(), SmtpSettings(host="127.0.0.1", port=free_port(), timeout=5))


class RefusingHandler:
    def __init__(self, rcpt_reply: str | None = None, data_reply: str = "250 OK") -> None:
        self.rcpt_reply = rcpt_reply
        self.data_reply = data_reply

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if self.rcpt_reply is not None:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        return self.data_reply


def run_refusing(handler: RefusingHandler) -> tuple[Controller, int]:
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    return controller, port


@pytest.mark.parametrize(
    ("handler", "expected", "code"),
    [
        (
            RefusingHandler(rcpt_reply="550 5.1.1 <anna@example.de>: Mailbox unavailable"),
            PermanentMailError,
            550,
        ),
        (RefusingHandler(rcpt_reply="451 4.3.0 Try again later"), TransientMailError, 451),
        (RefusingHandler(data_reply="554 5.6.0 Message rejected"), PermanentMailError, 554),
        (RefusingHandler(data_reply="421 4.3.2 Shutting down"), TransientMailError, 421),
    ],
)
async def test_smtp_replies_are_classified(
    handler: RefusingHandler, expected: type[Exception], code: int
) -> None:
    controller, port = run_refusing(handler)
    try:
        with pytest.raises(expected) as info:
            await send(make_message(), SmtpSettings(port=port, timeout=5))
    finally:
        controller.stop()
    assert getattr(info.value, "code", None) == code
    assert "anna@example.de" not in str(info.value)  # no address in clear in error texts
