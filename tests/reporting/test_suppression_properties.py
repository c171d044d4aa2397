"""Disclosure control over random histories: no "<5" can be recomputed from the rest of the same report.

The reader is exact here (z3, integer reasoning over every relation of the report at once), where the
production rule only reasons with bounds; the reader knows exactly what the published report shows.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import z3
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reporting.suppression_cases import PAIR_OF_CANCELLATIONS

from qti_contracts import AgeBand, Gender, RejectionReason, SizeClass
from services.reporting.disclosure import COUNTIES, TOTAL, build_system
from services.reporting.domain import (
    ATTENDED_UNITS,
    GROUPINGS,
    SEATED,
    SUPPRESSED,
    WITHHELD,
    Facts,
    Filters,
    NotificationFact,
    OfferingFact,
    RegistrationFact,
    RequestFact,
    Row,
    companies_by_county,
    compute,
)
from services.reporting.report import FullReport, full_report
from services.reporting.suppression import CellSystem

T0 = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)
NODES = ("node-a", "node-b", "node-c")
COUNTY_OF = {"node-a": "gotha", "node-b": "soemmerda", "node-c": "erfurt"}


@st.composite
def offerings(draw: st.DrawFn) -> dict[str, OfferingFact]:
    count = draw(st.integers(1, 4))
    result = {}
    for index in range(count):
        node = draw(st.sampled_from(NODES))
        start = T0 + timedelta(days=draw(st.integers(0, 400)))
        sessions = tuple(
            (start + timedelta(days=d), draw(st.integers(1, 8))) for d in range(draw(st.integers(0, 3)))
        )
        result[f"off-{index}"] = OfferingFact(
            offering_id=f"off-{index}",
            node_id=node,
            node_name=f"Knoten {node}",
            county=COUNTY_OF[node],
            topic=draw(st.sampled_from(("wasserstoff", "innovation"))),
            kind=draw(st.sampled_from(("workshop", "course"))),
            capacity=draw(st.integers(1, 15)),
            starts_at=start,
            held=draw(st.booleans()) or draw(st.booleans()),
            sessions=sessions,
        )
    return result


PEOPLE = st.tuples(st.sampled_from(list(Gender)), st.sampled_from(list(AgeBand)), st.integers(0, 5))
COMPANIES = st.tuples(
    st.sampled_from([*SizeClass, None]), st.booleans(), st.sampled_from(["gotha", "erfurt", None])
)


@st.composite
def histories(draw: st.DrawFn) -> Facts:
    offered = draw(offerings())
    people = draw(st.lists(PEOPLE, min_size=1, max_size=14))
    companies = draw(st.lists(COMPANIES, min_size=6, max_size=6))
    offering_ids = [*offered, None]
    registrations, requests = [], []
    for index in range(draw(st.integers(0, 30))):
        person = draw(st.integers(0, len(people) - 1))
        gender, age, company = people[person]
        size, automotive, county = companies[company]
        offering_id = draw(st.sampled_from(offering_ids))
        confirmed = draw(st.booleans()) or draw(st.booleans())
        waitlisted = draw(st.booleans()) if not confirmed else draw(st.booleans()) and draw(st.booleans())
        units = draw(st.integers(0, 12))
        completed = draw(st.booleans())
        registrations.append(
            RegistrationFact(
                registration_id=f"reg-{index:03d}",
                offering_id=offering_id,
                first_seen_at=T0 + timedelta(days=draw(st.integers(0, 400))),
                person_ref=f"p-{person}",
                company_ref=f"c-{company}",
                company_county=county,
                size_class=size.value if size else None,
                automotive_supplier=automotive,
                gender=gender.value,
                age_band=age.value,
                confirmed=confirmed,
                waitlisted=waitlisted,
                cancelled=draw(st.booleans()) and draw(st.booleans()),
                attended_units=units,
                completed=completed,
                certificate_eligible=completed and draw(st.booleans()),
            )
        )
        if not (waitlisted and confirmed):
            outcome = "confirmed" if confirmed else "waitlisted" if waitlisted else None
            requests.append(
                RequestFact(f"req-{index:03d}", offering_id, T0, outcome, None, size.value if size else None)
            )
    for index in range(draw(st.integers(0, 12))):
        reason = draw(st.sampled_from(list(RejectionReason)))
        requests.append(
            RequestFact(f"rej-{index:03d}", draw(st.sampled_from(offering_ids)), T0, "rejected", reason.value)
        )
    notifications = [
        NotificationFact(
            f"n-{i}", draw(st.sampled_from(offering_ids)), T0, sent, not sent and draw(st.booleans())
        )
        for i, sent in enumerate(draw(st.lists(st.booleans(), max_size=14)))
    ]
    return Facts(offered, registrations, requests, notifications)


def _published(report: FullReport, cell: Any) -> Any:
    """What the report shows for a cell of the relation model (a value, a marker, or None)."""
    table, row_key, key = cell
    rows: list[Row]
    if table == TOTAL:
        rows = [report.tables[None].total]
    elif table == COUNTIES:
        rows = report.company_counties
    else:
        rows = report.tables[table].groups
    row = next(r for r in rows if r.key == row_key)
    if key == SEATED:
        return row.values["utilisation"], row.values["seats"]
    if key == ATTENDED_UNITS:
        return row.values["participant_hours"], None
    return row.values[key]


def _reader(report: FullReport, system: CellSystem) -> tuple[z3.Solver, dict[Any, z3.ArithRef]]:
    """The reader's knowledge as constraints: shown values exact, markers as ranges, all relations."""
    solver = z3.Solver()
    cells = {cell: z3.Int(repr(cell)) for cell in system.values}
    for cell, var in cells.items():
        solver.add(var >= 0)
        if cell in system.hidden:
            continue
        shown = _published(report, cell)
        if cell[2] in (SEATED, ATTENDED_UNITS):
            shown, seats = shown
            if shown in (WITHHELD, None):  # withheld, or no seats: nothing to read
                continue
            elif cell[2] == SEATED:
                solver.add(var == round(float(shown) * seats))
            else:
                solver.add(var == round(float(shown) / 0.75))
        elif shown == SUPPRESSED:
            solver.add(var <= 4)
        elif shown == WITHHELD:
            solver.add(var >= 5)
        else:
            solver.add(var == shown)
    for equation in system.equations:
        solver.add(z3.Sum([coefficient * cells[cell] for coefficient, cell in equation]) == 0)
    return solver, cells


