"""The sender job: takes due rows of the delivery log, renders, sends over SMTP, records the outcome.

Exactly once, as far as the log can know:

* A row is claimed with ``FOR UPDATE SKIP LOCKED`` and marked ``sending`` with a lease (a random token
  and ``next_attempt_at`` = end of the lease) in a short transaction. Replicas never claim the same row
  while the lease holds; a sender that dies leaves the row to be claimed again when the lease ends.
* After the SMTP server accepted the message, one transaction marks the row ``sent`` (only if this
  sender still holds the lease) and writes ``notification.sent`` to the outbox.
* The message has a deterministic ``Message-ID`` per (trigger event, template, registration).

**The one remaining duplicate window**: if the process dies (or the database is unreachable for longer
than the lease) *after* the SMTP server accepted a message but *before* the ``sent`` mark commits, the
row is claimed again when its lease ends and the mail is sent a second time, with the same
Message-ID (which lets mail clients and some servers drop the copy). SMTP has no way to ask the server
"did you already take this?", so this window cannot be closed from our side; it is kept short (one
UPDATE, retried on transient database errors) and a clean shutdown waits for mails in flight.

Failures never block other mails: a transient error (connection refused, timeout, 4xx) puts the row
back to ``pending`` with ``next_attempt_at`` moved by exponential back-off (scheduled rows, no sleeping
consumer); after ``max_attempts`` it fails for good. A permanent error (5xx, invalid address, a mail
that cannot be rendered) fails at once. Each final state leaves as ``notification.sent`` or
``notification.failed`` through the outbox, with a pseudonym instead of the address.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any, Final, Literal

import asyncpg
from jinja2 import TemplateError

from qti_contracts import (
    NotificationFailed,
    NotificationSent,
    OfferingState,
    RoutingKey,
    Session,
    make_event,
)
from qti_runtime import links
from qti_runtime.consumer import is_transient
from qti_runtime.db import Database
from qti_runtime.logging import get_logger
from qti_runtime.unit_of_work import unit_of_work
from services.notification import alert_mail, alerts, domain, store
from services.notification.alternatives import PARAM as ALTERNATIVES
from services.notification.alternatives import alternative_infos
from services.notification.calendar import build_ics
from services.notification.certificate_mail import (
    EXTRA_TEMPLATES,
    MailParts,
    certificate_mail,
    feedback_mail,
    with_pdf,
)
from services.notification.deliveries import PRIVACY_NOTICE
from services.notification.mail import (
    MailAddress,
    OutgoingMail,
    PermanentMailError,
    SmtpPool,
    SmtpSettings,
    TransientMailError,
    build_outgoing,
    redact,
)
from services.notification.mailcap import UNSOLICITED_TEMPLATES, MailCap
from services.notification.render import (
    MailContext,
    MailContextError,
    NodeInfo,
    OfferingInfo,
    Recipient,
    SessionInfo,
    clean_paragraph,
    display_name,
    render_mail,
)
from services.notification.settings import NotificationSettings
from services.notification.store import DeliveryRow, OfferingRow

log = get_logger(__name__)

SOURCE: Final = "/notification"
ICS_CACHE_SIZE: Final = 256
MARK_BATCH: Final = 200  # `sent` marks per transaction


class CatalogueDataMissing(Exception):
    """The offering or node of a mail is not (yet) in the replica: try again later."""


@dataclass(frozen=True, slots=True)
class Skip:
    reason: str


@dataclass(frozen=True, slots=True)
class Replicas:
    offerings: Mapping[str, OfferingRow]
    nodes: Mapping[str, asyncpg.Record]
    statuses: Mapping[str, str]
    # Request id per registration (kept with the recipient from the outcome event): its personal token
    # is derived from it, for the link in the mail.
    request_ids: Mapping[str, str] = field(default_factory=dict)


def smtp_settings(settings: NotificationSettings) -> SmtpSettings:
    return SmtpSettings(
        host=settings.smtp_host,
        port=settings.smtp_port,
        starttls=settings.smtp_starttls,
        use_tls=settings.smtp_use_tls,
        username=settings.smtp_username,
        password=settings.smtp_password.get_secret_value() if settings.smtp_password else None,
        timeout=settings.smtp_timeout,
        validate_certs=settings.smtp_validate_certs,
    )


def _offering_info(state: OfferingState) -> OfferingInfo:
    return OfferingInfo(
        offering_id=state.offering_id,
        title=state.title,
        kind=state.kind.value,
        description=state.description,
        fee_eur=state.fee_eur,
        sessions=tuple(_session_info(s) for s in state.sessions),
        registration_deadline=state.registration_deadline,
    )


def _ics_method(template: str) -> Literal["REQUEST", "CANCEL"] | None:
    """Which calendar attachment a template's mail carries, if any."""
    if template in domain.ICS_REQUEST_TEMPLATES:
        return "REQUEST"
    if template in domain.ICS_CANCEL_TEMPLATES:
        return "CANCEL"
    return None


