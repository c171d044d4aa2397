"""The registration service's entry points: one unit of work per message (or batch) and per staff or
participant action, with the inbox claim; the work itself is `commands`' and `queries`'."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from qti_contracts import (
    CancellationCause,
    OfferingCancelled,
    OfferingState,
    RawEvent,
    RegistrationCancellationRequested,
    RegistrationRequested,
)
from qti_runtime import links
from qti_runtime.consumer import Delivery, parse_payload
from qti_runtime.db import Database
from qti_runtime.logging import get_logger
from qti_runtime.unit_of_work import unit_of_work
from services.registration import attendance, store
from services.registration.access import Caller, Conflict, NotFound
from services.registration.commands import Clock, RegistrationCommands, derived_request_id
from services.registration.queries import RegistrationQueries
from services.registration.repository import RequestContext, reply_allowed
from services.registration.settings import RegistrationSettings

log = get_logger(__name__)

REQUESTS_CONSUMER = "registration.requests"
CATALOGUE_CONSUMER = "registration.catalogue"


def _now() -> datetime:
    return datetime.now(UTC)


def request_context(event: RawEvent, delivery: Delivery) -> RequestContext:
    """Where the request's answer goes: a reply queue only if it is a frontend's own."""
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


class RegistrationService:
    """Registration's handlers for the consumers (`consumers.py`), the HTTP API and background jobs."""

    def __init__(self, db: Database, settings: RegistrationSettings, *, clock: Clock = _now) -> None:
        self.db = db
        self.settings = settings
        self.commands = RegistrationCommands(settings, clock)
        self.queries = RegistrationQueries(db, settings.link_secret)

    def personal_token(self, request_id: str) -> str:
        return links.personal_token(self.settings.link_secret, request_id)

    # Requests ----------------------------------------------------------------------------------------

    async def on_requested(self, event: RawEvent, delivery: Delivery) -> None:
        await self.on_requested_batch([(event, delivery)])

    async def on_requested_batch(self, items: Sequence[tuple[RawEvent, Delivery]]) -> None:
        """A batch of requests in one transaction (see `RegistrationCommands.decide_requests`), ordered by
        offering so that replicas lock in the same order; the sort keeps arrival order per offering."""
        ordered = sorted(items, key=lambda item: str(item[0].data.get("offering_id")))
        arrivals = [(event, request_context(event, delivery)) for event, delivery in ordered]
        async with unit_of_work(self.db) as uow:
            fresh = await uow.claim_many(REQUESTS_CONSUMER, [event.id for event, _ in arrivals])
            await self.commands.decide_requests(uow, arrivals, fresh)

    async def submit(
        self, request: RegistrationRequested, request_id: str | None, correlation_id: str | None = None
    ) -> tuple[str, bool]:
        """HTTP entry: note the request as pending and send it on like any frontend.

        `request_id` is the client's own key: the request gets an id derived from it and the submitted
        data (`derived_request_id`). Returns the request id and whether it is new (a repeated submission
        is accepted once).
        """
        request_id = derived_request_id(request_id, request) if request_id else str(uuid.uuid4())
        async with unit_of_work(self.db) as uow:
            new = await self.commands.submit(uow, request, request_id, correlation_id or request_id)
        return request_id, new

    async def expire_deferred(self) -> int:
        async with unit_of_work(self.db) as uow:
            return await self.commands.expire_deferred(uow)

    # Cancellations -----------------------------------------------------------------------------------

    async def on_cancellation_requested(self, event: RawEvent, delivery: Delivery) -> None:
        command = parse_payload(RegistrationCancellationRequested, event)
        async with unit_of_work(self.db) as uow:
            if not await uow.claim(REQUESTS_CONSUMER, event.id):
                return
            try:
                await self.commands.cancel_registration(
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
            await self.commands.cancel_registration(
                uow, registration_id, cause, reason, registration_id, caller=caller
            )
            row = await store.get_registration(uow.conn, registration_id)
        assert row is not None
        return row

    async def promote_by_hand(
        self, offering_id: str, registration_id: str, actor: str, *, over_capacity: bool
    ) -> store.RegistrationRow:
        """HTTP entry (staff): an organiser's manual promotion; raises NotFound or Conflict."""
        async with unit_of_work(self.db) as uow:
            await self.commands.promote_by_hand(
                uow, offering_id, registration_id, actor, over_capacity=over_capacity
            )
            row = await store.get_registration(uow.conn, registration_id)
        assert row is not None
        return row

    # Catalogue ---------------------------------------------------------------------------------------

    async def on_offering_changed(self, event: RawEvent, delivery: Delivery) -> None:
        state = parse_payload(OfferingState, event)
        async with unit_of_work(self.db) as uow:
            if await uow.claim(CATALOGUE_CONSUMER, event.id):
                await self.commands.change_offering(uow, state, event.correlationid or event.id)

    async def on_offering_cancelled(self, event: RawEvent, delivery: Delivery) -> None:
        cancelled = parse_payload(OfferingCancelled, event)
        async with unit_of_work(self.db) as uow:
            if await uow.claim(CATALOGUE_CONSUMER, event.id):
                correlation = event.correlationid or event.id
                await self.commands.cancel_offering(uow, cancelled.offering_id, cancelled.reason, correlation)

    # Attendance and maintenance ----------------------------------------------------------------------

    async def record_attendance(self, offering_id: str, session_id: str, records: dict[str, bool]) -> int:
        """Staff record who attended one session; returns how many records changed."""
        async with unit_of_work(self.db) as uow:
            return await attendance.record_attendance(
                uow, offering_id, session_id, records, self.settings.link_secret
            )

    async def backfill_token_hashes(self, batch: int = 500) -> int:
        """Registrations from before personal tokens get their token's hash; returns how many."""
        done = 0
        while True:
            async with unit_of_work(self.db) as uow:
                count = await self.commands.backfill_token_hashes(uow, batch)
            done += count
            if count < batch:
                return done
