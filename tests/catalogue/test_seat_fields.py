"""Catalogue reads only the seat fields of registration outcomes (`handlers.SeatFields`): what it uses is
validated as in the contract, what it does not use must be present but is not parsed."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import pytest

from qti_contracts.envelope import RawEvent
from qti_runtime.consumer import DeadLetter
from services.catalogue.handlers import seat_change

OFFERING = str(uuid4())


def event(type_: str, data: dict[str, Any]) -> RawEvent:
    return RawEvent(id=f"evt-{uuid4()}", source="/test", type=type_, data=data)


def confirmed(**changes: Any) -> dict[str, Any]:
    return {
        "registration_id": "r-1",
        "request_id": str(uuid4()),
        "offering_id": OFFERING,
        "participant": {"given_name": "Jana", "family_name": "Becker", "email": "jana@example.de"},
        "company": {"name": "Zulieferer GmbH", "postal_code": "99867"},
        "occupancy": {"version": 2, "confirmed": 2, "waitlisted": 0, "capacity": 5},
        **changes,
    }


def test_an_outcome_gives_its_snapshot() -> None:
    change = seat_change(event("registration.confirmed", confirmed()))
    assert change is not None
    assert str(change.offering_id) == OFFERING
    assert change.occupancy is not None and change.occupancy.version == 2


def test_without_snapshot_the_meaning_counts() -> None:
    data = confirmed(occupancy=None, from_waitlist=True)
    change = seat_change(event("registration.confirmed", data))
    assert change is not None and change.delta == (1, -1)
    cancelled = {
        "registration_id": "r-1",
        "offering_id": OFFERING,
        "cause": "participant",
        "was_confirmed": False,
    }
    change = seat_change(event("registration.cancelled", cancelled))
    assert change is not None and change.delta == (0, -1)


@pytest.mark.parametrize(
    ("type_", "data", "named"),
    [
        (
            "registration.confirmed",
            {k: v for k, v in confirmed().items() if k != "participant"},
            "participant",
        ),
        ("registration.waitlisted", {k: v for k, v in confirmed().items() if k != "company"}, "company"),
        ("registration.confirmed", confirmed(occupancy={"version": 0, "confirmed": -1}), "occupancy"),
        ("registration.confirmed", confirmed(registration_id="x" * 5000), "registration_id"),
        ("registration.cancelled", {"offering_id": OFFERING}, "registration_id"),
        ("registration.requested", confirmed(), "registration.requested"),
    ],
)
def test_what_can_never_be_an_outcome_is_dead_lettered(type_: str, data: dict[str, Any], named: str) -> None:
    with pytest.raises(DeadLetter) as info:
        seat_change(event(type_, data))
    assert named in str(info.value)


def test_a_foreign_offering_is_ignored() -> None:
    assert seat_change(event("registration.confirmed", confirmed(offering_id="not-a-catalogue-id"))) is None
