"""Seats of an offering in memory, for the aggregate's tests: no database, no broker."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from qti_contracts import (
    Company,
    OfferingKind,
    OfferingStatus,
    Participant,
    RegistrationCancelled,
    RegistrationConfirmed,
    RegistrationWaitlisted,
)
from services.registration.domain import LiveHolders, Offering, Status
from services.registration.seats import Applicant, OfferingSeats, SeatEvent

NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


def offering(capacity: int = 2, waitlist_limit: int = 2, **overrides: Any) -> Offering:
    facts: dict[str, Any] = {
        "offering_id": "off-1",
        "status": OfferingStatus.PUBLISHED,
        "kind": OfferingKind.COURSE,
        "capacity": capacity,
        "registration_deadline": NOW + timedelta(days=10),
        "first_session_start": NOW + timedelta(days=12),
        "max_per_company": None,
        "waitlist_limit": waitlist_limit,
    }
    return Offering(**{**facts, **overrides})


def new_seats(facts: Offering) -> OfferingSeats:
    """Seats of an offering nobody registered for yet, every holder key known (there are none)."""
    return OfferingSeats(facts, confirmed=0, waitlisted=0, version=0, revision=1, holders=AllKnown())


class AllKnown(LiveHolders):
    """Live holders with every key loaded: in memory, nothing is left to ask the database."""

    def knows(self, offering_id: str, email: str, company: str) -> bool:
        return True


def applicant(n: int, *, company: str | None = None, consent: bool = True) -> Applicant:
    return Applicant(
        request_id=f"req-{n}",
        participant=Participant(given_name="Anna", family_name=f"Schmidt{n}", email=f"anna.{n}@example.de"),
        company=Company(name=company or f"Zulieferer {n} GmbH", postal_code="99610"),
        consent=consent,
    )


@dataclass(frozen=True)
class Row:
    """A stored registration (what `store.RegistrationRow` is to the aggregate)."""

    registration_id: str
    request_id: str
    status: Status
    participant: dict[str, Any]
    company: dict[str, Any]


@dataclass
class Book:
    """The registrations table in memory, kept by applying the aggregate's events as the repository does;
    `waiting` is the waiting list in order."""

    rows: dict[str, Row] = field(default_factory=dict)
    waiting: list[str] = field(default_factory=list)

    def apply(self, events: list[SeatEvent]) -> None:
        for event in events:
            if isinstance(event, RegistrationConfirmed | RegistrationWaitlisted) and not event.from_waitlist:
                status = Status.CONFIRMED if isinstance(event, RegistrationConfirmed) else Status.WAITLISTED
                self.rows[event.registration_id] = Row(
                    event.registration_id,
                    event.request_id,
                    status,
                    event.participant.model_dump(mode="json"),
                    event.company.model_dump(mode="json"),
                )
                if status == Status.WAITLISTED:
                    self.waiting.append(event.registration_id)
            elif isinstance(event, RegistrationConfirmed):
                self._set(event.registration_id, Status.CONFIRMED)
            elif isinstance(event, RegistrationCancelled):
                self._set(event.registration_id, Status.CANCELLED)

    def _set(self, registration_id: str, status: Status) -> None:
        row = self.rows[registration_id]
        self.rows[registration_id] = Row(
            row.registration_id, row.request_id, status, row.participant, row.company
        )
        if registration_id in self.waiting:
            self.waiting.remove(registration_id)

    def head(self, count: int) -> list[Row]:
        return [self.rows[rid] for rid in self.waiting[:count]]

    def live(self) -> list[Row]:
        return [row for row in self.rows.values() if row.status != Status.CANCELLED]


def fill_free_seats(seats: OfferingSeats, book: Book, now: datetime = NOW) -> None:
    """What the repository does: publish what was recorded, then give free seats to the list's head."""
    book.apply(seats.pull_events())
    seats.promote(book.head(seats.promotable(now)), now)
    book.apply(seats.pull_events())
