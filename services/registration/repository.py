"""Offerings' seats loaded and saved within one unit of work, with what their events cause.

`SeatRepository` locks offerings (their row lock serialises every seat decision for one offering, across
replicas), hands out their `OfferingSeats`, loads what the aggregates ask for (live holders, the head of
the waiting list) and turns their recorded events into effects: the event into the outbox, the answer to
the asker's reply queue, new registrations, status changes and the requests' stored outcomes.

New registrations, outcomes and seat counters are kept in memory and written together by `save`, in one
statement, so that a batch of decisions costs one round trip; status changes of existing registrations
are written at once (later loads of the same transaction must see them).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from pydantic import SecretStr

from qti_contracts import (
    FRONTEND_REPLY_PREFIX,
    CloudEvent,
    RegistrationCancelled,
    RegistrationConfirmed,
    RegistrationRejected,
    RegistrationSource,
    RegistrationWaitlisted,
    RoutingKey,
    make_event,
)
from qti_runtime import links
from qti_runtime.unit_of_work import UnitOfWork
from services.registration import store
from services.registration.domain import LiveHolders, Status
from services.registration.seats import Applicant, OfferingSeats, SeatEvent

SOURCE = "/registration"
DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"
ROUTING_KEYS: dict[type[SeatEvent], str] = {
    RegistrationConfirmed: RoutingKey.REGISTRATION_CONFIRMED,
    RegistrationWaitlisted: RoutingKey.REGISTRATION_WAITLISTED,
    RegistrationRejected: RoutingKey.REGISTRATION_REJECTED,
    RegistrationCancelled: RoutingKey.REGISTRATION_CANCELLED,
}


def reply_allowed(reply_to: str | None) -> bool:
    """Only a frontend's own reply queue hears an outcome with personal data, never any other queue."""
    return reply_to is not None and (
        reply_to.startswith(DIRECT_REPLY_TO) or reply_to.startswith(FRONTEND_REPLY_PREFIX)
    )


@dataclass
class RequestContext:
    """Where the answer to one request goes."""

    request_id: str
    correlation_id: str
    reply_to: str | None = None
    reply_correlation_id: str | None = None
    # The privacy notice the person consented to, kept with the registration the request makes.
    privacy_notice_version: str | None = None
    # Where the request came from (an alert, an alternative, interest): carried on its first outcome.
    source: RegistrationSource | None = None


def _attributed(event: SeatEvent, ctx: RequestContext | None) -> SeatEvent:
    """The first outcome of a request carries the request's source (an alert, an alternative)."""
    if ctx is None or ctx.source is None:
        return event
    if not isinstance(event, RegistrationConfirmed | RegistrationWaitlisted):
        return event
    if event.from_waitlist or event.request_id != ctx.request_id:
        return event
    return event.model_copy(update={"source": ctx.source})


def _subject(event: SeatEvent) -> str:
    return event.request_id if isinstance(event, RegistrationRejected) else event.registration_id


