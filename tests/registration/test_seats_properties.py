"""Properties of the seat aggregate over any sequence of requests, cancellations and capacity changes."""

from __future__ import annotations

import contextlib
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st
from seats_kit import NOW, Book, applicant, new_seats, offering

from qti_contracts import (
    CancellationCause,
    RegistrationCancelled,
    RegistrationConfirmed,
    RegistrationRejected,
    RegistrationWaitlisted,
)
from services.registration.domain import Status
from services.registration.seats import CannotCancel, OfferingSeats, SeatEvent


@dataclass(frozen=True)
class Request:
    again: bool  # the person of an earlier request asks again (else: someone new)
    company: int
    consent: bool


@dataclass(frozen=True)
class Cancel:
    pick: int
    by_staff: bool


@dataclass(frozen=True)
class Capacity:
    capacity: int


@dataclass(frozen=True)
class Begin:
    """Time moves past the first session's start."""


Step = Request | Cancel | Capacity | Begin

requests = st.builds(
    Request, st.integers(0, 12), st.integers(0, 3), st.sampled_from([True, True, True, False])
)
cancels = st.builds(Cancel, st.integers(0, 50), st.booleans())


capacities = st.builds(Capacity, st.integers(1, 6))


def pick(kind: int, request: Request, cancel: Cancel, capacity: Capacity) -> Step:
    """Seven in ten steps are requests, so that seats fill up and the waiting list has people to move up."""
    return request if kind < 7 else cancel if kind < 9 else capacity


@st.composite
def scripts(draw: st.DrawFn) -> list[Step]:
    """Requests, cancellations, capacity changes, and perhaps the offering beginning at some point."""
    step = st.builds(pick, st.integers(0, 9), requests, cancels, capacities)
    script: list[Step] = draw(st.lists(step, min_size=8, max_size=60))
    if draw(st.booleans()):
        at = draw(st.integers(0, len(script)))
        script = [*script[:at], Begin(), *script[at:]]
    return script


@dataclass
class Run:
    """Everything the aggregate recorded, and the waiting list as it stood before each promotion."""

    seats: OfferingSeats
    book: Book
    events: list[SeatEvent] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    promotions: list[tuple[str, list[str]]] = field(default_factory=list)
    positions: list[tuple[int, int]] = field(default_factory=list)  # (reported, actual place in the list)

    def take(self) -> None:
        """Apply what the seats recorded to the stored registrations, as the repository does."""
        for event in self.seats.pull_events():
            self.book.apply([event])
            self.events.append(event)
            if isinstance(event, RegistrationWaitlisted):
                self.positions.append((event.position, self.book.waiting.index(event.registration_id) + 1))


def play(step: Step, index: int, run: Run, now: datetime) -> datetime:
    seats = run.seats
    if isinstance(step, Request):
        person = index // 2 if step.again else index  # an earlier index, or one nobody used
        asker = applicant(person, company=f"Firma {step.company}", consent=step.consent)
        run.requests.append(f"req-{index}")
        seats.request(replace(asker, request_id=f"req-{index}"), now)
    elif isinstance(step, Cancel) and run.book.live():
        live = run.book.live()
        holder = live[step.pick % len(live)]
        with contextlib.suppress(CannotCancel):  # begun, for a participant: refused, nothing recorded
            seats.cancel(holder, CancellationCause.PARTICIPANT, None, now, by_staff=step.by_staff)
    elif isinstance(step, Capacity):
        seats.revise(replace(seats.offering, capacity=step.capacity), seats.revision + 1)
    elif isinstance(step, Begin):
        now = NOW + timedelta(days=13)
    return now


def run(capacity: int, waitlist_limit: int, max_per_company: int | None, script: list[Step]) -> Run:
    facts = offering(capacity=capacity, waitlist_limit=waitlist_limit, max_per_company=max_per_company)
    result = Run(new_seats(facts), Book())
    now = NOW
    for index, step in enumerate(script):
        now = play(step, index, result, now)
        result.take()
        waiting = list(result.book.waiting)
        for promoted in result.seats.promote(result.book.head(result.seats.promotable(now)), now):
            result.promotions.append((promoted.registration_id, waiting))
        result.take()
    return result


scenarios = given(
    capacity=st.integers(1, 5),
    waitlist_limit=st.integers(0, 4),
    max_per_company=st.none() | st.integers(1, 3),
    script=scripts(),
)


@settings(max_examples=300, deadline=None)
@scenarios
def test_never_more_confirmed_than_capacity(
    capacity: int, waitlist_limit: int, max_per_company: int | None, script: list[Step]
) -> None:
    result = run(capacity, waitlist_limit, max_per_company, script)
    for event in result.events:
        if isinstance(event, RegistrationConfirmed | RegistrationWaitlisted | RegistrationCancelled):
            assert event.occupancy is not None
            if isinstance(event, RegistrationConfirmed):
                assert event.occupancy.confirmed <= event.occupancy.capacity
            if isinstance(event, RegistrationWaitlisted):
                assert event.occupancy.waitlisted <= waitlist_limit
    rows = result.book.rows.values()
    assert result.seats.confirmed == sum(row.status == Status.CONFIRMED for row in rows)
    assert result.seats.waitlisted == sum(row.status == Status.WAITLISTED for row in rows)


@settings(max_examples=300, deadline=None)
@scenarios
def test_waiting_list_order_is_kept(
    capacity: int, waitlist_limit: int, max_per_company: int | None, script: list[Step]
) -> None:
    result = run(capacity, waitlist_limit, max_per_company, script)
    assert all(reported == actual for reported, actual in result.positions)
    by_list: dict[tuple[str, ...], list[str]] = {}
    for promoted, waiting in result.promotions:
        by_list.setdefault(tuple(waiting), []).append(promoted)
    for waiting_list, promoted_together in by_list.items():
        assert promoted_together == list(waiting_list[: len(promoted_together)])  # the head, in order


@settings(max_examples=300, deadline=None)
@scenarios
def test_every_request_gets_exactly_one_outcome(
    capacity: int, waitlist_limit: int, max_per_company: int | None, script: list[Step]
) -> None:
    result = run(capacity, waitlist_limit, max_per_company, script)
    outcomes = Counter(
        event.request_id
        for event in result.events
        if isinstance(event, RegistrationRejected)
        or (isinstance(event, RegistrationConfirmed | RegistrationWaitlisted) and not event.from_waitlist)
    )
    assert outcomes == Counter(result.requests)
    versions = [
        e.occupancy.version
        for e in result.events
        if not isinstance(e, RegistrationRejected) and e.occupancy is not None
    ]
    assert versions == list(range(1, len(versions) + 1))  # every seat change, the next version
