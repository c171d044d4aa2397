"""Participants' feedback in reporting: scores under the one suppression rule, free text for one node's
staff only, and no table that could tie an answer to a person."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from qti_contracts import CloudEvent, make_event
from services.reporting.api import build_router
from services.reporting.feedback import OfferingSums, Sums, publish
from services.reporting.feedback_api import feedback_router

STAFF = {"Authorization": "Bearer dev-staff-token"}
MARKER = "Geheimtipp-Kommentar-7c1f"
FORMULA = f'=HYPERLINK("http://x";"{MARKER} C")'
INVITED = {"registration_id": "reg-77", "offering_id": "off-a"}
PERSONAL_COLUMNS = {
    "registration_id",
    "request_id",
    "person_ref",
    "company_ref",
    "email",
    "token",
    "token_hash",
}


def node(node_id: str, name: str, **extra: Any) -> CloudEvent[Any]:
    type_ = extra.pop("type", "catalogue.node.published")
    data = {
        "node_id": node_id,
        "name": name,
        "town": "Erfurt",
        "county": "Erfurt",
        "host": "Bildungswerk",
        "address": "Markt 1, 99084 Erfurt",
        "opened_on": "2024-01-15",
        **extra,
    }
    return make_event(type_, data, source="/tests")


def offering(offering_id: str, node_id: str, topic: str) -> CloudEvent[Any]:
    start = datetime(2026, 3, 2, 8, tzinfo=UTC)
    data = {
        "offering_id": offering_id,
        "node_id": node_id,
        "kind": "workshop",
        "topic": topic,
        "title": f"Angebot {offering_id}",
        "sessions": [
            {
                "session_id": "s1",
                "starts_at": start.isoformat(),
                "ends_at": (start + timedelta(hours=4)).isoformat(),
                "location": "Raum 1",
            }
        ],
        "capacity": 20,
        "registration_deadline": (start - timedelta(days=2)).isoformat(),
    }
    return make_event("catalogue.offering.published", data, source="/tests")


def answer(offering_id: str, rating: int, comment: str | None = None) -> CloudEvent[Any]:
    data = {"offering_id": offering_id, "rating": rating, "usefulness": 4, "would_recommend": rating >= 3}
    if comment:
        data["comment"] = comment
    return make_event("registration.feedback.submitted", data, source="/registration", subject=offering_id)


@pytest.fixture
async def client(reporting: Any) -> Any:
    app = reporting.runtime.create_app(
        [
            build_router(reporting.settings, reporting.runtime),
            feedback_router(reporting.settings, reporting.runtime),
        ],
        title="t",
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        yield http


async def feed(reporting: Any) -> None:
    events = [
        node("n-erfurt", "QTI-Knoten Erfurt"),
        node("n-gera", "QTI-Knoten Gera"),
        offering("off-a", "n-erfurt", "elektromobilitaet"),
        offering("off-b", "n-erfurt", "elektromobilitaet"),
        offering("off-c", "n-gera", "industrie_4_0"),
        *(answer("off-a", r) for r in (5, 4, 4, 3, 5, 2)),
        *(answer("off-b", r, f"{MARKER} B{r}") for r in (1, 2, 5)),
        *(answer("off-c", r, FORMULA if r == 5 else None) for r in (5, 4, 4, 4, 3, 5, 4)),
        make_event("registration.feedback.invited", INVITED, source="/registration"),
    ]  # fmt: skip
    await reporting.publish(events)
    await reporting.wait_ingested(len(events))


async def test_scores_follow_the_suppression_rule_and_nothing_recomputes_a_small_group(
    reporting: Any, client: httpx.AsyncClient
) -> None:
    await feed(reporting)
    figures = (await client.get("/feedback/ratings")).json()
    offerings = {row["group"]: row for row in figures["offering"]}
    topics = {row["group"]: row for row in figures["topic"]}
    nodes = {row["group"]: row for row in figures["node"]}
    assert topics["industrie_4_0"] == {
        "group": "industrie_4_0",
        "suppressed": False,
        "answers": 7,
        "rating": 4.1,
        "usefulness": 4.0,
        "would_recommend_share": 1.0,
        "label": "Industrie 4.0/Digitale Transformation",
    }
    assert offerings["off-b"]["suppressed"] and offerings["off-b"]["marker"] == "<5"
    assert "rating" not in offerings["off-b"] and offerings["off-b"]["answers"] == "<5"
    assert topics["elektromobilitaet"]["label"] == "Elektromobilität"
    assert nodes["n-gera"]["label"] == "QTI-Knoten Gera" and not nodes["n-gera"]["suppressed"]
    # off-b = topic − off-a = node − off-a = total − off-a − off-c: at least one cell of each is withheld
    shown = lambda row: row is not None and not row["suppressed"]  # noqa: E731
    assert not (shown(topics["elektromobilitaet"]) and shown(offerings["off-a"]))
    assert not (shown(nodes["n-erfurt"]) and shown(offerings["off-a"]))
    assert not (shown(figures["total"]) and shown(offerings["off-a"]) and shown(offerings["off-c"]))

    page = (await client.get("/dashboard")).text
    assert "Rückmeldungen der Teilnehmenden" in page and "Bewertungen nach Thema" in page
    assert "<td>7</td><td>4,1</td><td>4,0</td>" in page.replace("\n", "").replace("    ", "")


def test_publish_shows_everything_when_every_group_is_large_enough() -> None:
    sums = [OfferingSums("o1", "elektromobilitaet", "n1", Sums(5, 20, 15, 5)),
            OfferingSums("o2", "industrie_4_0", "n1", Sums(8, 24, 24, 2))]  # fmt: skip
    figures = publish(sums, {"n1": "Knoten 1"})
    assert all(not row["suppressed"] for name in ("offering", "topic", "node") for row in figures[name])
    assert figures["total"]["answers"] == 13 and figures["total"]["rating"] == 3.4
    assert figures["node"][0]["label"] == "Knoten 1"


async def test_free_text_only_for_one_nodes_staff_and_nowhere_else(
    reporting: Any, client: httpx.AsyncClient
) -> None:
    await feed(reporting)
    assert (await client.get("/feedback/comments?node=n-erfurt")).status_code == 401
    missing = await client.get("/feedback/comments", headers=STAFF)
    assert missing.status_code == 422 and "Knoten" in missing.json()["detail"]
    erfurt = (await client.get("/feedback/comments?node=n-erfurt", headers=STAFF)).json()
    assert sorted(c["comment"] for c in erfurt["comments"]) == [
        f"{MARKER} B1",
        f"{MARKER} B2",
        f"{MARKER} B5",
    ]
    assert {c["offering_id"] for c in erfurt["comments"]} == {"off-b"}
    gera = (await client.get("/feedback/comments?node=n-gera", headers=STAFF)).json()
    assert [c["comment"] for c in gera["comments"]] == [FORMULA, FORMULA]  # text, never a formula run
    assert (await client.get("/feedback/comments?node=n-nirgends", headers=STAFF)).json()["comments"] == []

    for path in ("/kpis", "/kpis?group_by=topic", "/exports/kpis.csv", "/dashboard", "/feedback/ratings"):
        body = (await client.get(path)).content
        assert MARKER.encode() not in body, path
    conn = await reporting.connect()
    try:
        tables = await conn.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'reporting'"
            " AND table_type = 'BASE TABLE'"
        )
        holding = []
        for table in tables:
            sql = f'SELECT count(*) FROM reporting."{table["table_name"]}" x WHERE x::text LIKE $1'
            if await conn.fetchval(sql, f"%{MARKER}%"):
                holding.append(table["table_name"])
    finally:
        await conn.close()
    assert holding == ["feedback_comments"]  # not the log, the outbox (KPI events), snapshots …


async def test_no_table_links_an_answer_to_a_person(reporting: Any) -> None:
    await feed(reporting)
    conn = await reporting.connect()
    try:
        columns = await conn.fetch(
            "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'reporting'"
            " AND table_name LIKE 'feedback%' ORDER BY table_name, ordinal_position"
        )
        logged = await conn.fetch(
            "SELECT type, data FROM reporting.event_log WHERE type LIKE 'registration.feedback.%'"
        )
        answers = await conn.fetch("SELECT event_id FROM reporting.feedback_answers")
        registrations = await conn.fetch("SELECT registration_id FROM reporting.registrations")
    finally:
        await conn.close()
    by_table: dict[str, list[str]] = {}
    for row in columns:
        by_table.setdefault(row["table_name"], []).append(row["column_name"])
    assert by_table == {
        "feedback_answers": [
            "event_id",
            "offering_id",
            "received_on",
            "rating",
            "usefulness",
            "would_recommend",
        ],
        "feedback_comments": ["event_id", "offering_id", "received_on", "comment"],
    }
    assert not PERSONAL_COLUMNS & {c for cols in by_table.values() for c in cols}
    answer_ids = {r["event_id"] for r in answers}
    assert len(answer_ids) == 16 and not answer_ids & {r["registration_id"] for r in registrations}
    for row in logged:
        assert (
            "comment" not in row["data"]
            and "registration_id" not in row["data"]
            and MARKER not in row["data"]
        )


async def test_node_updates_reach_reporting(reporting: Any) -> None:
    first = node("n-erfurt", "QTI-Knoten Erfurt")
    renamed = node("n-erfurt", "QTI-Knoten Erfurt-Nord", type="catalogue.node.updated", revision=2)
    await reporting.publish([first])
    await reporting.wait_ingested(1)
    await reporting.publish([renamed])
    await reporting.wait_ingested(2)
    conn = await reporting.connect()
    try:
        assert await conn.fetchval("SELECT name FROM reporting.nodes WHERE node_id = 'n-erfurt'") == (
            "QTI-Knoten Erfurt-Nord"
        )
    finally:
        await conn.close()
