"""What the page and the PDF show, built from a published report: tiles, charts with their data tables, the
filter form. Pure: the templates (`templates/`) only lay these out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Final
from urllib.parse import urlencode

from qti_contracts import KIND_LABELS, MIN_GROUP_SIZE, TOPIC_LABELS
from services.reporting.domain import (
    INDICATORS,
    Filters,
    Row,
    Table,
    Value,
    format_value,
    time_label,
)
from services.reporting.report import FullReport, berlin_time, filters_dict, period_text

TILES: Final = (
    ("offerings", "Angebote"),
    ("sessions", "Termine"),
    ("participants", "Teilnehmende"),
    ("participations", "Teilnahmen"),
    ("participant_hours", "Teilnehmendenstunden"),
    ("companies", "Erreichte Unternehmen"),
    ("utilisation", "Auslastung"),
    ("unmet_demand", "Ungedeckte Nachfrage"),
    ("completions", "Abschlüsse"),
    ("notification_delivery_rate", "Zustellquote"),
    ("alert_signups_confirmed", "Angebotsalarm: Anmeldungen"),
    ("alerts_sent", "Angebotsalarme versandt"),
    ("interest_unmet", "Gemeldetes Interesse ohne Angebot"),
    # Attribution (docs/alternatives.md): registrations that came from an alert, an alternative, interest.
    ("registrations_source_angebotsalarm", "Anmeldungen über Angebotsalarm"),
    ("registrations_source_alternative", "Anmeldungen über Alternativen"),
    ("registrations_source_interesse", "Anmeldungen über Interesse"),
)
PERCENT: Final = frozenset({"utilisation", "notification_delivery_rate"})
SUPPRESSION_NOTE: Final = (
    f"Werte, hinter denen weniger als {MIN_GROUP_SIZE} Personen oder Unternehmen stehen, sind als "
    f"„<{MIN_GROUP_SIZE}“ ausgewiesen. Damit sich keiner dieser Werte aus Summen, Differenzen oder Quoten "
    "zurückrechnen lässt, sind weitere Werte „gesperrt“; Quoten und Stunden, die auf einem solchen Wert "
    "beruhen, sind ebenfalls gesperrt."
)


def show(key: str, value: Value) -> str:
    """A figure as German text: "–" for not applicable, markers as they are, percentages with "%"."""
    if value is None:
        return "–"
    if isinstance(value, str):
        return value
    if key in PERCENT:
        return f"{value * 100:.0f} %"
    return format_value(value, decimal_comma=True)


@dataclass(frozen=True)
class Bar:
    label: str
    text: str
    share: float  # of the widest bar, 0–100
    withheld: bool


@dataclass(frozen=True)
class Chart:
    chart_id: str
    title: str
    group_header: str  # header of the label column in the data table
    column: str  # header of the value column
    bars: list[Bar]


def chart(chart_id: str, title: str, headers: tuple[str, str], rows: Sequence[Row], key: str) -> Chart:
    """Horizontal bars (long labels wrap beside them); a withheld value is a hatched stub with its marker."""
    numbers = [float(v) for r in rows if isinstance(v := r.values.get(key), int | float)]
    top = max([*numbers, 1.0]) or 1.0  # percentages: the full bar is 100 %
    bars = []
    for row in rows:
        value = row.values.get(key)
        withheld = isinstance(value, str)
        share = 0.0 if withheld or value is None else 100 * float(value) / top
        bars.append(Bar(row.label, show(key, value), round(share, 1), withheld))
    return Chart(chart_id, title, *headers, bars)


def charts(report: FullReport) -> list[Chart]:
    by_month = report.tables["month"].groups
    by_node = report.tables["node"].groups
    return [
        chart(
            "chart-participations-month",
            "Teilnahmen je Monat",
            ("Monat", "Teilnahmen"),
            by_month,
            "participations",
        ),
        chart("chart-offerings-month", "Angebote je Monat", ("Monat", "Angebote"), by_month, "offerings"),
        chart(
            "chart-participants-node",
            "Teilnehmende je Knoten",
            ("Knoten", "Teilnehmende"),
            by_node,
            "participants",
        ),
        chart("chart-offerings-node", "Angebote je Knoten", ("Knoten", "Angebote"), by_node, "offerings"),
        chart(
            "chart-utilisation-node", "Auslastung je Knoten", ("Knoten", "Auslastung"), by_node, "utilisation"
        ),
    ]


@dataclass(frozen=True)
class Option:
    value: str
    label: str
    selected: bool


@dataclass(frozen=True)
class FilterForm:
    """The GET form of the page; `query` is the filter as a query string for the export links."""

    date_from: str
    date_to: str
    periods: list[Option]
    nodes: list[Option]
    topics: list[Option]
    kinds: list[Option]
    query: str
    errors: dict[str, str] = field(default_factory=dict)


def period_options(today: date, first_year: int, chosen: tuple[date | None, date | None]) -> list[Option]:
    """Whole years and quarters from the first year with data up to this year, newest first."""
    options = [Option("", "Gesamter Projektzeitraum", chosen == (None, None))]
    for year in range(today.year, first_year - 1, -1):
        options.append(Option(str(year), f"Jahr {year}", chosen == year_range(year)))
        for quarter in range(4, 0, -1):
            start, end = quarter_range(year, quarter)
            if start <= today:
                key = f"{year}-Q{quarter}"
                options.append(Option(key, time_label(key, "quarter"), chosen == (start, end)))
    return options


def year_range(year: int) -> tuple[date, date]:
    return date(year, 1, 1), date(year, 12, 31)


def quarter_range(year: int, quarter: int) -> tuple[date, date]:
    start = date(year, 3 * quarter - 2, 1)
    end = date(year + 1, 1, 1) if quarter == 4 else date(year, 3 * quarter + 1, 1)
    return start, date.fromordinal(end.toordinal() - 1)


def filter_form(
    filters: Filters, node_names: Mapping[str, str], today: date, errors: Mapping[str, str] | None = None
) -> FilterForm:
    chosen = (filters.date_from, filters.date_to)
    first_year = min(filters.date_from.year if filters.date_from else today.year, today.year - 1)
    nodes = sorted(node_names.items(), key=lambda item: item[1].casefold())
    return FilterForm(
        date_from=filters.date_from.isoformat() if filters.date_from else "",
        date_to=filters.date_to.isoformat() if filters.date_to else "",
        periods=period_options(today, first_year, chosen),
        nodes=[Option(k, name, k == filters.node) for k, name in nodes],
        topics=[Option(t.value, label, t.value == filters.topic) for t, label in TOPIC_LABELS.items()],
        kinds=[Option(k.value, label, k.value == filters.kind) for k, label in KIND_LABELS.items()],
        query=filter_query(filters),
        errors=dict(errors or {}),
    )


def filter_query(filters: Filters) -> str:
    """The filter as a query string ("" for none), for links that keep it."""
    pairs = [(k, v) for k, v in filters_dict(filters).items() if v]
    return "?" + urlencode(pairs) if pairs else ""


def filter_summary(filters: Filters, node_names: Mapping[str, str]) -> list[tuple[str, str]]:
    """The chosen filters in German, for the page and the PDF's cover."""
    summary = [("Zeitraum", period_text(filters))]
    if filters.node:
        summary.append(("Knoten", node_names.get(filters.node, filters.node)))
    topics = {t.value: label for t, label in TOPIC_LABELS.items()}
    kinds = {k.value: label for k, label in KIND_LABELS.items()}
    if filters.topic:
        summary.append(("Thema", topics.get(filters.topic, filters.topic)))
    if filters.kind:
        summary.append(("Format", kinds.get(filters.kind, filters.kind)))
    return summary


@dataclass(frozen=True)
class IndicatorLine:
    label: str
    text: str


def indicator_lines(total: Row) -> list[IndicatorLine]:
    """Every indicator of the total row, in the order of the exports."""
    return [IndicatorLine(i.label, show(i.key, total.values.get(i.key))) for i in INDICATORS]


def quarter_tables(report: FullReport) -> list[tuple[str, Row]]:
    """(quarter label, its row) for every quarter of the report's period that has figures."""
    table: Table = report.tables["quarter"]
    return [(time_label(row.key or "", "quarter"), row) for row in table.groups if row.key]


@dataclass(frozen=True)
class SnapshotLink:
    label: str
    json_url: str
    pdf_url: str


def snapshot_link(row: Mapping[str, Any]) -> SnapshotLink:
    """A frozen report for the page's list: its period in German and where to download it."""
    period = str(row["period"])
    if period == "project":
        text = "Gesamter Projektzeitraum"
    elif "-Q" in period:
        text = time_label(period, "quarter")
    else:
        text = f"Jahr {period}"
    label = f"{text}, eingefroren am {berlin_time(row['created_at'])}"
    return SnapshotLink(label, f"/snapshots/{row['snapshot_id']}", f"/snapshots/{row['snapshot_id']}.pdf")
