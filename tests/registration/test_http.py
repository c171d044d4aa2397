"""Registration over HTTP, as a browser frontend uses it."""

from __future__ import annotations

import asyncio
from typing import Any

from registration_kit import Harness, offering_data, request_data


async def poll(harness: Harness, url: str, until: str = "pending") -> dict[str, Any]:
    for _ in range(200):
        body: dict[str, Any] = (await harness.client.get(url)).json()
        if body["status"] != until:
            return body
        await asyncio.sleep(0.05)
    raise AssertionError(f"{url} stayed {until}")


def decided_request(events: list[dict[str, Any]], type_: str) -> str:
    return str(next(e["data"]["request_id"] for e in events if e["type"] == type_))


async def test_post_registration_is_accepted_then_decided(harness: Harness) -> None:
    offering = offering_data(capacity=1)
    await harness.publish_offering(offering)
    await harness.wait_offering(offering["offering_id"])
    response = await harness.client.post("/registrations", json=request_data(offering["offering_id"]))
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "pending" and response.headers["location"] == body["status_url"]
    outcome = await poll(harness, body["status_url"])
    assert outcome["status"] == "confirmed" and outcome["registration_id"]
    token = {"X-Personal-Token": body["personal_token"]}
    registration = (
        await harness.client.get(f"/registrations/{outcome['registration_id']}", headers=token)
    ).json()
    assert registration["status"] == "confirmed"
    assert registration["participant"]["email"] == "anna.0@example.de"
    [event] = await harness.events(1)
    assert event["data"]["request_id"] == body["request_id"]


async def test_client_request_id_makes_retries_safe(harness: Harness) -> None:
    offering = offering_data(capacity=1, waitlist_limit=0)
    await harness.publish_offering(offering)
    await harness.wait_offering(offering["offering_id"])
    data = {**request_data(offering["offering_id"]), "request_id": "web-4711"}
    answers = [(await harness.client.post("/registrations", json=data)) for _ in range(3)]
    assert {a.status_code for a in answers} == {202}
    [request_id] = {a.json()["request_id"] for a in answers}  # one request, its id derived from the key
    assert request_id.startswith("c-")
    outcome = await poll(harness, f"/registrations/requests/{request_id}")
    assert outcome["status"] == "confirmed"
    events = await harness.events(1)
    assert len(events) == 1


async def test_cancel_over_http_and_its_errors(harness: Harness) -> None:
    offering = offering_data(capacity=1, waitlist_limit=1)
    await harness.publish_offering(offering)
    await harness.wait_offering(offering["offering_id"])
    for n in range(2):
        await harness.publish("registration.requested", request_data(offering["offering_id"], n))
    decided = await harness.events(2)
    holder = next(e["data"]["registration_id"] for e in decided if e["type"] == "registration.confirmed")
    waiting = next(e["data"]["registration_id"] for e in decided if e["type"] == "registration.waitlisted")
    token = {"X-Personal-Token": harness.token(decided_request(decided, "registration.confirmed"))}
    response = await harness.client.post(
        f"/registrations/{holder}/cancel", json={"reason": "Terminkonflikt"}, headers=token
    )
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    waiting_token = {"X-Personal-Token": harness.token(decided_request(decided, "registration.waitlisted"))}
    promoted = (await harness.client.get(f"/registrations/{waiting}", headers=waiting_token)).json()
    assert promoted["status"] == "confirmed" and promoted["from_waitlist"] is True
    again = await harness.client.post(f"/registrations/{holder}/cancel", headers=token)
    assert again.status_code == 409 and again.headers["content-type"] == "application/problem+json"
    assert "bereits storniert" in again.json()["detail"]
    assert (await harness.client.post("/registrations/unbekannt/cancel", headers=token)).status_code == 404
    assert (await harness.client.get("/registrations/unbekannt", headers=token)).status_code == 404
    assert (await harness.client.get("/registrations/requests/unbekannt")).status_code == 404


async def test_invalid_body_is_422_problem_naming_the_fields(harness: Harness) -> None:
    bad = request_data("x", participant={"given_name": "Anna", "family_name": "S", "email": "kein-mail"})
    bad["company"]["postal_code"] = "123"
    response = await harness.client.post("/registrations", json=bad)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    fields = {e["field"] for e in problem["errors"]}
    assert {"participant.email", "company.postal_code"} <= fields
    assert problem["detail"].startswith("Die Anfrage enthält ungültige Angaben")
    not_json = await harness.client.post(
        "/registrations", content=b"{kaputt", headers={"content-type": "application/json"}
    )
    assert not_json.status_code == 422


async def test_staff_list_needs_token(harness: Harness) -> None:
    assert (await harness.client.get("/offerings/x/registrations")).status_code == 401
    ok = await harness.client.get(
        "/offerings/x/registrations", headers={"Authorization": "Bearer dev-staff-token"}
    )
    assert ok.status_code == 200 and ok.json() == []


async def test_health_endpoints(harness: Harness) -> None:
    assert (await harness.client.get("/healthz")).json() == {"status": "ok"}
    ready = await harness.client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["ready"] is True
    metrics = (await harness.client.get("/metrics")).text
    assert "qti_messages_handled_total" in metrics
