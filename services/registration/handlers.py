"""Registration decisions: each message or staff action is one transaction with its outgoing events."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
from pydantic import BaseModel, SecretStr, TypeAdapter, ValidationError

from qti_contracts import (
    FRONTEND_REPLY_PREFIX,
    CancellationCause,
    CloudEvent,
    Occupancy,
    OfferingCancelled,
    OfferingState,
    OfferingStatus,
    Participant,
    RawEvent,
    RegistrationAttendanceRecorded,
    RegistrationCancellationRequested,
    RegistrationCancelled,
    RegistrationCompleted,
    RegistrationConfirmed,
    RegistrationRejected,
    RegistrationRequested,
    RegistrationWaitlisted,
    RejectionReason,
    RoutingKey,
    make_event,
    readable_errors,
)
from qti_contracts.events import Identifier
from qti_runtime import links
from qti_runtime.consumer import Delivery, parse_payload
from qti_runtime.db import Database
from qti_runtime.logging import get_logger
from qti_runtime.settings import DEV_LINK_SECRET
from qti_runtime.unit_of_work import UnitOfWork, unit_of_work
from services.registration import domain, store
from services.registration.domain import Confirm, Reject, Status, Waitlist

log = get_logger(__name__)

SOURCE = "/registration"
DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"
# Namespace of request ids derived from a client's own request id (see `derived_request_id`).
CLIENT_REQUEST_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://qti-net.example/registration/request-id")
STARTED_DETAIL = (
    "Die Veranstaltung hat bereits begonnen. Eine Absage ist jetzt nicht mehr online möglich; "
    "bitte wenden Sie sich direkt an den QTI-Knoten."
)
REQUESTS_CONSUMER = "registration.requests"
CATALOGUE_CONSUMER = "registration.catalogue"


_IDENTIFIER = TypeAdapter(Identifier)


def valid_identifier(value: object) -> str | None:
    """The value if it is a well-formed entity id, so that a rejection can still name it."""
    try:
        return _IDENTIFIER.validate_python(value)
    except ValidationError:
        return None


class NotFound(Exception):
    pass


class Conflict(Exception):
    pass


@dataclass(frozen=True)
class Caller:
    """Who asks to read or cancel a registration: staff (bearer token) or whoever holds a personal token.

    Ids are no secrets, so the id alone admits nobody; a participant may not cancel once the offering
    has begun, staff may still correct.
    """

    staff: bool = False
    token: str | None = None

    def may_see(self, link_secret: SecretStr, registration: store.RegistrationRow) -> bool:
        if self.staff:
            return True
        return self.token is not None and links.token_matches(
            link_secret, registration.request_id, self.token
        )


STAFF = Caller(staff=True)


def reply_allowed(reply_to: str | None) -> bool:
    """Only a frontend's own reply queue hears an outcome with personal data, never any other queue."""
    return reply_to is not None and (
        reply_to.startswith(DIRECT_REPLY_TO) or reply_to.startswith(FRONTEND_REPLY_PREFIX)
    )


