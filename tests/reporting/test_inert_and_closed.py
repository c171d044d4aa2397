"""Exports are inert (no cell becomes a formula) and no free text typed by registrants reaches the figures:
county from the closed list, companies by county suppressed below 5 in every output."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aio_pika
import openpyxl
import pytest
from reporting.history import GOTHA, scripted_history

from qti_contracts import KpiUpdated, make_event
from services.reporting.rebuild import rebuild

ATTACKS = ['=HYPERLINK("http://x","y")', "+1", "-1", "@SUM(A1)", "\t=1"]
# Names a node may carry (single-line text, so no tab): each would be a formula in a spreadsheet.
NODE_NAMES = {f"qti-evil-{i}": text for i, text in enumerate(ATTACKS[:4])}
# What a registrant typed into "county" before the closed list, as it may still sit in the log.
LEGACY_COUNTY = "Max Mustermann 0151 2345678"
LEGACY_MARKERS = ("Mustermann", "0151")
MIGRATION = Path(__file__).parents[2] / "services/reporting/migrations/0003_closed_county.sql"
STAFF = "Bearer {}"


async def _ingest(reporting: Any, extra: list[Any] | None = None) -> None:
    published, distinct = scripted_history()
    await reporting.publish([*published, *(extra or [])])
    await reporting.wait_ingested(len(distinct) + len(extra or []))


def _evil_nodes() -> list[Any]:
    """Nodes whose names start like formulas, each with an offering so that it forms a group."""
    events = []
    for node_id, name in NODE_NAMES.items():
        node = {
            "node_id": node_id,
            "name": name,
            "town": "Gotha",
            "county": "Gotha",
            "host": "Träger",
            "address": "Straße 1, 99867 Gotha",
            "opened_on": "2024-03-01",
        }
        events.append(make_event("catalogue.node.published", node, source="/tests"))
        offering = next(e for e in scripted_history()[1] if e.type == "catalogue.offering.published").data
        events.append(
            make_event(
                "catalogue.offering.published",
                {**offering, "offering_id": f"off-{node_id}", "node_id": node_id},
                source="/tests",
            )
        )
    return events


def _workbook(content: bytes) -> openpyxl.Workbook:
    """The workbook, after checking its XML holds no formula element at all."""
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        for name in archive.namelist():
            if name.startswith("xl/worksheets/"):
                xml = archive.read(name).decode("utf-8")
                assert "<f>" not in xml and "<f " not in xml, name
    return openpyxl.load_workbook(io.BytesIO(content))


def _assert_no_formula(book: openpyxl.Workbook) -> list[Any]:
    cells = [cell for sheet in book.worksheets for row in sheet.iter_rows() for cell in row]
    assert cells
    assert not [c.coordinate for c in cells if c.data_type == "f"]
    return cells


async def test_xlsx_cover_sheet_filters_from_the_query_string_are_inert(reporting: Any) -> None:
    await _ingest(reporting)
    for attack in ATTACKS:
        response = await reporting.http.get(
            "/exports/kpis.xlsx", params={"node": attack, "topic": attack, "kind": attack}
        )
        assert response.status_code == 200
        book = _workbook(response.content)
        _assert_no_formula(book)
        cover = {row[0].value: row[1] for row in book["Deckblatt"].iter_rows(min_row=2)}
        for label in ("Filter Knoten", "Filter Thema", "Filter Format"):
            cell = cover[label]
            assert cell.data_type == "s", (attack, label)
            assert cell.value == "'" + attack, (attack, label)
        # Numbers stay numbers.
        totals = next(book["Gesamt"].iter_rows(min_row=2, values_only=True))
        assert totals[2] == 0 and isinstance(totals[2], int)


async def test_node_names_are_inert_in_csv_and_xlsx(reporting: Any) -> None:
    await _ingest(reporting, _evil_nodes())

    response = await reporting.http.get("/exports/kpis.csv", params={"group_by": "node"})
    assert response.status_code == 200
    rows = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig")), delimiter=";"))
    by_key = {row[1]: row for row in rows[1:]}
    for node_id, name in NODE_NAMES.items():
        assert by_key[node_id][0] == "'" + name
    for row in rows:
        for cell in row:
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), row
    assert by_key[GOTHA][2] == "1"  # a number, as before

    book = _workbook((await reporting.http.get("/exports/kpis.xlsx")).content)
    cells = _assert_no_formula(book)
    texts = [c for c in cells if isinstance(c.value, str)]
    assert all(c.data_type == "s" for c in texts)
    assert not [c.value for c in texts if c.value.startswith(("=", "+", "-", "@", "\t", "\r"))]
    labels = {row[1]: row[0] for row in book["Knoten"].iter_rows(min_row=2, values_only=True)}
    for node_id, name in NODE_NAMES.items():
        assert labels[node_id] == "'" + name
    numbers = [c.value for c in cells if c.data_type == "n" and c.value is not None]
    assert numbers and all(isinstance(v, int | float) for v in numbers)


async def test_county_filter_is_the_closed_list(reporting: Any) -> None:
    await _ingest(reporting)
    by_code = (await reporting.http.get("/kpis", params={"county": "gotha"})).json()
    by_label = (await reporting.http.get("/kpis", params={"county": "Gotha"})).json()
    assert by_code["total"] == by_label["total"]
    assert by_code["total"]["offerings"] == 1
    assert by_label["filters"]["county"] == "gotha"
    for text in ('=HYPERLINK("http://x","y")', "Kreis 7"):
        bad = await reporting.http.get("/exports/kpis.xlsx", params={"county": text})
        assert bad.status_code == 422
        assert bad.headers["content-type"].startswith("application/problem+json")
    book = _workbook((await reporting.http.get("/exports/kpis.xlsx", params={"county": "gotha"})).content)
    cover = {row[0]: row[1] for row in book["Deckblatt"].iter_rows(min_row=2, values_only=True)}
    assert cover["Filter Landkreis"] == "Gotha"
    by_county = (await reporting.http.get("/kpis", params={"group_by": "county"})).json()
    labels = {g["key"]: g["label"] for g in by_county["groups"]}
    assert labels == {"gotha": "Gotha", "soemmerda": "Sömmerda", "unbekannt": "unbekannt"}


@pytest.fixture
async def kpi_events(reporting: Any) -> AsyncIterator[aio_pika.abc.AbstractQueue]:
    """A queue on the read-only exchange `qti.reporting`, bound before anything is published."""
    connection = await aio_pika.connect(reporting.settings.amqp_url)
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue("kpi-test", exclusive=True)
        await queue.bind("qti.reporting", routing_key="reporting.#")
        yield queue
    finally:
        await connection.close()


async def _kpi_bodies_until(queue: aio_pika.abc.AbstractQueue, done: Any, timeout: float = 30) -> list[str]:
    """Every KPI event body received until one satisfies `done` (a KpiUpdated predicate)."""
    bodies: list[str] = []
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        message = await queue.get(fail=False, no_ack=True)
        if message is None:
            await asyncio.sleep(0.1)
            continue
        bodies.append(message.body.decode())
        if done(KpiUpdated.model_validate(json.loads(message.body)["data"])):
            return bodies
    raise AssertionError(f"no matching KPI event among {len(bodies)}")


def _all_ingested(event: KpiUpdated) -> bool:
    """The KPI event that covers the whole scripted history (13 participations)."""
    return any(
        f.indicator == "participations" and f.dimension is None and f.value == 13 for f in event.figures
    )


def _county_figures(event: KpiUpdated) -> dict[str | None, Any]:
    return {f.group: f for f in event.figures if f.dimension == "company_county"}


async def test_registration_county_label_becomes_code_and_small_counts_are_suppressed_everywhere(
    reporting: Any, kpi_events: aio_pika.abc.AbstractQueue
) -> None:
    await _ingest(reporting)
    async with reporting.runtime.db.pool.acquire() as conn:
        stored = {r["company_county"] for r in await conn.fetch("SELECT company_county FROM registrations")}
        logged = await conn.fetch("SELECT data->'company'->>'county' AS county FROM event_log")
    assert stored == {"gotha", "soemmerda", "erfurt", "jena", "weimar", "unstrut_hainich_kreis"}
    assert {row["county"] for row in logged if row["county"]} <= stored
    assert "Sömmerda" not in {row["county"] for row in logged}

    # /kpis: codes, German labels, every cell of 1–4 companies suppressed.
    counties = (await reporting.http.get("/kpis")).json()["companies_by_county"]
    assert len(counties) == 24  # every county of the closed list and "keine Angabe", always
    assert {c["label"] for c in counties} >= {"Sömmerda", "Gotha"}
    assert all(c["value"] == "<5" for c in counties)

    # CSV and XLSX: companies per county group suppressed; the county sheet too.
    response = await reporting.http.get("/exports/kpis.csv", params={"group_by": "county"})
    rows = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig")), delimiter=";"))
    column = rows[0].index("Erreichte Unternehmen")
    groups = {row[1]: row for row in rows[1:] if row[1] in ("gotha", "soemmerda")}
    assert {row[0] for row in groups.values()} == {"Gotha", "Sömmerda"}
    assert all(row[column] == "<5" for row in groups.values())
    book = _workbook((await reporting.http.get("/exports/kpis.xlsx")).content)
    sheet = list(book["Unternehmen nach Landkreis"].iter_rows(min_row=2, values_only=True))
    assert sheet == [(c["label"], "<5") for c in counties]
    county_sheet = list(book["Landkreis"].iter_rows(values_only=True))
    column = county_sheet[0].index("Erreichte Unternehmen")
    assert [row[column] for row in county_sheet[1:] if row[1] in ("gotha", "soemmerda")] == ["<5", "<5"]

    # Dashboard.
    page = (await reporting.http.get("/dashboard")).text
    assert "Erreichte Unternehmen nach Landkreis" in page
    table = page[page.index('id="companies-by-county"') :]
    assert '<th scope="row">Sömmerda</th><td>&lt;5</td>' in table

    # reporting.kpi.updated: suppressed, no value, groups are codes.
    bodies = await _kpi_bodies_until(kpi_events, _all_ingested)
    figures = _county_figures(KpiUpdated.model_validate(json.loads(bodies[-1])["data"]))
    assert set(figures) >= {"erfurt", "gotha", "soemmerda", "weimar"} and len(figures) == 24
    assert all(f.suppressed and f.value is None for f in figures.values())


def _legacy_confirmed(event_id: str, registration_id: str, county: Any) -> dict[str, Any]:
    """A `registration.confirmed` as an older version logged it: the county as typed."""
    return {
        "registration_id": registration_id,
        "request_id": f"req-{registration_id}",
        "offering_id": "off-a",
        "from_waitlist": False,
        "person": {"person_ref": f"p-{event_id:0>32}", "gender": "female", "age_band": "30_54"},
        "company": {
            "company_ref": f"c-{event_id:0>32}",
            "county": county,
            "size_class": "small",
            "automotive_supplier": False,
        },
    }


async def test_legacy_free_text_county_in_the_log_never_appears(
    reporting: Any, kpi_events: aio_pika.abc.AbstractQueue
) -> None:
    await _ingest(reporting)
    legacy = [_legacy_confirmed(f"{i}", f"reg-legacy-{i}", LEGACY_COUNTY) for i in range(6)]
    async with reporting.runtime.db.pool.acquire() as conn:
        await conn.executemany(
            "INSERT INTO event_log (event_id, type, occurred_at, data) VALUES ($1, $2, now(), $3::jsonb)",
            [(f"legacy-{i}", "registration.confirmed", json.dumps(d)) for i, d in enumerate(legacy)],
        )
    await rebuild(reporting.runtime.db)

    async with reporting.runtime.db.pool.acquire() as conn:
        counties = {r["company_county"] for r in await conn.fetch("SELECT company_county FROM registrations")}
    assert LEGACY_COUNTY not in counties

    auth = {"Authorization": STAFF.format(reporting.settings.staff_token.get_secret_value())}
    created = await reporting.http.post("/snapshots", json={"period": "project"}, headers=auth)
    assert created.status_code == 201
    outputs = {
        "kpis": (await reporting.http.get("/kpis")).text,
        "kpis by county": (await reporting.http.get("/kpis", params={"group_by": "county"})).text,
        "csv": (await reporting.http.get("/exports/kpis.csv", params={"group_by": "county"})).text,
        "dashboard": (await reporting.http.get("/dashboard")).text,
        "snapshot": (await reporting.http.get(created.json()["url"])).text,
    }
    book = _workbook((await reporting.http.get("/exports/kpis.xlsx")).content)
    outputs["xlsx"] = json.dumps(
        [c.value for s in book.worksheets for row in s.iter_rows() for c in row], default=str
    )
    for name, text in outputs.items():
        assert not [m for m in LEGACY_MARKERS if m in text], name
    # The six legacy companies count as "keine Angabe", not under what was typed.
    counties_json = json.loads(outputs["kpis"])["companies_by_county"]
    assert counties_json[-1] == {"key": "unbekannt", "label": "keine Angabe", "value": 6}

    bodies = await _kpi_bodies_until(kpi_events, lambda e: "unbekannt" in _county_figures(e))
    assert not [m for body in bodies for m in LEGACY_MARKERS if m in body]


async def test_migration_cleans_free_text_counties_already_stored(reporting: Any) -> None:
    """The stored log and projection as an older version left them, cleaned by migration 0003."""
    rows = {
        "a": LEGACY_COUNTY,
        "b": "Landkreis Sömmerda",
        "c": "Unstrut-Hainich-Kreis",
        "d": None,
    }
    async with reporting.runtime.db.pool.acquire() as conn, conn.transaction():
        await conn.executemany(
            "INSERT INTO event_log (event_id, type, occurred_at, data) VALUES ($1, $2, now(), $3::jsonb)",
            [(k, "registration.confirmed", json.dumps(_legacy_confirmed(k, k, v))) for k, v in rows.items()],
        )
        await conn.executemany(
            "INSERT INTO registrations (registration_id, first_seen_at, company_county)"
            " VALUES ($1, now(), $2)",
            list(rows.items()),
        )
        await conn.execute(MIGRATION.read_text("utf-8"))
        logged = {
            r["event_id"]: r["county"]
            for r in await conn.fetch("SELECT event_id, data->'company'->>'county' AS county FROM event_log")
        }
        projected = {
            r["registration_id"]: r["company_county"]
            for r in await conn.fetch("SELECT registration_id, company_county FROM registrations")
        }
    expected = {"a": None, "b": "soemmerda", "c": "unstrut_hainich_kreis", "d": None}
    assert logged == expected
    assert projected == expected
