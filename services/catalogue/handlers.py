"""Catalogue commands and the registration-event consumer: decision, state change and outgoing events,
all in one unit of work (so an event leaves through the outbox exactly when its change is committed)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4, uuid5

import asyncpg
from pydantic import ValidationError

from qti_contracts.envelope import RawEvent, make_event
from qti_contracts.events import EventRef, Identifier, Occupancy, OfferingStatus, Payload
from qti_contracts.registry import parse_data, readable_errors
from qti_contracts.topology import RoutingKey
from qti_runtime.consumer import DeadLetter
from qti_runtime.db import Database
from qti_runtime.logging import get_logger
from qti_runtime.unit_of_work import UnitOfWork, unit_of_work
from services.catalogue import store
from services.catalogue.domain import (
    Node,
    Offering,
    OfferingDraft,
    TransitionRefused,
    ValidationProblem,
    is_editable,
    node_payload,
    offering_cancelled_payload,
    offering_payload,
    transition,
    validate_for_create,
    validate_for_edit,
    validate_for_publish,
    validate_for_published_edit,
)

log = get_logger(__name__)

SOURCE = "/catalogue"
REGISTRATIONS_CONSUMER = "catalogue.registrations"
SEAT_EVENT_TYPES = frozenset(
    {RoutingKey.REGISTRATION_CONFIRMED, RoutingKey.REGISTRATION_WAITLISTED, RoutingKey.REGISTRATION_CANCELLED}
)
EVENT_NAMESPACE = UUID("0b9f3c57-7a0e-4b63-9a55-3c1d7f1f4e21")

PUBLISHED_EVENTS = (
    RoutingKey.OFFERING_PUBLISHED,
    RoutingKey.OFFERING_UPDATED,
    RoutingKey.OFFERING_CANCELLED,
    RoutingKey.NODE_PUBLISHED,
    RoutingKey.NODE_UPDATED,
)
"""The event types catalogue publishes (through its outbox), for the service's declaration."""

OFFERING_NOT_FOUND = "Dieses Angebot gibt es nicht."
NODE_NOT_FOUND = "Diesen QTI-Knoten gibt es nicht."


# --- outcomes the API turns into problem details ------------------------------------------------


class CatalogueError(Exception):
    """Base of the refusals of a command; `message` is German."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(CatalogueError):
    pass


class Invalid(CatalogueError):
    def __init__(self, problems: list[ValidationProblem]) -> None:
        super().__init__("; ".join(f"{p.field}: {p.message}" for p in problems))
        self.problems = problems


class Conflict(CatalogueError):
    pass


class PreconditionFailed(CatalogueError):
    def __init__(self, message: str, current_etag: str) -> None:
        super().__init__(message)
        self.current_etag = current_etag


# --- events ------------------------------------------------------------------------------------


def event_id_for(type_: str, entity_id: UUID, revision: int | str) -> str:
    """Deterministic event ids: the same change of the same entity always has the same id."""
    return str(uuid5(EVENT_NAMESPACE, f"{type_}:{entity_id}:{revision}"))


def _emit(uow: UnitOfWork, type_: str, payload: dict[str, Any], entity_id: UUID, version: int | str) -> str:
    """Put an event into the outbox of `uow`; the contract is checked first (it holds for everything
    catalogue sends)."""
    parse_data(type_, payload)
    event = make_event(
        type_, payload, source=SOURCE, subject=str(entity_id), id_=event_id_for(type_, entity_id, version)
    )
    uow.emit(event)
    return event.id


def emit_offering_state(uow: UnitOfWork, type_: str, offering: Offering) -> str:
    """`catalogue.offering.published` or `.updated` with the offering's full state."""
    return _emit(uow, type_, offering_payload(offering), offering.offering_id, offering.revision)