def derived_request_id(client_request_id: str, request: RegistrationRequested) -> str:
    """The request id a client's own id stands for: scoped by what was submitted, so the same submission
    repeated is one request, while another client using the same key with other data gets another one
    (and never the first one's status or personal token)."""
    canonical = json.dumps(
        request.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return "c-" + str(uuid.uuid5(CLIENT_REQUEST_NAMESPACE, f"{client_request_id}\0{canonical}"))


def has_begun(offering: store.OfferingRow, now: datetime) -> bool:
    """Whether the offering's first session has started (or it took place): no participant cancellation
    and no promotion from the waiting list any more."""
    start = offering.seats.first_session_start
    return offering.seats.status == OfferingStatus.COMPLETED or (start is not None and now >= start)


@dataclass
class RequestContext:
    """Where the answer to one request goes."""

    request_id: str
    correlation_id: str
    reply_to: str | None = None
    reply_correlation_id: str | None = None


@dataclass
class SeatLedger:
    """Seat counters of one locked offering; every change gets the next version for its event."""

    offering: store.OfferingRow
    confirmed: int = 0
    waitlisted: int = 0
    version: int = 0
    changed: bool = False

    def __post_init__(self) -> None:
        self.confirmed = self.offering.seats.confirmed
        self.waitlisted = self.offering.seats.waitlisted
        self.version = self.offering.seat_version

    def change(self, confirmed: int = 0, waitlisted: int = 0) -> Occupancy:
        self.confirmed += confirmed
        self.waitlisted += waitlisted
        self.version += 1
        self.changed = True
        return Occupancy(
            version=self.version,
            confirmed=self.confirmed,
            waitlisted=self.waitlisted,
            capacity=self.offering.seats.capacity,
        )

    def counters(self) -> store.SeatCounters:
        return store.SeatCounters(self.offering.offering_id, self.confirmed, self.waitlisted, self.version)


@dataclass
class Decisions:
    """The decisions of one transaction and the seat counters of the offerings it locked, kept in memory
    and written together at its end (the only place seat counters are written).

    `ledgers` holds the offerings locked so far, `holders` who holds live registrations for them; both
    include this transaction's own decisions, which are not in the database until `write`.
    """

    ledgers: dict[str, SeatLedger] = field(default_factory=dict)
    holders: domain.LiveHolders = field(default_factory=domain.LiveHolders)
    registrations: list[store.NewRegistration] = field(default_factory=list)
    outcomes: list[store.Outcome] = field(default_factory=list)

    async def holders_of(
        self, conn: asyncpg.Connection, offering_id: str, email: str, company: str
    ) -> tuple[bool, int]:
        if not self.holders.knows(offering_id, email, company):
            self.holders.merge(await store.load_live_holders(conn, [(offering_id, email, company)]))
        return self.holders.of(offering_id, email, company)

    def add_registration(self, registration: store.NewRegistration) -> None:
        self.registrations.append(registration)
        self.holders.add(registration.offering_id, registration.email, registration.company_key)

    async def write(self, uow: UnitOfWork) -> None:
        counters = [ledger.counters() for ledger in self.ledgers.values() if ledger.changed]
        if self.registrations or self.outcomes or counters:
            await store.write_decisions(uow.conn, self.registrations, self.outcomes, counters)
        for ledger in self.ledgers.values():
            ledger.changed = False
        self.registrations.clear()
        self.outcomes.clear()


def _holder_key(request: RegistrationRequested) -> tuple[str, str, str]:
    """(offering, e-mail, company key): what the duplicate and per-company rules look up."""
    return (
        request.offering_id,
        domain.normalise_email(str(request.participant.email)),
        domain.company_key(request.company.name, request.company.postal_code),
    )


def _parse_request(event: RawEvent) -> RegistrationRequested | ValidationError:
    try:
        return RegistrationRequested.model_validate(event.data)
    except ValidationError as exc:
        return exc


def _deferred(row: store.RequestRow) -> tuple[RequestContext, RegistrationRequested, RawEvent]:
    """A deferred request as it arrived (it was valid, or it would not have been deferred)."""
    assert row.envelope is not None
    envelope = RawEvent.model_validate(row.envelope)
    ctx = RequestContext(
        row.request_id, envelope.correlationid or row.request_id, row.reply_to, row.correlation_id
    )
    return ctx, RegistrationRequested.model_validate(envelope.data), envelope


def _request_context(event: RawEvent, delivery: Delivery) -> RequestContext:
    reply_to = delivery.reply_to
    if reply_to is not None and not reply_allowed(reply_to):
        log.warning("reply_to.ignored", request_id=event.id, reply_to=reply_to[:100])
        reply_to = None
    return RequestContext(
        request_id=event.id,
        correlation_id=event.correlationid or event.id,
        reply_to=reply_to,
        reply_correlation_id=delivery.correlation_id,
    )


@dataclass
class RegistrationService:
    db: Database
    offering_wait_seconds: float = 30.0
    clock: Any = field(default=lambda: datetime.now(UTC))
    # Key of the personal tokens (qti_runtime.links); the default is the development one.
    link_secret: SecretStr = field(default=SecretStr(DEV_LINK_SECRET))

    def personal_token(self, request_id: str) -> str:
        return links.personal_token(self.link_secret, request_id)

    # Requests ------------------------------------------------------------------------------------

    async def on_requested(self, event: RawEvent, delivery: Delivery) -> None:
        await self.on_requested_batch([(event, delivery)])

    async def on_requested_batch(self, items: Sequence[tuple[RawEvent, Delivery]]) -> None:
        """Decide many requests in one transaction, each offering locked once.

        Requests are decided one after the other, so each sees the seats and registrations of those
        before it. The batch's offerings are locked up front in one statement, in id order, so replicas
        deciding overlapping batches wait for each other instead of deadlocking; within one offering the
        order of arrival is kept. Who already holds registrations is read once for the whole batch, and
        every row is written in one statement at the end.
        """
        ordered = sorted(items, key=lambda item: str(item[0].data.get("offering_id")))
        async with unit_of_work(self.db) as uow:
            fresh = await uow.claim_many(REQUESTS_CONSUMER, [event.id for event, _ in ordered])
            parsed = {event.id: _parse_request(event) for event, _ in ordered if event.id in fresh}
            valid = [request for request in parsed.values() if isinstance(request, RegistrationRequested)]
            decisions = Decisions()
            for offering in await store.lock_offerings(uow.conn, [r.offering_id for r in valid]):
                decisions.ledgers[offering.offering_id] = SeatLedger(offering)
            known = [_holder_key(r) for r in valid if r.offering_id in decisions.ledgers]
            if known:
                decisions.holders = await store.load_live_holders(uow.conn, known)
            for event, delivery in ordered:
                ctx = _request_context(event, delivery)
                if event.id in fresh:
                    fresh.discard(event.id)  # a second copy in this batch is a redelivery
                    await self._decide_request(uow, decisions, ctx, event, parsed[event.id])
                else:
                    await decisions.write(uow)  # an earlier copy in this batch may hold the answer
                    await self._answer_again(uow, event.id, ctx)
            await decisions.write(uow)

    async def _decide_request(
        self,
        uow: UnitOfWork,
        decisions: Decisions,
        ctx: RequestContext,
        event: RawEvent,
        request: RegistrationRequested | ValidationError,
    ) -> None:
        if isinstance(request, ValidationError):
            self._reject(
                uow,
                decisions,
                ctx,
                valid_identifier(event.data.get("offering_id")),
                RejectionReason.INVALID_REQUEST,
                domain.invalid_request_detail(readable_errors(request)),
                recipient=_valid_participant(event.data.get("participant")),
            )
            return
        await self._decide(uow, decisions, ctx, request, envelope=event, may_defer=True)

    async def _answer_again(self, uow: UnitOfWork, request_id: str, ctx: RequestContext) -> None:
        """A redelivered or republished request changes nothing; its asker may hear the answer again."""
        if ctx.reply_to is None:
            return
        row = await store.get_request(uow.conn, request_id)
        if row is not None and row.outcome is not None:
            uow.reply(
                CloudEvent[dict[str, Any]].model_validate(row.outcome), ctx.reply_to, ctx.reply_correlation_id
            )

    async def _decide(
        self,
        uow: UnitOfWork,
        decisions: Decisions,
        ctx: RequestContext,
        request: RegistrationRequested,
        *,
        envelope: RawEvent,
        may_defer: bool,
    ) -> None:
        """Decide with the offering locked (locking it now unless an earlier decision did)."""
        ledger = decisions.ledgers.get(request.offering_id)
        if ledger is None:
            offering = await store.lock_offering(uow.conn, request.offering_id)
            if offering is not None:
                ledger = decisions.ledgers[request.offering_id] = SeatLedger(offering)
            elif may_defer and self.offering_wait_seconds > 0:
                # The offering may still be on its way from catalogue; decide when it arrives.
                await store.defer_request(
                    uow.conn,
                    ctx.request_id,
                    request.offering_id,
                    envelope.model_dump_json(),
                    ctx.reply_to,
                    ctx.reply_correlation_id,
                )
                return
            else:
                detail = domain.offering_not_found_detail(request.offering_id)
                reason = RejectionReason.OFFERING_NOT_FOUND
                self._reject(
                    uow, decisions, ctx, request.offering_id, reason, detail, recipient=request.participant
                )
                return
        await self._decide_with_offering(uow, decisions, ctx, request, ledger)

    async def _decide_with_offering(
        self,
        uow: UnitOfWork,
        decisions: Decisions,
        ctx: RequestContext,
        request: RegistrationRequested,
        ledger: SeatLedger,
    ) -> None:
        _, email, company = _holder_key(request)
        seats = ledger.offering.seats
        registered, company_count = await decisions.holders_of(uow.conn, seats.offering_id, email, company)
        decision = domain.decide(
            domain.OfferingSeats(
                **{**seats.__dict__, "confirmed": ledger.confirmed, "waitlisted": ledger.waitlisted}
            ),
            consent=request.privacy_consent,
            now=self.clock(),
            already_registered=registered,
            company_live_registrations=company_count,
        )
        if isinstance(decision, Reject):
            self._reject(
                uow,
                decisions,
                ctx,
                seats.offering_id,
                decision.reason,
                decision.detail,
                recipient=request.participant,
            )
            return
        registration_id = str(uuid.uuid4())
        token = self.personal_token(ctx.request_id)
        status = Status.CONFIRMED if isinstance(decision, Confirm) else Status.WAITLISTED
        common = {
            "registration_id": registration_id,
            "request_id": ctx.request_id,
            "offering_id": seats.offering_id,
            "participant": request.participant,
            "company": request.company,
            "from_waitlist": False,
        }
        outcome: BaseModel
        if isinstance(decision, Waitlist):
            outcome = RegistrationWaitlisted(
                **common, position=decision.position, occupancy=ledger.change(waitlisted=1)
            )
            type_ = RoutingKey.REGISTRATION_WAITLISTED
        else:
            outcome = RegistrationConfirmed(**common, occupancy=ledger.change(confirmed=1))
            type_ = RoutingKey.REGISTRATION_CONFIRMED
        self._answer(
            uow, decisions, ctx, seats.offering_id, type_, outcome, subject=registration_id, token=token
        )
        decisions.add_registration(
            store.NewRegistration(
                registration_id=registration_id,
                request_id=ctx.request_id,
                offering_id=seats.offering_id,
                status=status,
                email=email,
                company_key=company,
                participant=request.participant.model_dump(mode="json"),
                company=request.company.model_dump(mode="json"),
                token_hash=links.token_hash(token),
            )
        )

    def _reject(
        self,
        uow: UnitOfWork,
        decisions: Decisions,
        ctx: RequestContext,
        offering_id: str | None,
        reason: RejectionReason,
        detail: str,
        *,
        recipient: Participant | None = None,
    ) -> None:
        outcome = RegistrationRejected(
            request_id=ctx.request_id,
            offering_id=offering_id,
            reason=reason,
            detail=detail,
            recipient=recipient,
        )
        type_ = RoutingKey.REGISTRATION_REJECTED
        self._answer(uow, decisions, ctx, offering_id, type_, outcome, subject=ctx.request_id)

    def _answer(
        self,
        uow: UnitOfWork,
        decisions: Decisions,
        ctx: RequestContext,
        offering_id: str | None,
        type_: str,
        payload: BaseModel,
        *,
        subject: str,
        token: str | None = None,
    ) -> None:
        """Publish the outcome (and reply to the asker) and keep it as the request's answer.

        The asker's first answer also carries the registration's personal token: the frontend that
        submitted the request is the only party besides the participant that may hold it. The published
        event and the stored answer do not.
        """
        event = make_event(type_, payload, source=SOURCE, subject=subject, correlationid=ctx.correlation_id)
        uow.emit(event)
        if ctx.reply_to:
            body = None
            if token is not None:
                answer = json.loads(uow.serialised(event))
                answer["data"]["personal_token"] = token
                body = json.dumps(answer, ensure_ascii=False, separators=(",", ":")).encode()
            uow.reply(event, ctx.reply_to, ctx.reply_correlation_id, body=body)
        outcome_json = uow.serialised(event).decode()
        decisions.outcomes.append(store.Outcome(ctx.request_id, offering_id, type_, outcome_json))

    async def submit(
        self, request: RegistrationRequested, request_id: str | None, correlation_id: str | None = None
    ) -> tuple[str, bool]:
        """HTTP entry: note the request as pending and send it through the outbox like any frontend.

        `request_id` is the client's own key: the request gets an id derived from it and the submitted
        data (`derived_request_id`). Returns the request id and whether it is new (a repeated submission
        is accepted once).
        """
        request_id = derived_request_id(request_id, request) if request_id else str(uuid.uuid4())
        async with unit_of_work(self.db) as uow:
            if not await store.insert_pending(uow.conn, request_id, request.offering_id):
                return request_id, False
            uow.emit(
                make_event(
                    RoutingKey.REGISTRATION_REQUESTED,
                    request,
                    source="/frontends/http",
                    id_=request_id,
                    subject=request.offering_id,
                    correlationid=correlation_id or request_id,
                )
            )
        return request_id, True

    async def expire_deferred(self) -> int:
        """Requests whose offering never arrived get `offering_not_found` once the wait is over."""
        async with unit_of_work(self.db) as uow:
            rows = await store.expired_deferred(uow.conn, self.offering_wait_seconds)
            decisions = Decisions()
            for row in rows:
                ctx, request, envelope = _deferred(row)
                await self._decide(uow, decisions, ctx, request, envelope=envelope, may_defer=False)
            await decisions.write(uow)
        return len(rows)

    # Cancellations -------------------------------------------------------------------------------

    async def on_cancellation_requested(self, event: RawEvent, delivery: Delivery) -> None:
        command = parse_payload(RegistrationCancellationRequested, event)
        async with unit_of_work(self.db) as uow:
            if not await uow.claim(REQUESTS_CONSUMER, event.id):
                return
            try:
                await self._cancel_registration(
                    uow,
                    command.registration_id,
                    CancellationCause.PARTICIPANT,
                    command.reason,
                    event.correlationid or event.id,
                    caller=Caller(token=command.personal_token),
                )
            except NotFound:
                # Unknown, or not this registration's token: nothing changes (and nothing personal is logged).
                log.info("cancellation.refused", event_id=event.id, why="unbekannt oder Token ungültig")
            except Conflict as exc:
                # Already cancelled, or the offering has begun: nothing changes.
                log.info("cancellation.ignored", registration_id=command.registration_id, why=str(exc))

    async def cancel(self, registration_id: str, caller: Caller, reason: str | None) -> store.RegistrationRow:
        """HTTP entry: a participant with their token, or staff (who cancel as organiser); raises NotFound
        (also for a token that is not this registration's) or Conflict."""
        cause = CancellationCause.ORGANISER if caller.staff else CancellationCause.PARTICIPANT
        async with unit_of_work(self.db) as uow:
            await self._cancel_registration(
                uow, registration_id, cause, reason, registration_id, caller=caller
            )
            row = await store.get_registration(uow.conn, registration_id)
        assert row is not None
        return row

    async def _cancel_registration(
        self,
        uow: UnitOfWork,
        registration_id: str,
        cause: CancellationCause,
        reason: str | None,
        correlation_id: str,
        *,
        caller: Caller = STAFF,
    ) -> None:
        offering_id = await store.offering_of_registration(uow.conn, registration_id)
        if offering_id is None:
            raise NotFound(registration_id)
        offering = await store.lock_offering(uow.conn, offering_id)  # lock order: offering, then registration
        assert offering is not None
        registration = await store.get_registration(uow.conn, registration_id, lock=True)
        assert registration is not None
        if not caller.may_see(self.link_secret, registration):
            raise NotFound(registration_id)
        if registration.status == Status.CANCELLED:
            raise Conflict("Diese Anmeldung ist bereits storniert.")
        if not caller.staff and has_begun(offering, self.clock()):
            raise Conflict(STARTED_DETAIL)
        ledger = SeatLedger(offering)
        self._cancel_one(uow, ledger, registration, cause, reason, correlation_id)
        await store.set_status(uow.conn, registration_id, Status.CANCELLED, cancel_cause=cause.value)
        if offering.seats.status == OfferingStatus.PUBLISHED:
            await self._promote(uow, ledger, correlation_id)
        await Decisions({offering_id: ledger}).write(uow)  # the seat counters

    def _cancel_one(
        self,
        uow: UnitOfWork,
        ledger: SeatLedger,
        registration: store.RegistrationRow,
        cause: CancellationCause,
        reason: str | None,
        correlation_id: str,
    ) -> None:
        was_confirmed = registration.status == Status.CONFIRMED
        occupancy = ledger.change(confirmed=-1) if was_confirmed else ledger.change(waitlisted=-1)
        payload = RegistrationCancelled(
            registration_id=registration.registration_id,
            offering_id=registration.offering_id,
            cause=cause,
            reason=reason,
            was_confirmed=was_confirmed,
            occupancy=occupancy,
        )
        uow.emit(
            make_event(
                RoutingKey.REGISTRATION_CANCELLED,
                payload,
                source=SOURCE,
                subject=registration.registration_id,
                correlationid=correlation_id,
            )
        )

    async def _promote(self, uow: UnitOfWork, ledger: SeatLedger, correlation_id: str) -> None:
        """Free seats go to the waiting list in order; positions of the others close up. Not once the
        offering has begun: nobody is told of a place in something already under way."""
        if has_begun(ledger.offering, self.clock()):
            return
        count = domain.seats_to_promote(ledger.offering.seats.capacity, ledger.confirmed, ledger.waitlisted)
        if count == 0:
            return
        for row in await store.first_waitlisted(uow.conn, ledger.offering.offering_id, count):
            await store.set_status(uow.conn, row.registration_id, Status.CONFIRMED, from_waitlist=True)
            payload = RegistrationConfirmed(
                registration_id=row.registration_id,
                request_id=row.request_id,
                offering_id=row.offering_id,
                participant=row.participant,
                company=row.company,
                from_waitlist=True,
                occupancy=ledger.change(confirmed=1, waitlisted=-1),
            )
            uow.emit(
                make_event(
                    RoutingKey.REGISTRATION_CONFIRMED,
                    payload,
                    source=SOURCE,
                    subject=row.registration_id,
                    correlationid=correlation_id,
                )
            )

    # Catalogue -----------------------------------------------------------------------------------

    async def on_offering_changed(self, event: RawEvent, delivery: Delivery) -> None:
        state = parse_payload(OfferingState, event)
        async with unit_of_work(self.db) as uow:
            if not await uow.claim(CATALOGUE_CONSUMER, event.id):
                return
            previous = await store.lock_offering(uow.conn, state.offering_id)
            if previous is not None and (
                previous.seats.status == OfferingStatus.CANCELLED or previous.revision >= state.revision
            ):
                return  # stale or after a cancellation, which is final
            if state.status == OfferingStatus.CANCELLED:
                await self._cancel_offering(uow, state.offering_id, "Angebot abgesagt", event)
                return
            await store.upsert_offering(uow.conn, state)
            offering = await store.lock_offering(uow.conn, state.offering_id)
            assert offering is not None
            ledger = SeatLedger(offering)
            decisions = Decisions({state.offering_id: ledger})
            correlation = event.correlationid or event.id
            if state.status == OfferingStatus.PUBLISHED:
                await self._promote(uow, ledger, correlation)  # a capacity increase fills from the list
            for row in await store.deferred_for(uow.conn, state.offering_id):
                ctx, request, _ = _deferred(row)
                await self._decide_with_offering(uow, decisions, ctx, request, ledger)
            await decisions.write(uow)

    async def on_offering_cancelled(self, event: RawEvent, delivery: Delivery) -> None:
        cancelled = parse_payload(OfferingCancelled, event)
        async with unit_of_work(self.db) as uow:
            if not await uow.claim(CATALOGUE_CONSUMER, event.id):
                return
            await self._cancel_offering(uow, cancelled.offering_id, cancelled.reason, event)

    async def _cancel_offering(self, uow: UnitOfWork, offering_id: str, reason: str, event: RawEvent) -> None:
        await store.mark_cancelled(uow.conn, offering_id, self.clock())
        offering = await store.lock_offering(uow.conn, offering_id)
        assert offering is not None
        ledger = SeatLedger(offering)
        decisions = Decisions({offering_id: ledger})
        correlation = event.correlationid or event.id
        for registration in await store.live_registrations(uow.conn, offering_id):
            self._cancel_one(
                uow, ledger, registration, CancellationCause.OFFERING_CANCELLED, reason, correlation
            )
            await store.set_status(
                uow.conn,
                registration.registration_id,
                Status.CANCELLED,
                cancel_cause=CancellationCause.OFFERING_CANCELLED.value,
            )
        for row in await store.deferred_for(uow.conn, offering_id):
            ctx = RequestContext(row.request_id, row.request_id, row.reply_to, row.correlation_id)
            self._reject(
                uow,
                decisions,
                ctx,
                offering_id,
                RejectionReason.OFFERING_NOT_OPEN,
                domain.not_open_detail(OfferingStatus.CANCELLED),
                recipient=_valid_participant(((row.envelope or {}).get("data") or {}).get("participant")),
            )
        await decisions.write(uow)

    # Attendance ----------------------------------------------------------------------------------

    async def record_attendance(self, offering_id: str, session_id: str, records: dict[str, bool]) -> int:
        """Staff record who attended one session; returns how many records changed."""
        async with unit_of_work(self.db) as uow:
            offering = await store.lock_offering(uow.conn, offering_id)
            if offering is None:
                raise NotFound(f"Das Angebot {offering_id} ist nicht bekannt.")
            units = {s["session_id"]: int(s["teaching_units"]) for s in offering.sessions}
            if session_id not in units:
                raise NotFound(f"Der Termin {session_id} gehört nicht zu diesem Angebot.")
            changed = 0
            for registration_id, attended in records.items():
                registration = await store.get_registration(uow.conn, registration_id, lock=True)
                if registration is None or registration.offering_id != offering_id:
                    raise NotFound(f"Die Anmeldung {registration_id} gehört nicht zu diesem Angebot.")
                if registration.status != Status.CONFIRMED:
                    raise Conflict(f"Die Anmeldung {registration_id} hat keinen bestätigten Platz.")
                if not await store.upsert_attendance(uow.conn, registration_id, session_id, attended):
                    continue
                changed += 1
                uow.emit(
                    make_event(
                        RoutingKey.REGISTRATION_ATTENDANCE_RECORDED,
                        RegistrationAttendanceRecorded(
                            registration_id=registration_id,
                            offering_id=offering_id,
                            session_id=session_id,
                            attended=attended,
                        ),
                        source=SOURCE,
                        subject=registration_id,
                        correlationid=registration_id,
                    )
                )
                await self._complete_if_last(uow, offering, registration, units)
        return changed

    async def _complete_if_last(
        self,
        uow: UnitOfWork,
        offering: store.OfferingRow,
        registration: store.RegistrationRow,
        units: dict[str, int],
    ) -> None:
        attended = await store.attendance_of(uow.conn, registration.registration_id)
        if set(units) - set(attended):
            return  # not every session recorded yet
        result = domain.completion(offering.seats.kind, units, attended)
        summary = {
            "attended_units": result.attended_units,
            "total_units": result.total_units,
            "attendance_ratio": result.ratio,
            "completed": result.completed,
            "certificate_eligible": result.certificate_eligible,
        }
        if registration.completion == summary:
            return
        await store.save_completion(uow.conn, registration.registration_id, summary)
        uow.emit(
            make_event(
                RoutingKey.REGISTRATION_COMPLETED,
                RegistrationCompleted(
                    registration_id=registration.registration_id, offering_id=offering.offering_id, **summary
                ),
                source=SOURCE,
                subject=registration.registration_id,
                correlationid=registration.registration_id,
            )
        )

    # Queries -------------------------------------------------------------------------------------

    async def request_status(self, request_id: str) -> dict[str, Any] | None:
        async with self.db.pool.acquire() as conn:
            row = await store.get_request(conn, request_id)
        if row is None:
            return None
        if row.outcome is None:
            return {"request_id": request_id, "status": "pending", "offering_id": row.offering_id}
        data = row.outcome["data"]
        status = {
            RoutingKey.REGISTRATION_CONFIRMED: "confirmed",
            RoutingKey.REGISTRATION_WAITLISTED: "waitlisted",
            RoutingKey.REGISTRATION_REJECTED: "rejected",
        }[row.outcome_type or ""]
        return {
            "request_id": request_id,
            "status": status,
            "offering_id": data.get("offering_id"),
            "registration_id": data.get("registration_id"),
            "position": data.get("position"),
            "reason": data.get("reason"),
            "detail": data.get("detail"),
        }

    async def registration_view(self, registration_id: str, caller: Caller) -> dict[str, Any] | None:
        """The registration if `caller` may see it; None for an unknown id and a wrong token alike."""
        async with self.db.pool.acquire() as conn:
            row = await store.get_registration(conn, registration_id)
            if row is None or not caller.may_see(self.link_secret, row):
                return None
            position = await store.waitlist_position(conn, row)
        return _view(row, position)

    async def registration_of_token(self, token: str) -> str | None:
        """The id of the registration `token` belongs to (found by its hash; the token is stored nowhere)."""
        async with self.db.pool.acquire() as conn:
            return await store.registration_id_by_token_hash(conn, links.token_hash(token))

    async def backfill_token_hashes(self, batch: int = 500) -> int:
        """Registrations from before personal tokens get their token's hash; returns how many."""
        done = 0
        while True:
            async with unit_of_work(self.db) as uow:
                rows = await store.without_token_hash(uow.conn, batch)
                hashes = [(rid, links.token_hash(self.personal_token(req))) for rid, req in rows]
                await store.set_token_hashes(uow.conn, hashes)
            done += len(rows)
            if len(rows) < batch:
                return done

    async def offering_registrations(self, offering_id: str) -> list[dict[str, Any]]:
        async with self.db.pool.acquire() as conn:
            rows = await store.registrations_of_offering(conn, offering_id)
        return [_view(row, None) for row in rows]


def _view(row: store.RegistrationRow, position: int | None) -> dict[str, Any]:
    return {
        "registration_id": row.registration_id,
        "request_id": row.request_id,
        "offering_id": row.offering_id,
        "status": row.status.value,
        "position": position,
        "from_waitlist": row.from_waitlist,
        "participant": row.participant,
        "company": row.company,
        "cancel_cause": row.cancel_cause,
        "completion": row.completion,
        "created_at": row.created_at.isoformat(),
        "updated_at": row.updated_at.isoformat(),
    }


def _valid_participant(data: object) -> Participant | None:
    """The request's participant if it is valid (whom notification tells about the rejection)."""
    try:
        return Participant.model_validate(data)
    except ValidationError:
        return None
