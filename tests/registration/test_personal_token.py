"""Ids are no secrets: reading and cancelling a registration needs the personal token (or staff).

Each test reproduces an attack or a lifecycle bug from the security issue against the real broker and
database: with the old code the id alone read and cancelled, request status showed the participant,
client request ids collided across clients, any reply_to was answered, and cancellations and promotions
ignored that an offering had begun.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import aio_pika
from registration_kit import STAFF, Harness, offering_data, request_data

from qti_contracts import make_event
from qti_runtime import links

REQ = "registration.requested"
CANCEL = "registration.cancellation_requested"


async def ready_offering(harness: Harness, **overrides: Any) -> dict[str, Any]:
    offering = offering_data(**overrides)
    await harness.publish_offering(offering)
    await harness.wait_offering(offering["offering_id"])
    return offering


async def decided(harness: Harness, status_url: str) -> dict[str, Any]:
    for _ in range(300):
        body: dict[str, Any] = (await harness.client.get(status_url)).json()
        if body["status"] != "pending":
            return body
        await asyncio.sleep(0.05)
    raise AssertionError(f"{status_url} was never decided")


async def submit(harness: Harness, data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """POST /registrations and wait for the decision: (202 body, request status)."""
    response = await harness.client.post("/registrations", json=data)
    assert response.status_code == 202, response.text
    accepted: dict[str, Any] = response.json()
    return accepted, await decided(harness, accepted["status_url"])


def token_header(token: str) -> dict[str, str]:
    return {"X-Personal-Token": token}


async def test_the_id_alone_neither_reads_nor_cancels(harness: Harness) -> None:
    offering = await ready_offering(harness)
    accepted, status = await submit(harness, request_data(offering["offering_id"]))
    registration_id = status["registration_id"]
    forged = links.personal_token(harness.settings.link_secret, "another-request")
    for headers in ({}, token_header(forged), token_header("x" * 43), {"Authorization": "Bearer falsch"}):
        read = await harness.client.get(f"/registrations/{registration_id}", headers=headers)
        cancel = await harness.client.post(f"/registrations/{registration_id}/cancel", headers=headers)
        unknown = await harness.client.get("/registrations/unbekannt", headers=headers)
        assert read.status_code == cancel.status_code == unknown.status_code == 404
        assert read.headers["content-type"] == "application/problem+json"
        assert read.json()["detail"] == unknown.json()["detail"]  # unknown id and wrong token alike
        assert "anna" not in read.text.lower()
    # nothing was cancelled
    own = await harness.client.get(
        f"/registrations/{registration_id}", headers=token_header(accepted["personal_token"])
    )
    assert own.status_code == 200 and own.json()["status"] == "confirmed"
    assert own.json()["participant"]["email"] == "anna.0@example.de"


async def test_the_personal_token_reads_and_cancels_and_so_does_staff(harness: Harness) -> None:
    offering = await ready_offering(harness, capacity=5)
    oid = offering["offering_id"]
    first, first_status = await submit(harness, request_data(oid, 1))
    _second, second_status = await submit(harness, request_data(oid, 2))
    assert len(first["personal_token"]) == 43
    assert first["personal_token"] == harness.token(first["request_id"])
    # the participant, by id with the token, and by the token alone (the portal's link)
    mine = token_header(first["personal_token"])
    by_id = await harness.client.get(f"/registrations/{first_status['registration_id']}", headers=mine)
    by_token = await harness.client.get("/registrations/by-token", headers=mine)
    assert by_id.status_code == by_token.status_code == 200
    assert by_id.json() == by_token.json()
    assert by_token.json()["registration_id"] == first_status["registration_id"]
    # one participant's token does not open another's registration
    other = await harness.client.get(f"/registrations/{second_status['registration_id']}", headers=mine)
    assert other.status_code == 404
    assert (await harness.client.get("/registrations/by-token")).status_code == 404
    assert (
        await harness.client.get("/registrations/by-token", headers=token_header("y" * 43))
    ).status_code == 404
    cancelled = await harness.client.post(
        "/registrations/by-token/cancel", headers=mine, json={"reason": "krank"}
    )
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["cancel_cause"] == "participant"
    # staff read and cancel with the bearer token
    staff_read = await harness.client.get(f"/registrations/{second_status['registration_id']}", headers=STAFF)
    assert staff_read.status_code == 200 and staff_read.json()["status"] == "confirmed"
    staff_cancel = await harness.client.post(
        f"/registrations/{second_status['registration_id']}/cancel", headers=STAFF
    )
    assert staff_cancel.status_code == 200 and staff_cancel.json()["cancel_cause"] == "organiser"
    events = await harness.events(4)
    assert sorted(e["type"] for e in events) == [
        "registration.cancelled",
        "registration.cancelled",
        "registration.confirmed",
        "registration.confirmed",
    ]
    assert not any("personal_token" in e["data"] for e in events)  # the token never travels in events
    # only the token's hash is stored
    async with harness.runtime.db.pool.acquire() as conn:
        dump = json.dumps([dict(r) for r in await conn.fetch("SELECT * FROM registrations")], default=str)
    assert first["personal_token"] not in dump and links.token_hash(first["personal_token"]) in dump


async def test_request_status_shows_no_personal_data(harness: Harness) -> None:
    offering = await ready_offering(harness, capacity=1, waitlist_limit=1)
    oid = offering["offering_id"]
    statuses = [(await submit(harness, request_data(oid, n)))[1] for n in range(3)]
    assert [s["status"] for s in statuses] == ["confirmed", "waitlisted", "rejected"]
    assert statuses[1]["position"] == 1 and statuses[2]["reason"] == "waitlist_full"
    for n, status in enumerate(statuses):
        text = json.dumps(status).lower()
        for personal in (f"anna.{n}@example.de", "anna", f"schmidt{n}", "muster zulieferer", "99610"):
            assert personal not in text, (personal, status)
        assert "outcome_event" not in status and "participant" not in status
        assert set(status) == {
            "request_id",
            "status",
            "offering_id",
            "registration_id",
            "position",
            "reason",
            "detail",
        }


async def test_a_client_request_id_is_scoped_to_its_submission(harness: Harness) -> None:
    offering = await ready_offering(harness, capacity=5)
    oid = offering["offering_id"]
    alice = {**request_data(oid, 1), "request_id": "1"}
    mallory = {**request_data(oid, 2), "request_id": "1"}
    first, first_status = await submit(harness, alice)
    second, second_status = await submit(harness, mallory)
    assert first["request_id"] != second["request_id"]
    assert first["personal_token"] != second["personal_token"]
    assert first_status["registration_id"] != second_status["registration_id"]
    assert (await harness.client.get("/registrations/requests/1")).status_code == 404
    # neither can open the other's registration with their own token
    for token, foreign in (
        (first["personal_token"], second_status["registration_id"]),
        (second["personal_token"], first_status["registration_id"]),
    ):
        assert (
            await harness.client.get(f"/registrations/{foreign}", headers=token_header(token))
        ).status_code == 404
    # the same submission again: the same request, one registration, the same token
    again, again_status = await submit(harness, alice)
    assert again == first and again_status == first_status
    await harness.events(2)
    async with harness.runtime.db.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM registrations") == 2


async def test_amqp_cancellation_needs_the_registrations_token(harness: Harness) -> None:
    offering = await ready_offering(harness)
    request_id = await harness.publish(REQ, request_data(offering["offering_id"]))
    [confirmed] = await harness.events(1)
    registration_id = confirmed["data"]["registration_id"]
    await harness.publish(CANCEL, {"registration_id": registration_id})
    await harness.publish(
        CANCEL, {"registration_id": registration_id, "personal_token": harness.token("fremd")}
    )
    assert await harness.events(0, timeout=1.5) == []
    read = await harness.client.get(f"/registrations/{registration_id}", headers=STAFF)
    assert read.json()["status"] == "confirmed"
    await harness.publish(
        CANCEL, {"registration_id": registration_id, "personal_token": harness.token(request_id)}
    )
    [cancelled] = await harness.events(1)
    assert cancelled["type"] == "registration.cancelled" and cancelled["data"]["cause"] == "participant"


async def test_replies_go_only_to_frontend_reply_queues(harness: Harness) -> None:
    offering = await ready_offering(harness, capacity=5)
    oid = offering["offering_id"]
    foreign = await harness.channel.declare_queue("notification.fremd", exclusive=True)
    server_named = await harness.channel.declare_queue("", exclusive=True)
    allowed = await harness.reply_queue()
    await harness.publish(REQ, request_data(oid, 1), reply_to=foreign.name)
    await harness.publish(REQ, request_data(oid, 2), reply_to=server_named.name)
    allowed_id = await harness.publish(REQ, request_data(oid, 3), reply_to=allowed.name)
    assert len(await harness.events(3)) == 3  # every outcome is still published on qti.events
    await asyncio.sleep(1.0)  # the replies leave through the same outbox, after the events
    assert await foreign.get(fail=False) is None
    assert await server_named.get(fail=False) is None
    reply = await allowed.get(fail=False, no_ack=True, timeout=5)
    assert reply is not None
    body = json.loads(reply.body)
    assert body["data"]["request_id"] == allowed_id
    assert body["data"]["personal_token"] == harness.token(allowed_id)


async def test_direct_reply_to_is_answered(harness: Harness) -> None:
    offering = await ready_offering(harness)
    connection = await aio_pika.connect(harness.settings.amqp_url)
    try:
        channel = await connection.channel()
        replies: asyncio.Queue[aio_pika.abc.AbstractIncomingMessage] = asyncio.Queue()
        direct = await channel.get_queue("amq.rabbitmq.reply-to", ensure=False)
        await direct.consume(replies.put, no_ack=True)
        event_id = "direct-1"
        event = make_event(REQ, request_data(offering["offering_id"]), source="/tests", id_=event_id)
        await channel.default_exchange.publish(
            aio_pika.Message(
                event.model_dump_json().encode(), message_id=event_id, reply_to="amq.rabbitmq.reply-to"
            ),
            routing_key="registration.requests",
        )
        reply = await asyncio.wait_for(replies.get(), timeout=10)
        assert json.loads(reply.body)["data"]["personal_token"] == harness.token(event_id)
    finally:
        await connection.close()


async def move_to_the_past(harness: Harness, offering: dict[str, Any], revision: int = 2) -> None:
    """catalogue.offering.updated: the first session began an hour ago (the offering is under way)."""
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    sessions = [
        {
            **s,
            "starts_at": (start + timedelta(days=i)).isoformat(),
            "ends_at": (start + timedelta(days=i, hours=6)).isoformat(),
        }
        for i, s in enumerate(offering["sessions"])
    ]
    await harness.publish_offering(
        {
            **offering,
            "sessions": sessions,
            "registration_deadline": (start - timedelta(days=1)).isoformat(),
            "revision": revision,
        },
        "catalogue.offering.updated",
    )
    for _ in range(200):
        async with harness.runtime.db.pool.acquire() as conn:
            if (
                await conn.fetchval(
                    "SELECT revision FROM offerings WHERE offering_id = $1", offering["offering_id"]
                )
                == revision
            ):
                return
        await asyncio.sleep(0.05)
    raise AssertionError("the update never arrived")


async def test_no_participant_cancellation_and_no_promotion_once_begun(harness: Harness) -> None:
    offering = await ready_offering(harness, capacity=1, waitlist_limit=1)
    oid = offering["offering_id"]
    holder, holder_status = await submit(harness, request_data(oid, 1))
    waiting, waiting_status = await submit(harness, request_data(oid, 2))
    assert waiting_status["status"] == "waitlisted"
    await harness.events(2)
    await move_to_the_past(harness, offering)
    # the participant: neither by id with token, by token, nor over AMQP
    mine = token_header(holder["personal_token"])
    late = await harness.client.post(
        f"/registrations/{holder_status['registration_id']}/cancel", headers=mine
    )
    assert late.status_code == 409 and "bereits begonnen" in late.json()["detail"]
    assert (await harness.client.post("/registrations/by-token/cancel", headers=mine)).status_code == 409
    await harness.publish(
        CANCEL,
        {"registration_id": holder_status["registration_id"], "personal_token": holder["personal_token"]},
    )
    assert await harness.events(0, timeout=1.5) == []
    # staff may still correct, and nobody is promoted into an offering under way
    corrected = await harness.client.post(
        f"/registrations/{holder_status['registration_id']}/cancel", headers=STAFF
    )
    assert corrected.status_code == 200 and corrected.json()["status"] == "cancelled"
    [event] = await harness.events(1)
    assert event["type"] == "registration.cancelled"
    still = await harness.client.get(
        "/registrations/by-token", headers=token_header(waiting["personal_token"])
    )
    assert still.json()["status"] == "waitlisted"


async def test_overlong_correlation_id_is_422_not_500(harness: Harness) -> None:
    offering = await ready_offering(harness)
    data = request_data(offering["offering_id"])
    for value in (("€" * 200).encode(), b"a" * 201, b"ok\x01bad"):
        response = await harness.client.post("/registrations", json=data, headers={"X-Correlation-ID": value})
        assert response.status_code == 422, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert "X-Correlation-ID" in response.json()["detail"]
    fine = await harness.client.post("/registrations", json=data, headers={"X-Correlation-ID": "web-abc-1"})
    assert fine.status_code == 202
    [event] = await harness.events(1)
    assert event["correlationid"] == "web-abc-1"
