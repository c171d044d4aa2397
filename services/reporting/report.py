"""Documents built from the facts: `/kpis` JSON, all-groupings reports (exports, snapshots), KPI events."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from qti_contracts import MIN_GROUP_SIZE, KpiUpdated
from services.reporting.domain import (
    GROUPINGS,
    INDICATORS,
    SUPPRESSED,
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


def filters_for_period(period: str) -> Filters:
    """`"2026"` → that calendar year (interim proof of use); `"project"` → the whole project."""
    if period == "project":
        return Filters()
    if _YEAR.match(period):
        year = int(period)
        return Filters(date_from=date(year, 1, 1), date_to=date(year, 12, 31))
    raise ValueError("period must be a calendar year (e.g. 2026) or 'project'")


def _row(row: Row) -> dict[str, Any]:
    return {"key": row.key, "label": row.label, "values": row.values}


def _county_row(row: Row) -> dict[str, Any]:
    return {"key": row.key, "label": row.label, "value": row.values["companies"]}


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
        "suppression": {"min_group_size": MIN_GROUP_SIZE, "marker": SUPPRESSED},
        "indicators": [{"key": i.key, "label": i.label} for i in INDICATORS],
    }


def kpi_document(
    facts: Facts,
    filters: Filters,
    grouping: str | None,
    node_names: Mapping[str, str],
    generated_at: datetime,
) -> dict[str, Any]:
    """The `/kpis` answer: totals, optional groups, companies by their county; suppression applied."""
    table = compute(facts, filters, grouping, node_names=node_names)
    return {
        **_meta(filters, generated_at),
        "group_by": grouping,
        "total": table.total.values,
        "groups": [_row(row) for row in table.groups],
        "companies_by_county": [_county_row(row) for row in companies_by_county(facts, filters)],
    }


@dataclass(frozen=True)
class FullReport:
    """Every grouping at once: the XLSX export and the frozen snapshots."""

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
    tables: dict[str | None, Table] = {None: compute(facts, filters, None, node_names=node_names)}
    for grouping in GROUPINGS:
        tables[grouping] = compute(facts, filters, grouping, node_names=node_names)
    return FullReport(filters, generated_at, tables, companies_by_county(facts, filters))


def kpi_updated(facts: Facts, node_names: Mapping[str, str], generated_at: datetime) -> KpiUpdated:
    """Payload of `reporting.kpi.updated`: whole-project aggregates, suppression applied."""
    filters = Filters()
    tables = [compute(facts, filters, g, node_names=node_names) for g in KPI_EVENT_GROUPINGS]
    return KpiUpdated(
        generated_at=generated_at,
        figures=kpi_figures(tables, companies_by_county(facts, filters)),
    )
