"""Documents built from the facts: `/kpis` JSON, all-groupings reports (exports, snapshots), KPI events."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from qti_contracts import MIN_GROUP_SIZE, KpiUpdated
from qti_runtime.german import BERLIN
from services.reporting.disclosure import publish
from services.reporting.domain import (
    GROUPINGS,
    INDICATORS,
    SUPPRESSED,
    WITHHELD,
    Facts,
    Filters,
    Row,
    Table,
    companies_by_county,
    compute,
    kpi_figures,
)

KPI_EVENT_GROUPINGS = (None, "node", "county", "topic", "kind", "size_class", "year")
_YEAR = re.compile(r"^(19|20)\d{2}$")
_QUARTER = re.compile(r"^((?:19|20)\d{2})-Q([1-4])$")


def period_range(period: str) -> tuple[date | None, date | None]:
    """`"project"` or `""` → the whole project; `"2026"` → that year; `"2026-Q2"` → that quarter."""
    if period in ("project", ""):
        return None, None
    if _YEAR.match(period):
        year = int(period)
        return date(year, 1, 1), date(year, 12, 31)
    if match := _QUARTER.match(period):
        year, quarter = int(match[1]), int(match[2])
        end = date(year + 1, 1, 1) if quarter == 4 else date(year, 3 * quarter + 1, 1)
        return date(year, 3 * quarter - 2, 1), date.fromordinal(end.toordinal() - 1)
    raise ValueError("period must be a calendar year (2026), a quarter (2026-Q2) or 'project'")


def filters_for_period(period: str) -> Filters:
    """Filters of a snapshot's period (see `period_range`)."""
    date_from, date_to = period_range(period)
    return Filters(date_from=date_from, date_to=date_to)


def _row(row: Row) -> dict[str, Any]:
    return {"key": row.key, "label": row.label, "values": row.values}


def _county_row(row: Row) -> dict[str, Any]:
    return {"key": row.key, "label": row.label, "value": row.values["companies"]}


def berlin_time(moment: datetime) -> str:
    """A moment as German readers read it: Europe/Berlin, "07.12.2026, 15:07 Uhr"."""
    local = moment.astimezone(BERLIN)
    return f"{local:%d.%m.%Y, %H:%M} Uhr"


def period_text(filters: Filters) -> str:
    start = filters.date_from.strftime("%d.%m.%Y") if filters.date_from else "Projektbeginn"
    end = filters.date_to.strftime("%d.%m.%Y") if filters.date_to else "heute"
    return f"{start} bis {end}"


def filters_dict(filters: Filters) -> dict[str, Any]:
    return {
        "from": filters.date_from.isoformat() if filters.date_from else None,
        "to": filters.date_to.isoformat() if filters.date_to else None,
        "node": filters.node,
        "county": filters.county,
        "topic": filters.topic,
        "kind": filters.kind,
    }


def _meta(filters: Filters, generated_at: datetime) -> dict[str, Any]:
    return {
        "generated_at": generated_at.isoformat(),
        "period": {"from": filters_dict(filters)["from"], "to": filters_dict(filters)["to"]},
        "filters": filters_dict(filters),
        "suppression": {"min_group_size": MIN_GROUP_SIZE, "marker": SUPPRESSED, "withheld": WITHHELD},
        "indicators": [{"key": i.key, "label": i.label} for i in INDICATORS],
    }


@dataclass(frozen=True)
class FullReport:
    """Every grouping of one filter at once, disclosure control applied to all together: the page, `/kpis`,
    the exports, the PDF and the snapshots are slices of it, so each shows a cell alike."""

    filters: Filters
    generated_at: datetime
    tables: dict[str | None, Table]
    company_counties: list[Row]

    def as_document(self) -> dict[str, Any]:
        total = self.tables[None].total
        return {
            **_meta(self.filters, self.generated_at),
            "total": total.values,
            "groupings": {
                grouping: [_row(row) for row in table.groups]
                for grouping, table in self.tables.items()
                if grouping is not None
            },
            "companies_by_county": [_county_row(row) for row in self.company_counties],
        }


def full_report(
    facts: Facts, filters: Filters, node_names: Mapping[str, str], generated_at: datetime
) -> FullReport:
    raw: dict[str | None, Table] = {None: compute(facts, filters, None, node_names=node_names)}
    for grouping in GROUPINGS:
        raw[grouping] = compute(facts, filters, grouping, node_names=node_names)
    tables, counties = publish(raw, companies_by_county(facts, filters))
    return FullReport(filters, generated_at, tables, counties)


def kpi_document(report: FullReport, grouping: str | None) -> dict[str, Any]:
    """The `/kpis` answer: totals, optional groups, companies by their county; suppression applied."""
    table = report.tables[grouping]
    return {
        **_meta(report.filters, report.generated_at),
        "group_by": grouping,
        "total": table.total.values,
        "groups": [_row(row) for row in table.groups],
        "companies_by_county": [_county_row(row) for row in report.company_counties],
    }


def kpi_updated(facts: Facts, node_names: Mapping[str, str], generated_at: datetime) -> KpiUpdated:
    """Payload of `reporting.kpi.updated`: whole-project aggregates, suppression applied."""
    report = full_report(facts, Filters(), node_names, generated_at)
    tables = [report.tables[g] for g in KPI_EVENT_GROUPINGS]
    return KpiUpdated(generated_at=generated_at, figures=kpi_figures(tables, report.company_counties))