def _raw_system(facts: Facts) -> CellSystem:
    raw = {None: compute(facts, Filters(), None, node_names={})}
    for grouping in GROUPINGS:
        raw[grouping] = compute(facts, Filters(), grouping, node_names={})
    return build_system(raw, companies_by_county(facts, Filters()))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories())
def test_no_suppressed_count_can_be_recomputed(facts: Facts) -> None:
    assert_nothing_recomputable(facts)


def test_no_suppressed_count_can_be_recomputed_in_the_cases_found_so_far() -> None:
    assert_nothing_recomputable(PAIR_OF_CANCELLATIONS)


def assert_nothing_recomputable(facts: Facts) -> None:
    report = full_report(facts, Filters(), {}, T0)
    system = _raw_system(facts)
    solver, cells = _reader(report, system)
    assert solver.check() == z3.sat, "the true figures must fit what the report shows"
    hidden = [c for c in system.values if c not in system.hidden and _published(report, c) == SUPPRESSED]
    # Each model with some "<5" cell off its true value frees every cell that differs in it.
    while hidden:
        solver.push()
        solver.add(z3.Or([cells[c] != system.values[c] for c in hidden]))
        found = solver.check()
        model = solver.model() if found == z3.sat else None
        solver.pop()
        assert model is not None, f"recomputable: {[(c, system.values[c]) for c in hidden]}"
        hidden = [c for c in hidden if model.eval(cells[c]).as_long() == system.values[c]]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories())
def test_every_small_count_reads_less_than_five_and_no_rate_does(facts: Facts) -> None:
    report = full_report(facts, Filters(), {}, T0)
    raw = _raw_system(facts)
    for cell, value in raw.values.items():
        if cell in raw.hidden or cell[2] in (SEATED, ATTENDED_UNITS):
            continue
        shown = _published(report, cell)
        if value < 5:
            assert shown == SUPPRESSED, cell
        else:
            assert shown in (value, WITHHELD), cell
    rows = [report.tables[None].total, *(r for t in report.tables.values() for r in t.groups)]
    for row in rows:
        for key in ("utilisation", "notification_delivery_rate", "participant_hours"):
            assert row.values.get(key) != SUPPRESSED
        sent, failed = row.values["notifications_sent"], row.values["notifications_failed"]
        if isinstance(sent, str) or isinstance(failed, str):
            assert row.values["notification_delivery_rate"] in (WITHHELD, None)  # None: no mail at all


def test_one_registration_shows_no_identifiable_company_and_no_percentage_marker() -> None:
    """The demo case of the issue: one registration; "Erreichte Unternehmen" must not read 1."""
    offering = OfferingFact("off-1", "node-a", "Knoten A", "gotha", "innovation", "workshop", 10, T0, True)
    person = RegistrationFact(
        "reg-1", "off-1", T0, "p-1", "c-1", "gotha", "small", False, "female", "30_54",
        True, False, False, 0, False, False,
    )  # fmt: skip
    facts = Facts({"off-1": offering}, [person], [RequestFact("r-1", "off-1", T0, "confirmed", None)], [])
    report = full_report(facts, Filters(), {"node-a": "Knoten A"}, T0)
    total = report.tables[None].total.values
    assert total["participants"] == total["companies"] == SUPPRESSED
    assert total["utilisation"] == WITHHELD  # a percentage never reads "<5"
    node = report.tables["node"].groups[0].values
    assert node["utilisation"] == WITHHELD and node["participants"] == SUPPRESSED
    assert {row.values["companies"] for row in report.company_counties} == {SUPPRESSED}


def test_a_period_filter_applies_the_same_rule() -> None:
    start = date(2026, 1, 1)
    offering = OfferingFact("off-1", "node-a", "Knoten A", "gotha", "innovation", "workshop", 10, T0, True)
    people = [
        RegistrationFact(
            f"reg-{i}",
            "off-1",
            T0,
            f"p-{i}",
            f"c-{i}",
            "gotha",
            "small",
            False,
            "female",
            "30_54",
            True,
            False,
            False,
            4,
            True,
            True,
        )
        for i in range(7)
    ]
    facts = Facts({"off-1": offering}, people, [], [])
    inside = full_report(facts, Filters(date_from=start, date_to=date(2026, 3, 31)), {}, T0)
    outside = full_report(facts, Filters(date_from=date(2026, 4, 1)), {}, T0)
    assert inside.tables[None].total.values["participants"] == 7
    assert inside.tables[None].total.values["participant_hours"] == 21.0
    assert outside.tables[None].total.values["participants"] == SUPPRESSED  # 0 reads "<5" too