class SeatRepository:
    """The seats of the offerings one unit of work locked; `holders` is shared by them (its keys carry
    the offering) and counts this transaction's decisions, which the database shows only after `save`."""

    def __init__(self, uow: UnitOfWork, link_secret: SecretStr) -> None:
        self.uow = uow
        self.link_secret = link_secret
        self.loaded: dict[str, OfferingSeats] = {}
        self.holders = LiveHolders()
        self._registrations: list[store.NewRegistration] = []
        self._outcomes: list[store.Outcome] = []

    # Loading -----------------------------------------------------------------------------------------

    async def lock_many(self, offering_ids: Sequence[str]) -> None:
        """Lock the offerings in one statement, in id order (see `store.lock_offerings`)."""
        for row in await store.lock_offerings(self.uow.conn, offering_ids):
            self._keep(row.seats())

    async def get(self, offering_id: str) -> OfferingSeats | None:
        """The offering's seats, locking the offering unless this unit of work did; None if unknown."""
        seats = self.loaded.get(offering_id)
        if seats is None:
            row = await store.lock_offering(self.uow.conn, offering_id)
            seats = self._keep(row.seats()) if row is not None else None
        return seats

    async def reload(self, offering_id: str) -> OfferingSeats | None:
        """The seats as the database holds them now (after SQL that changed the offering's row)."""
        self.loaded.pop(offering_id, None)
        return await self.get(offering_id)

    def _keep(self, seats: OfferingSeats) -> OfferingSeats:
        seats.holders = self.holders
        self.loaded[seats.offering_id] = seats
        return seats

    async def load_holders(self, applicants: Sequence[tuple[str, Applicant]]) -> None:
        """Who holds live registrations, for these (offering, applicant)s not known yet, in one query."""
        keys = [
            (offering_id, a.email, a.company_key)
            for offering_id, a in applicants
            if not self.holders.knows(offering_id, a.email, a.company_key)
        ]
        if keys:
            self.holders.merge(await store.load_live_holders(self.uow.conn, keys))

    async def fill_free_seats(self, seats: OfferingSeats, now: datetime, correlation_id: str) -> None:
        """Give free seats to the head of the waiting list, as far as the seats allow, and publish what
        the seats recorded. Earlier events are published first: their status changes must be written
        before the waiting list is read (a cancelled waiting place is no longer its head)."""
        await self.publish(seats, correlation_id)
        count = seats.promotable(now)
        if count > 0:
            seats.promote(await store.first_waitlisted(self.uow.conn, seats.offering_id, count), now)
            await self.publish(seats, correlation_id)

    # Effects -----------------------------------------------------------------------------------------

    async def publish(
        self, seats: OfferingSeats, correlation_id: str, ctx: RequestContext | None = None
    ) -> None:
        """The seats' recorded events into the outbox; an outcome of a request also answers `ctx`."""
        for event in seats.pull_events():
            await self.record(event, correlation_id, ctx)

    async def record(self, event: SeatEvent, correlation_id: str, ctx: RequestContext | None = None) -> None:
        event = _attributed(event, ctx)
        cloud = make_event(
            ROUTING_KEYS[type(event)],
            event,
            source=SOURCE,
            subject=_subject(event),
            correlationid=correlation_id,
        )
        self.uow.emit(cloud)
        if isinstance(event, RegistrationCancelled):
            await store.set_status(
                self.uow.conn, event.registration_id, Status.CANCELLED, cancel_cause=event.cause.value
            )
        elif isinstance(event, RegistrationConfirmed) and event.from_waitlist:
            await store.set_status(self.uow.conn, event.registration_id, Status.CONFIRMED, from_waitlist=True)
        else:
            assert ctx is not None and ctx.request_id == event.request_id, "an outcome answers its request"
            self._answer(ctx, cloud, event)

    def _answer(
        self,
        ctx: RequestContext,
        cloud: CloudEvent[SeatEvent],
        event: RegistrationConfirmed | RegistrationWaitlisted | RegistrationRejected,
    ) -> None:
        """Reply to the asker and keep the outcome as the request's answer.

        The asker's first answer to a registration also carries its personal token: the frontend that
        submitted the request is the only party besides the participant that may hold it. The published
        event and the stored answer do not.
        """
        token = None
        if not isinstance(event, RegistrationRejected):
            token = links.personal_token(self.link_secret, ctx.request_id)
            registration = _new_registration(event, links.token_hash(token), ctx.privacy_notice_version)
            self._registrations.append(registration)
        if ctx.reply_to:
            body = None
            if token is not None:
                answer = json.loads(self.uow.serialised(cloud))
                answer["data"]["personal_token"] = token
                body = json.dumps(answer, ensure_ascii=False, separators=(",", ":")).encode()
            self.uow.reply(cloud, ctx.reply_to, ctx.reply_correlation_id, body=body)
        outcome_json = self.uow.serialised(cloud).decode()
        self._outcomes.append(store.Outcome(ctx.request_id, event.offering_id, cloud.type, outcome_json))

    async def save(self) -> None:
        """Write the new registrations, the outcomes and the changed seat counters, in one statement."""
        counters = [
            store.SeatCounters(seats.offering_id, seats.confirmed, seats.waitlisted, seats.version)
            for seats in self.loaded.values()
            if seats.changed
        ]
        if self._registrations or self._outcomes or counters:
            await store.write_decisions(self.uow.conn, self._registrations, self._outcomes, counters)
        for seats in self.loaded.values():
            seats.changed = False
        self._registrations.clear()
        self._outcomes.clear()


def _new_registration(
    event: RegistrationConfirmed | RegistrationWaitlisted, token_hash: str, notice_version: str | None
) -> store.NewRegistration:
    applicant = Applicant(event.request_id, event.participant, event.company, consent=True)
    return store.NewRegistration(
        registration_id=event.registration_id,
        request_id=event.request_id,
        offering_id=event.offering_id,
        status=Status.CONFIRMED if isinstance(event, RegistrationConfirmed) else Status.WAITLISTED,
        email=applicant.email,
        company_key=applicant.company_key,
        participant=event.participant.model_dump(mode="json"),
        company=event.company.model_dump(mode="json"),
        token_hash=token_hash,
        privacy_notice_version=notice_version,
    )
