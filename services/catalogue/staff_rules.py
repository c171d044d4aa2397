"""Pure rules of the staff directory: addresses, passwords, lockout, role scoping and audit entries.

No I/O and no hashing here (see `staff_accounts`); messages are German. Time is always passed in.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final
from uuid import UUID

from pydantic import validate_email
from pydantic_core import PydanticCustomError

from services.catalogue.domain import ValidationProblem, has_control_chars

PASSWORD_MIN_LENGTH: Final = 12
PASSWORD_MAX_LENGTH: Final = 256
EMAIL_MAX_LENGTH: Final = 254
LOCKOUT_FAILURES: Final = 5
LOCKOUT_WINDOW: Final = timedelta(minutes=15)
LOCKOUT_DURATION: Final = timedelta(minutes=15)
SUBJECT_MAX_LENGTH: Final = 200
DETAIL_MAX_KEYS: Final = 20
DETAIL_KEY_MAX_LENGTH: Final = 40
DETAIL_VALUE_MAX_LENGTH: Final = 200
DETAIL_MAX_CHARS: Final = 2_000
_DETAIL_KEY: Final = re.compile(r"^[a-z][a-z0-9_]*$")

DetailValue = str | int | bool | None


class Role(StrEnum):
    """`lead`: the project lead (every node, the audit log); `node`: staff of one node."""

    LEAD = "lead"
    NODE = "node"


# What the console records (POST /staff/audit), with the German label the log shows.
CONSOLE_ACTIONS: Final[dict[str, str]] = {
    "offering.created": "Angebot angelegt",
    "offering.edited": "Angebot geändert",
    "offering.published": "Angebot veröffentlicht",
    "offering.cancelled": "Angebot abgesagt",
    "offering.completed": "Angebot abgeschlossen",
    "attendance.recorded": "Anwesenheit erfasst",
    "attendance.changed": "Anwesenheit geändert",
    "registration.promoted": "Von der Warteliste nachgerückt",
    "certificate.revoked": "Teilnahmebescheinigung widerrufen",
    "certificate.resent": "Teilnahmebescheinigung erneut gesendet",
}
# What the directory records itself when someone signs in (never with a password).
SIGN_IN_ACTIONS: Final[dict[str, str]] = {
    "staff.signed_in": "Angemeldet",
    "staff.sign_in_failed": "Anmeldung fehlgeschlagen",
}
ACTION_LABELS: Final[dict[str, str]] = {**CONSOLE_ACTIONS, **SIGN_IN_ACTIONS}


@dataclass(frozen=True, slots=True)
class Lockout:
    """Failed sign-ins of one account: how many since `first_failure_at`, and a lock if there is one."""

    failed_attempts: int = 0
    first_failure_at: datetime | None = None
    locked_until: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class StaffAccount:
    """A staff account without its password hash (which never leaves the store's sign-in path)."""

    account_id: UUID
    email: str
    role: Role
    node_id: UUID | None
    created_at: datetime
    disabled_at: datetime | None = None
    lockout: Lockout = Lockout()

    @property
    def disabled(self) -> bool:
        return self.disabled_at is not None


# --- addresses and passwords -----------------------------------------------------------------------


def normalise_email(email: str) -> str:
    """How addresses are stored and looked up: NFC, without surrounding blanks, lower case."""
    return unicodedata.normalize("NFC", email).strip().lower()


def email_problems(email: str) -> list[ValidationProblem]:
    """An address an account may be created with (already normalised)."""
    message = "Bitte eine gültige E-Mail-Adresse angeben, z. B. name@example.de."
    if not email or len(email) > EMAIL_MAX_LENGTH or has_control_chars(email) or " " in email:
        return [ValidationProblem("email", message)]
    try:
        validate_email(email)
    except PydanticCustomError:
        return [ValidationProblem("email", message)]
    return []


def normalise_password(password: str) -> str:
    """NFC, so that the same password typed on different systems hashes alike."""
    return unicodedata.normalize("NFC", password)


def password_problems(password: str) -> list[ValidationProblem]:
    """The password policy: 12 to 256 characters, not one character repeated."""
    if len(password) < PASSWORD_MIN_LENGTH:
        message = f"Das Passwort muss mindestens {PASSWORD_MIN_LENGTH} Zeichen lang sein."
        return [ValidationProblem("password", message)]
    if len(password) > PASSWORD_MAX_LENGTH:
        message = f"Das Passwort darf höchstens {PASSWORD_MAX_LENGTH} Zeichen lang sein."
        return [ValidationProblem("password", message)]
    if len(set(password)) == 1:
        message = "Das Passwort darf nicht aus einem einzigen, wiederholten Zeichen bestehen."
        return [ValidationProblem("password", message)]
    return []


def role_problems(role: Role, node_id: UUID | None) -> list[ValidationProblem]:
    """Node staff belong to one node; the project lead to none."""
    if role is Role.NODE and node_id is None:
        return [ValidationProblem("node_id", "Bitte den Knoten angeben, zu dem das Konto gehört.")]
    if role is Role.LEAD and node_id is not None:
        return [ValidationProblem("node_id", "Die Projektleitung gehört zu keinem einzelnen Knoten.")]
    return []


# --- lockout ---------------------------------------------------------------------------------------


def is_locked(lockout: Lockout, now: datetime) -> bool:
    return lockout.locked_until is not None and now < lockout.locked_until


def after_failure(lockout: Lockout, now: datetime) -> Lockout:
    """Count a failed sign-in: the fifth within 15 minutes of the first locks for 15 minutes.

    While locked, failures are not counted (the lock is not extended by further tries). A `now` before
    the first failure counts in its window: concurrent sign-ins read the clock before they wait for the
    account's row lock, so the one that read it first may be counted last."""
    if is_locked(lockout, now):
        return lockout
    first = lockout.first_failure_at
    if first is None or now - first >= LOCKOUT_WINDOW:
        return Lockout(failed_attempts=1, first_failure_at=now)
    count = lockout.failed_attempts + 1
    if count >= LOCKOUT_FAILURES:
        return Lockout(locked_until=now + LOCKOUT_DURATION)
    return replace(lockout, failed_attempts=count, locked_until=None)


def after_success() -> Lockout:
    """A successful sign-in forgets every failure."""
    return Lockout()


# --- role scoping ----------------------------------------------------------------------------------


def may_act_on(account: StaffAccount, node_id: UUID | None) -> bool:
    """Whether the account may act on the node (`None`: on no node in particular, e.g. sign-in).

    The project lead acts on every node; node staff on their own node; a disabled account on none."""
    if account.disabled:
        return False
    if account.role is Role.LEAD:
        return True
    return node_id is None or node_id == account.node_id


def may_read_audit(account: StaffAccount) -> bool:
    return not account.disabled and account.role is Role.LEAD


# --- audit entries ---------------------------------------------------------------------------------


def _unsafe_text(text: str) -> bool:
    """Control characters, or lone surrogates (which no database or file can store as UTF-8)."""
    return any(unicodedata.category(char) in ("Cc", "Cs") for char in text)


def subject_problems(subject: str | None) -> list[ValidationProblem]:
    if subject is None:
        return []
    if len(subject) > SUBJECT_MAX_LENGTH or _unsafe_text(subject):
        message = f"Bitte höchstens {SUBJECT_MAX_LENGTH} gültige Zeichen in einer Zeile angeben."
        return [ValidationProblem("subject", message)]
    return []


def _detail_item_problems(key: str, value: object) -> list[ValidationProblem]:
    field = f"detail.{key}" if _DETAIL_KEY.fullmatch(key) and len(key) <= DETAIL_KEY_MAX_LENGTH else "detail"
    if field == "detail":
        message = (
            f"Schlüssel bestehen aus Kleinbuchstaben, Ziffern und _ "
            f"(höchstens {DETAIL_KEY_MAX_LENGTH} Zeichen)."
        )
        return [ValidationProblem(field, message)]
    if value is not None and not isinstance(value, str | int | bool):
        return [ValidationProblem(field, "Bitte einen Text, eine ganze Zahl, true/false oder null angeben.")]
    if isinstance(value, str) and (len(value) > DETAIL_VALUE_MAX_LENGTH or _unsafe_text(value)):
        message = (
            f"Bitte höchstens {DETAIL_VALUE_MAX_LENGTH} Zeichen ohne Steuer- oder ungültige Zeichen angeben."
        )
        return [ValidationProblem(field, message)]
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2**53:
        return [ValidationProblem(field, "Die Zahl ist zu groß.")]
    return []


def detail_problems(detail: Mapping[str, object]) -> list[ValidationProblem]:
    """A small flat object: at most 20 keys, short texts, numbers, true/false or null."""
    if len(detail) > DETAIL_MAX_KEYS:
        return [ValidationProblem("detail", f"Höchstens {DETAIL_MAX_KEYS} Angaben.")]
    problems: list[ValidationProblem] = []
    for key, value in detail.items():
        problems += _detail_item_problems(key, value)
    if not problems and len(json.dumps(detail, ensure_ascii=False)) > DETAIL_MAX_CHARS:
        problems.append(ValidationProblem("detail", f"Höchstens {DETAIL_MAX_CHARS} Zeichen insgesamt."))
    return problems


def action_problems(action: str) -> list[ValidationProblem]:
    """Only actions of the closed list that the console records (sign-ins are recorded here)."""
    if action in CONSOLE_ACTIONS:
        return []
    allowed = ", ".join(CONSOLE_ACTIONS)
    return [ValidationProblem("action", f"Unbekannte Aktion; erlaubt sind: {allowed}.")]
