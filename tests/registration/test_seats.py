"""The seat aggregate of one offering, without I/O: decisions, cancellations, capacity changes, promotion."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from seats_kit import NOW, Book, applicant, fill_free_seats, new_seats, offering

from qti_contracts import (
    CancellationCause,
    OfferingStatus,
    RegistrationCancelled,
    RegistrationConfirmed,
    RegistrationRejected,
    RegistrationWaitlisted,
    RejectionReason,
)
from services.registration.seats import ALREADY_CANCELLED, STARTED_DETAIL, CannotCancel, OfferingSeats


def decide_all(seats: OfferingSeats, book: Book, count: int) -> list[str]:
    types = [type(seats.request(applicant(n), NOW)).__name__ for n in range(count)]
    book.apply(seats.pull_events())
    return types


def test_confirms_up_to_capacity_then_waitlists_in_order_then_rejects() -> None:
    seats, book = new_seats(offering(capacity=2, waitlist_limit=2)), Book()
    assert decide_all(seats, book, 5) == [
        "RegistrationConfirmed",
        "RegistrationConfirmed",
        "RegistrationWaitlisted",
        "RegistrationWaitlisted",
        "RegistrationRejected",
    ]
    assert (seats.confirmed, seats.waitlisted, seats.version) == (2, 2, 4)
    positions = [book.rows[rid] for rid in book.waiting]
    assert [row.request_id for row in positions] == ["req-2", "req-3"]


def test_each_seat_change_carries_the_next_occupancy_version() -> None:
    seats = new_seats(offering(capacity=1, waitlist_limit=1))
    confirmed = seats.request(applicant(1), NOW)
    waitlisted = seats.request(applicant(2), NOW)
    assert isinstance(confirmed, RegistrationConfirmed) and isinstance(waitlisted, RegistrationWaitlisted)
    assert confirmed.occupancy is not None and waitlisted.occupancy is not None
    assert (confirmed.occupancy.version, waitlisted.occupancy.version) == (1, 2)
    assert waitlisted.position == 1
    assert seats.changed


def test_a_rejection_names_who_asked() -> None:
    seats = new_seats(offering())
    outcome = seats.request(applicant(1, consent=False), NOW)
    assert isinstance(outcome, RegistrationRejected)
    assert outcome.reason == RejectionReason.CONSENT_MISSING
    assert outcome.recipient is not None and str(outcome.recipient.email) == "anna.1@example.de"
    assert not seats.changed  # a rejection takes no seat


def test_duplicates_and_the_company_limit_count_this_batchs_own_decisions() -> None:
    seats = new_seats(offering(capacity=5, max_per_company=1))
    seats.request(applicant(1, company="Muster GmbH"), NOW)
    again = seats.request(applicant(1, company="Andere GmbH"), NOW)
    colleague = seats.request(applicant(2, company="  muster   GMBH "), NOW)
    assert isinstance(again, RegistrationRejected) and isinstance(colleague, RegistrationRejected)
    assert again.reason == RejectionReason.DUPLICATE_REGISTRATION
    assert colleague.reason == RejectionReason.COMPANY_LIMIT_REACHED


def test_a_cancellation_frees_the_seat_for_the_head_of_the_waiting_list() -> None:
    seats, book = new_seats(offering(capacity=1, waitlist_limit=3)), Book()
    decide_all(seats, book, 3)
    first = next(row for row in book.rows.values() if row.request_id == "req-0")
    cancelled = seats.cancel(first, CancellationCause.PARTICIPANT, None, NOW, by_staff=False)
    assert cancelled.was_confirmed
    fill_free_seats(seats, book)
    promoted = [book.rows[rid].request_id for rid in book.rows if book.rows[rid].status == "confirmed"]
    assert promoted == ["req-1"]
    assert [book.rows[rid].request_id for rid in book.waiting] == ["req-2"]
    assert (seats.confirmed, seats.waitlisted) == (1, 1)


def test_a_cancelled_person_may_register_again() -> None:
    seats, book = new_seats(offering(capacity=2)), Book()
    decide_all(seats, book, 1)
    row = next(iter(book.rows.values()))
    seats.cancel(row, CancellationCause.PARTICIPANT, None, NOW, by_staff=False)
    book.apply(seats.pull_events())
    assert isinstance(seats.request(applicant(0), NOW), RegistrationConfirmed)


def test_no_participant_cancellation_and_no_promotion_once_the_offering_has_begun() -> None:
    seats, book = new_seats(offering(capacity=1, waitlist_limit=1)), Book()
    decide_all(seats, book, 2)
    confirmed = next(row for row in book.rows.values() if row.status == "confirmed")
    later = NOW + timedelta(days=13)  # after the first session's start
    with pytest.raises(CannotCancel, match=STARTED_DETAIL[:30]):
        seats.cancel(confirmed, CancellationCause.PARTICIPANT, None, later, by_staff=False)
    seats.cancel(confirmed, CancellationCause.ORGANISER, "Korrektur", later, by_staff=True)
    assert seats.promotable(later) == 0
    fill_free_seats(seats, book, later)
    assert [book.rows[rid].request_id for rid in book.waiting] == ["req-1"]  # nobody moved up


def test_a_registration_is_cancelled_once() -> None:
    seats, book = new_seats(offering()), Book()
    decide_all(seats, book, 1)
    row = next(iter(book.rows.values()))
    seats.cancel(row, CancellationCause.PARTICIPANT, None, NOW, by_staff=False)
    book.apply(seats.pull_events())
    with pytest.raises(CannotCancel, match=ALREADY_CANCELLED):
        seats.cancel(book.rows[row.registration_id], CancellationCause.ORGANISER, None, NOW, by_staff=True)


def test_a_capacity_increase_fills_from_the_list_and_a_decrease_removes_nobody() -> None:
    seats, book = new_seats(offering(capacity=1, waitlist_limit=3)), Book()
    decide_all(seats, book, 4)
    seats.revise(offering(capacity=3, waitlist_limit=3), revision=2)
    fill_free_seats(seats, book)
    assert (seats.confirmed, seats.waitlisted) == (3, 1)
    seats.revise(offering(capacity=1, waitlist_limit=3), revision=3)
    fill_free_seats(seats, book)
    assert (seats.confirmed, seats.waitlisted) == (3, 1)
    assert isinstance(seats.request(applicant(9), NOW), RegistrationWaitlisted)


def test_stale_revisions_and_anything_after_a_cancellation_are_no_news() -> None:
    seats = new_seats(offering())
    assert seats.takes_revision(2) and not seats.takes_revision(1)
    seats.cancel_offering("Angebot abgesagt", [])
    assert not seats.takes_revision(99)


def test_cancelling_the_offering_ends_every_live_registration_and_closes_it() -> None:
    seats, book = new_seats(offering(capacity=1, waitlist_limit=1)), Book()
    decide_all(seats, book, 2)
    events = seats.cancel_offering("Angebot abgesagt", book.live())
    assert [e.cause for e in events] == [CancellationCause.OFFERING_CANCELLED] * 2
    assert all(isinstance(e, RegistrationCancelled) for e in events)
    assert (seats.confirmed, seats.waitlisted) == (0, 0)
    late = seats.request(applicant(7), NOW)
    assert isinstance(late, RegistrationRejected) and late.reason == RejectionReason.OFFERING_NOT_OPEN


def test_nothing_moves_up_unless_the_offering_is_published() -> None:
    seats, book = new_seats(offering(capacity=1, waitlist_limit=1)), Book()
    decide_all(seats, book, 2)
    seats.revise(replace(offering(capacity=2, waitlist_limit=1), status=OfferingStatus.DRAFT), revision=2)
    assert seats.promotable(NOW) == 0
