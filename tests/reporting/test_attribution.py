"""Attribution figures (registrations from an alert, an alternative, interest) follow the one suppression
rule, and every person-based indicator is under disclosure control."""

from __future__ import annotations

from datetime import UTC, datetime

from qti_contracts import RegistrationSource
from services.reporting.disclosure import _RATIOS, COUNTS, publish
from services.reporting.domain import (
    INDICATORS,
    Facts,
    Filters,
    OfferingFact,
    RegistrationFact,
    companies_by_county,
    compute,
    scrub,
)

AT = datetime(2027, 3, 1, 9, tzinfo=UTC)


def test_every_person_based_indicator_is_under_disclosure_control() -> None:
    uncontrolled = [i.key for i in INDICATORS if i.persons and i.key not in COUNTS | _RATIOS]
    assert uncontrolled == []


def registration(n: int, source: str | None) -> RegistrationFact:
    return RegistrationFact(
        registration_id=f"r{n}",
        offering_id="o1",
        first_seen_at=AT,
        person_ref=f"p-{n}",
        company_ref=f"c-{n}",
        company_county="erfurt",
        size_class="small",
        automotive_supplier=True,
        gender="female",
        age_band="30_54",
        confirmed=True,
        waitlisted=False,
        cancelled=False,
        attended_units=0,
        completed=False,
        certificate_eligible=False,
        source=source,
    )


def test_sources_are_counted_and_small_counts_withheld() -> None:
    offering = OfferingFact("o1", "n1", "QTI-Knoten Erfurt", "erfurt", "wasserstoff", "course", 40, AT, True)
    sources = ["alternative"] * 6 + ["angebotsalarm"] * 2 + [None] * 7
    facts = Facts({"o1": offering}, [registration(n, s) for n, s in enumerate(sources)], [], [])
    filters = Filters()
    raw = {None: compute(facts, filters, None)}
    assert raw[None].total.values["registrations_source_alternative"] == 6
    assert raw[None].total.values["registrations_source_angebotsalarm"] == 2
    tables, _ = publish(raw, companies_by_county(facts, filters))
    shown = tables[None].total.values
    assert shown["registrations_source_alternative"] == 6
    assert shown["registrations_source_angebotsalarm"] == "<5"
    assert shown["registrations_source_interesse"] == "<5"  # zero too


def test_scrub_keeps_only_a_known_source() -> None:
    data = {
        "registration_id": "r1",
        "request_id": "q1",
        "offering_id": "o1",
        "participant": {"given_name": "A", "family_name": "B", "email": "a@example.de"},
        "company": {"name": "X GmbH", "postal_code": "99084"},
    }
    assert scrub(b"k", "registration.confirmed", {**data, "source": "alternative"})["source"] == "alternative"
    assert scrub(b"k", "registration.confirmed", {**data, "source": "a@example.de"})["source"] is None
    assert scrub(b"k", "registration.waitlisted", {**data, "position": 1})["source"] is None
    assert {s.value for s in RegistrationSource} == {"angebotsalarm", "alternative", "interesse"}
