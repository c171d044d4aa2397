"""SQL of the notification service (tables in migrations/).

Plain statements, one per kind of change; a batch of outcomes writes its rows set-wise (`unnest`), one
statement per table, however many outcomes it holds. Measured against the former single statement of
four CTEs per outcome (`python -m bench.notification_outcomes`, 1,000 outcomes, old and new run in turn
four times in one sitting on the two shared cores, 2026-12-07, load average 9-20, so wide ranges):
batches of 1 (a quiet system) old 34-276, new 54-279 outcomes/s (the new code makes about twice the round
trips, 3.6-13 ms a batch, and looks up whether an address had mail before); batches of 50 (under load)
old 195-1,808, new 757-3,073 outcomes/s. Nothing demands the merged form.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from qti_contracts import NodePublished, OfferingState
from qti_runtime.unit_of_work import advisory_lock

WAKE_CHANNEL = "qti_notification_due"


@dataclass(frozen=True, slots=True)
class Person:
    email: str
    given_name: str = ""
    family_name: str = ""
    gender: str = "unspecified"


@dataclass(frozen=True, slots=True)
class OfferingRow:
    offering_id: str
    revision: int
    state: OfferingState | None
    cancelled: bool
    cancel_reason: str | None
    cancel_revision: int | None

    @property
    def first_starts_at(self) -> datetime | None:
        return self.state.starts_at if self.state is not None else None


@dataclass(frozen=True, slots=True)
class RecipientRow:
    registration_id: str
    offering_id: str
    status: str
    person: Person | None  # None for a tombstone (cancellation seen before the registration)
    cancel_event_id: str | None
    cancel_event_type: str | None
    cancel_cause: str | None
    cancel_reason: str | None
    correlation_id: str | None


@dataclass(frozen=True, slots=True)
class NewDelivery:
    notification_id: str
    template: str
    trigger_event_id: str
    trigger_type: str
    correlation_id: str | None
    registration_id: str | None
    request_id: str | None
    offering_id: str | None
    person: Person
    recipient_ref: str
    message_id: str
    params: Mapping[str, Any]
    due_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class DeliveryRow:
    notification_id: str
    template: str
    trigger_event_id: str
    trigger_type: str
    correlation_id: str | None
    registration_id: str | None
    request_id: str | None
    offering_id: str | None
    person: Person
    recipient_ref: str
    params: dict[str, Any]
    attempts: int
    message_id: str
    lease_token: uuid.UUID


def lock_key(namespace: str, key: str) -> str:
    return f"{namespace}:{key}"


async def lock(conn: asyncpg.Connection, namespace: str, key: str) -> None:
    """Serialise handlers of one entity across replicas for the rest of the transaction."""
    await advisory_lock(conn, lock_key(namespace, key))


async def wake_senders(conn: asyncpg.Connection) -> None:
    """Delivered on commit to every replica's sender (LISTEN), so new rows go out without polling delay."""
    await conn.execute("SELECT pg_notify($1, '')", WAKE_CHANNEL)


# ---------------------------------------------------------------------------------------------- replicas


def _offering(record: asyncpg.Record) -> OfferingRow:
    state = record["state"]
    return OfferingRow(
        offering_id=record["offering_id"],
        revision=record["revision"],
        state=OfferingState.model_validate_json(state) if state is not None else None,
        cancelled=record["cancelled"],
        cancel_reason=record["cancel_reason"],
        cancel_revision=record["cancel_revision"],
    )


async def get_offering(conn: asyncpg.Connection, offering_id: str) -> OfferingRow | None:
    record = await conn.fetchrow("SELECT * FROM offerings WHERE offering_id = $1", offering_id)
    return _offering(record) if record is not None else None


async def get_offerings(conn: asyncpg.Connection, offering_ids: Sequence[str]) -> dict[str, OfferingRow]:
    records = await conn.fetch("SELECT * FROM offerings WHERE offering_id = ANY($1::text[])", offering_ids)
    return {r["offering_id"]: _offering(r) for r in records}