def emit_offering_cancelled(uow: UnitOfWork, offering: Offering, reason: str) -> str:
    payload = {**offering_cancelled_payload(offering.offering_id, reason), "revision": offering.revision}
    return _emit(uow, RoutingKey.OFFERING_CANCELLED, payload, offering.offering_id, offering.revision)


def emit_node_published(uow: UnitOfWork, node: Node) -> str:
    """Versioned by content, so that announcing the same node twice (demo data) has one event id."""
    payload = node_payload(node)
    return _emit(uow, RoutingKey.NODE_PUBLISHED, payload, node.node_id, store.compute_digest(payload))


def emit_node_updated(uow: UnitOfWork, node: Node) -> str:
    return _emit(uow, RoutingKey.NODE_UPDATED, node_payload(node), node.node_id, node.revision)


# --- staff commands ----------------------------------------------------------------------------


def normalise_etag(value: str) -> str:
    value = value.strip()
    value = value.removeprefix("W/")
    return value.strip('"')


def _check_if_match(current: store.StoredOffering, if_match: str | None) -> None:
    if if_match is None:
        return
    tags = [normalise_etag(tag) for tag in if_match.split(",") if tag.strip()]
    if "*" in tags or current.etag in tags:
        return
    raise PreconditionFailed(
        "Das Angebot wurde inzwischen geändert (anderer Stand als in If-Match angegeben). "
        "Bitte den aktuellen Stand laden und die Änderung erneut vornehmen.",
        current.etag,
    )


async def _locked(uow: UnitOfWork, offering_id: UUID) -> store.StoredOffering:
    current = await store.get_offering(uow.conn, offering_id, for_update=True)
    if current is None:
        raise NotFound(OFFERING_NOT_FOUND)
    return current


async def _reload(uow: UnitOfWork, offering_id: UUID) -> store.StoredOffering:
    stored = await store.get_offering(uow.conn, offering_id)
    assert stored is not None
    return stored


async def create_draft(
    db: Database, draft: OfferingDraft, *, offering_id: UUID | None = None
) -> store.StoredOffering:
    """Store a new draft. Drafts are internal: no event leaves until it is published."""
    problems = validate_for_create(draft)
    if not draft.sessions:
        problems.append(ValidationProblem("sessions", "Bitte mindestens einen Termin angeben."))
    if problems:
        raise Invalid(problems)
    fields = {f.name: getattr(draft, f.name) for f in dataclasses.fields(OfferingDraft)}
    offering = Offering(**fields, offering_id=offering_id or uuid4(), status=OfferingStatus.DRAFT, revision=1)
    async with unit_of_work(db) as uow:
        if await store.get_node(uow.conn, draft.node_id) is None:
            raise Invalid([ValidationProblem("node_id", NODE_NOT_FOUND)])
        if not await store.insert_offering(uow.conn, offering, if_missing=True):
            raise Conflict("Ein Angebot mit dieser ID gibt es bereits.")
        return await _reload(uow, offering.offering_id)


async def edit_offering(
    db: Database,
    offering_id: UUID,
    changes: dict[str, Any],
    *,
    if_match: str,
    allow_below_confirmed: bool = False,
) -> store.StoredOffering:
    """Apply a partial change (domain field name → new value) if `if_match` names the current state."""
    async with unit_of_work(db) as uow:
        current = await _locked(uow, offering_id)
        _check_if_match(current, if_match)
        old = current.offering
        if not is_editable(old.status):
            label = "abgesagt" if old.status is OfferingStatus.CANCELLED else "abgeschlossen"
            raise Conflict(f"Das Angebot ist {label} und kann nicht mehr bearbeitet werden.")
        if not changes:
            return current
        new = dataclasses.replace(old, **changes, revision=old.revision + 1)
        confirmed = current.occupancy.confirmed
        if old.status is OfferingStatus.PUBLISHED:
            problems = validate_for_published_edit(
                new, confirmed=confirmed, allow_below_confirmed=allow_below_confirmed
            )
        else:
            problems = validate_for_edit(
                new, confirmed=confirmed, allow_below_confirmed=allow_below_confirmed
            )
            if not new.sessions:
                problems.append(ValidationProblem("sessions", "Bitte mindestens einen Termin angeben."))
        if problems:
            raise Invalid(problems)
        if "node_id" in changes and await store.get_node(uow.conn, new.node_id) is None:
            raise Invalid([ValidationProblem("node_id", NODE_NOT_FOUND)])
        if new == dataclasses.replace(old, revision=new.revision):
            return current  # nothing really changed: keep revision and etag
        await store.update_offering(uow.conn, new, replace_sessions="sessions" in changes)
        if new.status is OfferingStatus.PUBLISHED:
            emit_offering_state(uow, RoutingKey.OFFERING_UPDATED, new)
        return await _reload(uow, offering_id)


