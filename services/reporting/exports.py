"""CSV and XLSX exports with German headers; suppressed cells read "<5".

Exports are inert (OWASP, CSV injection): every text cell that starts like a formula is prefixed with a
single quote, and every text cell of the workbook is written with the string type, so that neither a
query-string filter nor a node name nor anything else becomes a live formula. Numbers stay numbers.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from openpyxl import Workbook
from openpyxl.worksheet.worksheet import Worksheet

from qti_contracts import MIN_GROUP_SIZE
from services.reporting.domain import GROUPINGS, INDICATORS, Row, Table, county_label, format_value
from services.reporting.report import FullReport, berlin_time, filters_dict, period_text

CSV_MEDIA_TYPE = "text/csv; charset=utf-8"
XLSX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
GROUP_HEADER = "Gruppe"
KEY_HEADER = "Schlüssel"
TOTAL_LABEL = "Gesamt"
# OWASP's formula starters, and their full-width forms (spreadsheets may fold them).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20")


def inert(text: str) -> str:
    """A cell text a spreadsheet shows as text: a leading formula character gets a single quote before it."""
    return "'" + text if text.startswith(_FORMULA_START) else text


def header() -> list[str]:
    return [GROUP_HEADER, KEY_HEADER, *(i.label for i in INDICATORS)]


def _rows(table: Table) -> list[Row]:
    return [*table.groups, table.total]


def csv_bytes(table: Table) -> bytes:
    """Semicolon-separated, decimal comma, UTF-8 with BOM (opens correctly in German Excel)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=";", lineterminator="\r\n")
    writer.writerow([inert(text) for text in header()])
    for row in _rows(table):
        cells = [
            row.label,
            row.key or "",
            *(format_value(row.values.get(i.key), decimal_comma=True) for i in INDICATORS),
        ]
        writer.writerow([inert(cell) for cell in cells])
    return ("\ufeff" + buffer.getvalue()).encode("utf-8")


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    return inert(value) if isinstance(value, str) else value


def _append(sheet: Worksheet, values: list[Any]) -> None:
    """One row; text cells neutralised and typed as strings (openpyxl makes a str starting with "=" a
    formula and one like "#N/A" an error unless the type says otherwise)."""
    sheet.append([_cell(value) for value in values])
    for cell in sheet[sheet.max_row]:
        if isinstance(cell.value, str):
            cell.data_type = "s"


def quarter_rows(report: FullReport) -> list[tuple[str, Row]]:
    """(sheet title such as "Q1 2026", the quarter's row) for every quarter with figures."""
    rows = []
    for row in report.tables["quarter"].groups:
        if row.key and "-Q" in row.key:
            year, quarter = row.key.split("-Q")
            rows.append((f"Q{quarter} {year}", row))
    return rows


def _quarter_sheet(sheet: Worksheet, row: Row) -> None:
    """One quarter for the funder's period report: indicator, value (same suppression as everywhere)."""
    _append(sheet, [f"Kennzahlen {row.label}"])
    _append(sheet, ["Kennzahl", "Wert"])
    for indicator in INDICATORS:
        _append(sheet, [indicator.label, row.values.get(indicator.key)])
    sheet.column_dimensions["A"].width = 55
    sheet.column_dimensions["B"].width = 14


def xlsx_bytes(report: FullReport) -> bytes:
    """A cover sheet (period, filters, generation time), one sheet per grouping, one per quarter."""
    workbook = Workbook()
    cover = workbook.active
    cover.title = "Deckblatt"
    _append(cover, ["QTI-Knoten Thüringen – Kennzahlen"])
    _append(cover, ["Zeitraum", period_text(report.filters)])
    _append(cover, ["Erstellt am", berlin_time(report.generated_at)])
    names = {"node": "Knoten", "county": "Landkreis", "topic": "Thema", "kind": "Format"}
    filters = filters_dict(report.filters)
    for key, label in names.items():
        if filters.get(key):
            shown = county_label(filters[key]) if key == "county" else filters[key]
            _append(cover, [f"Filter {label}", shown])
    _append(
        cover,
        [
            "Hinweis",
            f"Werte, hinter denen weniger als {MIN_GROUP_SIZE} Personen oder Unternehmen stehen, sind "
            f"als „<{MIN_GROUP_SIZE}“ ausgewiesen (Datenschutz). Werte, aus denen sich ein solcher Wert "
            "zurückrechnen ließe, und Quoten oder Stunden, die darauf beruhen, sind „gesperrt“.",
        ],
    )
    _append(cover, ["Zeitliche Zuordnung", "Beginn des Angebots (Termine: Datum des Termins)."])
    cover.column_dimensions["A"].width = 22
    cover.column_dimensions["B"].width = 90

    sheets: list[tuple[str, Table]] = [(TOTAL_LABEL, report.tables[None])]
    sheets += [(GROUPINGS[g], report.tables[g]) for g in GROUPINGS]
    for title, table in sheets:
        sheet = workbook.create_sheet(title)
        _append(sheet, header())
        rows = [table.total] if table.grouping is None else _rows(table)
        for row in rows:
            _append(sheet, [row.label, row.key or "", *(row.values.get(i.key) for i in INDICATORS)])
        sheet.freeze_panes = "C2"
        sheet.column_dimensions["A"].width = 40
    for key_label, row in quarter_rows(report):
        _quarter_sheet(workbook.create_sheet(key_label), row)
    counties = workbook.create_sheet("Unternehmen nach Landkreis")
    _append(counties, ["Landkreis des Unternehmens", "Erreichte Unternehmen"])
    for row in report.company_counties:
        _append(counties, [row.label, row.values["companies"]])
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()
