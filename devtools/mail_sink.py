"""The built-in mail sink of ``make run``: an SMTP server that stores every message as ``.eml``
plus a small read-only web page ("Posteingang (Testpostfach)") to look at them.

    python -m devtools.mail_sink --smtp-port 1025 --http-port 8025 --folder var/mail

Nothing is ever relayed. The HTTP side is a stdlib ``ThreadingHTTPServer`` in a background thread;
the SMTP side is an aiosmtpd ``Controller`` (its own thread and event loop).
"""

from __future__ import annotations

import argparse
import asyncio
import email
import email.policy
import html
import json
import os
import re
import signal
import tempfile
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote, unquote, urlsplit

from aiosmtpd.controller import Controller

from services.notification.render import clean_line, format_short_date, format_time

_NAME_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,200}\.eml$")


# --------------------------------------------------------------------------------------------------
# Storage
# --------------------------------------------------------------------------------------------------


def store_message(folder: Path, content: bytes, received_at: datetime | None = None) -> Path:
    """Write ``content`` atomically (temp file + rename) as a new ``.eml`` in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    stamp = (received_at or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S%fZ")
    target = folder / f"{stamp}-{uuid.uuid4().hex[:12]}.eml"
    fd, tmp_name = tempfile.mkstemp(prefix=".incoming-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return target


@dataclass(frozen=True, slots=True)
class StoredMail:
    name: str
    received_at: datetime
    sender: str
    recipient: str
    subject: str
    has_calendar: bool


def _parse(path: Path) -> EmailMessage:
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def _header(message: EmailMessage, name: str) -> str:
    try:
        return clean_line(message.get(name, ""), 300)
    except Exception:  # a malformed header must not break the listing
        return ""


def _calendar_part(message: EmailMessage) -> EmailMessage | None:
    for part in message.walk():
        if part.get_content_type() == "text/calendar":
            assert isinstance(part, EmailMessage)
            return part
    return None


def list_mails(folder: Path) -> list[StoredMail]:
    """The stored messages, newest first."""
    if not folder.is_dir():
        return []
    result: list[StoredMail] = []
    for path in folder.iterdir():
        if not _NAME_RE.match(path.name) or not path.is_file():
            continue
        try:
            message = _parse(path)
        except OSError:
            continue
        # The time the sink received it (not the sender's Date header, which may be anything).
        received = datetime.fromtimestamp(path.stat().st_mtime, UTC)
        result.append(
            StoredMail(
                name=path.name,
                received_at=received,
                sender=_header(message, "From"),
                recipient=_header(message, "To"),
                subject=_header(message, "Subject") or "(ohne Betreff)",
                has_calendar=_calendar_part(message) is not None,
            )
        )
    result.sort(key=lambda m: (m.received_at, m.name), reverse=True)
    return result


def _text_body(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain", "html"))
    if part is None:
        return ""
    try:
        content = part.get_content()
    except (LookupError, ValueError):
        return ""
    return content if isinstance(content, str) else ""


# --------------------------------------------------------------------------------------------------
# SMTP
# --------------------------------------------------------------------------------------------------


class StoringHandler:
    """aiosmtpd handler: every accepted message becomes one ``.eml`` file."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        content = envelope.original_content or envelope.content
        if isinstance(content, str):
            content = content.encode("utf-8", "surrogateescape")
        await asyncio.to_thread(store_message, self.folder, content)
        return "250 Message accepted for delivery"


# --------------------------------------------------------------------------------------------------
# HTTP (read-only)
# --------------------------------------------------------------------------------------------------

_STYLE: Final = (
    "body{font-family:Arial,Helvetica,sans-serif;margin:2em;color:#1f2933}"
    "table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:6px 10px;"
    "border-bottom:1px solid #d5dde5;vertical-align:top}th{background:#f3f5f7}"
    "pre{white-space:pre-wrap;background:#f3f5f7;padding:1em;border-radius:4px}"
)


