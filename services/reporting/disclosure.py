"""One suppression rule for every output: raw tables in, published tables out (docs/reporting-suppression.md).

All tables of one report (one filter) are protected together, because they share the total row: the page,
`/kpis`, CSV, XLSX, PDF and `reporting.kpi.updated` show the same cell alike. Counts of 1–4 persons or
companies read "<5" (primary); further counts are withheld as "gesperrt" (secondary) until no "<5" can be
recomputed from the relations below; a ratio or hour figure is shown only when the counts behind it are.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from typing import Final, cast

from qti_contracts import MIN_GROUP_SIZE, AgeBand, Gender, RegistrationSource, RejectionReason, SizeClass
from services.reporting.domain import (
    ATTENDED_UNITS,
    INDICATOR_BY_KEY,
    SEATED,
    SUPPRESSED,
    WITHHELD,
    Row,
    Table,
    Value,
    is_small,
)
from services.reporting.suppression import INF, PRIMARY_RANGE, CellKey, CellSystem, protect

TOTAL: Final = "total"
COUNTIES: Final = "company_county"
_RATIOS: Final = {"utilisation", "notification_delivery_rate", "participant_hours"}
_REASONS: Final = [f"rejected_{r.value}" for r in RejectionReason]
_GENDERS: Final = [f"participants_gender_{g.value}" for g in Gender]
_AGES: Final = [f"participants_age_{a.value}" for a in AgeBand]
_SIZES: Final = [f"companies_{s.value}" for s in SizeClass]
_SMES: Final = ["companies_micro", "companies_small", "companies_medium"]
_SOURCES: Final = [f"registrations_source_{s.value}" for s in RegistrationSource]

# Relations inside one row: (left side, right side); a name starting with "~" is an unpublished
# remainder (at least 0). Every relation holds for every row by how the figures are computed.
ROW_RELATIONS: Final[tuple[tuple[tuple[str, ...], tuple[str, ...]], ...]] = (
    (("rejected",), tuple(_REASONS)),
    (("smes",), tuple(_SMES)),
    (("companies",), ("smes", "companies_large", "~size_unknown")),
    (("participants",), tuple(_GENDERS)),
    (("participants",), tuple(_AGES)),
    (("participations",), ("participants", "~repeat")),
    (("confirmed",), ("participations", "~confirmed_cancelled")),
    (("cancelled",), ("~confirmed_cancelled", "~unconfirmed_cancelled")),
    (("participations",), ("completions", "~not_completed")),
    (("participations",), ("certificate_eligible", "~not_eligible")),
    (("companies",), ("automotive_suppliers", "~not_automotive")),
    (("unmet_demand",), ("rejected_waitlist_full", "~never_seated")),
    (("waitlisted",), ("~never_seated", "~moved_up")),
    (("participations",), (SEATED, "~unheld")),
    (("requested",), ("rejected", "~not_rejected")),
)
# Counted once per fact: the groups add up to the total.
ADDITIVE: Final = frozenset(
    {
        "requested",
        "confirmed",
        "waitlisted",
        "rejected",
        *_REASONS,
        "cancelled",
        *_SOURCES,
        "unmet_demand",
        "participations",
        "completions",
        "certificate_eligible",
        "notifications_sent",
        "notifications_failed",
        "alerts_sent",
        "alert_signups_confirmed",
        "interest_unmet",
        SEATED,
        ATTENDED_UNITS,
    }
)
# Distinct persons or companies: one may be in several groups, so the total is at least each group and at
# most their sum.
DISTINCT: Final = frozenset(
    {"participants", "companies", "smes", "automotive_suppliers", *_SIZES, *_GENDERS, *_AGES}
)
COUNTS: Final = ADDITIVE | DISTINCT
# Remainders that are differences of additive counts: the groups' remainders add up to the total's. A
# reader can combine the relations that way, so the bound reasoning is given these sums too.
ADDITIVE_REMAINDERS: Final = (
    "~confirmed_cancelled",
    "~unconfirmed_cancelled",
    "~not_completed",
    "~not_eligible",
    "~never_seated",
    "~moved_up",
    "~unheld",
    "~not_rejected",
)


def _cells(table: str, row: Row) -> dict[CellKey, int]:
    """The integer cells of a raw row: person counts as they are, and the counts behind derived figures."""
    cells: dict[CellKey, int] = {}
    for key in COUNTS:
        value = row.persons.get(key) if key in (SEATED, ATTENDED_UNITS) else row.values.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            cells[(table, row.key, key)] = value
    return cells


def _primary(system: CellSystem, table: str, row: Row) -> None:
    """Primary cells: 0–4 persons or companies (hours: 1–4 persons attending)."""
    for key, value in _cells(table, row).items():
        name = key[2]  # type: ignore[index]
        if name == ATTENDED_UNITS:
            if 0 < row.persons.get("participant_hours", 0) < MIN_GROUP_SIZE:
                system.primary[key] = (1, INF)  # at least one unit each; 0 hours are no one's
        elif is_small(value):
            system.primary[key] = PRIMARY_RANGE


def _row_relations(system: CellSystem, table: str, row: Row) -> None:
    for left, right in ROW_RELATIONS:
        terms: list[tuple[int, CellKey]] = []
        for sign, names in ((1, left), (-1, right)):
            for name in names:
                cell: Hashable = (table, row.key, name)
                if name.startswith("~"):
                    system.add_hidden(cell)
                terms.append((sign, cell))
        system.add_equation(terms)


def _column_relations(system: CellSystem, table: str, groups: Sequence[Row], total_row: str) -> None:
    for key in [*sorted(COUNTS), *ADDITIVE_REMAINDERS]:
        total: CellKey = (TOTAL, None, key) if total_row == TOTAL else (total_row, None, key)
        members = [(table, row.key, key) for row in groups]
        if key in ADDITIVE or key.startswith("~"):
            system.add_equation([(1, total), *((-1, m) for m in members)])
            continue
        overlap = system.add_hidden((table, "~overlap", key))
        system.add_equation([*((1, m) for m in members), (-1, total), (-1, overlap)])
        for member in members:
            rest = system.add_hidden((table, member[1], f"~rest_{key}"))
            system.add_equation([(1, total), (-1, member), (-1, rest)])


# Figures a reader looks at first: withheld only when no breakdown cell would do.
HEADLINE: Final = frozenset(
    {
        "requested",
        "confirmed",
        "rejected",
        "participants",
        "participations",
        "companies",
        "completions",
        "notifications_sent",
        SEATED,
        ATTENDED_UNITS,
    }
)


def _rank(cell: CellKey) -> int:
    table, _row, key = cast(tuple[str, str | None, str], cell)
    return (2 if table == TOTAL else 0) + (1 if key in HEADLINE else 0)


def build_system(tables: Mapping[str | None, Table], counties: Sequence[Row]) -> CellSystem:
    """Every cell of one report with the reader's knowledge of it and every relation between cells."""
    system = CellSystem()
    total = next(iter(tables.values())).total
    rows: list[tuple[str, Row]] = [(TOTAL, total)]
    rows += [(grouping, row) for grouping, table in tables.items() if grouping for row in table.groups]
    rows += [(COUNTIES, row) for row in counties]
    for table, row in rows:
        system.values.update(_cells(table, row))
    system.rank = {cell: _rank(cell) for cell in system.values}
    for table, row in rows:
        _primary(system, table, row)
        if table != COUNTIES:
            _row_relations(system, table, row)
    for grouping, table_ in tables.items():
        if grouping:
            _column_relations(system, grouping, table_.groups, TOTAL)
    _county_relations(system, counties)
    return system


