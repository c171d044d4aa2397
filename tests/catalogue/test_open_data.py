"""Alternatives to a full offering and the open-Qcat export, against the real service and database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from uuid import UUID, uuid4

import pytest
import pytest_asyncio
from catalogue.harness import PROBLEM, Service, isolated_service
from lxml import etree

from devtools.demo import load_catalogue
from devtools.demo_data import demo_nodes, node_id_for
from qti_contracts.events import County, OfferingKind, OfferingStatus, Topic
from qti_runtime.alternatives import Candidate, county_of, distance_km, rank_alternatives
from services.catalogue import store
from services.catalogue.domain import Offering, OfferingSession
from support import Isolation

XSD = etree.XMLSchema(etree.parse(str(Path(__file__).resolve().parents[2] / "docs" / "openqcat.xsd")))
GOTHA, SOEMMERDA, WEBERSTEDT = node_id_for("gotha"), node_id_for("soemmerda"), node_id_for("weberstedt")
EISENACH, ROHR = node_id_for("eisenach"), node_id_for("rohr")
HOSTILE_TITLE = "<script>alert(1)</script> & \x01\x07 Ünïcødé 🚗 " + "x" * 400
BASE = datetime.now(UTC).replace(microsecond=0) + timedelta(days=40)


def sess(starts_at: datetime, ends_at: datetime, location: str) -> OfferingSession:
    return OfferingSession(session_id=uuid4(), starts_at=starts_at, ends_at=ends_at, location=location)


def offering(node: UUID, *, days: int = 0, topic: Topic = Topic.WASSERSTOFF, **changes: object) -> Offering:
    start = BASE + timedelta(days=days)
    sessions = tuple(
        sess(start + timedelta(days=i), start + timedelta(days=i, hours=4), f"Raum {i + 1}") for i in range(2)
    )
    made = Offering(
        offering_id=uuid4(),
        node_id=node,
        kind=OfferingKind.COURSE,
        topic=topic,
        title="Wasserstoff in der Logistik",
        description="Praxis & Sicherheit.\nZweite Zeile.",
        sessions=sessions,
        capacity=10,
        registration_deadline=start - timedelta(days=2),
        fee_eur=Decimal("49.90"),
        status=OfferingStatus.PUBLISHED,
    )
    return replace(made, **changes)  # type: ignore[arg-type]


FULL = offering(GOTHA)
SAME_NODE_LATER = offering(GOTHA, days=20)
SAME_NODE_EARLIER = offering(GOTHA, days=-5)
AT_WEBERSTEDT = offering(WEBERSTEDT, days=30)
AT_SOEMMERDA = offering(SOEMMERDA, days=10)
AT_ROHR_FULL = offering(ROHR, days=3)
OTHER_TOPIC = offering(EISENACH, topic=Topic.ELEKTROMOBILITAET)
DRAFT = offering(EISENACH, status=OfferingStatus.DRAFT)
CLOSED = offering(EISENACH, registration_deadline=datetime.now(UTC) - timedelta(days=1))
INFO_EVENT = offering(EISENACH, kind=OfferingKind.INFO_EVENT, topic=Topic.ELEKTROMOBILITAET)
CONSULTATION = offering(EISENACH, kind=OfferingKind.CONSULTATION, topic=Topic.INNOVATION)
SHORT_WORKSHOP = offering(
    EISENACH,
    kind=OfferingKind.WORKSHOP,
    sessions=(sess(BASE, BASE + timedelta(hours=2), "Kurz"),),
)
HOSTILE = offering(
    EISENACH, kind=OfferingKind.WORKSHOP, title=HOSTILE_TITLE, description="a\x0bb\ufffe &amp;"
)
ALL = [
    FULL,
    SAME_NODE_LATER,
    SAME_NODE_EARLIER,
    AT_WEBERSTEDT,
    AT_SOEMMERDA,
    AT_ROHR_FULL,
    OTHER_TOPIC,
    DRAFT,
    CLOSED,
    INFO_EVENT,
    CONSULTATION,
    SHORT_WORKSHOP,
    HOSTILE,
]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def catalogue(isolation: Isolation) -> AsyncIterator[Service]:
    async with isolated_service(isolation, nodes=False) as service:
        await load_catalogue(service.runtime.db, demo_nodes(), ALL, emit=False)
        async with service.runtime.db.pool.acquire() as conn:
            for full in (FULL, AT_ROHR_FULL):
                await store.apply_occupancy_snapshot(
                    conn,
                    full.offering_id,
                    version=5,
                    confirmed=full.capacity,
                    waitlisted=1,
                    capacity=full.capacity,
                    as_of=datetime.now(UTC),
                )
        yield service


async def alternative_ids(service: Service, offering_id: UUID, **params: str) -> list[str]:
    response = await service.client.get(f"/offerings/{offering_id}/alternatives", params=params)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["total"] == len(body["items"]) <= 3
    assert all(item["seats_left"] > 0 and item["registration_open"] for item in body["items"])
    return [item["offering_id"] for item in body["items"]]


@pytest.mark.asyncio(loop_scope="session")
async def test_alternatives_nearest_first(catalogue: Service) -> None:
    # From Sömmerda's district seat: Sömmerda (0 km), Gotha (~37 km, a later date at the full offering's
    # node), Mühlhausen for the Weberstedt node (~46 km).
    from_soemmerda = await alternative_ids(catalogue, FULL.offering_id, county="soemmerda")
    assert from_soemmerda == [str(o.offering_id) for o in (AT_SOEMMERDA, SAME_NODE_LATER, AT_WEBERSTEDT)]
    gotha = distance_km(County.SOEMMERDA, County.GOTHA) or 0
    assert 0 < gotha < (distance_km(County.SOEMMERDA, County.UNSTRUT_HAINICH_KREIS) or 0)
    # The label works as well as the code; without a county the full offering's node is the origin.
    assert await alternative_ids(catalogue, FULL.offering_id, county="Sömmerda") == from_soemmerda
    without = await alternative_ids(catalogue, FULL.offering_id)
    assert without[0] == str(SAME_NODE_LATER.offering_id)  # Gotha itself: 0 km
    excluded = {SAME_NODE_EARLIER, AT_ROHR_FULL, OTHER_TOPIC, DRAFT, CLOSED, FULL}
    assert not {str(o.offering_id) for o in excluded} & set(from_soemmerda + without)


@pytest.mark.asyncio(loop_scope="session")
async def test_alternatives_hostile_input(catalogue: Service) -> None:
    for county in ("Atlantis", "x" * 101, "soemmerda\x00", "'; DROP TABLE offerings; --"):
        response = await catalogue.client.get(
            f"/offerings/{FULL.offering_id}/alternatives", params={"county": county}
        )
        assert response.status_code == 422, county
        assert response.headers["content-type"].startswith(PROBLEM)
        assert response.json()["errors"][0]["field"] == "county"
    for bad in (uuid4(), "not-a-uuid", DRAFT.offering_id, "%00", "1" * 5000):
        response = await catalogue.client.get(f"/offerings/{bad}/alternatives")
        assert response.status_code in (404, 422), bad
        assert response.headers["content-type"].startswith(PROBLEM)
    # Outside Thuringia: no distance, so the full offering's node is the origin.
    assert await alternative_ids(catalogue, FULL.offering_id, county="ausserhalb") == await alternative_ids(
        catalogue, FULL.offering_id
    )


def test_ranking_rules() -> None:
    now = datetime.now(UTC)

    def cand(
        oid: str, node: str, county: County | None, days: int, seats: int = 3, open_: bool = True
    ) -> Candidate:
        return Candidate(oid, node, county, "t", now + timedelta(days=days), seats, open_)

    full = cand("full", "n1", County.GOTHA, 5, seats=0)
    pool = [
        cand("same-node-earlier", "n1", County.GOTHA, 1),
        cand("same-node-later", "n1", County.GOTHA, 9),
        cand("jena", "n2", County.JENA, 1),
        cand("erfurt", "n3", County.ERFURT, 2),
        cand("no-seats", "n4", County.ERFURT, 2, seats=0),
        cand("closed", "n4", County.ERFURT, 2, open_=False),
        cand("unknown", "n5", None, 1),
        full,
    ]
    assert [r.candidate.offering_id for r in rank_alternatives(full, pool, County.ERFURT)] == [
        "erfurt",
        "same-node-later",
        "jena",
    ]
    assert [r.candidate.offering_id for r in rank_alternatives(full, pool, None, limit=10)][-1] == "unknown"
    assert rank_alternatives(full, [], County.ERFURT) == []
    assert distance_km(County.ERFURT, County.ERFURT) == 0
    assert 15 < (distance_km(County.ERFURT, County.WEIMAR) or 0) < 25
    assert county_of("x" * 1000) is None and county_of(None) is None


@pytest.mark.asyncio(loop_scope="session")
async def test_openqcat_export(catalogue: Service) -> None:
    response = await catalogue.client.get("/exports/openqcat.xml")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/xml")
    assert response.content.startswith(b"<?xml version='1.0' encoding='utf-8'?>")
    document = etree.fromstring(response.content)
    XSD.assertValid(document)
    offers = {
        s.findtext("PRODUCT_ID"): s
        for s in document.iter("SERVICE")
        if s.find(".//EDUCATION").get("type") == "true"
    }
    runs = {
        s.findtext(".//COURSE_ID"): s
        for s in document.iter("SERVICE")
        if s.find(".//EDUCATION").get("type") == "false"
    }
    courses = [
        o
        for o in ALL
        if o.status is OfferingStatus.PUBLISHED and o.kind in (OfferingKind.COURSE, OfferingKind.WORKSHOP)
    ]
    expected = {str(o.offering_id) for o in courses if o is not SHORT_WORKSHOP}
    assert set(offers) == expected == set(runs)
    for item in courses:
        if item is SHORT_WORKSHOP:
            continue
        run = runs[str(item.offering_id)]
        modules = run.findall(".//MODULE_COURSE")
        assert len(modules) == len(item.sessions)
        for module, session in zip(modules, item.sessions, strict=True):
            assert datetime.fromisoformat(module.findtext("DURATION/START_DATE")) == session.starts_at
            assert datetime.fromisoformat(module.findtext("DURATION/END_DATE")) == session.ends_at
            assert module.findtext("LOCATION/NAME") == session.location
            assert module.findtext("LOCATION/CITY")
        assert offers[str(item.offering_id)].findtext(".//PRICE_AMOUNT") == "49.90"


@pytest.mark.asyncio(loop_scope="session")
async def test_openqcat_hostile_text_is_escaped(catalogue: Service) -> None:
    response = await catalogue.client.get("/exports/openqcat.xml")
    assert b"<script>" not in response.content
    assert b"&lt;script&gt;alert(1)&lt;/script&gt; &amp;" in response.content
    document = etree.fromstring(response.content)
    offer = next(s for s in document.iter("SERVICE") if s.findtext("PRODUCT_ID") == str(HOSTILE.offering_id))
    title = offer.findtext(".//TITLE")
    assert title.startswith("<script>alert(1)</script> & Ünïcødé 🚗") and len(title) <= 255
    assert offer.findtext(".//DESCRIPTION_LONG") == "ab &amp;"
