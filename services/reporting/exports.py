"""CSV and XLSX exports with German headers; suppressed cells read "<5"."""

from __future__ import annotations

import csv
import io
from typing import Any

from openpyxl import Workbook

from qti_contracts import MIN_GROUP_SIZE
from services.reporting.domain import GROUPINGS, INDICATORS, Row, Table, format_value
from services.reporting.report import FullReport, filters_dict, period_text

CSV_MEDIA_TYPE = "text/csv; charset=utf-8"
XLSX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
GROUP_HEADER = "Gruppe"
KEY_HEADER = "Schlüssel"
TOTAL_LABEL = "Gesamt"


def header() -> list[str]:
    return [GROUP_HEADER, KEY_HEADER, *(i.label for i in INDICATORS)]


def _rows(table: Table) -> list[Row]:
    return [*table.groups, table.total]


def csv_bytes(table: Table) -> bytes:
    """Semicolon-separated, decimal comma, UTF-8 with BOM (opens correctly in German Excel)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=";", lineterminator="\r\n")
    writer.writerow(header())
    for row in _rows(table):
        writer.writerow(
            [
                row.label,
                row.key or "",
                *(format_value(row.values.get(i.key), decimal_comma=True) for i in INDICATORS),
            ]
        )
    return ("\ufeff" + buffer.getvalue()).encode("utf-8")


def _cell(value: Any) -> Any:
    return "" if value is None else value


def xlsx_bytes(report: FullReport) -> bytes:
    """A cover sheet (period, filters, generation time) and one sheet per grouping."""
    workbook = Workbook()
    cover = workbook.active
    cover.title = "Deckblatt"
    cover.append(["QTI-Knoten Thüringen – Kennzahlen"])
    cover.append(["Zeitraum", period_text(report.filters)])
    cover.append(["Erstellt am", report.generated_at.strftime("%d.%m.%Y %H:%M:%S %Z")])
    names = {"node": "Knoten", "county": "Landkreis", "topic": "Thema", "kind": "Format"}
    filters = filters_dict(report.filters)
    for key, label in names.items():
        if filters.get(key):
            cover.append([f"Filter {label}", filters[key]])
    cover.append(
        [
            "Hinweis",
            f"Werte, hinter denen weniger als {MIN_GROUP_SIZE} Personen stehen, sind als "
            f"„<{MIN_GROUP_SIZE}“ ausgewiesen (Datenschutz).",
        ]
    )
    cover.append(["Zeitliche Zuordnung", "Beginn des Angebots (Termine: Datum des Termins)."])
    cover.column_dimensions["A"].width = 22
    cover.column_dimensions["B"].width = 90

    sheets: list[tuple[str, Table]] = [(TOTAL_LABEL, report.tables[None])]
    sheets += [(GROUPINGS[g], report.tables[g]) for g in GROUPINGS]
    for title, table in sheets:
        sheet = workbook.create_sheet(title)
        sheet.append(header())
        rows = [table.total] if table.grouping is None else _rows(table)
        for row in rows:
            sheet.append([row.label, row.key or "", *(_cell(row.values.get(i.key)) for i in INDICATORS)])
        sheet.freeze_panes = "C2"
        sheet.column_dimensions["A"].width = 40
    counties = workbook.create_sheet("Unternehmen nach Landkreis")
    counties.append(["Landkreis des Unternehmens", "Erreichte Unternehmen"])
    for county, count in report.company_counties.items():
        counties.append([county, count])
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()