def _county_relations(system: CellSystem, counties: Sequence[Row]) -> None:
    members: list[CellKey] = [(COUNTIES, row.key, "companies") for row in counties]
    total: CellKey = (TOTAL, None, "companies")
    overlap = system.add_hidden((COUNTIES, "~overlap", "companies"))
    system.add_equation([*((1, m) for m in members), (-1, total), (-1, overlap)])
    for member in members:
        rest = system.add_hidden((COUNTIES, member[1], "~rest"))  # type: ignore[index]
        system.add_equation([(1, total), (-1, member), (-1, rest)])


def _shown(table: str, row: Row, system: CellSystem, secondary: set[CellKey]) -> Row:
    def marker(key: str) -> str | None:
        cell = (table, row.key, key)
        if cell in system.primary and key not in (SEATED, ATTENDED_UNITS):
            return SUPPRESSED
        if cell in system.primary or cell in secondary:
            return WITHHELD
        return None

    values: dict[str, Value] = {}
    for key, value in row.values.items():
        if value is None or not INDICATOR_BY_KEY[key].persons:
            values[key] = value
        elif key in _RATIOS:
            values[key] = _derived(key, value, marker)
        else:
            values[key] = marker(key) or value
    return Row(row.key, row.label, values)


def _derived(key: str, value: Value, marker: Callable[[str], str | None]) -> Value:
    """A ratio or hour figure: shown only when every count behind it is shown; never "<5"."""
    behind = {
        "utilisation": (SEATED,),
        "participant_hours": (ATTENDED_UNITS,),
        "notification_delivery_rate": ("notifications_sent", "notifications_failed"),
    }[key]
    return WITHHELD if any(marker(name) for name in behind) else value


def publish(
    tables: Mapping[str | None, Table], counties: Sequence[Row]
) -> tuple[dict[str | None, Table], list[Row]]:
    """The published tables of one report: every table protected together, the total row shared."""
    system = build_system(tables, counties)
    secondary = protect(system)
    total = next(iter(tables.values())).total
    shown_total = _shown(TOTAL, total, system, secondary)
    published = {
        grouping: Table(
            grouping,
            shown_total,
            [_shown(grouping, row, system, secondary) for row in table.groups] if grouping else [],
        )
        for grouping, table in tables.items()
    }
    return published, [_shown(COUNTIES, row, system, secondary) for row in counties]


def withheld_cells(rows: Iterable[Row]) -> int:
    """How many cells of `rows` are withheld (either marker): for the page's note."""
    return sum(1 for row in rows for value in row.values.values() if value in (SUPPRESSED, WITHHELD))
