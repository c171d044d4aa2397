"""Tests of the wire contract (qti_contracts): models, recorded v1 examples, schemas, registry, isolation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from copy import deepcopy
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from qti_contracts import (
    EVENT_TYPES,
    KIND_LABELS,
    PERSONAL_DATA_TYPES,
    TOPIC_LABELS,
    AgeBand,
    CloudEvent,
    KpiUpdated,
    NotificationFailed,
    NotificationSent,
    OfferingKind,
    OfferingState,
    RegistrationCompleted,
    RegistrationRequested,
    RejectionReason,
    RoutingKey,
    Session,
    Topic,
    UnknownEventTypeError,
    envelope_model,
    make_event,
    parse_data,
    parse_event,
    readable_errors,
)
from qti_contracts.generate import EXAMPLE_DIR, SCHEMA_DIR, drifted, render_schemas

CONTRACTS_DIR = Path(__file__).resolve().parents[2] / "contracts"
ALL_TYPES = sorted(EVENT_TYPES)

# The example of INTERFACE.md, "Commands from frontends", with the enum alternatives resolved.
INTERFACE_REQUEST: dict[str, Any] = {
    "offering_id": "off-1",
    "participant": {
        "given_name": "Anna",
        "family_name": "Schmidt",
        "email": "anna@example.de",
        "gender": "female",
        "age_band": "under_30",
    },
    "company": {
        "name": "Muster Zulieferer GmbH",
        "postal_code": "99610",
        "county": "Sömmerda",
        "size_class": "micro",
        "automotive_supplier": True,
    },
    "privacy_consent": True,
}


def load_example(type_: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads((EXAMPLE_DIR / f"{type_}.json").read_text(encoding="utf-8"))
    return result


def errors_of(type_: str, data: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as caught:
        parse_data(type_, data)
    return readable_errors(caught.value)


def valid_session(**changes: Any) -> dict[str, Any]:
    return {
        "session_id": "s1",
        "starts_at": "2026-09-14T08:30:00+02:00",
        "ends_at": "2026-09-14T15:30:00+02:00",
        "location": "Sömmerda",
        **changes,
    }


# --- registry -----------------------------------------------------------------------------------------


def test_registry_covers_every_routing_key() -> None:
    keys = {value for name, value in vars(RoutingKey).items() if name.isupper()}
    assert keys == set(EVENT_TYPES)
    assert PERSONAL_DATA_TYPES.issubset(EVENT_TYPES)
    assert not any(type_.startswith("reporting.") for type_ in PERSONAL_DATA_TYPES)


def test_unknown_type_is_a_clear_error() -> None:
    with pytest.raises(UnknownEventTypeError, match=r"registration\.requested\.v9"):
        parse_data("registration.requested.v9", {})
    with pytest.raises(UnknownEventTypeError):
        envelope_model("nope")


def test_labels_are_complete() -> None:
    assert set(TOPIC_LABELS) == set(Topic)
    assert set(KIND_LABELS) == set(OfferingKind)
    assert TOPIC_LABELS[Topic.INDUSTRIE_4_0] == "Industrie 4.0/Digitale Transformation"
    assert AgeBand.FROM_30_TO_54.value == "30_54"
    assert len(RejectionReason) == 8


# --- recorded v1 examples (backward compatibility) -----------------------------------------------------


def test_there_is_one_example_per_type() -> None:
    assert sorted(path.stem for path in EXAMPLE_DIR.glob("*.json")) == ALL_TYPES


@pytest.mark.parametrize("type_", ALL_TYPES)
def test_recorded_example_validates(type_: str) -> None:
    raw = load_example(type_)
    assert raw["type"] == type_
    event = envelope_model(type_).model_validate(raw)
    assert isinstance(event.data, EVENT_TYPES[type_])
    # Also through the JSON path, as consumers receive it.
    event_from_json = parse_event((EXAMPLE_DIR / f"{type_}.json").read_bytes())
    assert event_from_json == event
    # What we serialise reads back to the same event.
    assert envelope_model(type_).model_validate_json(event.model_dump_json()) == event


@pytest.mark.parametrize("type_", ALL_TYPES)
def test_personal_data_only_in_personal_data_types(type_: str) -> None:
    text = (EXAMPLE_DIR / f"{type_}.json").read_text(encoding="utf-8")
    assert ("@" in text) == (type_ in PERSONAL_DATA_TYPES)


def test_interface_example_validates() -> None:
    request = RegistrationRequested.model_validate(INTERFACE_REQUEST)
    assert request.participant.email == "anna@example.de"
    assert request.participant.age_band is AgeBand.UNDER_30
    minimal = deepcopy(INTERFACE_REQUEST)
    for field in ("gender", "age_band"):
        del minimal["participant"][field]
    for field in ("county", "size_class", "automotive_supplier"):
        del minimal["company"][field]
    request = RegistrationRequested.model_validate(minimal)
    assert request.participant.gender == "unspecified"
    assert request.company.county is None


def test_missing_consent_still_validates() -> None:
    request = RegistrationRequested.model_validate({**INTERFACE_REQUEST, "privacy_consent": False})
    assert request.privacy_consent is False


def test_whitespace_is_stripped_and_blank_optionals_are_none() -> None:
    data = deepcopy(INTERFACE_REQUEST)
    data["participant"]["given_name"] = "  Anna "
    data["participant"]["email"] = " anna@example.de "
    data["company"]["county"] = "   "
    request = RegistrationRequested.model_validate(data)
    assert request.participant.given_name == "Anna"
    assert request.participant.email == "anna@example.de"
    assert request.company.county is None


def test_unknown_attributes_and_data_fields_are_ignored() -> None:
    raw = load_example(RoutingKey.REGISTRATION_REQUESTED)
    raw["traceparent"] = "00-abc-def-01"
    raw["data"]["newsletter"] = True
    raw["data"]["participant"]["title"] = "Dr."
    event = parse_event(raw)
    assert "newsletter" not in event.data.model_dump()
    assert "traceparent" not in event.model_dump()


def test_models_are_frozen() -> None:
    request = RegistrationRequested.model_validate(INTERFACE_REQUEST)
    with pytest.raises(ValidationError):
        request.privacy_consent = False  # type: ignore[misc]


def test_make_event_round_trip() -> None:
    payload = RegistrationRequested.model_validate(INTERFACE_REQUEST)
    event = make_event(RoutingKey.REGISTRATION_REQUESTED, payload, source="/tests", subject="off-1")
    again = parse_event(event.model_dump_json())
    assert again.data == payload
    assert again.id == event.id


# --- rejected inputs, with readable errors --------------------------------------------------------------


def test_bad_registration_request_names_every_field() -> None:
    data = deepcopy(INTERFACE_REQUEST)
    del data["offering_id"]
    data["participant"]["email"] = "anna.example.de"
    data["participant"]["family_name"] = "S" * 101
    data["participant"]["gender"] = "other"
    data["company"]["postal_code"] = "9961"
    message = errors_of(RoutingKey.REGISTRATION_REQUESTED, data)
    assert "offering_id: Field required" in message
    assert "participant.email: value is not a valid email address" in message
    assert "participant.family_name: String should have at most 100 characters" in message
    assert "participant.gender: Input should be 'female', 'male', 'diverse' or 'unspecified'" in message
    assert "company.postal_code: must be a German postal code" in message
    # Input values (possibly personal data) never appear in the message.
    assert "anna.example.de" not in message


@pytest.mark.parametrize("postal_code", ["00123", "1234", "123456", "99a10", ""])
def test_postal_code_must_be_german(postal_code: str) -> None:
    data = deepcopy(INTERFACE_REQUEST)
    data["company"]["postal_code"] = postal_code
    assert "company.postal_code" in errors_of(RoutingKey.REGISTRATION_REQUESTED, data)


def test_names_must_be_single_line_and_not_empty() -> None:
    data = deepcopy(INTERFACE_REQUEST)
    data["participant"]["given_name"] = "Anna\nBcc: x"
    data["participant"]["family_name"] = "   "
    message = errors_of(RoutingKey.REGISTRATION_REQUESTED, data)
    assert "participant.given_name: must be a single line" in message
    assert "participant.family_name: String should have at least 1 character" in message


def test_unknown_enum_value_is_rejected() -> None:
    raw = load_example(RoutingKey.OFFERING_PUBLISHED)["data"]
    message = errors_of(RoutingKey.OFFERING_PUBLISHED, {**raw, "topic": "raumfahrt", "kind": "party"})
    assert "topic: Input should be" in message
    assert "kind: Input should be" in message


def test_session_must_end_after_start() -> None:
    with pytest.raises(ValidationError) as caught:
        Session.model_validate(valid_session(ends_at="2026-09-14T08:00:00+02:00"))
    assert readable_errors(caught.value) == "(root): ends_at must be after starts_at"
    raw = load_example(RoutingKey.OFFERING_PUBLISHED)["data"]
    bad = {**raw, "sessions": [valid_session(ends_at="2026-09-14T08:30:00+02:00")]}
    assert "sessions[0]: ends_at must be after starts_at" in errors_of(RoutingKey.OFFERING_PUBLISHED, bad)


def test_session_times_must_be_aware() -> None:
    with pytest.raises(ValidationError) as caught:
        Session.model_validate(valid_session(starts_at="2026-09-14T08:30:00"))
    assert "starts_at: Input should have timezone info" in readable_errors(caught.value)


def test_teaching_units_default_to_whole_45_minute_units() -> None:
    assert Session.model_validate(valid_session()).teaching_units == 9  # 7 h = 420 min
    assert Session.model_validate(valid_session(teaching_units=8)).teaching_units == 8


def test_offering_constraints() -> None:
    raw = load_example(RoutingKey.OFFERING_PUBLISHED)["data"]
    bad = {
        **raw,
        "capacity": 0,
        "fee_eur": "12.345",
        "waitlist_limit": -1,
        "max_per_company": 0,
        "sessions": [],
        "registration_deadline": "2026-09-04T23:59:00",
    }
    message = errors_of(RoutingKey.OFFERING_PUBLISHED, bad)
    for field in (
        "capacity",
        "fee_eur",
        "waitlist_limit",
        "max_per_company",
        "sessions",
        "registration_deadline",
    ):
        assert f"{field}: " in message


def test_offering_sessions_are_ordered_and_unique() -> None:
    raw = load_example(RoutingKey.OFFERING_PUBLISHED)["data"]
    offering = OfferingState.model_validate({**raw, "sessions": list(reversed(raw["sessions"]))})
    assert [s.session_id for s in offering.sessions] == ["s1", "s2", "s3"]
    assert offering.total_units == 20
    duplicate = {**raw, "sessions": [raw["sessions"][0], raw["sessions"][0]]}
    assert "session_id must be unique" in errors_of(RoutingKey.OFFERING_PUBLISHED, duplicate)


def test_fee_is_a_decimal_serialised_as_json_number() -> None:
    raw = load_example(RoutingKey.OFFERING_PUBLISHED)["data"]
    offering = OfferingState.model_validate({**raw, "fee_eur": 149.9})
    assert offering.fee_eur == Decimal("149.9")
    assert json.loads(offering.model_dump_json())["fee_eur"] == 149.9


def test_recipient_ref_must_not_be_an_email() -> None:
    raw = load_example(RoutingKey.NOTIFICATION_SENT)["data"]
    with pytest.raises(ValidationError) as caught:
        NotificationSent.model_validate({**raw, "recipient_ref": "anna@example.de"})
    assert "recipient_ref: must be a pseudonym, not an e-mail address" in readable_errors(caught.value)
    failed = load_example(RoutingKey.NOTIFICATION_FAILED)["data"]
    with pytest.raises(ValidationError):
        NotificationFailed.model_validate({**failed, "recipient_ref": "x@y"})


def test_kpis_carry_no_email_and_suppressed_figures_no_value() -> None:
    raw = load_example(RoutingKey.KPI_UPDATED)["data"]
    leaking = deepcopy(raw)
    leaking["figures"][0]["group"] = "anna@example.de"
    with pytest.raises(ValidationError) as caught:
        KpiUpdated.model_validate(leaking)
    assert "must not contain '@'" in readable_errors(caught.value)
    revealing = deepcopy(raw)
    revealing["figures"][3]["value"] = 2
    with pytest.raises(ValidationError) as caught:
        KpiUpdated.model_validate(revealing)
    assert "figures[3]: a suppressed figure must not carry a value" in readable_errors(caught.value)
    with pytest.raises(ValidationError):
        KpiUpdated.model_validate({**raw, "period_from": "2026-10-01", "period_to": "2026-09-30"})


def test_completion_ratio_and_units_are_consistent() -> None:
    raw = load_example(RoutingKey.REGISTRATION_COMPLETED)["data"]
    with pytest.raises(ValidationError) as caught:
        RegistrationCompleted.model_validate({**raw, "attendance_ratio": 1.5, "attended_units": -1})
    message = readable_errors(caught.value)
    assert "attendance_ratio: Input should be less than or equal to 1" in message
    assert "attended_units: Input should be greater than or equal to 0" in message
    with pytest.raises(ValidationError):
        RegistrationCompleted.model_validate({**raw, "attended_units": 21})


def test_rejected_reason_must_be_known() -> None:
    raw = load_example(RoutingKey.REGISTRATION_REJECTED)["data"]
    assert "reason: Input should be" in errors_of(RoutingKey.REGISTRATION_REJECTED, {**raw, "reason": "x"})
    ok = parse_data(RoutingKey.REGISTRATION_REJECTED, {**raw, "offering_id": None})
    assert ok.model_dump()["offering_id"] is None


def test_envelope_requires_id_and_source() -> None:
    raw = load_example(RoutingKey.REGISTRATION_CONFIRMED)
    del raw["id"]
    raw["source"] = ""
    with pytest.raises(ValidationError) as caught:
        envelope_model(RoutingKey.REGISTRATION_CONFIRMED).model_validate(raw)
    message = readable_errors(caught.value)
    assert "id: Field required" in message
    assert "source: String should have at least 1 character" in message


def test_envelope_data_errors_are_prefixed_with_data() -> None:
    raw = load_example(RoutingKey.REGISTRATION_WAITLISTED)
    raw["data"]["position"] = 0
    with pytest.raises(ValidationError) as caught:
        parse_event(raw)
    assert readable_errors(caught.value) == "data.position: Input should be greater than 0"


# --- schemas --------------------------------------------------------------------------------------------


def test_committed_schemas_match_the_models() -> None:
    assert drifted() == [], "run `python -m qti_contracts.generate` in contracts/"
    for name, content in render_schemas().items():
        assert (SCHEMA_DIR / name).read_text(encoding="utf-8") == content


def test_schema_fixes_the_type() -> None:
    schema = json.loads((SCHEMA_DIR / "registration.requested.json").read_text(encoding="utf-8"))
    assert schema["properties"]["type"]["const"] == "registration.requested"
    assert "data" in schema["required"]


def test_generate_check_reports_drift(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(CONTRACTS_DIR)}
    command = [sys.executable, "-m", "qti_contracts.generate", "--dir", str(tmp_path)]
    assert subprocess.run([*command], env=env, capture_output=True, check=False).returncode == 0
    assert subprocess.run([*command, "--check"], env=env, capture_output=True, check=False).returncode == 0
    (tmp_path / "registration.requested.json").write_text("{}\n", encoding="utf-8")
    result = subprocess.run([*command, "--check"], env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 1
    assert "registration.requested.json" in result.stderr


# --- isolation ------------------------------------------------------------------------------------------


def test_contracts_import_only_pydantic_and_the_standard_library() -> None:
    allowed = {
        "qti_contracts",
        "pydantic",
        "pydantic_core",
        "annotated_types",
        "typing_extensions",
        "typing_inspection",
        "email_validator",
        "idna",
        "dns",
    }
    code = (
        "import sys, json, qti_contracts, qti_contracts.generate\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": str(CONTRACTS_DIR)},
        cwd=CONTRACTS_DIR,
        capture_output=True,
        text=True,
        check=True,
    )
    modules = set(json.loads(result.stdout))
    foreign = {m for m in modules - allowed if m not in sys.stdlib_module_names and not m.startswith("_")}
    assert foreign == set()
    assert not modules & {"faststream", "asyncpg", "fastapi", "aio_pika", "qti_runtime", "services"}


def test_generic_envelope_is_the_public_one() -> None:
    assert issubclass(envelope_model(RoutingKey.KPI_UPDATED), CloudEvent)