async def save_offering(conn: asyncpg.Connection, state: OfferingState) -> None:
    await conn.execute(
        "INSERT INTO offerings (offering_id, revision, node_id, state, first_starts_at)"
        " VALUES ($1, $2, $3, $4::jsonb, $5)"
        " ON CONFLICT (offering_id) DO UPDATE SET revision = excluded.revision, node_id = excluded.node_id,"
        " state = excluded.state, first_starts_at = excluded.first_starts_at, updated_at = now()",
        state.offering_id,
        state.revision,
        state.node_id,
        state.model_dump_json(),
        state.starts_at,
    )


async def mark_offering_cancelled(
    conn: asyncpg.Connection, offering_id: str, reason: str, revision: int | None
) -> None:
    await conn.execute(
        "INSERT INTO offerings (offering_id, cancelled, cancel_reason, cancel_revision)"
        " VALUES ($1, true, $2, $3)"
        " ON CONFLICT (offering_id) DO UPDATE SET cancelled = true, cancel_reason = excluded.cancel_reason,"
        " cancel_revision = excluded.cancel_revision, updated_at = now()",
        offering_id,
        reason,
        revision,
    )


async def save_node(conn: asyncpg.Connection, node: NodePublished) -> None:
    await conn.execute(
        "INSERT INTO nodes AS n (node_id, name, town, county, host, address, revision)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7)"
        " ON CONFLICT (node_id) DO UPDATE SET name = excluded.name, town = excluded.town,"
        " county = excluded.county, host = excluded.host, address = excluded.address,"
        " revision = coalesce(excluded.revision, n.revision), updated_at = now()"
        # A revision older than the one kept is a late duplicate (catalogue.node.updated): ignored.
        " WHERE n.revision IS NULL OR excluded.revision IS NULL OR n.revision <= excluded.revision",
        node.node_id,
        node.name,
        node.town,
        node.county,
        node.host,
        node.address,
        node.revision,
    )


async def get_nodes(conn: asyncpg.Connection, node_ids: Sequence[str]) -> dict[str, asyncpg.Record]:
    records = await conn.fetch("SELECT * FROM nodes WHERE node_id = ANY($1::text[])", node_ids)
    return {r["node_id"]: r for r in records}


# ------------------------------------------------------------------------------------------ recipients


def _recipient(record: asyncpg.Record) -> RecipientRow:
    email = record["email"]
    person = (
        Person(email, record["given_name"] or "", record["family_name"] or "", record["gender"])
        if email
        else None
    )
    return RecipientRow(
        registration_id=record["registration_id"],
        offering_id=record["offering_id"],
        status=record["status"],
        person=person,
        cancel_event_id=record["cancel_event_id"],
        cancel_event_type=record["cancel_event_type"],
        cancel_cause=record["cancel_cause"],
        cancel_reason=record["cancel_reason"],
        correlation_id=record["correlation_id"],
    )


async def get_recipient(conn: asyncpg.Connection, registration_id: str) -> RecipientRow | None:
    record = await conn.fetchrow("SELECT * FROM recipients WHERE registration_id = $1", registration_id)
    return _recipient(record) if record is not None else None


async def get_recipients(
    conn: asyncpg.Connection, registration_ids: Sequence[str]
) -> dict[str, RecipientRow]:
    records = await conn.fetch(
        "SELECT * FROM recipients WHERE registration_id = ANY($1::text[])", registration_ids
    )
    return {r["registration_id"]: _recipient(r) for r in records}


async def first_sessions(conn: asyncpg.Connection, offering_ids: Sequence[str]) -> dict[str, datetime]:
    """The first session of each offering that is known, has dates and is not cancelled."""
    records = await conn.fetch(
        "SELECT offering_id, first_starts_at FROM offerings WHERE offering_id = ANY($1::text[])"
        " AND NOT cancelled AND first_starts_at IS NOT NULL",
        offering_ids,
    )
    return {r["offering_id"]: r["first_starts_at"] for r in records}