def _transitioned(offering: Offering, target: OfferingStatus) -> Offering:
    try:
        return transition(offering, target)
    except TransitionRefused as exc:
        raise Conflict(exc.reason) from exc


async def publish_offering(
    db: Database, offering_id: UUID, *, if_match: str | None = None, now: datetime | None = None
) -> store.StoredOffering:
    async with unit_of_work(db) as uow:
        current = await _locked(uow, offering_id)
        _check_if_match(current, if_match)
        new = _transitioned(current.offering, OfferingStatus.PUBLISHED)
        problems = validate_for_publish(
            new, confirmed=current.occupancy.confirmed, now=now or datetime.now(UTC)
        )
        if problems:
            raise Invalid(problems)
        await store.update_offering(uow.conn, new, replace_sessions=False)
        emit_offering_state(uow, RoutingKey.OFFERING_PUBLISHED, new)
        return await _reload(uow, offering_id)


async def cancel_offering(
    db: Database, offering_id: UUID, reason: str, *, if_match: str | None = None
) -> store.StoredOffering:
    async with unit_of_work(db) as uow:
        current = await _locked(uow, offering_id)
        _check_if_match(current, if_match)
        was_published = current.offering.status is OfferingStatus.PUBLISHED
        new = _transitioned(current.offering, OfferingStatus.CANCELLED)
        await store.update_offering(uow.conn, new, replace_sessions=False, cancel_reason=reason)
        if was_published:  # a cancelled draft was never announced
            emit_offering_cancelled(uow, new, reason)
        return await _reload(uow, offering_id)


async def complete_offering(
    db: Database, offering_id: UUID, *, if_match: str | None = None
) -> store.StoredOffering:
    async with unit_of_work(db) as uow:
        current = await _locked(uow, offering_id)
        _check_if_match(current, if_match)
        new = _transitioned(current.offering, OfferingStatus.COMPLETED)
        await store.update_offering(uow.conn, new, replace_sessions=False)
        emit_offering_state(uow, RoutingKey.OFFERING_UPDATED, new)
        return await _reload(uow, offering_id)


# --- registration events -> seat snapshot ------------------------------------------------------


class SeatFields(Payload):
    """What catalogue reads of `registration.confirmed`, `.waitlisted` and `.cancelled`: the offering and
    its seats, validated as in the contract. The participant and company it never uses are not parsed
    (contract models ignore fields they do not name): validating the participant's e-mail address was
    about 70 % of the CPU of parsing a whole `registration.confirmed`, once per outcome."""

    registration_id: Identifier
    offering_id: Identifier
    from_waitlist: bool = False
    was_confirmed: bool | None = None
    occupancy: Occupancy | None = None


class OutcomeSeatFields(SeatFields):
    """`confirmed` and `waitlisted` name the request, the participant and the company: they must be
    there (an event without them is no outcome), but what is in them is not catalogue's business."""

    request_id: EventRef
    participant: dict[str, Any]
    company: dict[str, Any]


