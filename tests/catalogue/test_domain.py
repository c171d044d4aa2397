"""Pure catalogue rules and demo data: no broker, no database."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4
from zoneinfo import ZoneInfo

import pytest

from devtools import demo_data
from qti_contracts.events import NodePublished, OfferingKind, OfferingState, OfferingStatus, Topic
from qti_contracts.registry import EVENT_TYPES
from services.catalogue.domain import (
    Node,
    Offering,
    OfferingDraft,
    OfferingSession,
    TransitionRefused,
    ValidationProblem,
    can_transition,
    duration_minutes,
    effective_registration_deadline,
    is_editable,
    node_payload,
    offering_cancelled_payload,
    offering_payload,
    seats_left,
    teaching_units,
    total_teaching_units,
    transition,
    transition_refusal,
    validate_for_create,
    validate_for_edit,
    validate_for_publish,
    validate_offering,
)
from services.catalogue.handlers import PUBLISHED_EVENTS
from services.catalogue.node_rules import validate_node

BERLIN = ZoneInfo("Europe/Berlin")
S = OfferingStatus


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2027, 3, day, hour, minute, tzinfo=BERLIN)


def session(start: datetime, end: datetime, location: str = "QTI-Knoten Gotha") -> OfferingSession:
    return OfferingSession(session_id=uuid4(), starts_at=start, ends_at=end, location=location)


def draft(**changes: Any) -> OfferingDraft:
    base = OfferingDraft(
        node_id=uuid4(),
        kind=OfferingKind.COURSE,
        topic=Topic.ELEKTROMOBILITAET,
        title="Grundlagen der Elektromobilität",
        description="Ein Kurs über elektrische Antriebe.",
        sessions=(session(at(2, 9), at(2, 16)), session(at(9, 9), at(9, 16))),
        capacity=12,
        registration_deadline=at(1, 12),
        fee_eur=Decimal("0.00"),
        max_per_company=3,
        waitlist_limit=5,
        target_group="Fachkräfte",
    )
    return dataclasses.replace(base, **changes)


def offering(status: OfferingStatus = S.PUBLISHED, **changes: Any) -> Offering:
    fields = {f.name: getattr(draft(), f.name) for f in dataclasses.fields(OfferingDraft)}
    fields.update(changes)
    return Offering(offering_id=uuid4(), status=status, revision=3, **fields)


def only(problems: list[ValidationProblem]) -> ValidationProblem:
    assert len(problems) == 1, problems
    return problems[0]


# --- valid baseline ----------------------------------------------------------------------------


def test_valid_draft_has_no_problems() -> None:
    assert validate_offering(draft()) == []
    assert validate_for_create(draft()) == []
    assert validate_for_edit(draft(), confirmed=12) == []
    assert validate_for_publish(draft(), now=at(1, 8)) == []


def test_problem_is_field_and_message() -> None:
    problem = ValidationProblem(field="capacity", message="x")
    assert (problem.field, problem.message) == ("capacity", "x")


# --- sessions ----------------------------------------------------------------------------------


def test_end_must_be_after_start() -> None:
    sessions = (session(at(2, 9), at(2, 16)), session(at(9, 16), at(9, 9)))
    problem = only(validate_offering(draft(sessions=sessions)))
    assert problem == ValidationProblem("sessions[1].ends_at", "Das Ende muss nach dem Beginn liegen.")


def test_end_equal_to_start_is_refused() -> None:
    problem = only(validate_offering(draft(sessions=(session(at(2, 9), at(2, 9)),))))
    assert problem.field == "sessions[0].ends_at"


def test_sessions_must_be_chronological() -> None:
    sessions = (session(at(9, 9), at(9, 16)), session(at(2, 9), at(2, 16)))
    problems = validate_offering(draft(sessions=sessions, registration_deadline=None))
    assert only(problems) == ValidationProblem(
        "sessions[1].starts_at", "Die Termine müssen in zeitlicher Reihenfolge angegeben werden."
    )


def test_sessions_must_not_overlap() -> None:
    sessions = (session(at(2, 9), at(2, 16)), session(at(2, 15), at(2, 18)))
    assert only(validate_offering(draft(sessions=sessions))) == ValidationProblem(
        "sessions[1].starts_at", "Der Termin überschneidet sich mit dem vorherigen Termin."
    )


def test_back_to_back_sessions_are_fine() -> None:
    sessions = (session(at(2, 9), at(2, 12)), session(at(2, 12), at(2, 16)))
    assert validate_offering(draft(sessions=sessions)) == []


def test_session_times_need_a_timezone() -> None:
    naive = OfferingSession(
        session_id=uuid4(), starts_at=datetime(2027, 3, 2, 9), ends_at=datetime(2027, 3, 2, 16), location="X"
    )
    problems = validate_offering(draft(sessions=(naive,), registration_deadline=None))
    assert problems == [
        ValidationProblem("sessions[0].starts_at", "Der Beginn muss eine Zeitzone enthalten."),
        ValidationProblem("sessions[0].ends_at", "Das Ende muss eine Zeitzone enthalten."),
    ]


def test_session_needs_a_location() -> None:
    problem = only(validate_offering(draft(sessions=(session(at(2, 9), at(2, 16), location="  "),))))
    assert problem == ValidationProblem("sessions[0].location", "Bitte einen Ort angeben.")


def test_session_location_single_line_and_short() -> None:
    for location in ("Raum 1\nRaum 2", "x" * 201):
        problem = only(validate_offering(draft(sessions=(session(at(2, 9), at(2, 16), location),))))
        assert problem.field == "sessions[0].location"
        assert problem.message == "Der Ort muss einzeilig sein und darf höchstens 200 Zeichen haben."


def test_duplicate_session_ids() -> None:
    first = session(at(2, 9), at(2, 16))
    second = dataclasses.replace(session(at(9, 9), at(9, 16)), session_id=first.session_id)
    assert only(validate_offering(draft(sessions=(first, second)))) == ValidationProblem(
        "sessions[1].session_id", "Diese Termin-ID kommt mehrfach vor."
    )


def test_too_many_sessions() -> None:
    start = datetime(2027, 1, 1, 9, tzinfo=BERLIN)
    sessions = tuple(
        session(start + timedelta(hours=2 * i), start + timedelta(hours=2 * i + 1)) for i in range(501)
    )
    problem = only(validate_offering(draft(sessions=sessions, registration_deadline=None)))
    assert problem == ValidationProblem("sessions", "Ein Angebot darf höchstens 500 Termine haben.")


# --- registration deadline ---------------------------------------------------------------------

DEADLINE_MESSAGE = "Der Anmeldeschluss muss vor dem Beginn des ersten Termins liegen."


@pytest.mark.parametrize("deadline", [at(2, 9), at(2, 10), at(5, 9)])
def test_deadline_must_be_before_first_start(deadline: datetime) -> None:
    problem = only(validate_offering(draft(registration_deadline=deadline)))
    assert problem == ValidationProblem("registration_deadline", DEADLINE_MESSAGE)


def test_deadline_just_before_first_start_is_fine() -> None:
    assert validate_offering(draft(registration_deadline=at(2, 8, 59))) == []


def test_deadline_compared_across_timezones() -> None:
    # 08:30 UTC is 09:30 in Berlin (winter time), after the first start at 09:00.
    deadline = datetime(2027, 3, 2, 8, 30, tzinfo=UTC)
    assert only(validate_offering(draft(registration_deadline=deadline))).field == "registration_deadline"


def test_deadline_needs_a_timezone() -> None:
    problem = only(validate_offering(draft(registration_deadline=datetime(2027, 3, 1, 12))))
    assert problem == ValidationProblem(
        "registration_deadline", "Der Anmeldeschluss muss eine Zeitzone enthalten."
    )


def test_missing_deadline_means_first_start() -> None:
    assert validate_offering(draft(registration_deadline=None)) == []
    assert effective_registration_deadline(draft(registration_deadline=None)) == at(2, 9)
    assert effective_registration_deadline(draft()) == at(1, 12)
    assert effective_registration_deadline(draft(sessions=(), registration_deadline=None)) is None


# --- numbers -----------------------------------------------------------------------------------


@pytest.mark.parametrize("capacity", [0, -1])
def test_capacity_at_least_one(capacity: int) -> None:
    assert only(validate_offering(draft(capacity=capacity))) == ValidationProblem(
        "capacity", "Die Kapazität muss mindestens 1 betragen."
    )


def test_capacity_one_is_fine() -> None:
    assert validate_offering(draft(capacity=1)) == []


def test_capacity_not_below_confirmed() -> None:
    problem = only(validate_for_edit(draft(capacity=5), confirmed=7))
    assert problem == ValidationProblem(
        "capacity", "Die Kapazität darf nicht unter der Zahl der bestätigten Anmeldungen (7) liegen."
    )


def test_capacity_below_confirmed_with_explicit_flag() -> None:
    assert validate_for_edit(draft(capacity=5), confirmed=7, allow_below_confirmed=True) == []
    assert validate_for_edit(draft(capacity=7), confirmed=7) == []


def test_capacity_zero_refused_even_with_flag() -> None:
    problem = only(validate_for_edit(draft(capacity=0), confirmed=3, allow_below_confirmed=True))
    assert problem.message == "Die Kapazität muss mindestens 1 betragen."


def test_waitlist_limit_not_negative() -> None:
    assert validate_offering(draft(waitlist_limit=0)) == []
    assert only(validate_offering(draft(waitlist_limit=-1))) == ValidationProblem(
        "waitlist_limit", "Die Wartelistengrenze darf nicht negativ sein."
    )


@pytest.mark.parametrize("limit", [None, 1, 5])
def test_max_per_company_valid(limit: int | None) -> None:
    assert validate_offering(draft(max_per_company=limit)) == []


@pytest.mark.parametrize("limit", [0, -2])
def test_max_per_company_invalid(limit: int) -> None:
    assert only(validate_offering(draft(max_per_company=limit))) == ValidationProblem(
        "max_per_company", "Die Höchstzahl je Unternehmen muss mindestens 1 betragen oder leer bleiben."
    )


@pytest.mark.parametrize("fee", ["0", "0.00", "49.90", "9999999.99"])
def test_fee_valid(fee: str) -> None:
    assert validate_offering(draft(fee_eur=Decimal(fee))) == []


@pytest.mark.parametrize(
    ("fee", "message"),
    [
        ("-0.01", "Die Gebühr darf nicht negativ sein."),
        ("12.345", "Die Gebühr darf höchstens zwei Nachkommastellen haben."),
        ("10000000", "Die Gebühr darf höchstens 9.999.999,99 € betragen."),
        ("NaN", "Die Gebühr muss ein Betrag in Euro sein."),
        ("Infinity", "Die Gebühr muss ein Betrag in Euro sein."),
    ],
)
def test_fee_invalid(fee: str, message: str) -> None:
    assert only(validate_offering(draft(fee_eur=Decimal(fee)))) == ValidationProblem("fee_eur", message)


# --- texts -------------------------------------------------------------------------------------


def test_title_required() -> None:
    assert only(validate_offering(draft(title="   "))) == ValidationProblem(
        "title", "Bitte einen Titel angeben."
    )


def test_title_length_and_single_line() -> None:
    assert only(validate_offering(draft(title="T" * 201))).message == (
        "Der Titel darf höchstens 200 Zeichen lang sein."
    )
    assert validate_offering(draft(title="T" * 200)) == []
    assert only(validate_offering(draft(title="Zeile\nzwei"))).message == (
        "Der Titel muss einzeilig sein und darf keine Steuerzeichen enthalten."
    )


def test_description_limits() -> None:
    assert validate_offering(draft(description="Absatz eins.\n\nAbsatz zwei.")) == []
    assert only(validate_offering(draft(description="x" * 10_001))) == ValidationProblem(
        "description", "Die Beschreibung darf höchstens 10.000 Zeichen lang sein."
    )
    assert only(validate_offering(draft(description="a\x00b"))) == ValidationProblem(
        "description", "Die Beschreibung darf keine Steuerzeichen enthalten."
    )


def test_target_group_optional_but_bounded() -> None:
    assert validate_offering(draft(target_group=None)) == []
    assert only(validate_offering(draft(target_group="x" * 2_001))) == ValidationProblem(
        "target_group", "Die Zielgruppe darf höchstens 2.000 Zeichen lang sein."
    )


def test_several_problems_are_reported_together() -> None:
    problems = validate_offering(draft(title="", capacity=0, waitlist_limit=-1, fee_eur=Decimal("-1")))
    assert [p.field for p in problems] == ["title", "capacity", "waitlist_limit", "fee_eur"]


# --- publish -----------------------------------------------------------------------------------


def test_publish_needs_a_session() -> None:
    problem = only(validate_for_publish(draft(sessions=(), registration_deadline=None)))
    assert problem == ValidationProblem("sessions", "Zum Veröffentlichen ist mindestens ein Termin nötig.")
    assert validate_for_create(draft(sessions=(), registration_deadline=None)) == []


def test_publish_needs_a_description() -> None:
    assert only(validate_for_publish(draft(description=" "))) == ValidationProblem(
        "description", "Zum Veröffentlichen ist eine Beschreibung nötig."
    )
    assert validate_for_create(draft(description="")) == []


def test_publish_in_the_past_is_refused() -> None:
    problems = validate_for_publish(draft(), now=at(3, 8))
    assert problems == [
        ValidationProblem("sessions[0].starts_at", "Der erste Termin liegt bereits in der Vergangenheit."),
        ValidationProblem("registration_deadline", "Der Anmeldeschluss liegt bereits in der Vergangenheit."),
    ]


def test_publish_after_deadline_is_refused() -> None:
    problem = only(validate_for_publish(draft(), now=at(1, 13)))
    assert problem.field == "registration_deadline"


def test_publish_checks_confirmed_seats() -> None:
    assert only(validate_for_publish(draft(capacity=2), confirmed=3)).field == "capacity"


# --- transitions -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("current", "target"),
    [
        (S.DRAFT, S.PUBLISHED),
        (S.DRAFT, S.CANCELLED),
        (S.PUBLISHED, S.CANCELLED),
        (S.PUBLISHED, S.COMPLETED),
    ],
)
def test_allowed_transitions(current: OfferingStatus, target: OfferingStatus) -> None:
    assert transition_refusal(current, target) is None
    assert can_transition(current, target)


@pytest.mark.parametrize(
    ("current", "target", "reason"),
    [
        (
            S.PUBLISHED,
            S.DRAFT,
            "Ein veröffentlichtes Angebot kann nicht zurück in den Entwurf gesetzt werden.",
        ),
        (S.PUBLISHED, S.PUBLISHED, "Das Angebot ist bereits veröffentlicht."),
        (S.DRAFT, S.DRAFT, "Das Angebot ist bereits ein Entwurf."),
        (
            S.DRAFT,
            S.COMPLETED,
            "Ein Entwurf kann nicht abgeschlossen werden, weil er nie veröffentlicht wurde.",
        ),
        *(
            (S.CANCELLED, target, "Das Angebot wurde abgesagt; sein Status kann nicht mehr geändert werden.")
            for target in S
        ),
        *(
            (
                S.COMPLETED,
                target,
                "Das Angebot ist abgeschlossen; sein Status kann nicht mehr geändert werden.",
            )
            for target in S
        ),
    ],
)
def test_refused_transitions(current: OfferingStatus, target: OfferingStatus, reason: str) -> None:
    assert transition_refusal(current, target) == reason
    assert not can_transition(current, target)


def test_transition_bumps_revision() -> None:
    published = transition(offering(S.DRAFT), S.PUBLISHED)
    assert (published.status, published.revision) == (S.PUBLISHED, 4)


def test_transition_refused_raises_with_reason() -> None:
    with pytest.raises(TransitionRefused) as caught:
        transition(offering(S.CANCELLED), S.PUBLISHED)
    assert caught.value.reason == str(caught.value)
    assert (caught.value.current, caught.value.target) == (S.CANCELLED, S.PUBLISHED)


def test_editable_statuses() -> None:
    assert [status for status in S if is_editable(status)] == [S.DRAFT, S.PUBLISHED]


# --- calculations ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("minutes", "units"), [(0, 0), (44, 0), (45, 1), (89, 1), (90, 2), (420, 9), (450, 10), (480, 10)]
)
def test_teaching_units(minutes: int, units: int) -> None:
    start = at(2, 9)
    assert teaching_units(session(start, start + timedelta(minutes=minutes))) == units


def test_duration_across_dst_change() -> None:
    # 28 March 2027: clocks go forward at 02:00, so 01:00–04:00 local lasts two hours.
    start = datetime(2027, 3, 28, 1, tzinfo=BERLIN)
    end = datetime(2027, 3, 28, 4, tzinfo=BERLIN)
    assert duration_minutes(session(start, end)) == 120


def test_end_after_start_uses_real_time_at_dst_end() -> None:
    # 31 October 2027: 02:30 summer time (fold=0) is 45 minutes before 02:15 winter time (fold=1).
    start = datetime(2027, 10, 31, 2, 30, tzinfo=BERLIN)
    end = datetime(2027, 10, 31, 2, 15, fold=1, tzinfo=BERLIN)
    subject = session(start, end)
    assert validate_offering(draft(sessions=(subject,), registration_deadline=None)) == []
    assert teaching_units(subject) == 1


def test_total_teaching_units() -> None:
    assert total_teaching_units(draft().sessions) == 18


@pytest.mark.parametrize(("capacity", "confirmed", "left"), [(10, 0, 10), (10, 7, 3), (10, 10, 0), (5, 8, 0)])
def test_seats_left(capacity: int, confirmed: int, left: int) -> None:
    assert seats_left(capacity, confirmed) == left


# --- payloads ----------------------------------------------------------------------------------


def test_offering_payload_matches_contract() -> None:
    subject = offering(fee_eur=Decimal("49.90"))
    payload = offering_payload(subject)
    assert payload["offering_id"] == str(subject.offering_id)
    assert payload["revision"] == 3
    assert payload["status"] == "published"
    assert payload["fee_eur"] == 49.9
    assert payload["sessions"][0]["teaching_units"] == 9
    state = OfferingState.model_validate(payload)
    assert state.model_dump(mode="json") == OfferingState.model_validate(state.model_dump()).model_dump(
        mode="json"
    )
    assert state.revision == 3
    assert state.total_units == 18
    assert state.registration_deadline == subject.registration_deadline


def test_offering_payload_fills_missing_deadline() -> None:
    payload = offering_payload(offering(registration_deadline=None))
    assert datetime.fromisoformat(payload["registration_deadline"]) == at(2, 9)


def test_cancelled_payload() -> None:
    offering_id = uuid4()
    assert offering_cancelled_payload(offering_id, "Zu wenige Anmeldungen.") == {
        "offering_id": str(offering_id),
        "reason": "Zu wenige Anmeldungen.",
    }


def test_node_payload_matches_contract() -> None:
    for node in demo_data.demo_nodes():
        published = NodePublished.model_validate(node_payload(node))
        assert published.node_id == str(node.node_id)
        assert published.opened_on == node.opened_on


# --- demo data ---------------------------------------------------------------------------------


def test_demo_data_is_deterministic() -> None:
    assert demo_data.demo_catalogue() == demo_data.demo_catalogue()
    first = [o.offering_id for o in demo_data.demo_offerings()]
    assert first == [o.offering_id for o in demo_data.demo_offerings()]
    assert demo_data.demo_nodes()[0].node_id == UUID("{}".format(demo_data.node_id_for("gotha")))


def test_demo_ids_are_unique() -> None:
    offerings = demo_data.demo_offerings()
    assert len({o.offering_id for o in offerings}) == len(offerings)
    session_ids = [s.session_id for o in offerings for s in o.sessions]
    assert len(set(session_ids)) == len(session_ids)


def test_demo_nodes() -> None:
    nodes = {node.town: node for node in demo_data.demo_nodes()}
    assert set(nodes) == {"Gotha", "Sömmerda", "Weberstedt", "Eisenach", "Rohr"}
    gotha = nodes["Gotha"]
    assert (gotha.name, gotha.host, gotha.address, gotha.county) == (
        "QTI-Knoten Gotha",
        "VHS-Bildungswerk",
        "Gleichenstraße 48, 99867 Gotha",
        "Gotha",
    )
    assert nodes["Weberstedt"].county == "Unstrut-Hainich-Kreis"
    assert nodes["Rohr"].address.endswith("98530 Rohr")
    assert nodes["Sömmerda"].address.endswith("99610 Sömmerda")


@pytest.mark.parametrize("subject", demo_data.demo_offerings(), ids=lambda o: o.title[:40])
def test_every_demo_offering_is_valid(subject: Offering) -> None:
    assert validate_for_publish(subject, now=datetime(2026, 12, 1, tzinfo=UTC)) == []
    assert subject.registration_deadline is not None
    assert subject.registration_deadline < subject.sessions[0].starts_at
    assert all(s.starts_at.year == 2027 and s.starts_at.tzinfo is not None for s in subject.sessions)
    OfferingState.model_validate(offering_payload(subject))


def test_demo_covers_nodes_kinds_and_statuses() -> None:
    offerings = demo_data.demo_offerings()
    node_ids = {node.node_id for node in demo_data.demo_nodes()}
    assert {o.node_id for o in offerings} == node_ids
    assert {o.kind for o in offerings} == set(OfferingKind)
    assert 15 <= len(offerings) <= 20
    assert [o.status for o in offerings].count(S.DRAFT) == 1
    assert all(o.status in (S.DRAFT, S.PUBLISHED) for o in offerings)
    assert all(8 <= o.capacity <= 25 for o in offerings if o.kind is not OfferingKind.CONSULTATION)
    assert all(o.capacity == 1 for o in offerings if o.kind is OfferingKind.CONSULTATION)


def test_demo_flagship_offerings() -> None:
    by_title = {o.title: o for o in demo_data.demo_offerings()}
    pilot = by_title["Pilotlehrgang Elektromobilität"]
    assert pilot.node_id == demo_data.node_id_for("soemmerda")
    assert len(pilot.sessions) > 3
    ihk = by_title["Fachexperte für Wasserstoffanwendungen (IHK)"]
    assert ihk.kind is OfferingKind.CERTIFICATE_COURSE
    assert ihk.node_id == demo_data.node_id_for("weberstedt")
    assert len(ihk.sessions) >= 10


def test_generator_is_deterministic_and_valid() -> None:
    first = demo_data.generated_offerings(300, seed=7)
    assert first == demo_data.generated_offerings(300, seed=7)
    assert len(first) == 300
    assert len({o.offering_id for o in first}) == 300
    other = demo_data.generated_offerings(300, seed=8)
    assert not {o.offering_id for o in first} & {o.offering_id for o in other}
    demo_ids = {o.offering_id for o in demo_data.demo_offerings()}
    assert not demo_ids & {o.offering_id for o in first}
    for subject in first:
        assert validate_for_publish(subject, now=datetime(2027, 1, 1, tzinfo=UTC)) == [], subject
        OfferingState.model_validate(offering_payload(subject))


def test_generator_edge_cases() -> None:
    assert demo_data.generated_offerings(0, seed=1) == []
    with pytest.raises(ValueError, match="negative"):
        demo_data.generated_offerings(-1, seed=1)


def test_node_rules_refuse_what_staff_cannot_save() -> None:
    node = Node(
        node_id=UUID(int=1),
        name="QTI-Knoten Gera",
        town="Gera",
        county="Gera (kreisfreie Stadt)",
        host="Bildungszentrum Gera",
        address="Straße 1, 07545 Gera",
        opened_on=date(2027, 1, 1),
    )
    assert validate_node(node) == []
    wrong = validate_node(
        dataclasses.replace(node, name="", county="Gera", contact_email="a@b", contact_phone="12")
    )
    assert {p.field for p in wrong} == {"name", "county", "contact_email", "contact_phone"}
    assert all(p.message.endswith(".") for p in wrong)


def test_catalogue_declares_every_catalogue_event_type_it_publishes() -> None:
    contract = {key for key in EVENT_TYPES if key.startswith("catalogue.")}
    assert set(PUBLISHED_EVENTS) == contract