async def live_recipients(conn: asyncpg.Connection, offering_id: str) -> list[RecipientRow]:
    records = await conn.fetch(
        "SELECT * FROM recipients WHERE offering_id = $1 AND status IN ('confirmed', 'waitlisted')"
        " AND email IS NOT NULL ORDER BY registration_id FOR UPDATE",
        offering_id,
    )
    return [_recipient(r) for r in records]


async def recipient_statuses(conn: asyncpg.Connection, registration_ids: Sequence[str]) -> dict[str, str]:
    records = await conn.fetch(
        "SELECT registration_id, status FROM recipients WHERE registration_id = ANY($1::text[])",
        registration_ids,
    )
    return {r["registration_id"]: r["status"] for r in records}


async def recipient_request_ids(conn: asyncpg.Connection, registration_ids: Sequence[str]) -> dict[str, str]:
    """Request id per registration, for the personal link in its mails."""
    records = await conn.fetch(
        "SELECT registration_id, request_id FROM recipients"
        " WHERE registration_id = ANY($1::text[]) AND request_id IS NOT NULL",
        registration_ids,
    )
    return {r["registration_id"]: r["request_id"] for r in records}


@dataclass(frozen=True, slots=True)
class RecipientUpdate:
    registration_id: str
    offering_id: str
    request_id: str
    person: Person
    status: str
    correlation_id: str | None


async def save_recipients(conn: asyncpg.Connection, updates: Sequence[RecipientUpdate]) -> None:
    """Upsert recipients (one row per registration), in id order: the order the offering handlers lock
    them in (`live_recipients`), so the two never deadlock."""
    ordered = sorted(updates, key=lambda u: u.registration_id)
    if not ordered:
        return
    await conn.execute(
        "INSERT INTO recipients (registration_id, offering_id, request_id, given_name, family_name, email,"
        " gender, status, correlation_id)"
        " SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],"
        " $7::text[], $8::text[], $9::text[])"
        " ON CONFLICT (registration_id) DO UPDATE SET request_id = excluded.request_id,"
        " given_name = excluded.given_name, family_name = excluded.family_name, email = excluded.email,"
        " gender = excluded.gender, status = excluded.status,"
        " correlation_id = coalesce(recipients.correlation_id, excluded.correlation_id), updated_at = now()",
        [u.registration_id for u in ordered],
        [u.offering_id for u in ordered],
        [u.request_id for u in ordered],
        [u.person.given_name for u in ordered],
        [u.person.family_name for u in ordered],
        [u.person.email for u in ordered],
        [u.person.gender for u in ordered],
        [u.status for u in ordered],
        [u.correlation_id for u in ordered],
    )


async def cancel_recipient(
    conn: asyncpg.Connection,
    *,
    registration_id: str,
    offering_id: str,
    event_id: str,
    event_type: str,
    cause: str,
    reason: str | None,
    correlation_id: str | None,
) -> None:
    """Mark cancelled; inserts a tombstone (no personal data) if the registration is not known yet."""
    await conn.execute(
        "INSERT INTO recipients (registration_id, offering_id, status, cancel_event_id, cancel_event_type,"
        " cancel_cause, cancel_reason, correlation_id) VALUES ($1, $2, 'cancelled', $3, $4, $5, $6, $7)"
        " ON CONFLICT (registration_id) DO UPDATE SET status = 'cancelled',"
        " cancel_event_id = excluded.cancel_event_id, cancel_event_type = excluded.cancel_event_type,"
        " cancel_cause = excluded.cancel_cause, cancel_reason = excluded.cancel_reason, updated_at = now()",
        registration_id,
        offering_id,
        event_id,
        event_type,
        cause,
        reason,
        correlation_id,
    )


# ------------------------------------------------------------------------------------------ deliveries


