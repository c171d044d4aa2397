"""The pool's own mail transaction (`mail._transact`) against a real SMTP server (aiosmtpd): content
arrives byte for byte (dot-stuffing, line ends), connections are reused, replies are classified."""

from __future__ import annotations

import email
import email.policy
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from services.notification.mail import (
    OutgoingMail,
    PermanentMailError,
    SmtpPool,
    SmtpSettings,
    TransientMailError,
    _data_payload,
)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Capturing:
    """Keeps what arrived; counts SMTP sessions (connections); replies as told."""

    def __init__(self, rcpt_reply: str = "250 OK", data_reply: str = "250 OK") -> None:
        self.rcpt_reply, self.data_reply = rcpt_reply, data_reply
        self.received: list[tuple[str, list[str], bytes]] = []
        self.sessions = 0

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: Any
    ) -> Any:
        self.sessions += 1
        session.host_name = hostname
        return responses

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if self.rcpt_reply.startswith("250"):
            envelope.rcpt_tos.append(address)
        return self.rcpt_reply

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.data_reply.startswith("250"):
            content = bytes(envelope.original_content)
            self.received.append((envelope.mail_from, list(envelope.rcpt_tos), content))
        return self.data_reply


@pytest.fixture
def capturing() -> Iterator[tuple[Capturing, int]]:
    handler, port = Capturing(), free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


def mail(n: int, body: bytes) -> OutgoingMail:
    head = f"From: noreply@qti-net.example\nTo: p{n}@example.de\nSubject: Test {n}\n".encode()
    return OutgoingMail("noreply@qti-net.example", f"p{n}@example.de", head + b"\n" + body, f"<m{n}@t>")


TRICKY_BODIES = [
    b"Hallo,\n.\nein Punkt allein\n..zwei\n.drei am Zeilenanfang\n",
    b"ohne Zeilenende am Schluss",
    b".Punkt in der ersten Zeile des Inhalts\n\n\n",
]


async def test_content_arrives_byte_for_byte_over_one_connection(capturing: tuple[Capturing, int]) -> None:
    handler, port = capturing
    pool = SmtpPool(SmtpSettings(port=port, timeout=5), 1)
    mails = [mail(n, body) for n, body in enumerate(TRICKY_BODIES)]
    try:
        for outgoing in mails:
            assert await pool.send(outgoing)
    finally:
        await pool.close()
    assert handler.sessions == 1  # one connection for all three
    assert [(f, r) for f, r, _ in handler.received] == [(m.sender, [m.recipient]) for m in mails]
    for outgoing, (_, _, content) in zip(mails, handler.received, strict=True):
        expected = outgoing.data.replace(b"\n", b"\r\n")
        assert content in (expected, expected + b"\r\n")  # a missing final line end is added
        parsed = email.message_from_bytes(content, policy=email.policy.default)
        assert parsed["To"] == outgoing.recipient


def test_data_payload_stuffs_dots_and_terminates() -> None:
    assert _data_payload(b".a\nb\n.\n") == b"..a\r\nb\r\n..\r\n.\r\n"
    assert _data_payload(b"x") == b"x\r\n.\r\n"


@pytest.mark.parametrize(
    ("handler", "expected", "code"),
    [
        (Capturing(rcpt_reply="550 5.1.1 <p0@example.de>: Mailbox unavailable"), PermanentMailError, 550),
        (Capturing(rcpt_reply="451 4.3.0 Try again later"), TransientMailError, 451),
        (Capturing(data_reply="554 5.6.0 Message rejected"), PermanentMailError, 554),
        (Capturing(data_reply="421 4.3.2 Shutting down"), TransientMailError, 421),
    ],
)
async def test_replies_are_classified_and_the_connection_is_dropped(
    handler: Capturing, expected: type[Exception], code: int
) -> None:
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    pool = SmtpPool(SmtpSettings(port=port, timeout=5), 1)
    try:
        for _ in range(2):  # the second try opens a new connection: the failed one is never reused
            with pytest.raises(expected) as info:
                await pool.send(mail(0, b"Inhalt\n"))
            assert getattr(info.value, "code", None) == code
            assert "p0@example.de" not in str(info.value)
    finally:
        await pool.close()
        controller.stop()
    assert handler.sessions == 2
    assert handler.received == []


@pytest.mark.parametrize(
    "recipient",
    [
        "p0@example.de> NOTIFY=NEVER",
        "p0@example.de\r\nRCPT TO:<x@y.de>",
        "p0 x@example.de",
        "<p0@example.de> SIZE=1",
    ],
)
async def test_smtp_syntax_in_an_address_never_reaches_the_command_line(
    capturing: tuple[Capturing, int], recipient: str
) -> None:
    """Addresses are validated at the edge; should one slip through, aiosmtplib's address check on our
    MAIL/RCPT path either reduces it to its mailbox or refuses it (for good: it would never change)."""
    handler, port = capturing
    pool = SmtpPool(SmtpSettings(port=port, timeout=5), 1)
    outgoing = OutgoingMail("noreply@qti-net.example", recipient, b"Subject: x\n\nInhalt\n", "<m@t>")
    try:
        try:
            await pool.send(outgoing)
        except PermanentMailError as exc:
            assert "example.de" not in str(exc)
        assert await pool.send(mail(1, b"danach\n"))  # the pool goes on working
    finally:
        await pool.close()
    rcpts = [r for _, rs, _ in handler.received for r in rs]
    assert rcpts[-1] == "p1@example.de"
    assert all(r.endswith("@example.de") and " " not in r and ">" not in r for r in rcpts)
    assert len(rcpts) <= 2
