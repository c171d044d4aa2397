"""Building MIME messages from rendered mails and sending them over SMTP with aiosmtplib.

Errors are classified so the caller can decide whether to retry:
:class:`TransientMailError` (connection problems, timeouts, 4xx replies) may succeed later,
:class:`PermanentMailError` (5xx replies, invalid recipients, misconfiguration) will not.
Error texts never contain e-mail addresses in clear (they end up in ``notification.failed``).
"""

from __future__ import annotations

import asyncio
import binascii
import functools
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, formataddr
from typing import Final, Literal

import aiosmtplib

from services.notification.render import RenderedMail, clean_line

ICS_FILENAME: Final = "termine.ics"
# Headers the builders write themselves; an extra header may not repeat or replace one.
_OWN_HEADERS: Final = frozenset(
    {"from", "to", "subject", "date", "message-id", "content-type", "mime-version", "reply-to"}
)
_EMAIL_RE: Final = re.compile(r"[^@\s<>\"(),;:\\\[\]]+@[^@\s<>\"(),;:\\\[\]]+\.[^@\s<>\"(),;:\\\[\]]+")
_MSGID_RE: Final = re.compile(r"^<?([!-;=?-~]+@[!-;=?-~]+)>?$")  # printable ASCII, no "<" / ">"


class MailError(Exception):
    """Base class of the mail errors; ``code`` is the SMTP reply code if there was one."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class TransientMailError(MailError):
    """Delivery failed for now (connection refused, timeout, 4xx); retrying later may succeed."""


class PermanentMailError(MailError):
    """Delivery can never succeed as is (5xx, invalid recipient, bad configuration)."""


@dataclass(frozen=True, slots=True)
class MailAddress:
    email: str
    name: str = ""


@dataclass(frozen=True, slots=True)
class SmtpSettings:
    host: str = "127.0.0.1"
    port: int = 1025
    starttls: bool = False
    use_tls: bool = False
    username: str | None = None
    password: str | None = None
    timeout: float = 30.0
    validate_certs: bool = True


def redact(text: str) -> str:
    """Replace e-mail addresses in ``text`` (e.g. an SMTP reply) by a placeholder."""
    return _EMAIL_RE.sub("<E-Mail-Adresse>", text)


def _header_address(address: MailAddress) -> Address:
    """An RFC 5322 address whose display name is header-safe (no CR/LF, length-limited)."""
    email = address.email.strip()
    if not email or any(ch.isspace() or ord(ch) < 32 or ch in '<>"(),;:\\[]' for ch in email):
        raise PermanentMailError("invalid e-mail address")
    local, sep, domain = email.rpartition("@")
    if not sep or not local or not domain or "." not in domain.strip(".") or domain.startswith("."):
        raise PermanentMailError("invalid e-mail address")
    try:
        return Address(display_name=clean_line(address.name, 100), username=local, domain=domain)
    except (ValueError, IndexError) as exc:  # pragma: no cover - defensive
        raise PermanentMailError("invalid e-mail address") from exc


def normalise_message_id(message_id: str) -> str:
    """``<id@domain>``; rejects anything that could break out of the header."""
    match = _MSGID_RE.match(message_id.strip())
    if match is None:
        raise ValueError("invalid Message-ID")
    return f"<{match.group(1)}>"


def build_message(
    *,
    rendered: RenderedMail,
    sender: MailAddress,
    recipient: MailAddress,
    message_id: str,
    ics: bytes | None = None,
    ics_method: Literal["REQUEST", "CANCEL"] = "REQUEST",
    reply_to: MailAddress | None = None,
    date: datetime | None = None,
    pdf: tuple[str, bytes] | None = None,
    extra_headers: Sequence[tuple[str, str]] = (),
) -> EmailMessage:
    """A multipart message: text + HTML alternatives and, if given, the ``.ics`` attachment.

    ``message_id`` should be deterministic (e.g. derived from the event id and the recipient) so that a
    redelivered event produces the very same message.
    """
    msg = EmailMessage()
    msg["From"] = _header_address(sender)
    msg["To"] = _header_address(recipient)
    if reply_to is not None:
        msg["Reply-To"] = _header_address(reply_to)
    msg["Subject"] = clean_line(rendered.subject, 200)
    msg["Date"] = format_datetime((date or datetime.now(UTC)).astimezone(UTC))
    msg["Message-ID"] = normalise_message_id(message_id)
    msg["Content-Language"] = "de"
    msg["Auto-Submitted"] = "auto-generated"
    for name, value in extra_headers:
        msg[name] = _safe_extra(name, value)
    msg.set_content(rendered.text, subtype="plain", charset="utf-8")
    msg.add_alternative(rendered.html, subtype="html", charset="utf-8")
    if ics is not None:
        msg.make_mixed()
        msg.add_attachment(
            ics,
            maintype="text",
            subtype="calendar",
            filename=ICS_FILENAME,
            params={"method": ics_method, "charset": "utf-8"},
        )
    if pdf is not None:
        msg.make_mixed()
        msg.add_attachment(pdf[1], maintype="application", subtype="pdf", filename=pdf[0])
    return msg


@dataclass(frozen=True, slots=True)
class OutgoingMail:
    """A message serialised ahead of time: envelope addresses and the RFC 5322 bytes (7-bit, LF)."""

    sender: str
    recipient: str
    data: bytes
    message_id: str


def _header(name: str, value: str) -> bytes:
    """One header field; folding inside ``value`` must be "\n" + whitespace, nothing else breaks a line."""
    if "\r" in value or any(not rest[:1].isspace() or rest[:1] in "\r\n" for rest in value.split("\n")[1:]):
        raise ValueError(f"unsafe {name} header")
    return f"{name}: {value}\n".encode("ascii")


def _safe_extra(name: str, value: str) -> str:
    """An extra header (e.g. `List-Unsubscribe`): a known name, printable ASCII on one line, short."""
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9-]{0,60}", name) or name.lower() in _OWN_HEADERS:
        raise ValueError(f"unsupported extra header {name!r}")
    if len(value) > 900 or not all(" " <= ch <= "~" for ch in value):
        raise ValueError(f"unsafe {name} header")
    return value


def _encoded_words(text: str) -> str:
    """RFC 2047 base64 encoded-words (UTF-8), at most 75 characters each, joined by folding whitespace.

    Chunks end on character boundaries; decoders join adjacent encoded-words without the whitespace.
    """
    raw = text.encode("utf-8")
    words = []
    start = 0
    while start < len(raw):
        end = min(start + 45, len(raw))
        while end < len(raw) and end > start + 1 and (raw[end] & 0xC0) == 0x80:
            end -= 1  # never split a UTF-8 sequence
        words.append(f"=?utf-8?b?{binascii.b2a_base64(raw[start:end], newline=False).decode('ascii')}?=")
        start = end
    return "\n ".join(words)


@functools.lru_cache(maxsize=64)
def _address_field(display_name: str, addr_spec: str) -> str:
    """RFC 5322 address (RFC 2047 encoded display name); the address itself must be ASCII."""
    if display_name.isascii():
        return formataddr((display_name, addr_spec))
    return f"{_encoded_words(display_name)} <{addr_spec}>"


def _unstructured(name: str, text: str) -> str:
    if text.isascii() and len(text) + len(name) + 2 <= 78:
        return text
    return _encoded_words(text)


def _text_part(content_type: str, text: str) -> bytes:
    body = binascii.b2a_qp(text.encode("utf-8"), quotetabs=False, istext=True, header=False)
    if not body.endswith(b"\n"):
        body += b"\n"
    return (
        f'Content-Type: {content_type}; charset="utf-8"\nContent-Transfer-Encoding: quoted-printable\n\n'
    ).encode("ascii") + body


def _ics_part(ics: bytes, method: str) -> bytes:
    """The attachment part (base64, a few microseconds; the costly `.ics` itself is cached by the sender)."""
    encoded = binascii.b2a_base64(ics, newline=False)
    lines = b"\n".join(encoded[i : i + 76] for i in range(0, len(encoded), 76))
    head = (
        f'Content-Type: text/calendar; method="{method}"; charset="utf-8"\n'
        "Content-Transfer-Encoding: base64\n"
        f'Content-Disposition: attachment; filename="{ICS_FILENAME}"\n\n'
    )
    return head.encode("ascii") + lines + b"\n"


def _pdf_part(filename: str, pdf: bytes) -> bytes:
    """A PDF attachment (base64); `filename` must be ASCII without quotes."""
    if not filename.isascii() or '"' in filename or "\n" in filename:
        raise ValueError("unsafe attachment file name")
    encoded = binascii.b2a_base64(pdf, newline=False)
    lines = b"\n".join(encoded[i : i + 76] for i in range(0, len(encoded), 76))
    head = (
        "Content-Type: application/pdf\nContent-Transfer-Encoding: base64\n"
        f'Content-Disposition: attachment; filename="{filename}"\n\n'
    )
    return head.encode("ascii") + lines + b"\n"


def _multipart(subtype: str, parts: list[bytes]) -> tuple[str, bytes]:
    # "=_" cannot occur in quoted-printable or base64 text, so the boundary never collides with content.
    boundary = f"=_qti_{secrets.token_hex(12)}"
    delimiter = f"--{boundary}\n".encode("ascii")
    body = b"".join(delimiter + part + b"\n" for part in parts) + f"--{boundary}--\n".encode("ascii")
    return f'multipart/{subtype}; boundary="{boundary}"', body


def _content(
    rendered: RenderedMail,
    ics: bytes | None,
    ics_method: Literal["REQUEST", "CANCEL"],
    pdf: tuple[str, bytes] | None = None,
) -> tuple[str, bytes]:
    """Content-Type and body: text and HTML as alternatives, inside multipart/mixed with the .ics and
    the PDF (a certificate)."""
    alternative_type, alternative = _multipart(
        "alternative",
        [_text_part("text/plain", rendered.text), _text_part("text/html", rendered.html)],
    )
    attachments = [_ics_part(ics, ics_method)] if ics is not None else []
    if pdf is not None:
        attachments.append(_pdf_part(*pdf))
    if not attachments:
        return alternative_type, alternative
    return _multipart(
        "mixed", [f"Content-Type: {alternative_type}\n\n".encode("ascii") + alternative, *attachments]
    )


def build_outgoing(
    *,
    rendered: RenderedMail,
    sender: MailAddress,
    recipient: MailAddress,
    message_id: str,
    ics: bytes | None = None,
    ics_method: Literal["REQUEST", "CANCEL"] = "REQUEST",
    date: datetime | None = None,
    pdf: tuple[str, bytes] | None = None,
    extra_headers: Sequence[tuple[str, str]] = (),
) -> OutgoingMail | EmailMessage:
    """The same message as :func:`build_message`, serialised directly: the sender's one mail path.

    Why hand-written, measured (`python -m bench.mail_build`, both in one sitting, rounds alternating, on
    the two shared cores, 2026-12-07, two runs): building an `EmailMessage` and flattening it as
    aiosmtplib does costs 34-40 times as much as this: 9.9-11.5 ms against 0.29 ms per confirmation mail
    with .ics (the Jinja2 rendering both share: 1.1-1.2 ms). Nearly all of it is the `email` package
    parsing every header when it is set and refolding it when flattened. At 10 ms a mail one core sends
    about 100 mails/s, a third of notification's goal of 300 mails/s (docs/performance.md), and end to
    end the CPU per registration (3.7-4.7 ms, all services) would more than triple.

    Text and HTML are quoted-printable, the ``.ics`` base64, headers RFC 2047-encoded ASCII; the tests
    check that it parses to the same message as :func:`build_message`. Non-ASCII addresses (SMTPUTF8)
    take the :func:`build_message` path.
    """
    from_address = _header_address(sender)
    to_address = _header_address(recipient)
    if not (from_address.addr_spec.isascii() and to_address.addr_spec.isascii()):
        return build_message(
            rendered=rendered, sender=sender, recipient=recipient, message_id=message_id, ics=ics,
            ics_method=ics_method, date=date, pdf=pdf, extra_headers=extra_headers,
        )  # fmt: skip
    if ics_method not in ("REQUEST", "CANCEL"):
        raise ValueError(f"unsupported iTIP method {ics_method!r}")
    msgid = normalise_message_id(message_id)
    content_type, content = _content(rendered, ics, ics_method, pdf)
    head = b"".join(
        (
            _header("From", _address_field(from_address.display_name, from_address.addr_spec)),
            _header("To", _address_field(to_address.display_name, to_address.addr_spec)),
            _header("Subject", _unstructured("Subject", clean_line(rendered.subject, 200))),
            _header("Date", format_datetime((date or datetime.now(UTC)).astimezone(UTC))),
            _header("Message-ID", msgid),
            b"Content-Language: de\nAuto-Submitted: auto-generated\nMIME-Version: 1.0\n",
            *(_header(name, _safe_extra(name, value)) for name, value in extra_headers),
            _header("Content-Type", content_type),
        )
    )
    return OutgoingMail(
        sender=from_address.addr_spec,
        recipient=to_address.addr_spec,
        data=head + b"\n" + content,
        message_id=msgid,
    )


def _classify_code(code: int, text: str) -> MailError:
    detail = f"SMTP {code}: {redact(text)[:300]}"
    if 400 <= code < 500:
        return TransientMailError(detail, code)
    return PermanentMailError(detail, code)


def _classify(exc: BaseException) -> MailError:
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = [e.code for e in exc.recipients]
        message = "; ".join(f"{e.code} {redact(e.message)}" for e in exc.recipients)[:300]
        if codes and all(400 <= c < 500 for c in codes):
            return TransientMailError(f"recipient refused: {message}", codes[0])
        return PermanentMailError(f"recipient refused: {message}", codes[0] if codes else None)
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        return PermanentMailError(f"SMTP authentication failed ({exc.code})", exc.code)
    if isinstance(exc, aiosmtplib.SMTPResponseException) and exc.code >= 400:
        return _classify_code(exc.code, exc.message)
    if isinstance(exc, aiosmtplib.SMTPNotSupported):
        return PermanentMailError(f"SMTP server does not support a required feature: {redact(str(exc))}")
    if isinstance(exc, aiosmtplib.SMTPTimeoutError | asyncio.TimeoutError | TimeoutError):
        return TransientMailError(f"SMTP timeout: {type(exc).__name__}")
    if isinstance(exc, aiosmtplib.SMTPConnectError | aiosmtplib.SMTPServerDisconnected | OSError):
        return TransientMailError(f"SMTP connection failed: {type(exc).__name__}: {redact(str(exc))[:200]}")
    # Anything else from the SMTP conversation: let the caller retry a bounded number of times.
    return TransientMailError(f"SMTP error: {type(exc).__name__}: {redact(str(exc))[:200]}")


async def send(message: EmailMessage, settings: SmtpSettings) -> str:
    """Deliver ``message`` to its ``To`` recipients; returns the server's final reply text.

    Raises :class:`TransientMailError` or :class:`PermanentMailError`.
    """
    try:
        errors, reply = await aiosmtplib.send(
            message,
            hostname=settings.host,
            port=settings.port,
            start_tls=settings.starttls,
            use_tls=settings.use_tls,
            username=settings.username,
            password=settings.password,
            timeout=settings.timeout,
            validate_certs=settings.validate_certs,
        )
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        raise _classify(exc) from exc
    if errors:  # some (not all) recipients refused
        first = next(iter(errors.values()))
        raise _classify_code(first.code, first.message)
    return reply


def _data_payload(data: bytes) -> bytes:
    """DATA content of a message serialised with LF line ends: CRLF, dot-stuffed, terminated.

    aiosmtplib's `sendmail` does the same with regular expressions, three passes over the message (one
    more to compute SIZE): ~0.5 ms per 7.5 kB confirmation mail, two thirds of its CPU per mail here;
    `bytes.replace` takes ~0.02 ms.
    """
    payload = data.replace(b"\n", b"\r\n")
    if payload.startswith(b"."):
        payload = b"." + payload
    payload = payload.replace(b"\r\n.", b"\r\n..")
    if not payload.endswith(b"\r\n"):
        payload += b"\r\n"
    return payload + b".\r\n"


async def _transact(smtp: aiosmtplib.SMTP, mail: OutgoingMail, timeout: float) -> str:
    """One mail transaction (MAIL, RCPT, DATA) on a connection only this caller uses; the server's reply.

    The envelope commands go through aiosmtplib (address checks, no control characters), the content
    through the protocol's own write and read, without aiosmtplib's regex passes (`_data_payload`). A
    message with a CR in it (never built by `build_outgoing`) takes aiosmtplib's path.
    """
    if b"\r" in mail.data:
        _, reply = await smtp.sendmail(mail.sender, [mail.recipient], mail.data)
        return reply
    await smtp.mail(mail.sender, timeout=timeout)
    await smtp.rcpt(mail.recipient, timeout=timeout)
    start = await smtp.execute_command(b"DATA", timeout=timeout)
    if start.code != aiosmtplib.SMTPStatus.start_input:
        raise aiosmtplib.SMTPDataError(start.code, start.message)
    protocol = smtp.protocol
    if protocol is None:
        raise aiosmtplib.SMTPServerDisconnected("Connection lost")
    protocol.write(_data_payload(mail.data))
    response = await protocol.read_response(timeout=timeout)
    if response.code != aiosmtplib.SMTPStatus.completed:
        raise aiosmtplib.SMTPDataError(response.code, response.message)
    return response.message


class SmtpPool:
    """Reusable SMTP connections, at most ``size`` at a time, for sending many mails in parallel.

    A connection that saw any error is closed, never reused. An idle connection is checked with NOOP
    before reuse, so a server-side idle timeout does not turn into a failed delivery.
    """

    def __init__(
        self,
        settings: SmtpSettings,
        size: int,
        *,
        local_hostname: str | None = None,
        idle_check_seconds: float = 5.0,
    ) -> None:
        self._settings = settings
        self._local_hostname = local_hostname
        self._idle_check = idle_check_seconds
        self._slots = asyncio.Semaphore(size)
        self._idle: list[tuple[aiosmtplib.SMTP, float]] = []

    async def _connect(self) -> aiosmtplib.SMTP:
        s = self._settings
        smtp = aiosmtplib.SMTP(
            hostname=s.host,
            port=s.port,
            username=s.username,
            password=s.password,
            use_tls=s.use_tls,
            start_tls=s.starttls,
            timeout=s.timeout,
            validate_certs=s.validate_certs,
            local_hostname=self._local_hostname,
        )
        try:
            await smtp.connect()
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise _classify(exc) from exc
        return smtp

    async def _take(self) -> aiosmtplib.SMTP:
        loop = asyncio.get_running_loop()
        while self._idle:
            smtp, last_used = self._idle.pop()
            if not smtp.is_connected:
                continue
            if loop.time() - last_used > self._idle_check:
                try:
                    await smtp.noop()
                except (aiosmtplib.SMTPException, OSError, TimeoutError):
                    smtp.close()
                    continue
            return smtp
        return await self._connect()

    async def send(self, message: EmailMessage | OutgoingMail) -> str:
        """Deliver ``message``; raises :class:`TransientMailError` or :class:`PermanentMailError`."""
        async with self._slots:
            smtp = await self._take()
            try:
                errors: dict[str, aiosmtplib.SMTPResponse] = {}
                if isinstance(message, OutgoingMail):
                    reply = await _transact(smtp, message, self._settings.timeout)
                else:
                    errors, reply = await smtp.send_message(message)
            except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
                smtp.close()
                raise _classify(exc) from exc
            except ValueError as exc:  # aiosmtplib: an address that cannot go on an SMTP command line
                smtp.close()
                raise PermanentMailError("address not permitted in an SMTP command") from exc
            except BaseException:
                smtp.close()
                raise
            if errors:  # some (not all) recipients refused; we only ever send to one
                smtp.close()
                first = next(iter(errors.values()))
                raise _classify_code(first.code, first.message)
            self._idle.append((smtp, asyncio.get_running_loop().time()))
            return reply

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for smtp, _ in idle:
            try:
                await asyncio.wait_for(smtp.quit(), timeout=2)
            except Exception:
                smtp.close()
