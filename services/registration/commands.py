"""Commands of registration: each runs in its caller's unit of work, loads the offering's seats, lets the
aggregate (`seats.OfferingSeats`) decide, and saves it with its events (`repository.SeatRepository`)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime

from pydantic import SecretStr, TypeAdapter, ValidationError

from qti_contracts import (
    CancellationCause,
    CloudEvent,
    OfferingState,
    OfferingStatus,
    Participant,
    RawEvent,
    RegistrationRequested,
    RejectionReason,
    RoutingKey,
    make_event,
    readable_errors,
)
from qti_contracts.events import Identifier
from qti_runtime import links
from qti_runtime.unit_of_work import UnitOfWork
from services.registration import domain, store
from services.registration.access import STAFF, Caller, Conflict, NotFound
from services.registration.repository import RequestContext, SeatRepository
from services.registration.seats import Applicant, CannotCancel, CannotPromote, OfferingSeats, rejection
from services.registration.settings import RegistrationSettings

Clock = Callable[[], datetime]
# Namespace of request ids derived from a client's own request id (see `derived_request_id`).
CLIENT_REQUEST_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://qti-net.example/registration/request-id")
OFFERING_CANCELLED_REASON = "Angebot abgesagt"

_IDENTIFIER = TypeAdapter(Identifier)
_PARTICIPANT = TypeAdapter(Participant)


def valid_identifier(value: object) -> str | None:
    """The value if it is a well-formed entity id, so that a rejection can still name it."""
    try:
        return _IDENTIFIER.validate_python(value)
    except ValidationError:
        return None


def valid_participant(value: object) -> Participant | None:
    """The participant of a request that is invalid elsewhere, so that the rejection can name them."""
    try:
        return _PARTICIPANT.validate_python(value)
    except ValidationError:
        return None


def derived_request_id(client_request_id: str, request: RegistrationRequested) -> str:
    """The request id a client's own id stands for: scoped by what was submitted, so the same submission
    repeated is one request, while another client using the same key with other data gets another one
    (and never the first one's status or personal token)."""
    canonical = json.dumps(
        request.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return "c-" + str(uuid.uuid5(CLIENT_REQUEST_NAMESPACE, f"{client_request_id}\0{canonical}"))


def _parse_request(event: RawEvent) -> RegistrationRequested | ValidationError:
    try:
        return RegistrationRequested.model_validate(event.data)
    except ValidationError as exc:
        return exc


def _deferred(row: store.RequestRow) -> tuple[RequestContext, RegistrationRequested, RawEvent]:
    """A deferred request as it arrived (it was valid, or it would not have been deferred)."""
    assert row.envelope is not None
    envelope = RawEvent.model_validate(row.envelope)
    return _deferred_context(row), RegistrationRequested.model_validate(envelope.data), envelope


def _deferred_context(row: store.RequestRow) -> RequestContext:
    correlation = (row.envelope or {}).get("correlationid") or row.request_id
    return RequestContext(row.request_id, str(correlation), row.reply_to, row.correlation_id)


class RegistrationCommands:
    """Every change of registration's state; the callers own the unit of work and the inbox claim."""

    def __init__(self, settings: RegistrationSettings, clock: Clock) -> None:
        self.link_secret: SecretStr = settings.link_secret
        self.offering_wait_seconds = settings.offering_wait_seconds
        self.clock = clock

    def _repository(self, uow: UnitOfWork) -> SeatRepository:
        return SeatRepository(uow, self.link_secret)

    # Requests ----------------------------------------------------------------------------------------

    async def submit(
        self, uow: UnitOfWork, request: RegistrationRequested, request_id: str, correlation_id: str
    ) -> bool:
        """Note the request as pending and send it through the outbox like any frontend; False if that
        request id was submitted before (a repeated submission is accepted once)."""
        if not await store.insert_pending(uow.conn, request_id, request.offering_id):
            return False
        uow.emit(
            make_event(
                RoutingKey.REGISTRATION_REQUESTED,
                request,
                source="/frontends/http",
                id_=request_id,
                subject=request.offering_id,
                correlationid=correlation_id,
            )
        )
        return True

    async def decide_requests(
        self, uow: UnitOfWork, arrivals: Sequence[tuple[RawEvent, RequestContext]], fresh: set[str]
    ) -> None:
        """Decide many requests in one transaction, each offering locked once.

        Requests are decided one after the other, so each sees the seats and registrations of those
        before it. The batch's offerings are locked up front in one statement, in id order, so replicas
        deciding overlapping batches wait for each other instead of deadlocking; within one offering the
        order of arrival is kept. Who already holds registrations is read once for the whole batch, and
        every row is written in one statement at the end. `fresh` are the ids not handled before.
        """
        repo = self._repository(uow)
        unanswered = set(fresh)
        parsed = {event.id: _parse_request(event) for event, _ in arrivals if event.id in unanswered}
        valid = [(rid, r) for rid, r in parsed.items() if isinstance(r, RegistrationRequested)]
        await repo.lock_many([request.offering_id for _, request in valid])
        await repo.load_holders(
            [(r.offering_id, Applicant.of(rid, r)) for rid, r in valid if r.offering_id in repo.loaded]
        )
        for event, ctx in arrivals:
            if event.id in unanswered:
                unanswered.discard(event.id)  # a second copy in this batch is a redelivery
                await self._decide_arrival(repo, ctx, event, parsed[event.id])
            else:
                await repo.save()  # an earlier copy in this batch may hold the answer
                await _answer_again(uow, event.id, ctx)
        await repo.save()

    async def _decide_arrival(
        self,
        repo: SeatRepository,
        ctx: RequestContext,
        event: RawEvent,
        request: RegistrationRequested | ValidationError,
    ) -> None:
        if isinstance(request, ValidationError):
            invalid = rejection(
                ctx.request_id,
                valid_identifier(event.data.get("offering_id")),
                RejectionReason.INVALID_REQUEST,
                domain.invalid_request_detail(readable_errors(request)),
                valid_participant(event.data.get("participant")),
            )
            await repo.record(invalid, ctx.correlation_id, ctx)
            return
        await self._decide(repo, ctx, request, envelope=event, may_defer=True)

    async def _decide(
        self,
        repo: SeatRepository,
        ctx: RequestContext,
        request: RegistrationRequested,
        *,
        envelope: RawEvent,
        may_defer: bool,
    ) -> None:
        """Decide with the offering locked; an unknown offering defers the request or rejects it."""
        seats = await repo.get(request.offering_id)
        if seats is not None:
            await self._decide_with(repo, seats, ctx, request)
        elif may_defer and self.offering_wait_seconds > 0:
            # The offering may still be on its way from catalogue; decide when it arrives.
            await store.defer_request(
                repo.uow.conn,
                ctx.request_id,
                request.offering_id,
                envelope.model_dump_json(),
                ctx.reply_to,
                ctx.reply_correlation_id,
            )
        else:
            unknown = rejection(
                ctx.request_id,
                request.offering_id,
                RejectionReason.OFFERING_NOT_FOUND,
                domain.offering_not_found_detail(request.offering_id),
                request.participant,
            )
            await repo.record(unknown, ctx.correlation_id, ctx)

    async def _decide_with(
        self, repo: SeatRepository, seats: OfferingSeats, ctx: RequestContext, request: RegistrationRequested
    ) -> None:
        applicant = Applicant.of(ctx.request_id, request)
        await repo.load_holders([(seats.offering_id, applicant)])
        seats.request(applicant, self.clock())
        consented = replace(ctx, privacy_notice_version=request.privacy_notice_version, source=request.source)
        await repo.publish(seats, ctx.correlation_id, consented)

    async def expire_deferred(self, uow: UnitOfWork) -> int:
        """Requests whose offering never arrived get `offering_not_found` once the wait is over."""
        repo = self._repository(uow)
        rows = await store.expired_deferred(uow.conn, self.offering_wait_seconds)
        for row in rows:
            ctx, request, envelope = _deferred(row)
            await self._decide(repo, ctx, request, envelope=envelope, may_defer=False)
        await repo.save()
        return len(rows)

    async def reject_deferred(
        self, uow: UnitOfWork, rows: Sequence[store.RequestRow], reason: RejectionReason, detail: str
    ) -> None:
        """Answer requests still waiting for their offering with a rejection now.

        Used by the purge (consent withdrawn): the rejection names no recipient, so that the person's
        data leave in no new event once they asked to be forgotten.
        """
        repo = self._repository(uow)
        for row in rows:
            ctx = _deferred_context(row)
            await repo.record(
                rejection(row.request_id, row.offering_id, reason, detail), ctx.correlation_id, ctx
            )
        await repo.save()

    # Cancellations -----------------------------------------------------------------------------------

    async def cancel_registration(
        self,
        uow: UnitOfWork,
        registration_id: str,
        cause: CancellationCause,
        reason: str | None,
        correlation_id: str,
        *,
        caller: Caller = STAFF,
    ) -> None:
        """Cancel one registration and give its seat to the waiting list; raises NotFound (also for a
        token that is not this registration's) or Conflict (already cancelled, or begun for a participant)."""
        offering_id = await store.offering_of_registration(uow.conn, registration_id)
        if offering_id is None:
            raise NotFound(registration_id)
        repo = self._repository(uow)
        seats = await repo.get(offering_id)  # lock order: offering, then registration
        assert seats is not None
        registration = await store.get_registration(uow.conn, registration_id, lock=True)
        assert registration is not None
        if not caller.may_see(self.link_secret, registration.request_id):
            raise NotFound(registration_id)
        now = self.clock()
        try:
            seats.cancel(registration, cause, reason, now, by_staff=caller.staff)
        except CannotCancel as exc:
            raise Conflict(str(exc)) from exc
        await repo.fill_free_seats(seats, now, correlation_id)
        await repo.save()

    async def promote_by_hand(
        self, uow: UnitOfWork, offering_id: str, registration_id: str, actor: str, *, over_capacity: bool
    ) -> None:
        """An organiser moves a waitlisted person to a confirmed seat (see `OfferingSeats.promote_by_hand`),
        recording who decided; the same `registration.confirmed` follows as for an automatic promotion.
        Raises NotFound (unknown, or not this offering's) or Conflict (not waitlisted, no free seat)."""
        repo = self._repository(uow)
        seats = await repo.get(offering_id)  # lock order: offering, then registration
        registration = await store.get_registration(uow.conn, registration_id, lock=True)
        if seats is None or registration is None or registration.offering_id != offering_id:
            raise NotFound(registration_id)
        try:
            seats.promote_by_hand(registration, over_capacity=over_capacity)
        except CannotPromote as exc:
            raise Conflict(str(exc)) from exc
        await repo.publish(seats, f"promote-{registration_id}")
        await store.set_promoted(uow.conn, registration_id, actor, self.clock())
        await repo.save()

    # Catalogue ---------------------------------------------------------------------------------------

    async def change_offering(self, uow: UnitOfWork, state: OfferingState, correlation_id: str) -> None:
        """Catalogue's new state of an offering: stale states and anything after a cancellation change
        nothing; a capacity increase fills from the waiting list; deferred requests are decided now."""
        repo = self._repository(uow)
        seats = await repo.get(state.offering_id)
        if seats is not None and not seats.takes_revision(state.revision):
            return
        if state.status == OfferingStatus.CANCELLED:
            await self._cancel_offering(repo, state.offering_id, OFFERING_CANCELLED_REASON, correlation_id)
            return
        await store.upsert_offering(uow.conn, state)
        if seats is None:  # first heard of: a concurrent first event may have decided meanwhile
            seats = await repo.reload(state.offering_id)
            assert seats is not None
        else:
            seats.revise(store.offering_of_state(state), state.revision)
        await repo.fill_free_seats(seats, self.clock(), correlation_id)
        for row in await store.deferred_for(uow.conn, state.offering_id):
            ctx, request, _ = _deferred(row)
            await self._decide_with(repo, seats, ctx, request)
        await repo.save()

    async def cancel_offering(
        self, uow: UnitOfWork, offering_id: str, reason: str, correlation_id: str
    ) -> None:
        await self._cancel_offering(self._repository(uow), offering_id, reason, correlation_id)

    async def _cancel_offering(
        self, repo: SeatRepository, offering_id: str, reason: str, correlation_id: str
    ) -> None:
        """Every live registration ends, and requests waiting for the offering are turned away."""
        conn = repo.uow.conn
        await store.mark_cancelled(conn, offering_id, self.clock())
        seats = await repo.reload(offering_id)
        assert seats is not None
        seats.cancel_offering(reason, await store.live_registrations(conn, offering_id))
        await repo.publish(seats, correlation_id)
        for row in await store.deferred_for(conn, offering_id):
            _, request, _ = _deferred(row)
            ctx = RequestContext(row.request_id, row.request_id, row.reply_to, row.correlation_id)
            detail = domain.not_open_detail(OfferingStatus.CANCELLED)
            seats.reject(row.request_id, RejectionReason.OFFERING_NOT_OPEN, detail, request.participant)
            await repo.publish(seats, ctx.correlation_id, ctx)
        await repo.save()

    # Maintenance -------------------------------------------------------------------------------------

    async def backfill_token_hashes(self, uow: UnitOfWork, batch: int) -> int:
        """Registrations from before personal tokens get their token's hash; returns how many."""
        rows = await store.without_token_hash(uow.conn, batch)
        hashes = [
            (rid, links.token_hash(links.personal_token(self.link_secret, request_id)))
            for rid, request_id in rows
        ]
        await store.set_token_hashes(uow.conn, hashes)
        return len(rows)


async def _answer_again(uow: UnitOfWork, request_id: str, ctx: RequestContext) -> None:
    """A redelivered or republished request changes nothing; its asker may hear the answer again."""
    if ctx.reply_to is None:
        return
    row = await store.get_request(uow.conn, request_id)
    if row is not None and row.outcome is not None:
        uow.reply(
            CloudEvent[dict[str, object]].model_validate(row.outcome), ctx.reply_to, ctx.reply_correlation_id
        )
