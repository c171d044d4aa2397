"""Staff API against real Postgres and RabbitMQ: drafts, edits with If-Match, lifecycle, problem details."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
import pytest_asyncio
from catalogue.harness import (
    PROBLEM,
    STAFF,
    Service,
    drain,
    future,
    isolated_service,
    offering_body,
    watch_queue,
)

from qti_contracts.events import OfferingCancelled, OfferingState
from services.catalogue import store
from support import Isolation, eventually


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def service(isolation: Isolation) -> AsyncIterator[Service]:
    async with isolated_service(isolation) as running:
        yield running


pytestmark = pytest.mark.asyncio(loop_scope="session")


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["title"] and body["detail"]
    return body


async def create(service: Service, **overrides: Any) -> httpx.Response:
    response = await service.client.post("/offerings", json=offering_body(**overrides), headers=STAFF)
    assert response.status_code == 201, response.text
    return response


async def test_staff_endpoints_need_the_token(service: Service) -> None:
    client = service.client
    calls = [
        ("POST", "/offerings", offering_body()),
        ("PATCH", f"/offerings/{uuid4()}", {"title": "x"}),
        ("POST", f"/offerings/{uuid4()}/publish", None),
        ("POST", f"/offerings/{uuid4()}/cancel", {"reason": "x"}),
        ("POST", f"/offerings/{uuid4()}/complete", None),
        ("GET", "/staff/offerings", None),
        ("GET", f"/staff/offerings/{uuid4()}", None),
    ]
    for method, path, body in calls:
        missing = await client.request(method, path, json=body)
        assert "Token" in assert_problem(missing, 401)["detail"]
        wrong = await client.request(method, path, json=body, headers={"Authorization": "Bearer falsch"})
        assert_problem(wrong, 403)
    for header in ("", "Basic abc"):
        response = await client.get("/staff/offerings", headers={"Authorization": header})
        assert_problem(response, 401)


async def test_create_edit_publish_cancel_with_events(service: Service) -> None:  # noqa: PLR0915 (one story)
    async with watch_queue(service.settings.amqp_url, "catalogue.#") as watch:
        client = service.client
        created = await create(service)
        body = created.json()
        offering_id = body["offering_id"]
        etag = created.headers["ETag"]
        assert body["status"] == "draft" and body["revision"] == 1
        assert etag == f'"{body["etag"]}"'
        assert created.headers["Location"] == f"/staff/offerings/{offering_id}"
        UUID(body["sessions"][0]["session_id"])  # generated
        assert body["sessions"][0]["teaching_units"] == 8

        # Drafts are not public, but staff see them (with the ETag).
        assert_problem(await client.get(f"/offerings/{offering_id}"), 404)
        listed = (await client.get("/offerings")).json()
        assert offering_id not in [item["offering_id"] for item in listed["items"]]
        staff_view = await client.get(f"/staff/offerings/{offering_id}", headers=STAFF)
        assert staff_view.status_code == 200 and staff_view.headers["ETag"] == etag
        drafts = (await client.get("/staff/offerings", params={"status": "draft"}, headers=STAFF)).json()
        assert offering_id in [item["offering_id"] for item in drafts["items"]]
        assert {item["status"] for item in drafts["items"]} == {"draft"}

        # Edits need If-Match: 428 without, 412 when stale, 200 with the current tag.
        path = f"/offerings/{offering_id}"
        assert (
            "If-Match"
            in assert_problem(await client.patch(path, json={"title": "Neu"}, headers=STAFF), 428)["detail"]
        )
        edited = await client.patch(path, json={"capacity": 15}, headers={**STAFF, "If-Match": etag})
        assert edited.status_code == 200, edited.text
        assert edited.json()["capacity"] == 15 and edited.json()["revision"] == 2
        new_etag = edited.headers["ETag"]
        assert new_etag != etag
        # A second staff member who loaded the old state loses nothing silently: 412.
        stale = await client.patch(path, json={"title": "Anders"}, headers={**STAFF, "If-Match": etag})
        problem = assert_problem(stale, 412)
        assert f'"{problem["current_etag"]}"' == new_etag
        assert (await client.get(f"/staff/offerings/{offering_id}", headers=STAFF)).json()["title"] == (
            "Wasserstoff in der Logistik"
        )
        # Weak and wildcard forms are understood.
        weak = await client.patch(
            path, json={"fee_eur": 25.5}, headers={**STAFF, "If-Match": f"W/{new_etag}"}
        )
        assert weak.status_code == 200 and weak.json()["fee_eur"] == 25.5
        star = await client.patch(
            path, json={"title": "Wasserstoff-Logistik"}, headers={**STAFF, "If-Match": "*"}
        )
        assert star.status_code == 200
        etag = star.headers["ETag"]

        # Drafts produce no events; publishing announces the full state once.
        assert await drain(watch, settle=0.3) == []
        published = await client.post(f"{path}/publish", headers=STAFF)
        assert published.status_code == 200, published.text
        assert published.json()["status"] == "published" and published.json()["published_at"]
        assert (
            "bereits veröffentlicht"
            in assert_problem(await client.post(f"{path}/publish", headers=STAFF), 409)["detail"]
        )
        public = (await client.get(path)).json()
        assert public["status"] == "published" and public["seats_left"] == 15
        assert public["seats_as_of"] is None and "etag" not in public

        # An edit of a published offering is announced as catalogue.offering.updated.
        etag = published.headers["ETag"]
        edited = await client.patch(
            path, json={"description": "Aktualisierte Beschreibung."}, headers={**STAFF, "If-Match": etag}
        )
        assert edited.status_code == 200
        # A patch that changes nothing keeps revision and tag and announces nothing.
        same = await client.patch(
            path,
            json={"description": "Aktualisierte Beschreibung."},
            headers={**STAFF, "If-Match": edited.headers["ETag"]},
        )
        assert same.headers["ETag"] == edited.headers["ETag"]

        cancel_path = f"{path}/cancel"
        assert_problem(await client.post(cancel_path, json={"reason": "  "}, headers=STAFF), 422)
        assert_problem(await client.post(cancel_path, json={}, headers=STAFF), 422)
        assert_problem(
            await client.post(cancel_path, json={"reason": "x"}, headers={**STAFF, "If-Match": etag}), 412
        )
        cancelled = await client.post(cancel_path, json={"reason": "Zu wenige Anmeldungen."}, headers=STAFF)
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
        assert_problem(await client.post(cancel_path, json={"reason": "nochmal"}, headers=STAFF), 409)
        assert_problem(await client.post(f"{path}/complete", headers=STAFF), 409)
        frozen = await client.patch(
            path, json={"title": "x"}, headers={**STAFF, "If-Match": cancelled.headers["ETag"]}
        )
        assert "abgesagt" in assert_problem(frozen, 409)["detail"]
        # Cancelled offerings stay readable for people who follow a link, with the reason.
        public = (await client.get(path)).json()
        assert public["status"] == "cancelled" and public["cancel_reason"] == "Zu wenige Anmeldungen."
        assert public["registration_open"] is False

        await eventually(service.outbox_empty, timeout=10)
        events = await drain(watch)
        assert [e["type"] for e in events] == [
            "catalogue.offering.published",
            "catalogue.offering.updated",
            "catalogue.offering.cancelled",
        ]
        state = OfferingState.model_validate(events[0]["data"])
        assert str(state.offering_id) == offering_id and state.capacity == 15 and state.revision == 5
        assert state.title == "Wasserstoff-Logistik" and float(state.fee_eur) == 25.5
        updated = OfferingState.model_validate(events[1]["data"])
        assert updated.description == "Aktualisierte Beschreibung." and updated.revision == 6
        cancelled_event = OfferingCancelled.model_validate(events[2]["data"])
        assert cancelled_event.reason == "Zu wenige Anmeldungen."
        assert all(e["source"] == "/catalogue" and e["subject"] == offering_id for e in events)
        assert all(e["_message_id"] == e["id"] for e in events)


async def test_complete_and_draft_transitions(service: Service) -> None:
    async with watch_queue(service.settings.amqp_url, "catalogue.#") as watch:
        client = service.client
        draft_id = (await create(service)).json()["offering_id"]
        assert (
            "Entwurf"
            in assert_problem(await client.post(f"/offerings/{draft_id}/complete", headers=STAFF), 409)[
                "detail"
            ]
        )
        # A draft may be cancelled; nobody was told about it, so nothing is announced.
        cancelled = await client.post(
            f"/offerings/{draft_id}/cancel", json={"reason": "Doppelt"}, headers=STAFF
        )
        assert cancelled.status_code == 200
        assert_problem(await client.post(f"/offerings/{draft_id}/publish", headers=STAFF), 409)

        offering_id = (await create(service)).json()["offering_id"]
        assert (await client.post(f"/offerings/{offering_id}/publish", headers=STAFF)).status_code == 200
        completed = await client.post(f"/offerings/{offering_id}/complete", headers=STAFF)
        assert completed.status_code == 200 and completed.json()["status"] == "completed"
        assert_problem(await client.post(f"/offerings/{offering_id}/complete", headers=STAFF), 409)
        # Completed offerings are public on request only.
        default = (await client.get("/offerings")).json()
        assert offering_id not in [i["offering_id"] for i in default["items"]]
        done = (await client.get("/offerings", params={"status": "completed"})).json()
        assert offering_id in [i["offering_id"] for i in done["items"]]
        assert {i["status"] for i in done["items"]} == {"completed"}

        await eventually(service.outbox_empty, timeout=10)
        events = await drain(watch)
        assert [(e["type"], e["data"]["status"]) for e in events] == [
            ("catalogue.offering.published", "published"),
            ("catalogue.offering.updated", "completed"),
        ]


async def test_not_found_and_validation_problems(service: Service) -> None:
    client = service.client
    unknown = uuid4()
    for method, path, body in [
        ("POST", f"/offerings/{unknown}/publish", None),
        ("POST", f"/offerings/{unknown}/cancel", {"reason": "x"}),
        ("POST", f"/offerings/{unknown}/complete", None),
        ("POST", "/offerings/kein-uuid/publish", None),
        ("GET", f"/staff/offerings/{unknown}", None),
    ]:
        assert_problem(await client.request(method, path, json=body, headers=STAFF), 404)
    patched = await client.patch(
        f"/offerings/{unknown}", json={"title": "x"}, headers={**STAFF, "If-Match": '"1-x"'}
    )
    assert_problem(patched, 404)

    start = future(20)
    rules = offering_body(
        capacity=0,
        title="",
        sessions=[
            {
                "starts_at": start.isoformat(),
                "ends_at": (start - timedelta(hours=1)).isoformat(),
                "location": "Gotha",
            }
        ],
        registration_deadline=(start + timedelta(days=1)).isoformat(),
        fee_eur=12.345,
    )
    problem = assert_problem(await client.post("/offerings", json=rules, headers=STAFF), 422)
    fields = {error["field"]: error["message"] for error in problem["errors"]}
    assert fields["capacity"] == "Die Kapazität muss mindestens 1 betragen."
    assert fields["title"] == "Bitte einen Titel angeben."
    assert fields["sessions[0].ends_at"] == "Das Ende muss nach dem Beginn liegen."
    assert "Anmeldeschluss" in fields["registration_deadline"]
    assert "Nachkommastellen" in fields["fee_eur"]

    types = offering_body(capacity="viele", kind="seminar", node_id="gotha")
    del types["title"]
    types["sessions"][0]["starts_at"] = "morgen"
    problem = assert_problem(await client.post("/offerings", json=types, headers=STAFF), 422)
    fields = {error["field"]: error["message"] for error in problem["errors"]}
    assert fields["capacity"] == "Bitte eine ganze Zahl angeben."
    assert fields["title"] == "Pflichtangabe fehlt."
    assert fields["kind"].startswith("Ungültiger Wert; erlaubt sind:")
    assert fields["node_id"] == "Bitte eine gültige ID (UUID) angeben."
    assert fields["sessions[0].starts_at"].startswith("Bitte Datum und Uhrzeit")

    naive = offering_body()
    naive["sessions"][0]["starts_at"] = "2030-03-01T09:00:00"
    problem = assert_problem(await client.post("/offerings", json=naive, headers=STAFF), 422)
    assert problem["errors"][0] == {
        "field": "sessions[0].starts_at",
        "message": "Der Beginn muss eine Zeitzone enthalten.",
    }
    problem = assert_problem(
        await client.post("/offerings", json=offering_body(node_id=str(uuid4())), headers=STAFF), 422
    )
    assert problem["errors"] == [{"field": "node_id", "message": "Diesen QTI-Knoten gibt es nicht."}]
    problem = assert_problem(
        await client.post(
            "/offerings", content=b"{kaputt", headers={**STAFF, "content-type": "application/json"}
        ),
        422,
    )

    created = await create(service)
    offering_id, etag = created.json()["offering_id"], created.headers["ETag"]
    path = f"/offerings/{offering_id}"
    unknown_field = await client.patch(path, json={"titel": "x"}, headers={**STAFF, "If-Match": etag})
    assert assert_problem(unknown_field, 422)["errors"][0]["field"] == "titel"
    null_title = await client.patch(path, json={"title": None}, headers={**STAFF, "If-Match": etag})
    assert assert_problem(null_title, 422)["errors"] == [
        {"field": "title", "message": "Dieses Feld darf nicht leer sein."}
    ]
    start = future(40)
    unordered = [
        {
            "starts_at": (start + timedelta(days=7)).isoformat(),
            "ends_at": (start + timedelta(days=7, hours=2)).isoformat(),
            "location": "Gotha",
        },
        {
            "starts_at": start.isoformat(),
            "ends_at": (start + timedelta(hours=2)).isoformat(),
            "location": "Gotha",
        },
    ]
    problem = assert_problem(
        await client.patch(path, json={"sessions": unordered}, headers={**STAFF, "If-Match": etag}), 422
    )
    assert {
        "field": "sessions[1].starts_at",
        "message": "Die Termine müssen in zeitlicher Reihenfolge angegeben werden.",
    } in problem["errors"]
    # A failed edit changes nothing: the tag still holds.
    ok = await client.patch(path, json={"sessions": unordered[::-1]}, headers={**STAFF, "If-Match": etag})
    assert ok.status_code == 200 and len(ok.json()["sessions"]) == 2

    # Publishing checks the publish rules: a past first session is refused.
    past = future(-3)
    old = offering_body(
        sessions=[
            {
                "starts_at": past.isoformat(),
                "ends_at": (past + timedelta(hours=2)).isoformat(),
                "location": "Gotha",
            }
        ],
        registration_deadline=(past - timedelta(days=1)).isoformat(),
    )
    old_id = (await client.post("/offerings", json=old, headers=STAFF)).json()["offering_id"]
    problem = assert_problem(await client.post(f"/offerings/{old_id}/publish", headers=STAFF), 422)
    assert "sessions[0].starts_at" in {e["field"] for e in problem["errors"]}


async def test_capacity_below_confirmed_needs_the_flag(service: Service) -> None:
    client = service.client
    offering_id = (await create(service)).json()["offering_id"]
    published = await client.post(f"/offerings/{offering_id}/publish", headers=STAFF)
    async with service.runtime.db.pool.acquire() as conn:
        await store.apply_occupancy_snapshot(
            conn, UUID(offering_id), version=7, confirmed=10, waitlisted=2, capacity=12, as_of=future(0)
        )
    path = f"/offerings/{offering_id}"
    headers = {**STAFF, "If-Match": published.headers["ETag"]}
    refused = await client.patch(path, json={"capacity": 8}, headers=headers)
    problem = assert_problem(refused, 422)
    assert problem["errors"] == [
        {
            "field": "capacity",
            "message": "Die Kapazität darf nicht unter der Zahl der bestätigten Anmeldungen (10) liegen.",
        }
    ]
    allowed = await client.patch(path, json={"capacity": 8, "allow_below_confirmed": True}, headers=headers)
    assert allowed.status_code == 200, allowed.text
    body = allowed.json()
    assert (body["capacity"], body["confirmed"], body["waitlisted"], body["seats_left"]) == (8, 10, 2, 0)


async def test_concurrent_edits_with_the_same_tag_one_wins(service: Service) -> None:
    created = await create(service)
    path = f"/offerings/{created.json()['offering_id']}"
    headers = {**STAFF, "If-Match": created.headers["ETag"]}
    results = await asyncio.gather(
        *(service.client.patch(path, json={"capacity": 13 + i}, headers=headers) for i in range(5))
    )
    statuses = sorted(r.status_code for r in results)
    assert statuses == [200, 412, 412, 412, 412]
    final = (await service.client.get(path.replace("/offerings", "/staff/offerings"), headers=STAFF)).json()
    assert final["revision"] == 2