def _page(title: str, body: str) -> bytes:
    return (
        '<!DOCTYPE html>\n<html lang="de"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body>{body}</body></html>\n"
    ).encode()


def _listing_page(mails: list[StoredMail]) -> bytes:
    rows = []
    for mail in mails:
        link = quote(mail.name)
        when = f"{format_short_date(mail.received_at)}, {format_time(mail.received_at)} Uhr"
        ics = f' · <a href="/mail/{link}/termine.ics">.ics</a>' if mail.has_calendar else ""
        rows.append(
            f"<tr><td>{html.escape(when)}</td><td>{html.escape(mail.recipient)}</td>"
            f'<td><a href="/mail/{link}">{html.escape(mail.subject)}</a></td>'
            f'<td><a href="/mail/{link}/raw">.eml</a>{ics}</td></tr>'
        )
    table = (
        "<table><thead><tr><th>Datum</th><th>Empfänger</th><th>Betreff</th><th>Download</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
        if rows
        else "<p>Es sind noch keine E-Mails eingegangen.</p>"
    )
    count = f"{len(mails)} E-Mail" + ("" if len(mails) == 1 else "s")
    body = (
        "<h1>Posteingang (Testpostfach)</h1>"
        f"<p>{count}. Hier landen alle E-Mails, die lokal versendet werden; nichts wird weitergeleitet.</p>"
        f"{table}"
    )
    return _page("Posteingang (Testpostfach)", body)


def _detail_page(name: str, message: EmailMessage) -> bytes:
    link = quote(name)
    headers = "".join(
        f"<tr><th>{label}</th><td>{html.escape(_header(message, key))}</td></tr>"
        for label, key in (("Von", "From"), ("An", "To"), ("Betreff", "Subject"), ("Datum", "Date"))
    )
    ics = (
        f' · <a href="/mail/{link}/termine.ics">Kalendereintrag (.ics)</a>'
        if _calendar_part(message) is not None
        else ""
    )
    body = (
        '<p><a href="/">← Zurück zum Posteingang</a></p>'
        f"<h1>{html.escape(_header(message, 'Subject') or '(ohne Betreff)')}</h1>"
        f"<table>{headers}</table>"
        f'<p><a href="/mail/{link}/raw">Original herunterladen (.eml)</a>{ics}</p>'
        f"<pre>{html.escape(_text_body(message))}</pre>"
    )
    return _page(_header(message, "Subject") or "E-Mail", body)


