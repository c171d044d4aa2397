"""The offering form of the console: form fields <-> the catalogue's staff API body.

Pure functions. The console checks what a browser form can get wrong (German messages next to the
fields); the catalogue's own rules still apply, and its 422 field paths map back to the form's fields.
Session times are entered in local time (Europe/Berlin) and sent with their offset.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time
from decimal import Decimal, InvalidOperation
from typing import Any

from qti_contracts import KIND_LABELS, TOPIC_LABELS
from qti_runtime.german import BERLIN

MAX_SESSION_ROWS = 20
DEFAULT_SESSION_ROWS = 3
KIND_OPTIONS = [(k.value, label) for k, label in KIND_LABELS.items()]
TOPIC_OPTIONS = [(t.value, label) for t, label in TOPIC_LABELS.items()]
FIELD_LABELS = {
    "titel": "Titel", "beschreibung": "Beschreibung", "zielgruppe": "Zielgruppe", "format": "Format",
    "thema": "Thema", "knoten": "QTI-Knoten", "kapazitaet": "Plätze",
    "warteliste": "Plätze auf der Warteliste", "max_unternehmen": "Höchstens je Unternehmen",
    "gebuehr": "Gebühr", "anmeldeschluss": "Anmeldeschluss", "datum": "Datum", "beginn": "Beginn",
    "ende": "Ende", "ort": "Ort", "formular": "Angebot",
}  # fmt: skip
API_FIELDS = {
    "title": "titel", "description": "beschreibung", "target_group": "zielgruppe", "kind": "format",
    "topic": "thema", "node_id": "knoten", "capacity": "kapazitaet", "waitlist_limit": "warteliste",
    "max_per_company": "max_unternehmen", "fee_eur": "gebuehr", "registration_deadline": "anmeldeschluss",
}  # fmt: skip
SESSION_FIELDS = {"starts_at": "beginn", "ends_at": "ende", "location": "ort"}
_SESSION_PATH = re.compile(r"^sessions\[(\d+)\](?:\.(\w+))?$")


@dataclass
class OfferingForm:
    values: dict[str, str]
    errors: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] = field(default_factory=dict)


def _text(form: Mapping[str, str], name: str) -> str:
    return str(form.get(name, "")).strip()


def _bad_chars(value: str, multiline: bool) -> bool:
    allowed = "\n\r\t" if multiline else ""
    return any(unicodedata.category(c) in ("Cc", "Cs") and c not in allowed for c in value)


def _line(
    form: Mapping[str, str], name: str, max_length: int, *, required: bool, multiline: bool = False
) -> str | None:
    value = _text(form, name)
    if not value:
        return "Bitte ausfüllen." if required else None
    if len(value) > max_length:
        return f"Bitte höchstens {max_length} Zeichen."
    if _bad_chars(value, multiline) or (not multiline and ("\n" in value or "\r" in value)):
        return (
            "Bitte keine Steuerzeichen verwenden." if multiline else "Bitte einzeilig und ohne Steuerzeichen."
        )
    return None


def _integer(
    form: Mapping[str, str], name: str, low: int, high: int, *, required: bool
) -> tuple[int | None, str | None]:
    value = _text(form, name)
    if not value:
        return None, ("Bitte eine Zahl angeben." if required else None)
    if not re.fullmatch(r"\d{1,6}", value) or not low <= int(value) <= high:
        return None, f"Bitte eine ganze Zahl von {low} bis {high} angeben."
    return int(value), None


def _fee(form: Mapping[str, str]) -> tuple[str, str | None]:
    value = _text(form, "gebuehr").replace(" ", "").replace("€", "") or "0"
    if not re.fullmatch(r"\d{1,7}([.,]\d{1,2})?", value):
        return "0", "Bitte einen Betrag in Euro angeben, z. B. 0 oder 49,50."
    try:
        return str(Decimal(value.replace(",", "."))), None
    except InvalidOperation:
        return "0", "Bitte einen Betrag in Euro angeben, z. B. 0 oder 49,50."


def _date(value: str) -> date | None:
    try:
        return date.fromisoformat(value) if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value) else None
    except ValueError:
        return None


def _time(value: str) -> time | None:
    try:
        return time.fromisoformat(value) if re.fullmatch(r"\d{2}:\d{2}", value) else None
    except ValueError:
        return None


def session_rows(form: Mapping[str, str]) -> int:
    try:
        rows = int(str(form.get("zeilen", DEFAULT_SESSION_ROWS)))
    except ValueError:
        rows = DEFAULT_SESSION_ROWS
    return max(1, min(rows, MAX_SESSION_ROWS))


def _session(form: Mapping[str, str], i: int, errors: dict[str, str]) -> dict[str, Any] | None:
    names = {k: f"termin_{i}_{k}" for k in ("datum", "beginn", "ende", "ort", "id")}
    if not any(_text(form, names[k]) for k in ("datum", "beginn", "ende", "ort")):
        return None
    day, start, end = (
        _date(_text(form, names["datum"])),
        _time(_text(form, names["beginn"])),
        _time(_text(form, names["ende"])),
    )
    if day is None:
        errors[names["datum"]] = "Bitte ein Datum angeben."
    if start is None:
        errors[names["beginn"]] = "Bitte eine Uhrzeit angeben, z. B. 09:00."
    if end is None:
        errors[names["ende"]] = "Bitte eine Uhrzeit angeben, z. B. 16:00."
    elif start is not None and end <= start:
        errors[names["ende"]] = "Das Ende muss nach dem Beginn liegen."
    if problem := _line(form, names["ort"], 300, required=True):
        errors[names["ort"]] = problem
    if day is None or start is None or end is None:
        return None
    session: dict[str, Any] = {
        "starts_at": datetime.combine(day, start, BERLIN).isoformat(),
        "ends_at": datetime.combine(day, end, BERLIN).isoformat(),
        "location": _text(form, names["ort"]),
    }
    if re.fullmatch(r"[0-9a-f-]{36}", _text(form, names["id"])):
        session["session_id"] = _text(form, names["id"])
    return session


def _basics(form: Mapping[str, str], node_ids: set[str], errors: dict[str, str]) -> dict[str, Any]:
    for name, limit, required, multiline in (
        ("titel", 200, True, False), ("beschreibung", 5000, False, True), ("zielgruppe", 300, False, False),
    ):  # fmt: skip
        if problem := _line(form, name, limit, required=required, multiline=multiline):
            errors[name] = problem
    if _text(form, "format") not in dict(KIND_OPTIONS):
        errors["format"] = "Bitte ein Format auswählen."
    if _text(form, "thema") not in dict(TOPIC_OPTIONS):
        errors["thema"] = "Bitte ein Thema auswählen."
    if _text(form, "knoten") not in node_ids:
        errors["knoten"] = "Bitte einen QTI-Knoten auswählen, für den Ihr Konto Angebote anlegen darf."
    numbers = {}
    for name, low, required in (
        ("kapazitaet", 1, True),
        ("warteliste", 0, False),
        ("max_unternehmen", 1, False),
    ):
        numbers[name], problem = _integer(form, name, low, 1000, required=required)
        if problem:
            errors[name] = problem
    fee, problem = _fee(form)
    if problem:
        errors["gebuehr"] = problem
    return {
        "title": _text(form, "titel"), "description": _text(form, "beschreibung"),
        "target_group": _text(form, "zielgruppe") or None, "kind": _text(form, "format"),
        "topic": _text(form, "thema"), "node_id": _text(form, "knoten"), "capacity": numbers["kapazitaet"],
        "waitlist_limit": numbers["warteliste"] or 0, "max_per_company": numbers["max_unternehmen"],
        "fee_eur": fee,
    }  # fmt: skip


def offering_form(form: Mapping[str, str], node_ids: set[str]) -> OfferingForm:
    """The API body for a submitted form, or the German errors per field (in the form's order)."""
    result = OfferingForm(values={k: str(v)[:6000] for k, v in form.items()})
    errors: dict[str, str] = {}
    body = _basics(form, node_ids, errors)
    deadline = _text(form, "anmeldeschluss")
    body["registration_deadline"] = None
    if deadline:
        day = _date(deadline)
        if day is None:
            errors["anmeldeschluss"] = "Bitte ein Datum angeben."
        else:
            body["registration_deadline"] = datetime.combine(day, time(23, 59), BERLIN).isoformat()
    sessions = [s for i in range(session_rows(form)) if (s := _session(form, i, errors)) is not None]
    if not sessions and "termin_0_datum" not in errors:
        errors["termin_0_datum"] = "Bitte mindestens einen Termin angeben."
    body["sessions"] = sessions
    result.errors, result.body = errors, body
    return result


def form_values(offering: Mapping[str, Any], *, copy: bool = False) -> dict[str, str]:
    """The form's fields filled from an offering (to edit it, or as the template of a new one)."""
    values = {
        "titel": str(offering.get("title") or ""), "beschreibung": str(offering.get("description") or ""),
        "zielgruppe": str(offering.get("target_group") or ""), "format": str(offering.get("kind") or ""),
        "thema": str(offering.get("topic") or ""), "knoten": str(offering.get("node_id") or ""),
        "kapazitaet": str(offering.get("capacity") or ""),
        "warteliste": str(offering.get("waitlist_limit") or 0),
        "max_unternehmen": str(offering.get("max_per_company") or ""),
        "gebuehr": f"{float(offering.get('fee_eur') or 0):.2f}".replace(".", ","),
    }  # fmt: skip
    deadline = offering.get("registration_deadline")
    if deadline and not copy:
        values["anmeldeschluss"] = datetime.fromisoformat(deadline).astimezone(BERLIN).date().isoformat()
    sessions = list(offering.get("sessions") or [])
    for i, s in enumerate(sessions):
        starts, ends = (datetime.fromisoformat(s[k]).astimezone(BERLIN) for k in ("starts_at", "ends_at"))
        values[f"termin_{i}_datum"] = "" if copy else starts.date().isoformat()
        values[f"termin_{i}_beginn"] = starts.strftime("%H:%M")
        values[f"termin_{i}_ende"] = ends.strftime("%H:%M")
        values[f"termin_{i}_ort"] = str(s.get("location") or "")
        if not copy:
            values[f"termin_{i}_id"] = str(s["session_id"])
    values["zeilen"] = str(max(DEFAULT_SESSION_ROWS, len(sessions) + 1))
    return values


def service_errors(errors: list[dict[str, str]], detail: str) -> dict[str, str]:
    """The catalogue's 422 field paths (`sessions[0].ends_at`) as the form's field names."""
    mapped: dict[str, str] = {}
    for error in errors:
        path, message = str(error.get("field", "")), str(error.get("message", ""))
        match = _SESSION_PATH.match(path)
        if match:
            name = f"termin_{match.group(1)}_{SESSION_FIELDS.get(match.group(2) or '', 'datum')}"
        elif path == "sessions":
            name = "termin_0_datum"
        else:
            name = API_FIELDS.get(path.split(".", maxsplit=1)[0], "formular")
        mapped.setdefault(name, message)
    return mapped or {"formular": detail or "Der Katalog hat die Angaben nicht angenommen."}


def summary(errors: Mapping[str, str]) -> list[tuple[str, str]]:
    lines = []
    for name, message in errors.items():
        if name.startswith("termin_"):
            _, row, part = name.split("_", 2)
            label = f"{FIELD_LABELS.get(part, part)} (Termin {int(row) + 1})"
        else:
            label = FIELD_LABELS.get(name, name)
        lines.append((name, f"{label}: {message}"))
    return lines
