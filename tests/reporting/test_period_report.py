"""The funder's period report: PDF (same filters, tagged, text equal to the JSON figures), quarter sheets in
the XLSX, snapshots as PDF byte for byte, the page's filters without JavaScript."""

from __future__ import annotations

import io
import re
from typing import Any

import openpyxl
import pypdf
from reporting.history import NAMES, scripted_history

from services.reporting.domain import INDICATORS
from services.reporting.views import show

Q1 = {"from": "2026-01-01", "to": "2026-03-31"}


async def _ingest(reporting: Any) -> None:
    published, distinct = scripted_history()
    await reporting.publish(published)
    await reporting.wait_ingested(len(distinct))


def _text(pdf: bytes) -> tuple[pypdf.PdfReader, str]:
    reader = pypdf.PdfReader(io.BytesIO(pdf))
    text = "\n".join(page.extract_text() for page in reader.pages)
    return reader, re.sub(r"[ \t]+", " ", text)


def _lines_of(text: str) -> set[str]:
    return {line.strip() for line in text.splitlines()}


async def test_pdf_is_a_tagged_german_report_whose_figures_equal_the_json(reporting: Any) -> None:
    await _ingest(reporting)
    response = await reporting.http.get("/exports/kpis.pdf", params=Q1)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/pdf"
    reader, text = _text(response.content)
    for expected in (
        "Sachbericht Kennzahlen",
        "QTI-Knoten Thüringen",
        "Zuwendungsgeber",
        "01.01.2026 bis 31.03.2026",
        "Kennzahlen im Berichtszeitraum",
        "Teilnahmen je Monat",
        "Hinweis zum Datenschutz",
        "Seite 2 von",
    ):
        assert expected in text, expected
    assert "UTC" not in text and "@" not in text
    assert not [name for name in NAMES if name.lower() in text.lower()]
    root = reader.trailer["/Root"]
    assert root["/Lang"] == "de"
    assert "/StructTreeRoot" in root and root["/MarkInfo"]["/Marked"]  # tagged for accessibility

    figures = (await reporting.http.get("/kpis", params=Q1)).json()["total"]
    lines = _lines_of(text)
    for indicator in INDICATORS:
        shown = show(indicator.key, figures[indicator.key])
        if len(indicator.label) < 40:  # longer labels may wrap onto two lines of extracted text
            assert f"{indicator.label} {shown}" in lines, (indicator.key, shown)
    # Suppressed figures appear only as their markers, never as the small count.
    assert figures["waitlisted"] == "<5" and "Auf die Warteliste gesetzt <5" in lines


async def test_pdf_of_the_whole_project_and_bad_filters(reporting: Any) -> None:
    await _ingest(reporting)
    response = await reporting.http.get("/exports/kpis.pdf")
    assert response.status_code == 200
    _, text = _text(response.content)
    assert "Projektbeginn bis heute" in text
    bad = await reporting.http.get("/exports/kpis.pdf", params={"from": "2026-04-01", "to": "2026-01-01"})
    assert bad.status_code == 422
    assert bad.headers["content-type"].startswith("application/problem+json")
    assert "Beginn des Zeitraums" in bad.json()["detail"]


async def test_xlsx_has_a_sheet_per_quarter_with_the_json_figures(reporting: Any) -> None:
    await _ingest(reporting)
    book = openpyxl.load_workbook(io.BytesIO((await reporting.http.get("/exports/kpis.xlsx")).content))
    assert {"Q1 2026", "Q2 2026"} <= set(book.sheetnames)
    quarters = (await reporting.http.get("/kpis", params={"group_by": "quarter"})).json()["groups"]
    for group in quarters:
        year, quarter = group["key"].split("-Q")
        rows = list(book[f"Q{quarter} {year}"].iter_rows(min_row=3, values_only=True))
        assert [row[0] for row in rows] == [i.label for i in INDICATORS]
        for indicator, (_, cell) in zip(INDICATORS, rows, strict=True):
            assert (None if cell == "" else cell) == group["values"][indicator.key], indicator.key


async def test_snapshot_pdf_is_the_same_bytes_on_every_download(reporting: Any) -> None:
    await _ingest(reporting)
    auth = {"Authorization": f"Bearer {reporting.settings.staff_token.get_secret_value()}"}
    created = await reporting.http.post("/snapshots", json={"period": "2026-Q1"}, headers=auth)
    assert created.status_code == 201, created.text
    pdf_url = created.json()["pdf_url"]
    first = await reporting.http.get(pdf_url)
    assert first.status_code == 200 and first.headers["content-type"] == "application/pdf"
    await reporting.runtime.db.pool.execute("DELETE FROM offering_cancellations")  # the figures change
    again = await reporting.http.get(pdf_url)
    assert again.content == first.content
    _, text = _text(first.content)
    assert "01.01.2026 bis 31.03.2026" in text
    assert (await reporting.http.get("/snapshots/nope.pdf")).status_code == 404
    listed = (await reporting.http.get("/snapshots")).json()
    assert listed[0]["pdf_url"] == pdf_url
    page = (await reporting.http.get("/dashboard")).text  # the page offers it for download
    assert f'href="{pdf_url}"' in page and "1. Quartal 2026, eingefroren am" in page


async def test_dashboard_filters_live_in_the_url(reporting: Any) -> None:
    await _ingest(reporting)
    chosen = await reporting.http.get("/dashboard", params={"period": "2026-Q2", "kind": "workshop"})
    assert chosen.status_code == 303
    assert chosen.headers["location"] == "/dashboard?from=2026-04-01&to=2026-06-30&kind=workshop"
    page = await reporting.http.get(chosen.headers["location"])
    assert page.status_code == 200
    assert 'href="/exports/kpis.pdf?from=2026-04-01&amp;to=2026-06-30&amp;kind=workshop"' in page.text
    assert "<main" in page.text and "Uhr (UTC)" not in page.text
    bad = await reporting.http.get("/dashboard", params={"from": "31.12.2026"})
    assert bad.status_code == 422
    assert "Bitte ein gültiges Datum angeben" in bad.text and 'aria-invalid="true"' in bad.text
    unknown = await reporting.http.get("/dashboard", params={"period": "bald"})
    assert unknown.status_code == 422 and "Unbekannter Zeitraum" in unknown.text
