"""Registration decisions against the real broker and database, driven as a frontend would."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import aio_pika
from registration_kit import STAFF, Harness, offering_data, request_data

from support import get_messages

REQ = "registration.requested"


def by_type(events: list[dict[str, Any]]) -> Counter[str]:
    return Counter(e["type"] for e in events)


async def test_confirm_then_waitlist_in_order_then_waitlist_full(harness: Harness) -> None:
    offering = offering_data(capacity=2, waitlist_limit=2)
    await harness.publish_offering(offering)
    await harness.wait_offering(offering["offering_id"])
    ids = [await harness.publish(REQ, request_data(offering["offering_id"], n)) for n in range(5)]
    events = await harness.events(5)
    assert len(events) == 5
    outcome = {e["data"]["request_id"]: e for e in events}
    assert set(outcome) == set(ids)
    # Requests in one burst are decided concurrently, so the order of decision, not of publishing, counts.
    assert by_type(events) == {
        "registration.confirmed": 2,
        "registration.waitlisted": 2,
        "registration.rejected": 1,
    }
    waiting = sorted(
        (e for e in events if e["type"] == "registration.waitlisted"),
        key=lambda e: e["data"]["occupancy"]["version"],
    )
    assert [e["data"]["position"] for e in waiting] == [1, 2]
    assert (
        next(e for e in events if e["type"] == "registration.rejected")["data"]["reason"] == "waitlist_full"
    )
    assert waiting[-1]["data"]["occupancy"] == {"version": 4, "confirmed": 2, "waitlisted": 2, "capacity": 2}
    confirmed = outcome[ids[0]]
    assert confirmed["correlationid"] == ids[0] or confirmed["correlationid"]
    assert confirmed["data"]["participant"]["email"] == "anna.0@example.de"


async def test_every_rejection_reason_has_a_german_detail(harness: Harness) -> None:
    open_offering = offering_data(capacity=5, max_per_company=1)
    closed = offering_data(registration_deadline=(datetime.now(UTC) - timedelta(hours=1)).isoformat())
    await harness.publish_offering(open_offering)
    await harness.publish_offering(closed)
    await harness.wait_offering(open_offering["offering_id"])
    await harness.wait_offering(closed["offering_id"])
    oid = open_offering["offering_id"]
    first = await harness.publish(REQ, request_data(oid, 1))
    await harness.events(1)
    same_person = request_data(oid, 1)
    same_person["participant"]["email"] = "ANNA.1@Example.DE"
    same_person["company"]["name"] = "Andere GmbH"
    colleague = request_data(oid, 2)
    colleague["company"]["name"] = "  muster zulieferer 1   gmbh "
    cases = {
        "duplicate_registration": same_person,
        "company_limit_reached": colleague,
        "consent_missing": request_data(oid, 3, privacy_consent=False),
        "registration_closed": request_data(closed["offering_id"], 4),
        "invalid_request": request_data(oid, 5, participant={"given_name": "", "email": "kaputt"}),
        "offering_not_found": request_data("gibt-es-nicht", 6),
    }
    malformed_id = await harness.publish(REQ, request_data("kein gültiger/Schlüssel@", 7))
    ids = {reason: await harness.publish(REQ, data) for reason, data in cases.items()}
    events = await harness.events(len(cases) + 1, timeout=20)
    outcome = {e["data"]["request_id"]: e["data"] for e in events}
    for reason, request_id in ids.items():
        data = outcome[request_id]
        assert data.get("reason") == reason, (reason, data)
        assert data["reason"] == reason, (reason, data)
        assert len(data["detail"]) > 20 and data["detail"] != reason
    assert outcome[malformed_id]["reason"] == "invalid_request"
    assert outcome[malformed_id]["offering_id"] is None
    invalid = outcome[ids["invalid_request"]]["detail"]
    assert "participant.email" in invalid and "participant.given_name" in invalid
    assert "company" not in invalid.split("(")[1].split(":")[0]  # names the broken fields only
    assert first not in outcome


async def test_cancelled_offering_is_not_open(harness: Harness) -> None:
    offering = offering_data()
    await harness.publish_offering(offering)
    await harness.publish(
        "catalogue.offering.cancelled",
        {"offering_id": offering["offering_id"], "reason": "Referent erkrankt"},
    )
    await asyncio.sleep(0.5)
    await harness.publish(REQ, request_data(offering["offering_id"]))
    [event] = await harness.events(1)
    assert event["data"]["reason"] == "offering_not_open"
    assert "abgesagt" in event["data"]["detail"]


async def test_malformed_messages_are_dead_lettered_and_queue_keeps_flowing(
    harness: Harness, amqp_url: str
) -> None:
    offering = offering_data()
    await harness.publish_offering(offering)
    await harness.wait_offering(offering["offering_id"])
    exchange = await harness.channel.get_exchange("qti.events")
    for body in (
        b"kein json",
        json.dumps({"specversion": "1.0", "source": "/x", "type": REQ, "data": {}}).encode(),
    ):
        await exchange.publish(aio_pika.Message(body, content_type="application/cloudevents+json"), REQ)
    good = await harness.publish(REQ, request_data(offering["offering_id"]))
    dead = await get_messages(amqp_url, "registration.dead-letter", expect=2)
    reasons = sorted(str(m.headers["x-qti-error"]) for m in dead)
    assert reasons[0].startswith("body is not JSON")
    assert "id" in reasons[1] and "envelope" in reasons[1]
    [event] = await harness.events(1)
    assert event["data"]["request_id"] == good


async def test_redelivered_request_changes_nothing_and_is_answered_again(harness: Harness) -> None:
    offering = offering_data(capacity=1)
    await harness.publish_offering(offering)
    await harness.wait_offering(offering["offering_id"])
    reply_queue = await harness.reply_queue()
    request = request_data(offering["offering_id"])
    for _ in range(3):
        await harness.publish(
            REQ, request, id_="req-fixed-1", reply_to=reply_queue.name, correlation_id="corr-1"
        )
    events = await harness.events(1)
    assert by_type(events) == {"registration.confirmed": 1}
    replies = []
    for _ in range(100):
        message = await reply_queue.get(fail=False, no_ack=True)
        if message is None:
            if len(replies) >= 3:
                break
            await asyncio.sleep(0.05)
            continue
        replies.append(message)
    assert len(replies) == 3, [(m.body, m.headers, m.correlation_id) for m in replies]
    assert {m.correlation_id for m in replies} == {"corr-1"}
    assert {json.loads(m.body)["id"] for m in replies} == {events[0]["id"]}  # the same outcome each time
    # Only the first answer carries the personal token; the published event never does.
    tokens = [json.loads(m.body)["data"].get("personal_token") for m in replies]
    assert tokens == [harness.token("req-fixed-1"), None, None]
    assert "personal_token" not in events[0]["data"]
    async with harness.runtime.db.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM registrations") == 1


async def test_cancellation_promotes_first_waitlisted_and_positions_close_up(harness: Harness) -> None:
    offering = offering_data(capacity=1, waitlist_limit=3)
    oid = offering["offering_id"]
    await harness.publish_offering(offering)
    await harness.wait_offering(oid)
    for n in range(3):
        await harness.publish(REQ, request_data(oid, n))
    decided = await harness.events(3)
    holder = next(e["data"]["registration_id"] for e in decided if e["type"] == "registration.confirmed")
    waiting = sorted(
        (e["data"] for e in decided if e["type"] == "registration.waitlisted"), key=lambda d: d["position"]
    )
    first_waiting, second_waiting = waiting[0]["registration_id"], waiting[1]["registration_id"]
    holder_request = next(e["data"]["request_id"] for e in decided if e["type"] == "registration.confirmed")
    await harness.publish(
        "registration.cancellation_requested",
        {"registration_id": holder, "reason": "krank", "personal_token": harness.token(holder_request)},
    )
    changes = await harness.events(2)
    assert by_type(changes) == {"registration.cancelled": 1, "registration.confirmed": 1}
    promoted = next(e["data"] for e in changes if e["type"] == "registration.confirmed")
    assert promoted["registration_id"] == first_waiting and promoted["from_waitlist"] is True
    assert promoted["request_id"] == waiting[0]["request_id"]
    cancelled = next(e["data"] for e in changes if e["type"] == "registration.cancelled")
    assert cancelled["cause"] == "participant" and cancelled["was_confirmed"] is True
    response = await harness.client.get(
        f"/registrations/{second_waiting}",
        headers={"X-Personal-Token": harness.token(waiting[1]["request_id"])},
    )
    assert response.json()["status"] == "waitlisted" and response.json()["position"] == 1
    # the same cancellation again, and a cancellation of an unknown registration: no effect
    token = harness.token(holder_request)
    await harness.publish(
        "registration.cancellation_requested", {"registration_id": holder, "personal_token": token}
    )
    await harness.publish(
        "registration.cancellation_requested", {"registration_id": "unbekannt", "personal_token": token}
    )
    assert await harness.events(0, timeout=1) == []


async def test_capacity_increase_promotes_and_decrease_cancels_nobody(harness: Harness) -> None:
    offering = offering_data(capacity=2, waitlist_limit=5)
    oid = offering["offering_id"]
    await harness.publish_offering(offering)
    await harness.wait_offering(oid)
    for n in range(5):
        await harness.publish(REQ, request_data(oid, n))
    await harness.events(5)
    await harness.publish_offering({**offering, "capacity": 4, "revision": 2}, "catalogue.offering.updated")
    promoted = await harness.events(2)
    assert [e["data"]["from_waitlist"] for e in promoted] == [True, True]
    await harness.publish_offering({**offering, "capacity": 1, "revision": 3}, "catalogue.offering.updated")
    await harness.publish_offering(
        {**offering, "capacity": 9, "revision": 2}, "catalogue.offering.updated"
    )  # stale
    await harness.publish(REQ, request_data(oid, 9))
    [late] = await harness.events(1)
    assert late["type"] == "registration.waitlisted"  # 4 confirmed stay, capacity 1 admits nobody new
    async with harness.runtime.db.pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT capacity, confirmed, waitlisted FROM offerings WHERE offering_id=$1", oid
        )
    assert dict(row) == {"capacity": 1, "confirmed": 4, "waitlisted": 2}


async def test_offering_cancelled_cancels_every_live_registration(harness: Harness) -> None:
    offering = offering_data(capacity=2, waitlist_limit=2)
    oid = offering["offering_id"]
    await harness.publish_offering(offering)
    await harness.wait_offering(oid)
    for n in range(4):
        await harness.publish(REQ, request_data(oid, n))
    await harness.events(4)
    await harness.publish(
        "catalogue.offering.cancelled", {"offering_id": oid, "reason": "zu wenige Anmeldungen"}
    )
    cancelled = await harness.events(4)
    assert by_type(cancelled) == {"registration.cancelled": 4}
    assert {e["data"]["cause"] for e in cancelled} == {"offering_cancelled"}
    assert cancelled[-1]["data"]["occupancy"]["confirmed"] == 0


async def test_request_before_offering_is_decided_when_it_arrives(harness: Harness) -> None:
    offering = offering_data()
    request_id = await harness.publish(REQ, request_data(offering["offering_id"]))
    await asyncio.sleep(0.3)
    await harness.publish_offering(offering)
    [event] = await harness.events(1)
    assert event["type"] == "registration.confirmed" and event["data"]["request_id"] == request_id


async def test_attendance_and_completion(harness: Harness) -> None:
    offering = offering_data(kind="certificate_course", capacity=2)
    oid = offering["offering_id"]
    await harness.publish_offering(offering)
    await harness.wait_offering(oid)
    for n in range(2):
        await harness.publish(REQ, request_data(oid, n))
    regs = [e["data"]["registration_id"] for e in await harness.events(2)]
    staff = {"Authorization": "Bearer dev-staff-token"}
    url = f"/offerings/{oid}/sessions/{{}}/attendance"
    # attended all three / attended two of three sessions (16 of 24 units = 67 %)
    for session, present in (("s0", [True, True]), ("s1", [True, False]), ("s2", [True, True])):
        body = {
            "records": [{"registration_id": r, "attended": p} for r, p in zip(regs, present, strict=True)]
        }
        response = await harness.client.put(url.format(session), json=body, headers=staff)
        assert response.status_code == 200, response.text
    events = await harness.events(8)
    assert by_type(events) == {"registration.attendance_recorded": 6, "registration.completed": 2}
    completed = {
        e["data"]["registration_id"]: e["data"] for e in events if e["type"] == "registration.completed"
    }
    assert completed[regs[0]]["completed"] and completed[regs[0]]["certificate_eligible"]
    assert completed[regs[0]]["attended_units"] == 24
    assert not completed[regs[1]]["completed"] and completed[regs[1]]["attendance_ratio"] == 0.6667
    # errors: no token, wrong token, unknown session, waitlisted/unknown registration
    body = {"records": [{"registration_id": regs[0], "attended": True}]}
    assert (await harness.client.put(url.format("s0"), json=body)).status_code == 401
    wrong = {"Authorization": "Bearer falsch"}
    assert (await harness.client.put(url.format("s0"), json=body, headers=wrong)).status_code == 403
    missing = await harness.client.put(url.format("s9"), json=body, headers=staff)
    assert missing.status_code == 404 and missing.headers["content-type"] == "application/problem+json"
    unknown = {"records": [{"registration_id": "nope", "attended": True}]}
    assert (await harness.client.put(url.format("s0"), json=unknown, headers=staff)).status_code == 404


async def test_invalid_cancellation_and_offering_data_are_dead_lettered_with_reason(
    harness: Harness, amqp_url: str
) -> None:
    await harness.publish("registration.cancellation_requested", {"reason": "ohne Anmeldung"})
    await harness.publish("catalogue.offering.published", {"offering_id": "kaputt", "capacity": 0})
    dead = await get_messages(amqp_url, "registration.dead-letter", expect=2)
    reasons = sorted(str(m.headers["x-qti-error"]) for m in dead)
    assert reasons[0].startswith("invalid catalogue.offering.published data:") and "capacity" in reasons[0]
    assert reasons[1].startswith("invalid registration.cancellation_requested data:")
    assert "registration_id" in reasons[1]
    assert {m.headers["x-qti-error-kind"] for m in dead} == {"invalid_data"}


async def test_consent_is_kept_with_the_privacy_notice_version(harness: Harness) -> None:
    """DSGVO Art. 7(1): the registration shows which notice text the person consented to, and when;
    a version label that is not one (markup, too long) makes the request invalid, not a stored oddity."""
    offering = offering_data(capacity=5)
    oid = offering["offering_id"]
    await harness.publish_offering(offering)
    await harness.wait_offering(oid)
    await harness.publish(REQ, request_data(oid, 1, privacy_notice_version="2026-12-v1"))
    await harness.publish(REQ, request_data(oid, 2))  # a v1 frontend sends none
    hostile = {"<script>": request_data(oid, 3), "x" * 33: request_data(oid, 4)}
    for version, data in hostile.items():
        data["privacy_notice_version"] = version
        await harness.publish(REQ, data)
    events = await harness.events(4, timeout=20)
    reasons = sorted(e["data"].get("reason", e["type"]) for e in events)
    confirmed = "registration.confirmed"
    assert reasons == ["invalid_request", "invalid_request", confirmed, confirmed]
    rejected = [e["data"]["detail"] for e in events if e["type"] == "registration.rejected"]
    assert all("privacy_notice_version" in detail for detail in rejected)
    listed = await harness.client.get(f"/offerings/{oid}/registrations", headers=STAFF)
    versions = {r["participant"]["email"]: r["privacy_notice_version"] for r in listed.json()}
    assert versions == {"anna.1@example.de": "2026-12-v1", "anna.2@example.de": None}
    assert all(r["created_at"] for r in listed.json())


async def test_the_source_of_a_request_travels_on_its_first_outcome_only(harness: Harness) -> None:
    """Attribution without personal data: `source` (an alert, an alternative) from the request is on the
    request's outcome; an unknown value is ignored, not a reason to refuse; a later promotion has none."""
    offering = offering_data(capacity=1, waitlist_limit=5)
    oid = offering["offering_id"]
    await harness.publish_offering(offering)
    await harness.wait_offering(oid)
    await harness.publish(REQ, request_data(oid, 1, source="alternative"))
    await harness.publish(REQ, request_data(oid, 2, source="angebotsalarm"))
    await harness.publish(REQ, request_data(oid, 3, source="<script>x</script>"))
    events = await harness.events(3, timeout=20)
    by_email = {e["data"]["participant"]["email"]: e for e in events}
    assert [by_email[f"anna.{i}@example.de"]["type"].rsplit(".", 1)[1] for i in (1, 2, 3)] == [
        "confirmed",
        "waitlisted",
        "waitlisted",
    ]
    sources = [by_email[f"anna.{i}@example.de"]["data"].get("source") for i in (1, 2, 3)]
    assert sources == ["alternative", "angebotsalarm", None]