class MailboxRequestHandler(BaseHTTPRequestHandler):
    """The read-only mailbox pages; `folder` is set per sink (`_make_request_handler`)."""

    server_version = "qti-mail-sink/1"
    folder: Path

    def log_message(self, format: str, *args: Any) -> None:
        return  # keep the console of `make run` quiet

    def _send(self, status: int, body: bytes, content_type: str, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _not_found(self) -> None:
        self._send(
            HTTPStatus.NOT_FOUND,
            _page("Nicht gefunden", "<h1>Nicht gefunden</h1><p><a href='/'>Zum Posteingang</a></p>"),
            "text/html; charset=utf-8",
        )

    def _mail_path(self, name: str) -> Path | None:
        if not _NAME_RE.match(name):
            return None
        path = self.folder / name
        return path if path.is_file() else None

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        parts = [unquote(p) for p in urlsplit(self.path).path.split("/") if p]
        if not parts:
            self._send(HTTPStatus.OK, _listing_page(list_mails(self.folder)), "text/html; charset=utf-8")
        elif parts == ["api", "mails"]:
            self._send_listing_json()
        elif parts[0] == "mail" and len(parts) in (2, 3) and (path := self._mail_path(parts[1])) is not None:
            self._send_mail(parts[1], path, parts[2] if len(parts) == 3 else "")
        else:
            self._not_found()

    def _send_listing_json(self) -> None:
        data = [
            {
                "name": m.name,
                "received_at": m.received_at.isoformat(),
                "from": m.sender,
                "to": m.recipient,
                "subject": m.subject,
                "has_calendar": m.has_calendar,
            }
            for m in list_mails(self.folder)
        ]
        self._send(HTTPStatus.OK, json.dumps(data, ensure_ascii=False).encode(), "application/json")

    def _send_mail(self, name: str, path: Path, view: str) -> None:
        """One mail: its page (no view), the raw message (`raw`) or its calendar (`termine.ics`)."""
        if view == "":
            self._send(HTTPStatus.OK, _detail_page(name, _parse(path)), "text/html; charset=utf-8")
        elif view == "raw":
            disposition = {"Content-Disposition": f'attachment; filename="{name}"'}
            self._send(HTTPStatus.OK, path.read_bytes(), "message/rfc822", disposition)
        elif view == "termine.ics":
            part = _calendar_part(_parse(path))
            payload = part.get_payload(decode=True) if part is not None else None
            if not isinstance(payload, bytes):
                self._not_found()
                return
            disposition = {"Content-Disposition": 'attachment; filename="termine.ics"'}
            self._send(HTTPStatus.OK, payload, "text/calendar; charset=utf-8", disposition)
        else:
            self._not_found()


def _make_request_handler(folder: Path) -> type[BaseHTTPRequestHandler]:
    return type("FolderMailboxRequestHandler", (MailboxRequestHandler,), {"folder": folder})


# --------------------------------------------------------------------------------------------------
# The sink
# --------------------------------------------------------------------------------------------------


class MailSink:
    """SMTP server + read-only HTTP mailbox. ``start()``/``stop()`` or use as a context manager."""

    def __init__(
        self,
        folder: Path | str,
        *,
        smtp_host: str = "127.0.0.1",
        smtp_port: int = 1025,
        http_host: str = "127.0.0.1",
        http_port: int | None = 8025,
    ) -> None:
        self.folder = Path(folder)
        self.smtp_host = smtp_host
        self.smtp_port = smtp_port
        self.http_host = http_host
        self.http_port = http_port
        self._controller: Controller | None = None
        self._http: ThreadingHTTPServer | None = None
        self._http_thread: threading.Thread | None = None

    @property
    def http_url(self) -> str:
        if self._http is None:
            raise RuntimeError("HTTP server not running")
        return f"http://{self.http_host}:{self._http.server_address[1]}/"

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        controller = Controller(
            StoringHandler(self.folder),
            hostname=self.smtp_host,
            port=self.smtp_port,
            enable_SMTPUTF8=True,
            data_size_limit=25 * 1024 * 1024,
        )
        controller.start()
        self._controller = controller
        if self.http_port is not None:
            try:
                self._http = ThreadingHTTPServer(
                    (self.http_host, self.http_port), _make_request_handler(self.folder)
                )
            except BaseException:
                self.stop()
                raise
            self._http.daemon_threads = True
            self._http_thread = threading.Thread(
                target=self._http.serve_forever, name="mail-sink-http", daemon=True
            )
            self._http_thread.start()

    def stop(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        if self._http_thread is not None:
            self._http_thread.join(timeout=5)
            self._http_thread = None
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> MailSink:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Local mail sink with a read-only web mailbox.")
    parser.add_argument("--smtp-host", default="127.0.0.1")
    parser.add_argument("--smtp-port", type=int, default=1025)
    parser.add_argument("--http-host", default="127.0.0.1")
    parser.add_argument("--http-port", type=int, default=8025)
    parser.add_argument("--folder", type=Path, default=Path("var/mail"))
    args = parser.parse_args(argv)

    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())

    sink = MailSink(
        args.folder,
        smtp_host=args.smtp_host,
        smtp_port=args.smtp_port,
        http_host=args.http_host,
        http_port=args.http_port,
    )
    sink.start()
    print(
        f"Mail sink: SMTP {args.smtp_host}:{args.smtp_port}, Posteingang {sink.http_url}, "
        f"folder {args.folder}",
        flush=True,
    )
    try:
        while not stop.wait(0.5):
            pass
    finally:
        sink.stop()


if __name__ == "__main__":
    main()
