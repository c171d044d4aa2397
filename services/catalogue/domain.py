"""Pure rules of the catalogue: nodes, offerings, sessions, validation and status transitions.

Nothing in here performs I/O or reads the clock; callers pass `now` where a rule needs it. Problems
are reported as German, person-readable messages together with the path of the offending field.
"""

from __future__ import annotations

import dataclasses
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from qti_contracts.events import OfferingKind, OfferingStatus, Topic

MINUTES_PER_TEACHING_UNIT = 45
TITLE_MAX_LENGTH = 200
DESCRIPTION_MAX_LENGTH = 10_000
LOCATION_MAX_LENGTH = 200
TARGET_GROUP_MAX_LENGTH = 2_000
MAX_SESSIONS = 500
MAX_FEE_EUR = Decimal("9999999.99")


@dataclass(frozen=True, slots=True)
class ValidationProblem:
    """One problem with an offering: `field` is a path such as `sessions[1].ends_at`."""

    field: str
    message: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Node:
    """A QTI-Knoten: an office hosted by a local education provider."""

    node_id: UUID
    name: str
    town: str
    county: str
    host: str
    address: str
    opened_on: date
    description: str | None = None
    contact_name: str | None = None
    contact_email: str | None = None
    contact_phone: str | None = None
    revision: int = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class OfferingSession:
    """One dated appointment of an offering; times are timezone-aware."""

    session_id: UUID
    starts_at: datetime
    ends_at: datetime
    location: str


@dataclass(frozen=True, slots=True, kw_only=True)
class OfferingDraft:
    """The editable fields of an offering, as a staff member enters them."""

    node_id: UUID
    kind: OfferingKind
    topic: Topic
    title: str
    description: str
    sessions: tuple[OfferingSession, ...]
    capacity: int
    registration_deadline: datetime | None
    fee_eur: Decimal = Decimal("0")
    max_per_company: int | None = None
    waitlist_limit: int = 0
    target_group: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Offering(OfferingDraft):
    """A stored offering: its id, lifecycle status and a revision that grows with every change."""

    offering_id: UUID
    status: OfferingStatus
    revision: int = 1


class TransitionRefused(ValueError):
    """A status change that the lifecycle does not allow; `reason` is German."""

    def __init__(self, current: OfferingStatus, target: OfferingStatus, reason: str) -> None:
        super().__init__(reason)
        self.current = current
        self.target = target
        self.reason = reason


# --- small calculations -------------------------------------------------------------------------


def seats_left(capacity: int, confirmed: int) -> int:
    """Free seats; never negative, even when capacity was lowered below the confirmed count."""
    return max(0, capacity - confirmed)