def _session_info(session: Session) -> SessionInfo:
    return SessionInfo(
        session_id=session.session_id,
        starts_at=session.starts_at,
        ends_at=session.ends_at,
        location=session.location,
        teaching_units=session.teaching_units,
    )


class Sender:
    """Runs as a runtime job (`ServiceRuntime.add_job`); one per replica."""

    def __init__(self, db: Database, settings: NotificationSettings, pool: SmtpPool | None = None) -> None:
        self.db = db
        self.settings = settings
        self.pool = pool or SmtpPool(
            smtp_settings(settings),
            settings.send_concurrency,
            local_hostname=settings.smtp_local_hostname,
        )
        self._sender_address = MailAddress(settings.mail_from_address, settings.mail_from_name)
        self._wake = asyncio.Event()
        self._in_flight: set[asyncio.Task[None]] = set()
        self._cap = MailCap(settings)
        self._ics_cache: dict[tuple[str, int, str, int, str, str], bytes] = {}
        # Accepted by SMTP, `sent` mark not committed yet: recorded together by one flusher task.
        self._unmarked: list[tuple[DeliveryRow, asyncio.Future[None]]] = []
        self._marker: asyncio.Task[None] | None = None
        self._pdf_lock = asyncio.Lock()

    # ----------------------------------------------------------------------------------- the loop

    async def run(self) -> None:
        concurrency = self.settings.send_concurrency
        threshold = max(1, min(self.settings.send_batch, concurrency // 4))
        async with self.db.pool.acquire() as listen_conn:
            await listen_conn.add_listener(store.WAKE_CHANNEL, self._on_notify)
            try:
                while True:
                    free = concurrency - len(self._in_flight)
                    if free >= threshold or not self._in_flight:
                        self._wake.clear()
                        limit = min(free, self.settings.send_batch)
                        claimed = await self._claim_and_start(limit)
                        if claimed == limit and free - claimed >= threshold:
                            continue  # probably more due right now
                    await self._wait(room=concurrency - len(self._in_flight) >= threshold)
            finally:
                with contextlib.suppress(Exception):
                    await listen_conn.remove_listener(store.WAKE_CHANNEL, self._on_notify)
                await self._drain()

    def _on_notify(self, *_args: object) -> None:
        self._wake.set()

    async def _wait(self, *, room: bool) -> None:
        waiters: set[asyncio.Future[Any]] = set(self._in_flight)
        wake_task: asyncio.Task[Any] | None = None
        if room:
            wake_task = asyncio.create_task(self._wake.wait())
            waiters.add(wake_task)
        try:
            await asyncio.wait(
                waiters, timeout=self.settings.sender_poll_seconds, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            if wake_task is not None:
                wake_task.cancel()

    async def _drain(self) -> None:
        """On shutdown: let mails in flight finish (shortens the duplicate window), then close SMTP."""
        if self._in_flight:
            grace = min(self.settings.shutdown_grace_seconds, self.settings.send_timeout)
            _, pending = await asyncio.wait(set(self._in_flight), timeout=grace)
            for task in pending:
                task.cancel()
        if self._marker is not None and not self._marker.done():
            # `sent` marks of mails the server already took: losing them means duplicates.
            await asyncio.wait({self._marker}, timeout=self.settings.send_lease_seconds / 2)
        await self.pool.close()

    async def _claim_and_start(self, limit: int) -> int:
        async with self.db.pool.acquire() as conn:
            async with conn.transaction():
                rows = await store.claim_due(conn, limit, self.settings.send_lease_seconds)
            if not rows:
                return 0
            replicas = await self._load_replicas(conn, rows)
        for row in rows:
            task = asyncio.create_task(self._deliver(row, replicas), name=f"send:{row.notification_id}")
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)
        return len(rows)

    async def _load_replicas(self, conn: asyncpg.Connection, rows: list[DeliveryRow]) -> Replicas:
        offering_ids = sorted({o for r in rows for o in alert_mail.offering_ids(r)})
        offerings = await store.get_offerings(conn, offering_ids)
        node_ids = sorted({o.state.node_id for o in offerings.values() if o.state is not None})
        nodes = await store.get_nodes(conn, node_ids)
        reminder_regs = sorted(
            {r.registration_id for r in rows if r.template == "reminder" and r.registration_id}
        )
        statuses = await store.recipient_statuses(conn, reminder_regs) if reminder_regs else {}
        registrations = sorted({r.registration_id for r in rows if r.registration_id})
        request_ids = await store.recipient_request_ids(conn, registrations) if registrations else {}
        return Replicas(offerings, nodes, statuses, request_ids)

    # ----------------------------------------------------------------------------- one delivery

    async def _deliver(self, row: DeliveryRow, replicas: Replicas) -> None:
        try:
            await self._deliver_one(row, replicas)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug or the database gone: the lease brings the row back later
            log.error("delivery.crashed", notification_id=row.notification_id, error=repr(exc), exc_info=True)

    async def _deliver_one(self, row: DeliveryRow, replicas: Replicas) -> None:
        if row.template in UNSOLICITED_TEMPLATES:
            async with self.db.pool.acquire() as conn:
                suppressed = await self._cap.suppression(conn, row)
            if suppressed is not None:
                await self._finish_quietly(row, "skipped", suppressed)
                return
        try:
            prepared = await self._prepare(row, replicas)
        except CatalogueDataMissing as exc:
            await self._transient(row, f"Katalogdaten fehlen noch: {exc}")
            return
        except (MailContextError, TemplateError, PermanentMailError, ValueError) as exc:
            await self._fail(row, f"Nachricht nicht erstellbar: {type(exc).__name__}: {exc}", permanent=True)
            return
        if isinstance(prepared, Skip):
            await self._finish_quietly(row, "skipped", prepared.reason)
            return
        try:
            await asyncio.wait_for(self.pool.send(prepared), timeout=self.settings.send_timeout)
        except PermanentMailError as exc:
            await self._fail(row, str(exc), permanent=True)
            return
        except (TransientMailError, TimeoutError) as exc:
            await self._transient(row, str(exc) or type(exc).__name__)
            return
        await self._sent(row)

    async def _prepare(self, row: DeliveryRow, replicas: Replicas) -> OutgoingMail | EmailMessage | Skip:
        """`prepare`; certificates and feedback invitations in a worker thread, one at a time (a PDF takes
        WeasyPrint a good part of a second, which must not stall the event loop)."""
        if row.template not in EXTRA_TEMPLATES:
            return self.prepare(row, replicas)
        async with self._pdf_lock:
            return await asyncio.to_thread(self._prepare_extra, row, replicas)

    def _prepare_extra(self, row: DeliveryRow, replicas: Replicas) -> OutgoingMail | EmailMessage:
        """The certificate mail (PDF from the certificate frozen in the row) or the feedback invitation."""
        person = row.person
        recipient = MailAddress(person.email, display_name(person.given_name, person.family_name))
        if row.template == "certificate":
            snapshot = row.params["certificate"]
            node = NodeInfo(name=snapshot["node_name"], address=snapshot["node_address"])
            verify_url = links.certificate_link(self.settings.portal_url, snapshot["code"])
            rendered, pdf = certificate_mail(
                snapshot, self._parts(row, node), verify_url, resent=bool(row.params.get("resent"))
            )
            return with_pdf(rendered, self._sender_address, recipient, row.message_id, pdf)
        offering_row = replicas.offerings.get(row.offering_id) if row.offering_id else None
        state = offering_row.state if offering_row is not None else None
        node_record = replicas.nodes.get(state.node_id) if state is not None else None
        if state is None or node_record is None or row.registration_id is None:
            raise CatalogueDataMissing(f"Angebot {row.offering_id}")
        node = NodeInfo(name=node_record["name"], address=node_record["address"], host=node_record["host"])
        token = links.feedback_token(self.settings.link_secret, row.registration_id)
        link = links.feedback_link(self.settings.portal_url, token)
        rendered = feedback_mail(state.title, self._parts(row, node), link)
        return with_pdf(rendered, self._sender_address, recipient, row.message_id, None)

    def _parts(self, row: DeliveryRow, node: NodeInfo) -> MailParts:
        person = row.person
        return MailParts(
            recipient=Recipient(person.given_name, person.family_name, person.email, person.gender),
            node=node,
            network_name=self.settings.mail_from_name,
            network_email=self.settings.network_email,
            privacy_notice=bool(row.params.get(PRIVACY_NOTICE)),
        )

    def _prepare_alert(self, row: DeliveryRow, replicas: Replicas) -> OutgoingMail | EmailMessage | Skip:
        """An offer-alert or interest mail (alert_mail.py), with List-Unsubscribe where it belongs."""
        try:
            mail = alert_mail.render(row, replicas.offerings, replicas.nodes, self.settings)
        except alert_mail.OfferingMissing as exc:
            raise CatalogueDataMissing(f"Angebot {exc}") from exc
        if mail is None:
            return Skip("Angebot inzwischen abgesagt")
        return build_outgoing(
            rendered=mail.rendered,
            sender=self._sender_address,
            recipient=MailAddress(row.person.email),
            message_id=row.message_id,
            extra_headers=mail.headers,
        )

    def _personal_link(self, row: DeliveryRow, replicas: Replicas) -> str | None:
        """The participant's link `{QTI_PORTAL_URL}/meine-anmeldung/{token}`; registration derives the
        same token from the same request id with the same key, so it travels nowhere but in this mail."""
        request_id = replicas.request_ids.get(row.registration_id) if row.registration_id else None
        if request_id is None or row.template == "rejected":
            return None
        token = links.personal_token(self.settings.link_secret, request_id)
        return links.personal_link(self.settings.portal_url, token)

    def prepare(self, row: DeliveryRow, replicas: Replicas) -> OutgoingMail | EmailMessage | Skip:
        """Render the mail of `row` from the replicas (or tell why it must not go out any more)."""
        if row.template in alerts.ALERT_TEMPLATES:
            return self._prepare_alert(row, replicas)
        offering_row = replicas.offerings.get(row.offering_id) if row.offering_id else None
        state = offering_row.state if offering_row is not None else None
        if row.template == "reminder":
            skip = self._reminder_obsolete(row, offering_row, replicas)
            if skip is not None:
                return skip
        node_record = replicas.nodes.get(state.node_id) if state is not None else None
        if row.template != "rejected":
            if state is None:
                raise CatalogueDataMissing(f"Angebot {row.offering_id}")
            if node_record is None:
                raise CatalogueDataMissing(f"Knoten {state.node_id}")
        offering = _offering_info(state) if state is not None else None
        node = (
            NodeInfo(name=node_record["name"], address=node_record["address"], host=node_record["host"])
            if node_record is not None
            else None
        )
        ics_method = _ics_method(row.template) if offering is not None and node is not None else None
        rendered = render_mail(
            row.template, self._context(row, replicas, offering, node, offering_row, ics_method)
        )
        ics: bytes | None = None
        if ics_method is not None and state is not None and offering is not None and node is not None:
            ics = self._calendar(state, offering, node, ics_method, self._sequence(ics_method, offering_row))
        person = row.person
        return build_outgoing(
            rendered=rendered,
            sender=self._sender_address,
            recipient=MailAddress(person.email, display_name(person.given_name, person.family_name)),
            message_id=row.message_id,
            ics=ics,
            ics_method=ics_method or "REQUEST",
        )

    def _context(
        self,
        row: DeliveryRow,
        replicas: Replicas,
        offering: OfferingInfo | None,
        node: NodeInfo | None,
        offering_row: OfferingRow | None,
        ics_method: Literal["REQUEST", "CANCEL"] | None,
    ) -> MailContext:
        params = row.params
        rejected = row.template == "rejected"
        note = params.get("reason")
        if row.template == "offering_cancelled" and not note and offering_row is not None:
            note = offering_row.cancel_reason
        previous = tuple(
            _session_info(Session.model_validate(s)) for s in params.get("previous_sessions") or ()
        )
        person = row.person
        return MailContext(
            recipient=Recipient(person.given_name, person.family_name, person.email, person.gender),
            offering=offering,
            node=node,
            registration_id=row.registration_id,
            waitlist_position=params.get("position"),
            rejection_reason=params.get("reason") if rejected else None,
            rejection_detail=params.get("detail"),
            cancellation_cause=params.get("cause"),
            note=note if not rejected else None,
            previous_sessions=previous,
            personal_link=self._personal_link(row, replicas),
            network_email=self.settings.network_email,
            has_calendar=ics_method is not None,
            privacy_notice=bool(params.get(PRIVACY_NOTICE)),
            alternatives=alternative_infos(params.get(ALTERNATIVES), self.settings.portal_url),
        )

    def _calendar(
        self,
        state: OfferingState,
        offering: OfferingInfo,
        node: NodeInfo,
        method: Literal["REQUEST", "CANCEL"],
        sequence: int,
    ) -> bytes:
        """The .ics of an offering revision, the same for every participant (no ATTENDEE line), so it is
        built once and reused: building it is the costliest part of a mail."""
        key = (state.offering_id, state.revision, method, sequence, node.name, node.address)
        cached = self._ics_cache.get(key)
        if cached is None:
            cached = build_ics(
                offering_id=state.offering_id,
                title=state.title,
                sessions=offering.sessions,
                sequence=sequence,
                organizer_email=self.settings.mail_from_address,
                organizer_name=node.name,
                description=state.description,
                node_name=node.name,
                node_address=node.address,
                method=method,
            )
            if len(self._ics_cache) >= ICS_CACHE_SIZE:
                self._ics_cache.pop(next(iter(self._ics_cache)))
            self._ics_cache[key] = cached
        return cached

    @staticmethod
    def _sequence(method: str, offering: OfferingRow | None) -> int:
        """SEQUENCE = the catalogue revision; a cancellation counts as one more change."""
        revision = offering.revision if offering is not None else 1
        if method == "CANCEL":
            cancel_revision = offering.cancel_revision if offering is not None else None
            return max(revision + 1, cancel_revision or 0)
        return revision

    @staticmethod
    def _reminder_obsolete(row: DeliveryRow, offering: OfferingRow | None, replicas: Replicas) -> Skip | None:
        if row.registration_id is None or replicas.statuses.get(row.registration_id) != "confirmed":
            return Skip("Anmeldung nicht mehr bestätigt")
        if offering is None or offering.cancelled:
            return Skip("Angebot abgesagt")
        first = offering.first_starts_at
        if first is None or domain.first_session_key(first) != row.params.get("first_starts_at"):
            return Skip("Termin verschoben")
        if first <= datetime.now(UTC):
            return Skip("Veranstaltung hat bereits begonnen")
        return None

    # -------------------------------------------------------------------------- recording outcome

    async def _record(self, action: str, row: DeliveryRow, write: Callable[[], Awaitable[None]]) -> None:
        """Run a recording transaction, retrying transient database errors for a while (a lost `sent`
        mark would mean a duplicate mail once the lease ends)."""
        deadline = time.monotonic() + self.settings.send_lease_seconds / 2
        delay = 0.2
        while True:
            try:
                await write()
                return
            except Exception as exc:
                if not is_transient(exc) or time.monotonic() + delay > deadline:
                    raise
                log.warning("delivery.record_retry", action=action, error=repr(exc))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _sent_event(self, row: DeliveryRow) -> NotificationSent:
        return NotificationSent(
            notification_id=row.notification_id,
            template=row.template,
            trigger_event_id=row.trigger_event_id,
            trigger_type=row.trigger_type,
            registration_id=row.registration_id,
            offering_id=row.offering_id,
            recipient_ref=row.recipient_ref,
            attempts=row.attempts,
        )

    async def _sent(self, row: DeliveryRow) -> None:
        """Mark `row` sent and emit `notification.sent`; returns once committed.

        Group commit: marks of mails accepted while a batch is being written go together into the
        next transaction, so the wait is at most one short transaction (no timer: the duplicate window
        stays as short as with one transaction per mail, under load shorter, as no pool queue forms).
        """
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._unmarked.append((row, done))
        if self._marker is None or self._marker.done():
            self._marker = asyncio.create_task(self._mark_sent_batches(), name="mark-sent")
        await asyncio.shield(done)

    async def _mark_sent_batches(self) -> None:
        while self._unmarked:
            batch = self._unmarked[:MARK_BATCH]
            del self._unmarked[:MARK_BATCH]
            rows = [row for row, _ in batch]
            try:
                await self._record("sent", rows[0], functools.partial(self._write_sent, rows))
            except Exception as exc:  # the database gone for longer: the lease brings the rows back
                for _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
                continue
            for _, done in batch:
                if not done.done():
                    done.set_result(None)

    async def _write_sent(self, rows: list[DeliveryRow]) -> None:
        async with unit_of_work(self.db) as uow:
            marked = await store.finish_sent(uow.conn, rows)
            for row in rows:
                if row.notification_id not in marked:
                    log.warning("delivery.lease_lost", notification_id=row.notification_id)
                    continue
                uow.emit(
                    make_event(
                        RoutingKey.NOTIFICATION_SENT,
                        self._sent_event(row),
                        source=SOURCE,
                        subject=row.notification_id,
                        correlationid=row.correlation_id,
                        id_=f"{row.notification_id}:sent",
                    )
                )

    async def _fail(self, row: DeliveryRow, error: str, *, permanent: bool) -> None:
        text = clean_paragraph(redact(error), 1900) or "unbekannter Fehler"
        log.warning("delivery.failed", notification_id=row.notification_id, error=text, permanent=permanent)

        async def write() -> None:
            async with unit_of_work(self.db) as uow:
                if await store.finish(uow.conn, row, "failed", text):
                    payload = NotificationFailed(
                        **self._sent_event(row).model_dump(), error=text, permanent=permanent
                    )
                    uow.emit(
                        make_event(
                            RoutingKey.NOTIFICATION_FAILED,
                            payload,
                            source=SOURCE,
                            subject=row.notification_id,
                            correlationid=row.correlation_id,
                            id_=f"{row.notification_id}:failed",
                        )
                    )

        await self._record("failed", row, write)

    async def _transient(self, row: DeliveryRow, error: str) -> None:
        if row.attempts >= self.settings.max_attempts:
            await self._fail(row, f"{error} (aufgegeben nach {row.attempts} Versuchen)", permanent=False)
            return
        delay = domain.backoff_seconds(
            row.attempts, self.settings.retry_base_seconds, self.settings.retry_max_seconds
        )
        text = clean_paragraph(redact(error), 1900)
        log.info(
            "delivery.retry_later", notification_id=row.notification_id, delay=round(delay, 2), error=text
        )

        async def write() -> None:
            async with self.db.pool.acquire() as conn:
                await store.retry_later(conn, row, delay, text)

        await self._record("retry", row, write)

    async def _finish_quietly(self, row: DeliveryRow, status: str, reason: str) -> None:
        async def write() -> None:
            async with self.db.pool.acquire() as conn:
                await store.finish(conn, row, status, reason)

        await self._record(status, row, write)