# Inserts pending rows from 16 parallel arrays ($1..$16); a row that exists (same id) is left as it is.
_INSERT_DELIVERIES = """
INSERT INTO deliveries (notification_id, template, trigger_event_id, trigger_type, correlation_id,
    registration_id, request_id, offering_id, email, given_name, family_name, gender, recipient_ref,
    params, message_id, next_attempt_at)
SELECT d.notification_id, d.template, d.trigger_event_id, d.trigger_type, d.correlation_id,
    d.registration_id, d.request_id, d.offering_id, d.email, d.given_name, d.family_name, d.gender,
    d.recipient_ref, d.params::jsonb, d.message_id, coalesce(d.due_at, now())
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
    $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[], $14::text[], $15::text[],
    $16::timestamptz[])
    AS d(notification_id, template, trigger_event_id, trigger_type, correlation_id, registration_id,
        request_id, offering_id, email, given_name, family_name, gender, recipient_ref, params, message_id,
        due_at)
ON CONFLICT (notification_id) DO NOTHING
"""


def _delivery_columns(deliveries: Sequence[NewDelivery]) -> list[list[Any]]:
    rows = [
        (
            d.notification_id,
            d.template,
            d.trigger_event_id,
            d.trigger_type,
            d.correlation_id,
            d.registration_id,
            d.request_id,
            d.offering_id,
            d.person.email,
            d.person.given_name,
            d.person.family_name,
            d.person.gender,
            d.recipient_ref,
            json.dumps(dict(d.params), ensure_ascii=False),
            d.message_id,
            d.due_at,
        )
        for d in deliveries
    ]
    return [list(column) for column in zip(*rows, strict=True)] if rows else [[] for _ in range(16)]


async def add_deliveries(conn: asyncpg.Connection, deliveries: Sequence[NewDelivery]) -> None:
    """Insert pending rows; a row that exists (same notification id) is left as it is."""
    if deliveries:
        await conn.execute(_INSERT_DELIVERIES, *_delivery_columns(deliveries))


async def skip_replaced_reminders(conn: asyncpg.Connection, kept: Mapping[str, str]) -> None:
    """For each registration → reminder id in `kept`: its other pending reminders are obsolete."""
    if not kept:
        return
    registrations = sorted(kept)
    await conn.execute(
        "UPDATE deliveries d SET status = 'skipped', last_error = 'Termin verschoben', updated_at = now()"
        " FROM unnest($1::text[], $2::text[]) AS k(registration_id, keep)"
        # `= ANY($1)` lets the registration index find the rows; joined only on `k`, the planner scanned
        # every pending mail (thousands in a backlog) once per registration of the batch.
        " WHERE d.registration_id = ANY($1::text[]) AND d.registration_id = k.registration_id"
        " AND d.template = 'reminder' AND d.status = 'pending' AND d.notification_id <> k.keep",
        registrations,
        [kept[r] for r in registrations],
    )


async def known_addresses(conn: asyncpg.Connection, emails: Sequence[str]) -> set[str]:
    """Those of the (normalised) `emails` that already have a mail in the log that went or will go out."""
    records = await conn.fetch(
        "SELECT DISTINCT lower(btrim(email)) AS email FROM deliveries"
        " WHERE lower(btrim(email)) = ANY($1::text[]) AND status IN ('pending', 'sending', 'sent')",
        list(emails),
    )
    return {r["email"] for r in records}


async def skip_pending_reminders(
    conn: asyncpg.Connection,
    *,
    registration_id: str | None = None,
    offering_id: str | None = None,
    keep: str | None = None,
    why: str,
) -> None:
    """Pending reminders that must not go out any more (cancelled, or the dates moved)."""
    await conn.execute(
        "UPDATE deliveries SET status = 'skipped', last_error = $4, updated_at = now()"
        " WHERE template = 'reminder' AND status = 'pending'"
        " AND ($1::text IS NULL OR registration_id = $1) AND ($2::text IS NULL OR offering_id = $2)"
        " AND ($3::text IS NULL OR notification_id <> $3)",
        registration_id,
        offering_id,
        keep,
        why,
    )


