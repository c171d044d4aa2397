"""Opening and changing QTI nodes through the staff API, against real Postgres and RabbitMQ, in a catalogue
that starts empty (as with QTI_DEMO_DATA=0): a node, then an offering at it, then the public views."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from uuid import uuid4

import httpx
import pytest
import pytest_asyncio
from catalogue.harness import PROBLEM, STAFF, Service, drain, isolated_service, offering_body, watch_queue

from qti_contracts.events import NodePublished, NodeUpdated
from qti_contracts.topology import RoutingKey
from services.catalogue import privacy
from support import Isolation, eventually

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def service(isolation: Isolation) -> AsyncIterator[Service]:
    async with isolated_service(isolation, nodes=False) as running:
        yield running


def node_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": f"QTI-Knoten Arnstadt {uuid4().hex[:6]}",
        "town": "Arnstadt",
        "county": "ilm_kreis",
        "host": "Bildungswerk Ilm-Kreis e. V.",
        "address": "Ichtershäuser Straße 9, 99310 Arnstadt",
        "opened_on": "2027-03-01",
        "description": "Weiterbildung für Zulieferbetriebe im Ilm-Kreis.",
        "contact_name": "Petra Muster",
        "contact_email": "knoten-arnstadt@example.de",
        "contact_phone": "+49 3628 123456",
    }
    body.update(overrides)
    return body


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["title"] and body["detail"]
    return body


def fields_of(response: httpx.Response) -> set[str]:
    return {error["field"] for error in problem(response, 422)["errors"]}


async def open_node(service: Service, **overrides: Any) -> dict[str, Any]:
    response = await service.client.post("/nodes", json=node_body(**overrides), headers=STAFF)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_node_commands_need_the_staff_token(service: Service) -> None:
    client = service.client
    for method, path, body in (
        ("POST", "/nodes", node_body()),
        ("PATCH", f"/nodes/{uuid4()}", {"town": "Ilmenau"}),
    ):
        assert "Token" in problem(await client.request(method, path, json=body), 401)["detail"]
        wrong = await client.request(method, path, json=body, headers={"Authorization": "Bearer falsch"})
        problem(wrong, 403)
    assert (await client.get("/nodes")).json() == {"items": [], "total": 0}


async def test_open_a_node_then_an_offering_at_it(service: Service) -> None:
    client = service.client
    async with watch_queue(service.settings.amqp_url, "catalogue.#") as watch:
        created = await client.post("/nodes", json=node_body(name="QTI-Knoten Arnstadt"), headers=STAFF)
        assert created.status_code == 201, created.text
        node = created.json()
        node_id = node["node_id"]
        assert created.headers["Location"] == f"/nodes/{node_id}"
        assert (node["county"], node["county_code"]) == ("Ilm-Kreis", "ilm_kreis")
        assert (node["revision"], node["upcoming_offerings"]) == (1, 0)
        assert node["contact_email"] == "knoten-arnstadt@example.de"
        assert node["offerings_url"] == f"/offerings?node={node_id}"

        # An offering can now be created at the new node, and it counts once published.
        offering = await client.post("/offerings", json=offering_body(node_id=node_id), headers=STAFF)
        assert offering.status_code == 201, offering.text
        offering_id = offering.json()["offering_id"]
        assert (await client.get(f"/nodes/{node_id}")).json()["upcoming_offerings"] == 0
        published = await client.post(f"/offerings/{offering_id}/publish", headers=STAFF)
        assert published.status_code == 200, published.text

        listed = (await client.get("/nodes")).json()
        assert [(n["node_id"], n["upcoming_offerings"]) for n in listed["items"]] == [(node_id, 1)]
        assert (await client.get(f"/nodes/{node_id}")).json()["upcoming_offerings"] == 1
        offerings = (await client.get(node["offerings_url"])).json()
        assert [item["offering_id"] for item in offerings["items"]] == [offering_id]
        by_code = (await client.get("/offerings", params={"county": "ilm_kreis"})).json()
        assert [item["offering_id"] for item in by_code["items"]] == [offering_id]

        await eventually(service.outbox_empty, timeout=10)
        events = await drain(watch)
    assert [e["type"] for e in events] == [RoutingKey.NODE_PUBLISHED, RoutingKey.OFFERING_PUBLISHED]
    announced = NodePublished.model_validate(events[0]["data"])
    assert (announced.node_id, announced.county, announced.revision) == (node_id, "Ilm-Kreis", 1)
    assert announced.description == "Weiterbildung für Zulieferbetriebe im Ilm-Kreis."
    # The contact person is staff data: it stays in the catalogue.
    assert "contact_email" not in events[0]["data"] and "@" not in str(events[0]["data"])
    assert events[0]["source"] == "/catalogue" and events[0]["subject"] == node_id


async def test_change_a_node(service: Service) -> None:
    client = service.client
    node_id = (await open_node(service, county="Sömmerda", town="Kölleda"))["node_id"]
    path = f"/nodes/{node_id}"
    async with watch_queue(service.settings.amqp_url, "catalogue.#") as watch:
        changed = await client.patch(
            path, json={"address": "Markt 1, 99625 Kölleda", "contact_phone": None}, headers=STAFF
        )
        assert changed.status_code == 200, changed.text
        body = changed.json()
        assert (body["address"], body["contact_phone"], body["revision"]) == (
            "Markt 1, 99625 Kölleda",
            None,
            2,
        )
        assert (body["county"], body["county_code"]) == ("Sömmerda", "soemmerda")
        # The same values again change nothing and announce nothing.
        same = await client.patch(path, json={"address": " Markt 1, 99625 Kölleda "}, headers=STAFF)
        assert same.status_code == 200 and same.json()["revision"] == 2
        moved = await client.patch(path, json={"county": "weimarer_land"}, headers=STAFF)
        assert moved.json()["county"] == "Weimarer Land" and moved.json()["revision"] == 3
        await eventually(service.outbox_empty, timeout=10)
        events = await drain(watch)
    assert [e["type"] for e in events] == [RoutingKey.NODE_UPDATED, RoutingKey.NODE_UPDATED]
    first, second = (NodeUpdated.model_validate(e["data"]) for e in events)
    assert (first.address, first.revision) == ("Markt 1, 99625 Kölleda", 2)
    assert (second.county, second.revision) == ("Weimarer Land", 3)
    assert events[0]["id"] != events[1]["id"]
    assert (await client.get(path)).json()["county"] == "Weimarer Land"


async def test_bad_node_input_gets_german_problems(service: Service) -> None:
    client = service.client

    async def post(**overrides: Any) -> httpx.Response:
        return await client.post("/nodes", json=node_body(**overrides), headers=STAFF)

    missing = await client.post("/nodes", json={"name": "QTI-Knoten X"}, headers=STAFF)
    assert fields_of(missing) == {"town", "county", "host", "address", "opened_on"}
    assert "Pflichtangabe fehlt." in problem(missing, 422)["detail"]
    assert fields_of(await post(county="Musterkreis")) == {"county"}
    assert "erlaubt sind" in problem(await post(county="Musterkreis"), 422)["errors"][0]["message"]
    assert fields_of(await post(county=None)) == {"county"}
    assert fields_of(await post(opened_on="1. März")) == {"opened_on"}
    assert fields_of(await post(name="Zwei\nZeilen", host=" ", address="x" * 201)) == {
        "name",
        "host",
        "address",
    }
    bad_contact = await post(contact_email="kein-at-zeichen", contact_phone="call me")
    assert fields_of(bad_contact) == {"contact_email", "contact_phone"}
    assert "E-Mail-Adresse" in problem(bad_contact, 422)["detail"]
    assert fields_of(await post(description="x" * 2001)) == {"description"}
    assert fields_of(await post(status="closed")) == {"status"}
    assert fields_of(await client.post("/nodes", content=b"{", headers=STAFF)) == {"body"}

    taken = (await open_node(service))["name"]
    assert "Namen" in problem(await post(name=taken.upper()), 409)["detail"]
    other = (await open_node(service))["node_id"]
    assert (
        "Namen"
        in problem(await client.patch(f"/nodes/{other}", json={"name": taken}, headers=STAFF), 409)["detail"]
    )
    assert fields_of(await client.patch(f"/nodes/{other}", json={"name": None}, headers=STAFF)) == {"name"}
    assert fields_of(await client.patch(f"/nodes/{other}", json={"county": ""}, headers=STAFF)) == {"county"}

    for path in (f"/nodes/{uuid4()}", "/nodes/kein-knoten"):
        assert (
            "QTI-Knoten"
            in problem(await client.patch(path, json={"town": "Ilmenau"}, headers=STAFF), 404)["detail"]
        )
        problem(await client.get(path), 404)
    huge = await client.post("/nodes", json=node_body(description="x" * 100_000), headers=STAFF)
    problem(huge, 413)


async def test_forgetting_a_contact_person_clears_the_nodes_contact(service: Service) -> None:
    email = f"ansprechperson-{uuid4().hex[:6]}@example.de"
    node_id = (await open_node(service, contact_email=email, contact_name="Jana Beispiel"))["node_id"]
    assert await privacy.forget_person(service.runtime.db, f"  {email.upper()} ") == 1
    node = (await service.client.get(f"/nodes/{node_id}")).json()
    assert (node["contact_name"], node["contact_email"], node["contact_phone"]) == (None, None, None)
    assert node["town"] == "Arnstadt" and node["revision"] == 1
    assert await privacy.forget_person(service.runtime.db, email) == 0