def _delta(type_: str, payload: SeatFields) -> tuple[int, int] | None:
    """(confirmed, waitlisted) change for an event without an occupancy snapshot."""
    if type_ == RoutingKey.REGISTRATION_CONFIRMED:
        return (1, -1) if payload.from_waitlist else (1, 0)
    if type_ == RoutingKey.REGISTRATION_WAITLISTED:
        return (0, 1)
    if type_ == RoutingKey.REGISTRATION_CANCELLED:
        if payload.was_confirmed is None:
            return None
        return (-1, 0) if payload.was_confirmed else (0, -1)
    return None


@dataclass(frozen=True)
class SeatChange:
    """What one registration event says about an offering's seats."""

    event_id: str
    offering_id: UUID
    occupancy: Occupancy | None
    delta: tuple[int, int] | None
    as_of: datetime


def seat_change(event: RawEvent) -> SeatChange | None:
    """The event's seat information; None for an offering that is not the catalogue's."""
    if event.type not in SEAT_EVENT_TYPES:
        raise DeadLetter(f"not a seat event: {event.type}", kind="invalid_data")
    try:
        model = SeatFields if event.type == RoutingKey.REGISTRATION_CANCELLED else OutcomeSeatFields
        payload = model.model_validate(event.data)
    except ValidationError as exc:
        raise DeadLetter(
            f"invalid {event.type} payload: {readable_errors(exc)}", kind="invalid_data"
        ) from exc
    try:
        offering_id = UUID(payload.offering_id)
    except ValueError:
        log.info("registration_event.foreign_offering", event_id=event.id, offering_id=payload.offering_id)
        return None
    delta = None if payload.occupancy is not None else _delta(event.type, payload)
    return SeatChange(event.id, offering_id, payload.occupancy, delta, event.time or datetime.now(UTC))


async def handle_registration_event(db: Database, event: RawEvent) -> None:
    """Keep the seat snapshot: the highest `occupancy.version` per offering wins, duplicates are ignored."""
    await handle_registration_events(db, [event])


async def handle_registration_events(db: Database, events: Sequence[RawEvent]) -> None:
    """`handle_registration_event` for a batch in one transaction: one inbox insert, and per offering only
    the newest snapshot written (offerings in id order, so replicas wait instead of deadlocking)."""
    changes = [change for event in events if (change := seat_change(event)) is not None]
    if not changes:
        return
    async with unit_of_work(db) as uow:
        fresh = await uow.claim_many(REGISTRATIONS_CONSUMER, [c.event_id for c in changes])
        unique = {c.event_id: c for c in changes if c.event_id in fresh}
        await _apply_seat_changes(uow.conn, list(unique.values()))


async def _apply_seat_changes(conn: asyncpg.Connection, changes: Sequence[SeatChange]) -> None:
    newest: dict[UUID, Occupancy] = {}
    as_of: dict[UUID, datetime] = {}
    for change in changes:
        known = newest.get(change.offering_id)
        if change.occupancy is not None and (known is None or known.version < change.occupancy.version):
            newest[change.offering_id] = change.occupancy
            as_of[change.offering_id] = change.as_of
    await store.apply_occupancy_snapshots(
        conn,
        [
            store.OccupancySnapshot(
                offering_id,
                version=occupancy.version,
                confirmed=occupancy.confirmed,
                waitlisted=occupancy.waitlisted,
                capacity=occupancy.capacity,
                as_of=as_of[offering_id],
            )
            for offering_id, occupancy in newest.items()
        ],
    )
    # Events from before `occupancy` existed carry only what changed.
    for change in sorted(changes, key=lambda c: str(c.offering_id)):
        if change.occupancy is not None:
            continue
        if change.delta is None:
            log.warning("registration_event.no_seat_information", event_id=change.event_id)
            continue
        confirmed, waitlisted = change.delta
        await store.apply_occupancy_delta(
            conn, change.offering_id, confirmed=confirmed, waitlisted=waitlisted, as_of=change.as_of
        )
