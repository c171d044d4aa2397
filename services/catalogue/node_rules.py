"""Pure rules for QTI nodes: which field values staff may save. No I/O; messages are German."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Final

from pydantic import TypeAdapter, ValidationError, validate_email
from pydantic_core import PydanticCustomError

from qti_contracts.events import COUNTY_LABELS, County, CountyField
from services.catalogue.domain import Node, ValidationProblem, has_control_chars

LINE_MAX_LENGTH: Final = 200
DESCRIPTION_MAX_LENGTH: Final = 2_000
PHONE_MAX_LENGTH: Final = 40
EMAIL_MAX_LENGTH: Final = 254
_PHONE: Final = re.compile(r"^\+?[0-9 ()/\-]{3,}$")
_REQUIRED_LINES: Final = (
    ("name", "den Namen des Knotens"),
    ("town", "den Ort"),
    ("host", "die Einrichtung, die den Knoten betreibt"),
    ("address", "die Anschrift"),
)


_COUNTY = TypeAdapter(CountyField)


def county_label(county: County | None) -> str:
    """What nodes store and announce: the German label ("" = not given, which the rules refuse)."""
    return COUNTY_LABELS[county] if county is not None else ""


def county_code(text: str) -> County | None:
    """The closed-list county named by a code or German label (`Sömmerda`, `eisenach`); None if none."""
    try:
        return _COUNTY.validate_python(text)
    except ValidationError:
        return None


def _line_problems(field: str, text: str, *, required_label: str | None) -> list[ValidationProblem]:
    """One line of text: not blank when required, at most 200 characters, no control characters."""
    if not text.strip():
        return [ValidationProblem(field, f"Bitte {required_label} angeben.")] if required_label else []
    if len(text.strip()) > LINE_MAX_LENGTH or has_control_chars(text):
        message = f"Bitte eine Zeile mit höchstens {LINE_MAX_LENGTH} Zeichen angeben (ohne Zeilenumbruch)."
        return [ValidationProblem(field, message)]
    return []


def _description_problems(description: str | None) -> list[ValidationProblem]:
    if description is None:
        return []
    if len(description.strip()) > DESCRIPTION_MAX_LENGTH:
        return [ValidationProblem("description", "Die Beschreibung darf höchstens 2.000 Zeichen lang sein.")]
    if has_control_chars(description, allowed="\n\r\t"):
        return [ValidationProblem("description", "Die Beschreibung darf keine Steuerzeichen enthalten.")]
    return []


def _email_problems(email: str | None) -> list[ValidationProblem]:
    if email is None:
        return []
    message = "Bitte eine gültige E-Mail-Adresse angeben, z. B. knoten@example.de."
    if len(email) > EMAIL_MAX_LENGTH:
        return [ValidationProblem("contact_email", message)]
    try:
        validate_email(email)
    except PydanticCustomError:
        return [ValidationProblem("contact_email", message)]
    return []


def _phone_problems(phone: str | None) -> list[ValidationProblem]:
    if phone is None or (len(phone) <= PHONE_MAX_LENGTH and _PHONE.fullmatch(phone)):
        return []
    message = "Bitte eine Telefonnummer aus Ziffern angeben, z. B. +49 3634 123456."
    return [ValidationProblem("contact_phone", message)]


def validate_node(node: Node) -> list[ValidationProblem]:
    """Everything wrong with a node as staff entered it; empty = it may be saved."""
    problems: list[ValidationProblem] = []
    for field, label in _REQUIRED_LINES:
        problems += _line_problems(field, getattr(node, field), required_label=label)
    if node.county not in COUNTY_LABELS.values():
        problems.append(
            ValidationProblem("county", "Bitte einen Landkreis oder eine kreisfreie Stadt angeben.")
        )
    problems += _line_problems("contact_name", node.contact_name or "", required_label=None)
    problems += _email_problems(node.contact_email)
    problems += _phone_problems(node.contact_phone)
    return problems + _description_problems(node.description)


def _optional(text: str | None) -> str | None:
    return (text.strip() or None) if text is not None else None


def tidy_node(node: Node) -> Node:
    """Surrounding blanks removed; blank optional texts become None."""
    return replace(
        node,
        name=node.name.strip(),
        town=node.town.strip(),
        host=node.host.strip(),
        address=node.address.strip(),
        description=_optional(node.description),
        contact_name=_optional(node.contact_name),
        contact_email=_optional(node.contact_email),
        contact_phone=_optional(node.contact_phone),
    )
