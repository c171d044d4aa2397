"""The seat aggregate's manual promotion (an organiser's decision), without I/O."""

from __future__ import annotations

from dataclasses import replace

import pytest
from seats_kit import NOW, Book, applicant, new_seats, offering

from qti_contracts import OfferingStatus, RegistrationConfirmed
from services.registration.seats import NO_FREE_SEAT, NOT_PUBLISHED, NOT_WAITLISTED, CannotPromote


def test_into_a_free_seat_out_of_order_without_override() -> None:
    seats, book = new_seats(offering(capacity=1, waitlist_limit=2)), Book()
    for n in range(3):
        seats.request(applicant(n), NOW)
    book.apply(seats.pull_events())
    seats.revise(replace(seats.offering, capacity=2), seats.revision + 1)  # one seat free now
    second = book.head(2)[1]
    event = seats.promote_by_hand(second, over_capacity=False)
    assert isinstance(event, RegistrationConfirmed) and event.from_waitlist
    assert event.occupancy is not None and (event.occupancy.confirmed, event.occupancy.waitlisted) == (2, 1)
    assert seats.pull_events() == [event]


def test_beyond_the_capacity_only_with_the_explicit_decision() -> None:
    seats, book = new_seats(offering(capacity=1, waitlist_limit=2)), Book()
    for n in range(3):
        seats.request(applicant(n), NOW)
    book.apply(seats.pull_events())
    head = book.head(1)[0]
    with pytest.raises(CannotPromote, match=NO_FREE_SEAT):
        seats.promote_by_hand(head, over_capacity=False)
    assert seats.pull_events() == [] and seats.confirmed == 1
    event = seats.promote_by_hand(head, over_capacity=True)
    assert event.occupancy is not None and event.occupancy.confirmed == 2 and event.occupancy.capacity == 1
    book.apply(seats.pull_events())
    assert seats.promotable(NOW) == 0  # over capacity: nobody else moves up automatically
    with pytest.raises(CannotPromote, match=NOT_WAITLISTED.split(" (")[0]):
        seats.promote_by_hand(book.rows[head.registration_id], over_capacity=True)


def test_not_for_an_offering_that_is_not_published() -> None:
    seats, book = new_seats(offering(capacity=1, waitlist_limit=2)), Book()
    for n in range(2):
        seats.request(applicant(n), NOW)
    book.apply(seats.pull_events())
    seats.revise(replace(seats.offering, status=OfferingStatus.COMPLETED), seats.revision + 1)
    with pytest.raises(CannotPromote, match=NOT_PUBLISHED):
        seats.promote_by_hand(book.head(1)[0], over_capacity=True)
