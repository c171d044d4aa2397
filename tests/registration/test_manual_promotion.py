"""An organiser moves a person off the waiting list by hand (staff API), against the real DB and broker."""

from __future__ import annotations

from typing import Any

from registration_kit import STAFF, Harness, offering_data, request_data


async def full_offering(harness: Harness) -> tuple[str, list[dict[str, Any]]]:
    """Capacity 1, one confirmed and two waitlisted; returns the offering id and the decisions."""
    offering = offering_data(capacity=1, waitlist_limit=3)
    await harness.publish_offering(offering)
    await harness.wait_offering(offering["offering_id"])
    for n in range(3):
        await harness.publish("registration.requested", request_data(offering["offering_id"], n))
    return offering["offering_id"], await harness.events(3)


def waitlisted(events: list[dict[str, Any]]) -> list[str]:
    items = [e["data"] for e in events if e["type"] == "registration.waitlisted"]
    return [d["registration_id"] for d in sorted(items, key=lambda d: d["position"])]


async def test_promotion_needs_a_free_seat_or_the_explicit_override(harness: Harness) -> None:
    offering_id, decided = await full_offering(harness)
    first, second = waitlisted(decided)
    url = f"/offerings/{offering_id}/registrations/{second}/promote"
    actor = {**STAFF, "X-Staff-Actor": "leitung@qti.example"}
    refused = await harness.client.post(url, headers=actor)
    assert refused.status_code == 409 and "kein Platz frei" in refused.json()["detail"]
    assert await harness.events(0, timeout=0.5) == []

    # The second in line, out of order, one seat beyond the capacity: the organiser decided so.
    promoted = await harness.client.post(url, json={"over_capacity": True}, headers=actor)
    assert promoted.status_code == 200
    body = promoted.json()
    assert body["status"] == "confirmed" and body["from_waitlist"] is True
    assert body["promoted_by"] == "leitung@qti.example" and body["promoted_at"]
    [event] = await harness.events(1)
    assert event["type"] == "registration.confirmed" and event["data"]["from_waitlist"] is True
    assert event["data"]["occupancy"] == {"version": 4, "confirmed": 2, "waitlisted": 1, "capacity": 1}

    listing = (await harness.client.get(f"/offerings/{offering_id}/registrations", headers=STAFF)).json()
    by_id = {r["registration_id"]: r for r in listing}
    assert by_id[first]["status"] == "waitlisted" and by_id[first]["position"] == 1
    assert by_id[second]["promoted_by"] == "leitung@qti.example"
    again = await harness.client.post(url, json={"over_capacity": True}, headers=actor)
    assert again.status_code == 409 and "nicht (mehr) auf der Warteliste" in again.json()["detail"]


async def test_promotion_refuses_strangers_and_bad_input(harness: Harness) -> None:
    offering_id, decided = await full_offering(harness)
    [first, _] = waitlisted(decided)
    url = f"/offerings/{offering_id}/registrations/{first}/promote"
    assert (await harness.client.post(url)).status_code == 401
    other = f"/offerings/anderes-angebot/registrations/{first}/promote"
    assert (await harness.client.post(other, headers=STAFF)).status_code == 404
    unknown = f"/offerings/{offering_id}/registrations/unbekannt/promote"
    assert (await harness.client.post(unknown, headers=STAFF)).status_code == 404
    bad_actor = await harness.client.post(url, headers={**STAFF, "X-Staff-Actor": "a\tb" + "x" * 300})
    assert bad_actor.status_code == 422 and "X-Staff-Actor" in bad_actor.json()["detail"]
    bad_body = await harness.client.post(url, json={"over_capacity": "vielleicht"}, headers=STAFF)
    assert bad_body.status_code == 422
    # With a free seat (the confirmed person cancels, the head moves up automatically), nothing is left.
    confirmed = next(e["data"]["registration_id"] for e in decided if e["type"] == "registration.confirmed")
    cancelled = await harness.client.post(f"/registrations/{confirmed}/cancel", headers=STAFF)
    assert cancelled.status_code == 200
    promoted = (await harness.client.get(f"/registrations/{first}", headers=STAFF)).json()
    assert promoted["status"] == "confirmed" and promoted["promoted_by"] is None
