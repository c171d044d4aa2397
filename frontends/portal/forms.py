"""The registration forms: German messages per field, then the contract's own validation.

Pure functions from submitted form fields to either a `RegistrationRequested` or errors keyed by the
field's name (the HTML id), in the order of the form, for the error summary (GOV.UK/KERN pattern).
"""

from __future__ import annotations

import json
import re
import unicodedata
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

from pydantic import TypeAdapter, ValidationError

from qti_contracts import County, RegistrationRequested
from qti_contracts.events import Email

# Version of the privacy notice (templates/_datenschutz.html) whose consent a request records.
PRIVACY_NOTICE_VERSION = "2026-12-v1"
MAX_EMPLOYEES = 20
KEY_PATTERN = re.compile(r"^[A-Za-z0-9-]{16,64}$")
REQUEST_NAMESPACE = uuid.UUID("6f1d2a8e-4b7c-5d3e-9a10-2c4b6d8e0f12")
_email = TypeAdapter(Email)


class PortalRegistrationRequested(RegistrationRequested):
    """`registration.requested` plus the version of the privacy notice consented to: an additional data
    field (INTERFACE.md: unknown fields are ignored). It travels with the command; registration does not
    store it yet (it keeps a request's envelope only until the decision), see docs/portal.md."""

    privacy_notice_version: str = PRIVACY_NOTICE_VERSION


@dataclass
class FormResult:
    values: dict[str, str]
    errors: dict[str, str] = field(default_factory=dict)
    commands: list[PortalRegistrationRequested] = field(default_factory=list)


def _text(form: Mapping[str, str], name: str) -> str:
    return str(form.get(name, "")).strip()


def _line_problem(value: str, what: str, max_length: int) -> str | None:
    if not value:
        return f"Bitte geben Sie {what} ein."
    if len(value) > max_length:
        return f"Bitte kürzen Sie die Angabe auf höchstens {max_length} Zeichen."
    if any(unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp") for ch in value):
        return "Bitte verwenden Sie keine Zeilenumbrüche oder Steuerzeichen."
    return None


def _email_problem(value: str) -> str | None:
    if not value:
        return "Bitte geben Sie eine E-Mail-Adresse ein."
    try:
        _email.validate_python(value)
    except ValidationError:
        return "Bitte geben Sie eine gültige E-Mail-Adresse ein, z. B. name@beispiel.de."
    return None


def person_errors(form: Mapping[str, str], suffix: str = "") -> dict[str, str]:
    problems = {
        f"vorname{suffix}": _line_problem(_text(form, f"vorname{suffix}"), "den Vornamen", 100),
        f"nachname{suffix}": _line_problem(_text(form, f"nachname{suffix}"), "den Nachnamen", 100),
        f"email{suffix}": _email_problem(_text(form, f"email{suffix}")),
    }
    return {k: v for k, v in problems.items() if v}


def company_errors(form: Mapping[str, str]) -> dict[str, str]:
    postal = _text(form, "postleitzahl")
    problems = {
        "unternehmen": _line_problem(_text(form, "unternehmen"), "den Namen des Unternehmens", 200),
        "postleitzahl": None
        if re.fullmatch(r"(0[1-9]|[1-9][0-9])[0-9]{3}", postal)
        else "Bitte geben Sie eine Postleitzahl mit fünf Ziffern ein, z. B. 99610.",
        "landkreis": None
        if _text(form, "landkreis") in {c.value for c in County}
        else "Bitte wählen Sie den Landkreis oder die kreisfreie Stadt Ihres Unternehmens aus.",
        "datenschutz": None
        if form.get("datenschutz") == "ja"
        else "Bitte bestätigen Sie, dass Sie die Datenschutzhinweise gelesen haben.",
    }
    return {k: v for k, v in problems.items() if v}


def _company(form: Mapping[str, str]) -> dict[str, object]:
    supplier = {"ja": True, "nein": False}.get(_text(form, "zulieferer"))
    return {
        "name": _text(form, "unternehmen"),
        "postal_code": _text(form, "postleitzahl"),
        "county": _text(form, "landkreis"),
        "size_class": _text(form, "groesse") or None,
        "automotive_supplier": supplier,
    }


def _command(offering_id: str, form: Mapping[str, str], suffix: str = "") -> PortalRegistrationRequested:
    return PortalRegistrationRequested.model_validate(
        {
            "offering_id": offering_id,
            "participant": {
                "given_name": _text(form, f"vorname{suffix}"),
                "family_name": _text(form, f"nachname{suffix}"),
                "email": _text(form, f"email{suffix}"),
                "gender": _text(form, f"geschlecht{suffix}") or "unspecified",
                "age_band": _text(form, f"altersgruppe{suffix}") or "unspecified",
            },
            "company": _company(form),
            "privacy_consent": True,
            # Where the person came from (`quelle` of the link; the contract ignores unknown values).
            "source": _text(form, "quelle")[:40] or None,
        }
    )


def single_registration(offering_id: str, form: Mapping[str, str]) -> FormResult:
    result = FormResult(values={k: str(v)[:1000] for k, v in form.items()})
    result.errors = {**person_errors(form), **company_errors(form)}
    if not result.errors:
        try:
            result.commands = [_command(offering_id, form)]
        except ValidationError:
            result.errors["vorname"] = "Bitte prüfen Sie Ihre Angaben."
    return result


def employee_rows(form: Mapping[str, str]) -> int:
    """How many employee rows the coordinator form shows (1..MAX_EMPLOYEES)."""
    try:
        rows = int(str(form.get("zeilen", "3")))
    except ValueError:
        rows = 3
    return max(1, min(rows, MAX_EMPLOYEES))


def _row_filled(form: Mapping[str, str], index: int) -> bool:
    return any(_text(form, f"{name}_{index}") for name in ("vorname", "nachname", "email"))


def group_registration(offering_id: str, form: Mapping[str, str]) -> FormResult:
    result = FormResult(values={k: str(v)[:1000] for k, v in form.items()})
    rows = [i for i in range(employee_rows(form)) if _row_filled(form, i)]
    errors: dict[str, str] = {}
    if not rows:
        errors["vorname_0"] = "Bitte geben Sie mindestens eine Person an."
    seen: set[str] = set()
    for index in rows:
        errors.update(person_errors(form, f"_{index}"))
        address = _text(form, f"email_{index}").lower()
        if address and address in seen:
            errors[f"email_{index}"] = "Diese E-Mail-Adresse steht schon in einer anderen Zeile."
        seen.add(address)
    errors.update(company_errors(form))
    result.errors = errors
    if not errors:
        try:
            result.commands = [_command(offering_id, form, f"_{i}") for i in rows]
        except ValidationError:
            result.errors["vorname_0"] = "Bitte prüfen Sie die Angaben."
    return result


def request_id_for(key: str, command: RegistrationRequested) -> str:
    """The stable request id of a submission: the same form key and data give the same id (a reload or
    a double click is one request); another key or other data give another one."""
    canonical = json.dumps(command.model_dump(mode="json"), sort_keys=True, ensure_ascii=False)
    name = key + "\0" + canonical
    return f"portal-{uuid.uuid5(REQUEST_NAMESPACE, name)}"


def form_key(submitted: str | None) -> str:
    """The submitted idempotency key if well-formed, else a fresh one (that submission is then unkeyed)."""
    return submitted if submitted and KEY_PATTERN.match(submitted) else str(uuid.uuid4())
