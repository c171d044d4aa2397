"""The seats of one offering: the aggregate every seat change of registration goes through.

`OfferingSeats` takes registration requests, cancellations, changes of the offering (capacity, status,
dates) and promotions from the waiting list, applies the rules of `domain` and records the events each
step causes, as contract payloads in `events`. It does no I/O: the commands (`commands.py`) load it with
the offering's row locked, give it what it asks for (who already holds a registration, the head of the
waiting list) and save it, its events going to the outbox in the same transaction.

Each recorded seat change carries the next `Occupancy.version`, so consumers keep the newest snapshot.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Protocol

from qti_contracts import (
    CancellationCause,
    Company,
    Occupancy,
    OfferingStatus,
    Participant,
    RegistrationCancelled,
    RegistrationConfirmed,
    RegistrationRejected,
    RegistrationRequested,
    RegistrationWaitlisted,
    RejectionReason,
)
from services.registration import domain
from services.registration.domain import Confirm, LiveHolders, Offering, Reject, Status

SeatEvent = RegistrationConfirmed | RegistrationWaitlisted | RegistrationRejected | RegistrationCancelled

ALREADY_CANCELLED = "Diese Anmeldung ist bereits storniert."
STARTED_DETAIL = (
    "Die Veranstaltung hat bereits begonnen. Eine Absage ist jetzt nicht mehr online möglich; "
    "bitte wenden Sie sich direkt an den QTI-Knoten."
)


NOT_WAITLISTED = "Diese Person steht nicht (mehr) auf der Warteliste."
NOT_PUBLISHED = "Das Angebot ist nicht veröffentlicht; niemand kann nachrücken."
NO_FREE_SEAT = (
    "Es ist kein Platz frei. Wer trotzdem nachrücken soll, braucht die ausdrückliche Entscheidung, "
    "die Kapazität zu überschreiten."
)


class CannotCancel(Exception):
    """The registration cannot be cancelled (any more); the message says why, in German."""


class CannotPromote(Exception):
    """The person cannot be moved off the waiting list by hand; the message says why, in German."""


@dataclass(frozen=True)
class Applicant:
    """One registration request, as the seats see it, with the keys of the duplicate and company rules."""

    request_id: str
    participant: Participant
    company: Company
    consent: bool
    email: str = field(init=False)
    company_key: str = field(init=False)

    def __post_init__(self) -> None:
        # Computed once: every decision of a batch looks them up several times.
        object.__setattr__(self, "email", domain.normalise_email(str(self.participant.email)))
        object.__setattr__(
            self, "company_key", domain.company_key(self.company.name, self.company.postal_code)
        )

    @classmethod
    def of(cls, request_id: str, request: RegistrationRequested) -> Applicant:
        return cls(request_id, request.participant, request.company, request.privacy_consent)


class Holder(Protocol):
    """A registration of the offering, as stored (`store.RegistrationRow` is one)."""

    @property
    def registration_id(self) -> str: ...
    @property
    def request_id(self) -> str: ...
    @property
    def status(self) -> Status: ...
    @property
    def participant(self) -> dict[str, Any]: ...
    @property
    def company(self) -> dict[str, Any]: ...


def rejection(
    request_id: str,
    offering_id: str | None,
    reason: RejectionReason,
    detail: str,
    recipient: Participant | None = None,
) -> RegistrationRejected:
    """The answer to a request that gets no registration; `recipient` is who asked, if known."""
    return RegistrationRejected(
        request_id=request_id, offering_id=offering_id, reason=reason, detail=detail, recipient=recipient
    )


def _holder_keys(holder: Holder) -> tuple[str, str]:
    company = holder.company
    return (
        domain.normalise_email(str(holder.participant.get("email", ""))),
        domain.company_key(str(company.get("name", "")), str(company.get("postal_code", ""))),
    )


@dataclass
class OfferingSeats:
    """Seat counters, facts and live holders of one offering, and the events of what happened to them.

    `holders` covers the (e-mail, company) keys loaded so far; `knows` tells whether a request's keys
    are among them, and the caller loads them before `request` if not.
    """

    offering: Offering
    confirmed: int
    waitlisted: int
    version: int
    revision: int
    holders: LiveHolders = field(default_factory=LiveHolders)
    events: list[SeatEvent] = field(default_factory=list)
    changed: bool = False  # counters to be saved

    @property
    def offering_id(self) -> str:
        return self.offering.offering_id

    # Requests ----------------------------------------------------------------------------------------

    def knows(self, applicant: Applicant) -> bool:
        return self.holders.knows(self.offering_id, applicant.email, applicant.company_key)

    def request(self, applicant: Applicant, now: datetime) -> SeatEvent:
        """Decide one request: confirmed, waitlisted or rejected; records and returns the outcome."""
        assert self.knows(applicant), "load the applicant's live holders first"
        registered, company_count = self.holders.of(self.offering_id, applicant.email, applicant.company_key)
        decision = domain.decide(
            self.offering,
            self.confirmed,
            self.waitlisted,
            consent=applicant.consent,
            now=now,
            already_registered=registered,
            company_live_registrations=company_count,
        )
        if isinstance(decision, Reject):
            return self.reject(applicant.request_id, decision.reason, decision.detail, applicant.participant)
        self.holders.add(self.offering_id, applicant.email, applicant.company_key)
        common: dict[str, Any] = {
            "registration_id": str(uuid.uuid4()),
            "request_id": applicant.request_id,
            "offering_id": self.offering_id,
            "participant": applicant.participant,
            "company": applicant.company,
            "from_waitlist": False,
        }
        outcome: SeatEvent
        if isinstance(decision, Confirm):
            outcome = RegistrationConfirmed(**common, occupancy=self._change(confirmed=1))
        else:
            outcome = RegistrationWaitlisted(
                **common, position=decision.position, occupancy=self._change(waitlisted=1)
            )
        self.events.append(outcome)
        return outcome

    def reject(
        self, request_id: str, reason: RejectionReason, detail: str, recipient: Participant | None
    ) -> RegistrationRejected:
        """Turn a request away without looking at the seats (e.g. its offering was cancelled)."""
        outcome = rejection(request_id, self.offering_id, reason, detail, recipient)
        self.events.append(outcome)
        return outcome

    # Cancellations -----------------------------------------------------------------------------------

    def cancel(
        self,
        holder: Holder,
        cause: CancellationCause,
        reason: str | None,
        now: datetime,
        *,
        by_staff: bool,
    ) -> RegistrationCancelled:
        """Free the holder's seat or waiting-list place. Participants may not cancel once the offering
        has begun; staff may still correct. Filling the seat is `promote`'s part."""
        if holder.status == Status.CANCELLED:
            raise CannotCancel(ALREADY_CANCELLED)
        if not by_staff and self.offering.has_begun(now):
            raise CannotCancel(STARTED_DETAIL)
        return self._cancel(holder, cause, reason)

    def _cancel(self, holder: Holder, cause: CancellationCause, reason: str | None) -> RegistrationCancelled:
        was_confirmed = holder.status == Status.CONFIRMED
        occupancy = self._change(confirmed=-1) if was_confirmed else self._change(waitlisted=-1)
        self.holders.remove(self.offering_id, *_holder_keys(holder))
        event = RegistrationCancelled(
            registration_id=holder.registration_id,
            offering_id=self.offering_id,
            cause=cause,
            reason=reason,
            was_confirmed=was_confirmed,
            occupancy=occupancy,
        )
        self.events.append(event)
        return event

    def cancel_offering(self, reason: str, live: Sequence[Holder]) -> list[RegistrationCancelled]:
        """The offering was cancelled (final): every live registration ends with it."""
        self.offering = replace(self.offering, status=OfferingStatus.CANCELLED)
        return [
            self._cancel(holder, CancellationCause.OFFERING_CANCELLED, reason)
            for holder in live
            if holder.status != Status.CANCELLED
        ]

    # Changes of the offering and the waiting list ----------------------------------------------------

    def takes_revision(self, revision: int) -> bool:
        """Whether catalogue's state of that revision is news: never after a cancellation, which is final."""
        return self.offering.status != OfferingStatus.CANCELLED and revision > self.revision

    def revise(self, offering: Offering, revision: int) -> None:
        """New facts from catalogue (capacity, dates, status); a capacity decrease never removes anyone,
        an increase leaves free seats for `promote`."""
        assert offering.offering_id == self.offering_id
        self.offering = offering
        self.revision = revision

    def promotable(self, now: datetime) -> int:
        """How many people the waiting list's head may move up now: none unless published, and none once
        the offering has begun (nobody is told of a place in something already under way)."""
        if self.offering.status != OfferingStatus.PUBLISHED or self.offering.has_begun(now):
            return 0
        return max(0, min(self.offering.capacity - self.confirmed, self.waitlisted))

    def promote(self, head: Sequence[Holder], now: datetime) -> list[RegistrationConfirmed]:
        """Move the first of the waiting list (`head`, in waiting-list order) up to free seats."""
        promoted: list[RegistrationConfirmed] = []
        for holder in head[: self.promotable(now)]:
            assert holder.status == Status.WAITLISTED, "only the waiting list's head moves up"
            event = RegistrationConfirmed(
                registration_id=holder.registration_id,
                request_id=holder.request_id,
                offering_id=self.offering_id,
                participant=holder.participant,
                company=holder.company,
                from_waitlist=True,
                occupancy=self._change(confirmed=1, waitlisted=-1),
            )
            self.events.append(event)
            promoted.append(event)
        return promoted

    def promote_by_hand(self, holder: Holder, *, over_capacity: bool) -> RegistrationConfirmed:
        """An organiser moves one person off the waiting list, out of its order. Only into a free seat,
        unless the organiser explicitly decides to exceed the capacity (`over_capacity`); only while
        the offering is published (staff may still do it once it has begun, e.g. on the first day)."""
        if holder.status != Status.WAITLISTED:
            raise CannotPromote(NOT_WAITLISTED)
        if self.offering.status != OfferingStatus.PUBLISHED:
            raise CannotPromote(NOT_PUBLISHED)
        if self.confirmed >= self.offering.capacity and not over_capacity:
            raise CannotPromote(NO_FREE_SEAT)
        event = RegistrationConfirmed(
            registration_id=holder.registration_id,
            request_id=holder.request_id,
            offering_id=self.offering_id,
            participant=holder.participant,
            company=holder.company,
            from_waitlist=True,
            occupancy=self._change(confirmed=1, waitlisted=-1),
        )
        self.events.append(event)
        return event

    # Bookkeeping -------------------------------------------------------------------------------------

    def pull_events(self) -> list[SeatEvent]:
        """The events recorded since the last call, oldest first."""
        events, self.events = self.events, []
        return events

    def _change(self, confirmed: int = 0, waitlisted: int = 0) -> Occupancy:
        self.confirmed += confirmed
        self.waitlisted += waitlisted
        self.version += 1
        self.changed = True
        return Occupancy(
            version=self.version,
            confirmed=self.confirmed,
            waitlisted=self.waitlisted,
            capacity=self.offering.capacity,
        )