def duration_minutes(session: OfferingSession) -> int:
    """Whole minutes between start and end (0 if the end is not after the start)."""
    elapsed = _utc(session.ends_at) - _utc(session.starts_at)
    return max(0, int(elapsed.total_seconds()) // 60)


def teaching_units(session: OfferingSession) -> int:
    """Teaching units (Unterrichtseinheiten) of 45 minutes, rounded down."""
    return duration_minutes(session) // MINUTES_PER_TEACHING_UNIT


def total_teaching_units(sessions: Iterable[OfferingSession]) -> int:
    return sum(teaching_units(session) for session in sessions)


# --- validation --------------------------------------------------------------------------------


def _is_aware(moment: datetime) -> bool:
    return moment.tzinfo is not None and moment.utcoffset() is not None


def _utc(moment: datetime) -> datetime:
    """Aware times in UTC: Python compares and subtracts same-zone datetimes by wall clock, which is
    wrong across a daylight-saving change. Naive times are returned unchanged."""
    return moment.astimezone(UTC) if _is_aware(moment) else moment


def has_control_chars(text: str, allowed: str = "") -> bool:
    return any(unicodedata.category(char) == "Cc" and char not in allowed for char in text)


def _title_problems(title: str) -> list[ValidationProblem]:
    if not title.strip():
        return [ValidationProblem("title", "Bitte einen Titel angeben.")]
    if len(title.strip()) > TITLE_MAX_LENGTH:
        message = f"Der Titel darf höchstens {TITLE_MAX_LENGTH} Zeichen lang sein."
        return [ValidationProblem("title", message)]
    if has_control_chars(title):
        message = "Der Titel muss einzeilig sein und darf keine Steuerzeichen enthalten."
        return [ValidationProblem("title", message)]
    return []


def _long_text_problems(field: str, label: str, text: str, limit: int) -> list[ValidationProblem]:
    if len(text.strip()) > limit:
        limit_text = f"{limit:_}".replace("_", ".")
        return [ValidationProblem(field, f"{label} darf höchstens {limit_text} Zeichen lang sein.")]
    if has_control_chars(text, allowed="\n\r\t"):
        return [ValidationProblem(field, f"{label} darf keine Steuerzeichen enthalten.")]
    return []


def _text_problems(draft: OfferingDraft) -> list[ValidationProblem]:
    problems = _title_problems(draft.title)
    problems += _long_text_problems(
        "description", "Die Beschreibung", draft.description, DESCRIPTION_MAX_LENGTH
    )
    if draft.target_group is not None:
        problems += _long_text_problems(
            "target_group", "Die Zielgruppe", draft.target_group, TARGET_GROUP_MAX_LENGTH
        )
    return problems


def _fee_problems(fee: Decimal) -> list[ValidationProblem]:
    if not fee.is_finite():
        return [ValidationProblem("fee_eur", "Die Gebühr muss ein Betrag in Euro sein.")]
    if fee < 0:
        return [ValidationProblem("fee_eur", "Die Gebühr darf nicht negativ sein.")]
    if fee > MAX_FEE_EUR:
        return [ValidationProblem("fee_eur", "Die Gebühr darf höchstens 9.999.999,99 € betragen.")]
    if fee != fee.quantize(Decimal("0.01")):
        return [ValidationProblem("fee_eur", "Die Gebühr darf höchstens zwei Nachkommastellen haben.")]
    return []


def _number_problems(
    draft: OfferingDraft, confirmed: int, allow_below_confirmed: bool
) -> list[ValidationProblem]:
    problems: list[ValidationProblem] = []
    if draft.capacity < 1:
        problems.append(ValidationProblem("capacity", "Die Kapazität muss mindestens 1 betragen."))
    elif draft.capacity < confirmed and not allow_below_confirmed:
        message = f"Die Kapazität darf nicht unter der Zahl der bestätigten Anmeldungen ({confirmed}) liegen."
        problems.append(ValidationProblem("capacity", message))
    if draft.waitlist_limit < 0:
        problems.append(ValidationProblem("waitlist_limit", "Die Wartelistengrenze darf nicht negativ sein."))
    if draft.max_per_company is not None and draft.max_per_company < 1:
        message = "Die Höchstzahl je Unternehmen muss mindestens 1 betragen oder leer bleiben."
        problems.append(ValidationProblem("max_per_company", message))
    return problems + _fee_problems(draft.fee_eur)


def _single_session_problems(index: int, session: OfferingSession) -> list[ValidationProblem]:
    path = f"sessions[{index}]"
    problems: list[ValidationProblem] = []
    if not _is_aware(session.starts_at):
        problems.append(ValidationProblem(f"{path}.starts_at", "Der Beginn muss eine Zeitzone enthalten."))
    if not _is_aware(session.ends_at):
        problems.append(ValidationProblem(f"{path}.ends_at", "Das Ende muss eine Zeitzone enthalten."))
    if not problems and _utc(session.ends_at) <= _utc(session.starts_at):
        problems.append(ValidationProblem(f"{path}.ends_at", "Das Ende muss nach dem Beginn liegen."))
    location = session.location
    if not location.strip():
        problems.append(ValidationProblem(f"{path}.location", "Bitte einen Ort angeben."))
    elif len(location.strip()) > LOCATION_MAX_LENGTH or has_control_chars(location):
        message = f"Der Ort muss einzeilig sein und darf höchstens {LOCATION_MAX_LENGTH} Zeichen haben."
        problems.append(ValidationProblem(f"{path}.location", message))
    return problems


def _sequence_problems(sessions: Sequence[OfferingSession]) -> list[ValidationProblem]:
    """Order, overlap and duplicate ids; pairs with a naive time are skipped (reported elsewhere)."""
    problems: list[ValidationProblem] = []
    if len(sessions) > MAX_SESSIONS:
        message = f"Ein Angebot darf höchstens {MAX_SESSIONS} Termine haben."
        problems.append(ValidationProblem("sessions", message))
    seen: set[UUID] = set()
    for index, session in enumerate(sessions):
        if session.session_id in seen:
            message = "Diese Termin-ID kommt mehrfach vor."
            problems.append(ValidationProblem(f"sessions[{index}].session_id", message))
        seen.add(session.session_id)
        if index == 0:
            continue
        previous = sessions[index - 1]
        if not all(_is_aware(t) for t in (previous.starts_at, previous.ends_at, session.starts_at)):
            continue
        path = f"sessions[{index}].starts_at"
        if _utc(session.starts_at) < _utc(previous.starts_at):
            message = "Die Termine müssen in zeitlicher Reihenfolge angegeben werden."
            problems.append(ValidationProblem(path, message))
        elif _utc(session.starts_at) < _utc(previous.ends_at):
            problems.append(
                ValidationProblem(path, "Der Termin überschneidet sich mit dem vorherigen Termin.")
            )
    return problems


def _first_start(sessions: Sequence[OfferingSession]) -> datetime | None:
    starts = [session.starts_at for session in sessions if _is_aware(session.starts_at)]
    return min(starts, key=_utc) if starts else None


def _deadline_problems(draft: OfferingDraft) -> list[ValidationProblem]:
    deadline = draft.registration_deadline
    if deadline is None:
        return []
    if not _is_aware(deadline):
        return [
            ValidationProblem("registration_deadline", "Der Anmeldeschluss muss eine Zeitzone enthalten.")
        ]
    first_start = _first_start(draft.sessions)
    if first_start is not None and _utc(deadline) >= _utc(first_start):
        message = "Der Anmeldeschluss muss vor dem Beginn des ersten Termins liegen."
        return [ValidationProblem("registration_deadline", message)]
    return []


def validate_offering(
    draft: OfferingDraft, *, confirmed: int = 0, allow_below_confirmed: bool = False
) -> list[ValidationProblem]:
    """All field rules that hold for every saved offering, whatever its status. Empty list = valid."""
    problems = _text_problems(draft) + _number_problems(draft, confirmed, allow_below_confirmed)
    for index, session in enumerate(draft.sessions):
        problems += _single_session_problems(index, session)
    return problems + _sequence_problems(draft.sessions) + _deadline_problems(draft)


def validate_for_create(draft: OfferingDraft) -> list[ValidationProblem]:
    """Rules for a new draft (nobody can have registered yet)."""
    return validate_offering(draft)


def validate_for_edit(
    draft: OfferingDraft, *, confirmed: int, allow_below_confirmed: bool = False
) -> list[ValidationProblem]:
    """Rules for a change to an existing offering that already has `confirmed` seats taken."""
    return validate_offering(draft, confirmed=confirmed, allow_below_confirmed=allow_below_confirmed)


def _publish_only_problems(draft: OfferingDraft, now: datetime | None) -> list[ValidationProblem]:
    problems: list[ValidationProblem] = []
    if not draft.sessions:
        problems.append(ValidationProblem("sessions", "Zum Veröffentlichen ist mindestens ein Termin nötig."))
    if not draft.description.strip():
        message = "Zum Veröffentlichen ist eine Beschreibung nötig."
        problems.append(ValidationProblem("description", message))
    if now is None:
        return problems
    first_start = _first_start(draft.sessions)
    if first_start is not None and _utc(first_start) <= _utc(now):
        message = "Der erste Termin liegt bereits in der Vergangenheit."
        problems.append(ValidationProblem("sessions[0].starts_at", message))
    deadline = draft.registration_deadline
    if deadline is not None and _is_aware(deadline) and _utc(deadline) <= _utc(now):
        message = "Der Anmeldeschluss liegt bereits in der Vergangenheit."
        problems.append(ValidationProblem("registration_deadline", message))
    return problems


def validate_for_publish(
    draft: OfferingDraft, *, confirmed: int = 0, now: datetime | None = None
) -> list[ValidationProblem]:
    """Rules for publishing: the edit rules plus sessions, a description and, given `now`, a future start."""
    return validate_offering(draft, confirmed=confirmed) + _publish_only_problems(draft, now)


def validate_for_published_edit(
    draft: OfferingDraft, *, confirmed: int, allow_below_confirmed: bool = False
) -> list[ValidationProblem]:
    """Rules for a change to a published offering: the edit rules plus what publishing required
    (sessions and a description). Dates in the past are allowed: a running course may be corrected."""
    return validate_for_edit(
        draft, confirmed=confirmed, allow_below_confirmed=allow_below_confirmed
    ) + _publish_only_problems(draft, None)


# --- status transitions ------------------------------------------------------------------------

_ALLOWED: dict[OfferingStatus, frozenset[OfferingStatus]] = {
    OfferingStatus.DRAFT: frozenset({OfferingStatus.PUBLISHED, OfferingStatus.CANCELLED}),
    OfferingStatus.PUBLISHED: frozenset({OfferingStatus.CANCELLED, OfferingStatus.COMPLETED}),
    OfferingStatus.CANCELLED: frozenset(),
    OfferingStatus.COMPLETED: frozenset(),
}

_REFUSALS: dict[tuple[OfferingStatus, OfferingStatus], str] = {
    (OfferingStatus.DRAFT, OfferingStatus.DRAFT): "Das Angebot ist bereits ein Entwurf.",
    (OfferingStatus.DRAFT, OfferingStatus.COMPLETED): (
        "Ein Entwurf kann nicht abgeschlossen werden, weil er nie veröffentlicht wurde."
    ),
    (OfferingStatus.PUBLISHED, OfferingStatus.PUBLISHED): "Das Angebot ist bereits veröffentlicht.",
    (OfferingStatus.PUBLISHED, OfferingStatus.DRAFT): (
        "Ein veröffentlichtes Angebot kann nicht zurück in den Entwurf gesetzt werden."
    ),
}

_FINAL_REASONS: dict[OfferingStatus, str] = {
    OfferingStatus.CANCELLED: "Das Angebot wurde abgesagt; sein Status kann nicht mehr geändert werden.",
    OfferingStatus.COMPLETED: "Das Angebot ist abgeschlossen; sein Status kann nicht mehr geändert werden.",
}


def transition_refusal(current: OfferingStatus, target: OfferingStatus) -> str | None:
    """None if `current` → `target` is allowed, otherwise the German reason for refusing it."""
    if target in _ALLOWED[current]:
        return None
    if current in _FINAL_REASONS:
        return _FINAL_REASONS[current]
    return _REFUSALS.get((current, target), "Dieser Statuswechsel ist nicht erlaubt.")


def can_transition(current: OfferingStatus, target: OfferingStatus) -> bool:
    return transition_refusal(current, target) is None


def transition(offering: Offering, target: OfferingStatus) -> Offering:
    """The offering in status `target` with the next revision; raises TransitionRefused if not allowed."""
    reason = transition_refusal(offering.status, target)
    if reason is not None:
        raise TransitionRefused(offering.status, target, reason)
    return dataclasses.replace(offering, status=target, revision=offering.revision + 1)


def is_editable(status: OfferingStatus) -> bool:
    """Drafts and published offerings may be edited; cancelled and completed ones are frozen."""
    return status in (OfferingStatus.DRAFT, OfferingStatus.PUBLISHED)


# --- wire payloads -----------------------------------------------------------------------------


def effective_registration_deadline(draft: OfferingDraft) -> datetime | None:
    """The deadline as set, or else the start of the first session (registration open until then)."""
    return draft.registration_deadline or _first_start(draft.sessions)


def session_payload(session: OfferingSession) -> dict[str, Any]:
    return {
        "session_id": str(session.session_id),
        "starts_at": session.starts_at.isoformat(),
        "ends_at": session.ends_at.isoformat(),
        "location": session.location,
        "teaching_units": teaching_units(session),
    }


def offering_payload(offering: Offering) -> dict[str, Any]:
    """JSON-ready `data` of `catalogue.offering.published` / `.updated`: the full state incl. revision."""
    deadline = effective_registration_deadline(offering)
    return {
        "offering_id": str(offering.offering_id),
        "node_id": str(offering.node_id),
        "kind": offering.kind.value,
        "topic": offering.topic.value,
        "title": offering.title,
        "description": offering.description,
        "target_group": offering.target_group,
        "sessions": [session_payload(session) for session in offering.sessions],
        "capacity": offering.capacity,
        "registration_deadline": deadline.isoformat() if deadline else None,
        "fee_eur": float(offering.fee_eur),
        "max_per_company": offering.max_per_company,
        "waitlist_limit": offering.waitlist_limit,
        "status": offering.status.value,
        "revision": offering.revision,
    }


def offering_cancelled_payload(offering_id: UUID, reason: str) -> dict[str, Any]:
    """`data` of `catalogue.offering.cancelled`."""
    return {"offering_id": str(offering_id), "reason": reason}


def node_payload(node: Node) -> dict[str, Any]:
    """`data` of `catalogue.node.published` / `.updated`: the node without its contact person, who is
    staff data and stays in the catalogue."""
    return {
        "node_id": str(node.node_id),
        "name": node.name,
        "town": node.town,
        "county": node.county,
        "host": node.host,
        "address": node.address,
        "opened_on": node.opened_on.isoformat(),
        "description": node.description,
        "revision": node.revision,
    }