def _delivery(record: asyncpg.Record) -> DeliveryRow:
    return DeliveryRow(
        notification_id=record["notification_id"],
        template=record["template"],
        trigger_event_id=record["trigger_event_id"],
        trigger_type=record["trigger_type"],
        correlation_id=record["correlation_id"],
        registration_id=record["registration_id"],
        request_id=record["request_id"],
        offering_id=record["offering_id"],
        person=Person(record["email"], record["given_name"], record["family_name"], record["gender"]),
        recipient_ref=record["recipient_ref"],
        params=json.loads(record["params"]),
        attempts=record["attempts"],
        message_id=record["message_id"],
        lease_token=record["lease_token"],
    )


async def claim_due(conn: asyncpg.Connection, limit: int, lease_seconds: float) -> list[DeliveryRow]:
    """Take up to `limit` due rows for this sender: pending ones whose time has come and `sending` ones
    whose lease ran out (their sender died). Other replicas skip the locked rows."""
    token = uuid.uuid4()
    records = await conn.fetch(
        "WITH due AS (SELECT notification_id FROM deliveries"
        " WHERE status IN ('pending', 'sending') AND next_attempt_at <= now()"
        " ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED)"
        " UPDATE deliveries d SET status = 'sending', lease_token = $2, attempts = d.attempts + 1,"
        " next_attempt_at = now() + make_interval(secs => $3), updated_at = now()"
        " FROM due WHERE d.notification_id = due.notification_id RETURNING d.*",
        limit,
        token,
        lease_seconds,
    )
    return [_delivery(r) for r in records]


async def finish(conn: asyncpg.Connection, row: DeliveryRow, status: str, error: str | None = None) -> bool:
    """Final state (sent / failed / skipped), only if this sender still holds the lease."""
    result: str = await conn.execute(
        "UPDATE deliveries SET status = $3, last_error = $4, lease_token = NULL, updated_at = now(),"
        " sent_at = CASE WHEN $3 = 'sent' THEN now() ELSE sent_at END"
        " WHERE notification_id = $1 AND lease_token = $2 AND status = 'sending'",
        row.notification_id,
        row.lease_token,
        status,
        error,
    )
    return result.endswith(" 1")


async def finish_sent(conn: asyncpg.Connection, rows: Sequence[DeliveryRow]) -> set[str]:
    """Mark many rows `sent` in one statement, each only if this sender still holds its lease; returns
    the ids that were marked."""
    ordered = sorted(rows, key=lambda r: r.notification_id)  # one lock order for every caller
    records = await conn.fetch(
        "UPDATE deliveries d SET status = 'sent', last_error = NULL, lease_token = NULL,"
        " updated_at = now(), sent_at = now()"
        " FROM unnest($1::text[], $2::uuid[]) AS m(notification_id, lease_token)"
        # `= ANY($1)` for the primary key, as in `skip_replaced_reminders`.
        " WHERE d.notification_id = ANY($1::text[]) AND d.notification_id = m.notification_id"
        " AND d.lease_token = m.lease_token AND d.status = 'sending' RETURNING d.notification_id",
        [r.notification_id for r in ordered],
        [r.lease_token for r in ordered],
    )
    return {r["notification_id"] for r in records}


async def retry_later(conn: asyncpg.Connection, row: DeliveryRow, delay_seconds: float, error: str) -> bool:
    result: str = await conn.execute(
        "UPDATE deliveries SET status = 'pending', last_error = $3, lease_token = NULL, updated_at = now(),"
        " next_attempt_at = now() + make_interval(secs => $4)"
        " WHERE notification_id = $1 AND lease_token = $2 AND status = 'sending'",
        row.notification_id,
        row.lease_token,
        error,
        delay_seconds,
    )
    return result.endswith(" 1")


async def list_deliveries(
    conn: asyncpg.Connection, *, registration_id: str | None, offering_id: str | None, limit: int
) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            "SELECT * FROM deliveries WHERE ($1::text IS NULL OR registration_id = $1)"
            " AND ($2::text IS NULL OR offering_id = $2) ORDER BY created_at DESC, notification_id LIMIT $3",
            registration_id,
            offering_id,
            limit,
        )
    )
