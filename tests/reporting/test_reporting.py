"""Reporting against the real broker and database: figures, privacy, exports, rebuild, snapshots."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import openpyxl
from reporting.history import (
    COUNTIES_WITH_COMPANIES,
    EXPECTED_RAW,
    EXPECTED_TOTAL,
    GOTHA,
    NAMES,
    SOEMMERDA,
    scripted_history,
)

from services.reporting import store
from services.reporting.domain import INDICATORS, Filters, compute
from services.reporting.exports import GROUP_HEADER
from services.reporting.rebuild import rebuild


async def _ingest(reporting: Any) -> list[Any]:
    published, distinct = scripted_history()
    await reporting.publish(published)
    await reporting.wait_ingested(len(distinct))
    return distinct


async def test_scripted_history_gives_exact_figures(reporting: Any) -> None:
    await _ingest(reporting)

    response = await reporting.http.get("/kpis")
    assert response.status_code == 200
    body = response.json()
    total = body["total"]
    for key, expected in EXPECTED_TOTAL.items():
        assert total[key] == expected, key
    counties = {c["key"]: c for c in body["companies_by_county"]}
    assert len(counties) == 24 and list(counties)[-1] == "unbekannt"  # every county, always
    assert all(c["value"] == "<5" for c in counties.values())
    assert {counties[k]["label"] for k in COUNTIES_WITH_COMPANIES} >= {
        "Sömmerda",
        "Erfurt (kreisfreie Stadt)",
    }

    async with reporting.runtime.db.pool.acquire() as conn:
        facts = await store.load_facts(conn)
    raw = compute(facts, Filters(), None).total.values
    for key, expected in EXPECTED_RAW.items():
        assert raw[key] == expected, key

    by_node = (await reporting.http.get("/kpis", params={"group_by": "node"})).json()
    groups = {g["key"]: g for g in by_node["groups"]}
    assert groups[GOTHA]["label"] != GOTHA  # the node's name
    assert groups[GOTHA]["values"]["offerings"] == 1  # C was cancelled
    assert groups[GOTHA]["values"]["seats"] == 12  # revision 2 wins although it came first or twice
    # The unknown node's participations (0) read "<5": total minus the two nodes would give them away,
    # so the nodes' participations (and the utilisation built on them) are withheld.
    assert groups["unbekannt"]["values"]["participations"] == "<5"
    assert (
        groups[GOTHA]["values"]["participations"]
        == groups[SOEMMERDA]["values"]["participations"]
        == "gesperrt"
    )
    assert groups[SOEMMERDA]["values"]["utilisation"] == "gesperrt"
    assert groups["unbekannt"]["values"]["requested"] == "<5"
    raw_nodes = {row.key: row.values for row in compute(facts, Filters(), "node").groups}
    assert (raw_nodes[GOTHA]["participations"], raw_nodes[SOEMMERDA]["participations"]) == (6, 7)
    assert raw_nodes[SOEMMERDA]["utilisation"] == round(7 / 8, 4)

    by_quarter = (await reporting.http.get("/kpis", params={"group_by": "quarter"})).json()
    assert [g["key"] for g in by_quarter["groups"]] == ["2026-Q1", "2026-Q2"]
    q1, q2 = by_quarter["groups"]
    assert (q1["values"]["sessions"], q2["values"]["sessions"]) == (3, 2)
    assert q2["values"]["participant_hours"] == 48.0

    only_b = (await reporting.http.get("/kpis", params={"from": "2026-04-01", "to": "2026-06-30"})).json()
    assert only_b["total"]["participations"] == 7
    assert only_b["total"]["offerings"] == 1
    topic = (await reporting.http.get("/kpis", params={"topic": "elektromobilitaet"})).json()
    assert topic["total"]["participants"] == 6

    by_size = (await reporting.http.get("/kpis", params={"group_by": "size_class"})).json()
    sizes = {g["key"]: g["values"] for g in by_size["groups"]}
    assert sizes["small"]["participations"] == 6  # p3, p4, p10, p11, p12, w1
    assert sizes["small"]["offerings"] is None
    assert list(sizes) == ["large", "medium", "micro", "small", "unbekannt"]  # every class, always

    bad = await reporting.http.get("/kpis", params={"group_by": "colour"})
    assert bad.status_code == 422
    assert bad.headers["content-type"].startswith("application/problem+json")


async def test_no_personal_data_in_any_column(reporting: Any) -> None:
    await _ingest(reporting)
    await reporting.http.post(
        "/snapshots",
        json={"period": "project"},
        headers={"Authorization": f"Bearer {reporting.settings.staff_token.get_secret_value()}"},
    )
    conn = await reporting.connect()
    try:
        columns = await conn.fetch(
            """SELECT table_name, column_name, data_type FROM information_schema.columns
               WHERE table_schema = 'reporting'
                 AND data_type IN ('text', 'character varying', 'jsonb', 'json', 'bytea', 'ARRAY')"""
        )
        assert len(columns) > 20
        patterns = [f"%{name}%" for name in NAMES] + ["%@%"]
        for column in columns:
            table, name = column["table_name"], column["column_name"]
            # The PDF of a snapshot is binary (NUL bytes): read it escaped; its text streams are
            # compressed, and what they say is checked against the JSON figures in test_period_report.
            if column["data_type"] != "bytea":
                text = f'"{name}"::text'
            elif table == "snapshot_files":
                text = f"encode(\"{name}\", 'escape')"
            else:
                text = f"convert_from(\"{name}\", 'UTF8')"
            # Compressed PDF streams may hold any byte, "@" too: there the names are searched (and the
            # PDF's extracted text is checked for addresses in test_period_report).
            wanted = patterns[:-1] if table == "snapshot_files" else patterns
            hits = await conn.fetch(
                f'SELECT {text} AS value FROM reporting."{table}" WHERE {text} ILIKE ANY($1::text[])',
                wanted,
            )
            assert not hits, (table, name, [h["value"][:200] for h in hits])
        logged = await conn.fetchval("SELECT count(*) FROM reporting.event_log")
        assert logged == len(scripted_history()[1])
    finally:
        await conn.close()


async def test_exports_match_json_and_rebuild_equals_live(reporting: Any) -> None:
    await _ingest(reporting)
    live = (await reporting.http.get("/kpis", params={"group_by": "node"})).json()

    csv_response = await reporting.http.get("/exports/kpis.csv", params={"group_by": "node"})
    assert csv_response.status_code == 200
    rows = list(csv.reader(io.StringIO(csv_response.content.decode("utf-8-sig")), delimiter=";"))
    header = rows[0]
    assert header[0] == GROUP_HEADER and header[2:] == [i.label for i in INDICATORS]
    json_rows = [*live["groups"], {"key": None, "label": "Gesamt", "values": live["total"]}]
    assert len(rows) - 1 == len(json_rows)
    for csv_row, json_row in zip(rows[1:], json_rows, strict=True):
        assert csv_row[1] == (json_row["key"] or "")
        for indicator, cell in zip(INDICATORS, csv_row[2:], strict=True):
            assert _cell(cell) == json_row["values"][indicator.key], (json_row["key"], indicator.key)

    xlsx = await reporting.http.get("/exports/kpis.xlsx")
    assert xlsx.status_code == 200
    book = openpyxl.load_workbook(io.BytesIO(xlsx.content))
    assert book.sheetnames[:3] == ["Deckblatt", "Gesamt", "Knoten"]
    assert "Jahr" in book.sheetnames and "Unternehmen nach Landkreis" in book.sheetnames
    cover = {row[0].value: row[1].value for row in book["Deckblatt"].iter_rows(min_row=2)}
    assert "Zeitraum" in cover and "Erstellt am" in cover
    total_sheet = list(book["Gesamt"].iter_rows(values_only=True))
    assert list(total_sheet[0][2:]) == [i.label for i in INDICATORS]
    for indicator, cell in zip(INDICATORS, total_sheet[1][2:], strict=True):
        expected = live["total"][indicator.key]
        assert (None if cell == "" else cell) == expected, indicator.key
    node_sheet = list(book["Knoten"].iter_rows(values_only=True))[1:]
    xlsx_nodes = {row[1]: row for row in node_sheet if row[1]}
    for group in live["groups"]:
        for indicator, cell in zip(INDICATORS, xlsx_nodes[group["key"]][2:], strict=True):
            assert (None if cell == "" else cell) == group["values"][indicator.key]

    # Rebuild from the raw log gives identical figures.
    async with reporting.runtime.db.pool.acquire() as conn:
        before = {
            t: await conn.fetch(f"SELECT * FROM {t} ORDER BY 1, 2") for t in ("registrations", "requests")
        }
    replayed = await rebuild(reporting.runtime.db)
    assert replayed == len(scripted_history()[1])
    async with reporting.runtime.db.pool.acquire() as conn:
        after = {
            t: await conn.fetch(f"SELECT * FROM {t} ORDER BY 1, 2") for t in ("registrations", "requests")
        }
    assert before == after
    rebuilt = (await reporting.http.get("/kpis", params={"group_by": "node"})).json()
    assert _strip(rebuilt) == _strip(live)


async def test_snapshots_are_frozen(reporting: Any) -> None:
    await _ingest(reporting)
    auth = {"Authorization": f"Bearer {reporting.settings.staff_token.get_secret_value()}"}
    assert (await reporting.http.post("/snapshots", json={"period": "2026"})).status_code == 401
    assert (await reporting.http.post("/snapshots", json={"period": "soon"}, headers=auth)).status_code == 422
    created = await reporting.http.post("/snapshots", json={"period": "2026"}, headers=auth)
    assert created.status_code == 201, created.text
    url = created.json()["url"]
    first = await reporting.http.get(url)
    assert first.status_code == 200
    document = json.loads(first.content)
    assert document["total"]["participations"] == 13
    assert document["period"] == {"from": "2026-01-01", "to": "2026-12-31"}
    # Changed figures do not change the snapshot.
    await reporting.runtime.db.pool.execute("DELETE FROM offering_cancellations")
    live = (await reporting.http.get("/kpis")).json()
    assert live["total"]["offerings"] == 3
    again = await reporting.http.get(url)
    assert again.content == first.content
    assert again.headers["x-content-sha256"] == created.json()["sha256"]
    assert (await reporting.http.get("/snapshots/nope")).status_code == 404


def _cell(text: str) -> Any:
    if text == "":
        return None
    if text in ("<5", "gesperrt"):
        return text
    if "," in text:
        return float(text.replace(",", "."))
    value = float(text)
    return int(value) if value.is_integer() and "." not in text else value


def _strip(document: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in document.items() if k != "generated_at"}


async def test_unknown_future_type_is_skipped_not_parked_with_personal_data(
    reporting: Any, amqp_url: str
) -> None:
    """A type added later reaches reporting through its wildcard binding; nothing of it may be kept."""
    from qti_contracts import make_event
    from support import get_messages

    secret = {"participant": {"email": "zukunft@example.de", "family_name": "Zukunft"}}
    known = make_event(
        "catalogue.node.published",
        {
            "node_id": "qti-gotha",
            "name": "QTI-Knoten Gotha",
            "town": "Gotha",
            "county": "Gotha",
            "host": "VHS-Bildungswerk",
            "address": "Gleichenstraße 48, 99867 Gotha",
            "opened_on": "2024-03-01",
        },
        source="/tests",
    )
    await reporting.publish([make_event("registration.requested.v2", secret, source="/tests"), known])
    await reporting.wait_ingested(1)
    assert await get_messages(amqp_url, "reporting.dead-letter", expect=1, timeout=1.0) == []
    conn = await reporting.connect()
    try:
        logged = await conn.fetch("SELECT type, data::text AS data FROM reporting.event_log")
    finally:
        await conn.close()
    assert [row["type"] for row in logged] == ["catalogue.node.published"]
    assert all("zukunft" not in row["data"].lower() for row in logged)
