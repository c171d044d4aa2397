"""SQL of the reporting schema: the raw log, the projections (applied in batches) and the fact queries."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import asyncpg

from qti_contracts import RegistrationSource
from services.reporting.domain import (
    UNKNOWN,
    AlertFact,
    Facts,
    NotificationFact,
    OfferingFact,
    RegistrationFact,
    RequestFact,
    county_code,
)

PROJECTION_TABLES: Final = (
    "nodes",
    "offerings",
    "offering_sessions",
    "offering_cancellations",
    "requests",
    "registrations",
    "attendance",
    "notifications",
    "feedback_answers",
    "alert_subscriptions",
)


@dataclass(frozen=True)
class ScrubbedEvent:
    event_id: str
    type: str
    occurred_at: datetime
    data: dict[str, Any]


async def append_log_many(conn: asyncpg.Connection, events: Sequence[ScrubbedEvent]) -> list[ScrubbedEvent]:
    """Append a batch to the raw log in one statement; returns the events that were not there yet."""
    rows = await conn.fetch(
        "INSERT INTO event_log (event_id, type, occurred_at, data)"
        " SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::text[]::jsonb[])"
        " ON CONFLICT (event_id) DO NOTHING RETURNING event_id",
        [e.event_id for e in events],
        [e.type for e in events],
        [e.occurred_at for e in events],
        [json.dumps(e.data) for e in events],
    )
    fresh = {row["event_id"] for row in rows}
    return [e for e in events if e.event_id in fresh]


async def log_batches(conn: asyncpg.Connection, batch_size: int = 2000) -> Any:
    """Yield the raw log in order of arrival, in batches (server-side cursor; call in a transaction)."""
    batch: list[ScrubbedEvent] = []
    async for row in conn.cursor("SELECT event_id, type, occurred_at, data FROM event_log ORDER BY seq"):
        batch.append(ScrubbedEvent(row["event_id"], row["type"], row["occurred_at"], json.loads(row["data"])))
        if len(batch) >= batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


# --------------------------------------------------------------------------------------------------
# Projections: commutative upserts (flags OR-ed, GREATEST/LEAST for values, revision / time guards)
# --------------------------------------------------------------------------------------------------

_UPSERT_REGISTRATION: Final = """
INSERT INTO registrations AS r (registration_id, offering_id, request_id, first_seen_at, person_ref,
    company_ref, company_county, size_class, automotive_supplier, gender, age_band,
    confirmed, waitlisted, cancelled, completed_units, completed, certificate_eligible, source)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)
ON CONFLICT (registration_id) DO UPDATE SET
    offering_id = GREATEST(r.offering_id, EXCLUDED.offering_id),
    request_id = GREATEST(r.request_id, EXCLUDED.request_id),
    first_seen_at = LEAST(r.first_seen_at, EXCLUDED.first_seen_at),
    person_ref = GREATEST(r.person_ref, EXCLUDED.person_ref),
    company_ref = GREATEST(r.company_ref, EXCLUDED.company_ref),
    company_county = GREATEST(r.company_county, EXCLUDED.company_county),
    size_class = GREATEST(r.size_class, EXCLUDED.size_class),
    automotive_supplier = GREATEST(r.automotive_supplier, EXCLUDED.automotive_supplier),
    gender = GREATEST(r.gender, EXCLUDED.gender),
    age_band = GREATEST(r.age_band, EXCLUDED.age_band),
    confirmed = r.confirmed OR EXCLUDED.confirmed,
    waitlisted = r.waitlisted OR EXCLUDED.waitlisted,
    cancelled = r.cancelled OR EXCLUDED.cancelled,
    completed_units = GREATEST(r.completed_units, EXCLUDED.completed_units),
    completed = r.completed OR EXCLUDED.completed,
    certificate_eligible = r.certificate_eligible OR EXCLUDED.certificate_eligible,
    source = GREATEST(r.source, EXCLUDED.source)
"""

_UPSERT_REQUEST: Final = """
INSERT INTO requests AS q (request_id, offering_id, requested_at, outcome, reason, size_class)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (request_id) DO UPDATE SET
    offering_id = GREATEST(q.offering_id, EXCLUDED.offering_id),
    requested_at = LEAST(q.requested_at, EXCLUDED.requested_at),
    outcome = GREATEST(q.outcome, EXCLUDED.outcome),
    reason = GREATEST(q.reason, EXCLUDED.reason),
    size_class = GREATEST(q.size_class, EXCLUDED.size_class)
"""

_UPSERT_NOTIFICATION: Final = """
INSERT INTO notifications AS n (notification_id, offering_id, first_seen_at, sent, failed_permanent, template)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (notification_id) DO UPDATE SET
    offering_id = GREATEST(n.offering_id, EXCLUDED.offering_id),
    template = GREATEST(n.template, EXCLUDED.template),
    first_seen_at = LEAST(n.first_seen_at, EXCLUDED.first_seen_at),
    sent = n.sent OR EXCLUDED.sent,
    failed_permanent = n.failed_permanent OR EXCLUDED.failed_permanent
"""

_UPSERT_ATTENDANCE: Final = """
INSERT INTO attendance AS a (registration_id, session_id, offering_id, attended, recorded_at, event_id)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (registration_id, session_id) DO UPDATE SET
    attended = EXCLUDED.attended, recorded_at = EXCLUDED.recorded_at, event_id = EXCLUDED.event_id
WHERE (a.recorded_at, a.event_id) < (EXCLUDED.recorded_at, EXCLUDED.event_id)
"""

_INSERT_FEEDBACK: Final = """
INSERT INTO feedback_answers (event_id, offering_id, received_on, rating, usefulness, would_recommend)
VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (event_id) DO NOTHING
"""

_UPSERT_NODE: Final = """
INSERT INTO nodes AS n (node_id, name, town, county, published_at, event_id)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (node_id) DO UPDATE SET
    name = EXCLUDED.name, town = EXCLUDED.town, county = EXCLUDED.county,
    published_at = EXCLUDED.published_at, event_id = EXCLUDED.event_id
WHERE (n.published_at, n.event_id) < (EXCLUDED.published_at, EXCLUDED.event_id)
"""

_UPSERT_OFFERING: Final = """
INSERT INTO offerings AS o (offering_id, revision, node_id, kind, topic, capacity, status, starts_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (offering_id) DO UPDATE SET
    revision = EXCLUDED.revision, node_id = EXCLUDED.node_id, kind = EXCLUDED.kind,
    topic = EXCLUDED.topic, capacity = EXCLUDED.capacity, status = EXCLUDED.status,
    starts_at = EXCLUDED.starts_at
WHERE o.revision < EXCLUDED.revision
RETURNING offering_id
"""

# Any order, duplicates allowed: each timestamp is the earliest seen, an end is final.
_UPSERT_ALERT: Final = """
INSERT INTO alert_subscriptions AS a (subscription_id, kind, topics, counties, subscribed_at, confirmed_at,
                                      ended_at, end_cause)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (subscription_id) DO UPDATE SET
    subscribed_at = LEAST(a.subscribed_at, EXCLUDED.subscribed_at),
    confirmed_at = LEAST(a.confirmed_at, EXCLUDED.confirmed_at),
    ended_at = LEAST(a.ended_at, EXCLUDED.ended_at),
    end_cause = COALESCE(a.end_cause, EXCLUDED.end_cause)
"""


def _alert_row(event: ScrubbedEvent) -> tuple[Any, ...]:
    d, at = event.data, event.occurred_at
    ended = event.type == "notification.alert.ended"
    return (
        d["subscription_id"],
        d["kind"],
        list(d.get("topics") or []),
        list(d.get("counties") or []),
        at if event.type == "notification.alert.subscribed" else None,
        at if event.type == "notification.alert.confirmed" else None,
        at if ended else None,
        d.get("cause") if ended else None,
    )


_REGISTRATION_FIELDS: Final = 18
_SOURCES: Final = frozenset(source.value for source in RegistrationSource)
_REGISTRATION_TYPES: Final = frozenset(
    {"registration.confirmed", "registration.waitlisted", "registration.cancelled", "registration.completed"}
)


def _registration_row(event: ScrubbedEvent) -> tuple[Any, ...] | None:
    d = event.data
    if event.type not in _REGISTRATION_TYPES:
        return None
    row: list[Any] = [None] * _REGISTRATION_FIELDS
    row[0], row[1], row[3] = d["registration_id"], d.get("offering_id"), event.occurred_at
    row[11:17] = [False, False, False, None, False, False]
    if event.type in ("registration.confirmed", "registration.waitlisted"):
        person, company = d["person"], d["company"]
        row[2] = d["request_id"]
        row[4], row[9], row[10] = person["person_ref"], person["gender"], person["age_band"]
        # county_code again: the log may hold free text from before the closed list.
        row[5], row[6] = company["company_ref"], county_code(company.get("county"))
        row[7], row[8] = company["size_class"], company["automotive_supplier"]
        row[11] = event.type == "registration.confirmed"
        row[12] = event.type == "registration.waitlisted"
        row[17] = d.get("source") if d.get("source") in _SOURCES else None
    elif event.type == "registration.cancelled":
        row[13] = True
    elif event.type == "registration.completed":
        row[14], row[15], row[16] = d["attended_units"], d["completed"], d["certificate_eligible"]
    else:
        return None
    return tuple(row)


def _request_row(event: ScrubbedEvent) -> tuple[Any, ...] | None:
    d = event.data
    if event.type == "registration.requested":
        return (event.event_id, d["offering_id"], event.occurred_at, None, None, d["company"]["size_class"])
    if event.type == "registration.rejected":
        return (d["request_id"], d.get("offering_id"), event.occurred_at, "rejected", d["reason"], None)
    if event.type in ("registration.confirmed", "registration.waitlisted") and not d["from_waitlist"]:
        outcome = "confirmed" if event.type == "registration.confirmed" else "waitlisted"
        size_class = d["company"]["size_class"]
        return (d["request_id"], d["offering_id"], event.occurred_at, outcome, None, size_class)
    return None


@dataclass
class _ProjectionRows:
    """The upsert rows of one batch, by projection."""

    registrations: list[tuple[Any, ...]]
    requests: list[tuple[Any, ...]]
    notifications: list[tuple[Any, ...]]
    attendance: list[tuple[Any, ...]]
    nodes: list[tuple[Any, ...]]
    cancellations: list[tuple[Any, ...]]
    offerings: dict[str, ScrubbedEvent]
    feedback: list[tuple[Any, ...]] = field(default_factory=list)
    alerts: list[tuple[Any, ...]] = field(default_factory=list)


def _collect(events: Sequence[ScrubbedEvent]) -> _ProjectionRows:
    rows = _ProjectionRows([], [], [], [], [], [], {})
    for event in events:
        if event.data.get("invalid"):
            continue
        if event.type.startswith("registration."):
            _collect_registration(rows, event)
        else:
            _collect_other(rows, event)
    return rows


def _collect_registration(rows: _ProjectionRows, event: ScrubbedEvent) -> None:
    d = event.data
    if (reg := _registration_row(event)) is not None:
        rows.registrations.append(reg)
    if (req := _request_row(event)) is not None:
        rows.requests.append(req)
    if event.type == "registration.feedback.submitted":
        rows.feedback.append(
            (
                event.event_id,
                d["offering_id"],
                event.occurred_at.date(),
                d["rating"],
                d["usefulness"],
                d["would_recommend"],
            )
        )
    if event.type == "registration.attendance_recorded":
        rows.attendance.append(
            (
                d["registration_id"],
                d["session_id"],
                d["offering_id"],
                d["attended"],
                event.occurred_at,
                event.event_id,
            )
        )


def _collect_other(rows: _ProjectionRows, event: ScrubbedEvent) -> None:
    d, kind = event.data, event.type
    if kind in ("notification.sent", "notification.failed"):
        permanent_failure = bool(d["failed"] and d["permanent"])
        rows.notifications.append(
            (
                d["notification_id"],
                d.get("offering_id"),
                event.occurred_at,
                not d["failed"],
                permanent_failure,
                d.get("template"),
            )
        )
    elif kind.startswith("notification.alert."):
        rows.alerts.append(_alert_row(event))
    elif kind in ("catalogue.offering.published", "catalogue.offering.updated"):
        known = rows.offerings.get(d["offering_id"])
        if known is None or known.data["revision"] < d["revision"]:
            rows.offerings[d["offering_id"]] = event
    elif kind == "catalogue.offering.cancelled":
        rows.cancellations.append((d["offering_id"],))
    elif kind in ("catalogue.node.published", "catalogue.node.updated"):
        county = county_code(d.get("county")) or UNKNOWN
        rows.nodes.append((d["node_id"], d["name"], None, county, event.occurred_at, event.event_id))


async def apply(conn: asyncpg.Connection, events: Sequence[ScrubbedEvent]) -> None:
    """Update the projections for `events` (any order, duplicates allowed: the result is the same)."""
    rows = _collect(events)
    for sql, batch in (
        (_UPSERT_REGISTRATION, rows.registrations),
        (_UPSERT_REQUEST, rows.requests),
        (_UPSERT_NOTIFICATION, rows.notifications),
        (_UPSERT_ATTENDANCE, rows.attendance),
        (_UPSERT_NODE, rows.nodes),
        (_INSERT_FEEDBACK, rows.feedback),
        (_UPSERT_ALERT, rows.alerts),
        (
            "INSERT INTO offering_cancellations (offering_id) VALUES ($1) ON CONFLICT DO NOTHING",
            rows.cancellations,
        ),
    ):
        if len(batch) == 1:
            await conn.execute(sql, *batch[0])
        elif batch:
            # Rows in key order: replicas upserting overlapping batches then wait instead of deadlocking.
            await conn.executemany(sql, sorted(batch, key=_lock_order))
    for _, event in sorted(rows.offerings.items()):  # key order, like the upserts above
        await _apply_offering(conn, event)


def _lock_order(row: tuple[Any, ...]) -> tuple[str, ...]:
    return tuple(str(value) for value in row[:2])


async def _apply_offering(conn: asyncpg.Connection, event: ScrubbedEvent) -> None:
    d = event.data
    sessions = d["sessions"]
    starts = [datetime.fromisoformat(s["starts_at"]) for s in sessions]
    changed = await conn.fetchval(
        _UPSERT_OFFERING,
        d["offering_id"],
        d["revision"],
        d["node_id"],
        d["kind"],
        d["topic"],
        d["capacity"],
        d["status"],
        min(starts) if starts else None,
    )
    if changed is None:
        return
    await conn.execute("DELETE FROM offering_sessions WHERE offering_id = $1", d["offering_id"])
    await conn.executemany(
        "INSERT INTO offering_sessions (offering_id, session_id, starts_at, teaching_units)"
        " VALUES ($1, $2, $3, $4)",
        [
            (d["offering_id"], s["session_id"], start, s["teaching_units"])
            for s, start in zip(sessions, starts, strict=True)
        ],
    )


async def truncate_projections(conn: asyncpg.Connection) -> None:
    await conn.execute(f"TRUNCATE {', '.join(PROJECTION_TABLES)}")


# --------------------------------------------------------------------------------------------------
# Facts for the indicators
# --------------------------------------------------------------------------------------------------


async def load_facts(conn: asyncpg.Connection) -> Facts:
    return Facts(
        await _load_offerings(conn),
        await _load_registrations(conn),
        await _load_requests(conn),
        await _load_notifications(conn),
        await _load_alerts(conn),
    )


async def _load_offerings(conn: asyncpg.Connection) -> dict[str, OfferingFact]:
    sessions: dict[str, list[tuple[datetime, int]]] = defaultdict(list)
    for row in await conn.fetch(
        "SELECT offering_id, starts_at, teaching_units FROM offering_sessions ORDER BY offering_id, starts_at"
    ):
        sessions[row["offering_id"]].append((row["starts_at"], row["teaching_units"]))
    offerings: dict[str, OfferingFact] = {}
    for row in await conn.fetch(
        """SELECT o.*, n.name AS node_name, n.county, c.offering_id IS NOT NULL AS cancelled
           FROM offerings o
           LEFT JOIN nodes n USING (node_id)
           LEFT JOIN offering_cancellations c USING (offering_id)"""
    ):
        offerings[row["offering_id"]] = OfferingFact(
            offering_id=row["offering_id"],
            node_id=row["node_id"],
            node_name=row["node_name"] or row["node_id"],
            county=county_code(row["county"]) or UNKNOWN,
            topic=row["topic"],
            kind=row["kind"],
            capacity=row["capacity"],
            starts_at=row["starts_at"],
            held=row["status"] in ("published", "completed") and not row["cancelled"],
            sessions=tuple(sessions.get(row["offering_id"], ())),
        )
    return offerings


_REGISTRATIONS: Final = """
SELECT r.*, COALESCE(r.completed_units, att.units, 0) AS attended_units
FROM registrations r
LEFT JOIN (
    SELECT a.registration_id, sum(s.teaching_units) AS units
    FROM attendance a
    JOIN offering_sessions s ON s.offering_id = a.offering_id AND s.session_id = a.session_id
    WHERE a.attended
    GROUP BY a.registration_id
) att USING (registration_id)
ORDER BY r.registration_id
"""


async def _load_registrations(conn: asyncpg.Connection) -> list[RegistrationFact]:
    return [
        RegistrationFact(
            registration_id=row["registration_id"],
            offering_id=row["offering_id"],
            first_seen_at=row["first_seen_at"],
            person_ref=row["person_ref"],
            company_ref=row["company_ref"],
            company_county=county_code(row["company_county"]),
            size_class=row["size_class"],
            automotive_supplier=row["automotive_supplier"],
            gender=row["gender"],
            age_band=row["age_band"],
            confirmed=row["confirmed"],
            waitlisted=row["waitlisted"],
            cancelled=row["cancelled"],
            attended_units=int(row["attended_units"] or 0),
            completed=row["completed"],
            certificate_eligible=row["certificate_eligible"],
            source=row["source"],
        )
        for row in await conn.fetch(_REGISTRATIONS)
    ]


async def _load_requests(conn: asyncpg.Connection) -> list[RequestFact]:
    return [
        RequestFact(
            row["request_id"],
            row["offering_id"],
            row["requested_at"],
            row["outcome"],
            row["reason"],
            row["size_class"],
        )
        for row in await conn.fetch("SELECT * FROM requests ORDER BY request_id")
    ]


async def _load_notifications(conn: asyncpg.Connection) -> list[NotificationFact]:
    return [
        NotificationFact(
            row["notification_id"],
            row["offering_id"],
            row["first_seen_at"],
            row["sent"],
            row["failed_permanent"],
            row["template"],
        )
        for row in await conn.fetch("SELECT * FROM notifications ORDER BY notification_id")
    ]


async def _load_alerts(conn: asyncpg.Connection) -> list[AlertFact]:
    """Confirmed subscriptions (an unconfirmed one is no sign-up and no demand)."""

    def one(values: list[str]) -> str | None:
        return values[0] if len(values) == 1 else None

    return [
        AlertFact(
            row["subscription_id"],
            row["kind"],
            one(row["topics"]),
            one(row["counties"]),
            row["confirmed_at"],
            row["end_cause"],
        )
        for row in await conn.fetch(
            "SELECT * FROM alert_subscriptions WHERE confirmed_at IS NOT NULL ORDER BY subscription_id"
        )
    ]


async def node_names(conn: asyncpg.Connection) -> dict[str, str]:
    return {row["node_id"]: row["name"] for row in await conn.fetch("SELECT node_id, name FROM nodes")}


# --------------------------------------------------------------------------------------------------
# KPI debounce state and snapshots
# --------------------------------------------------------------------------------------------------


async def kpi_pending(conn: asyncpg.Connection, debounce_seconds: float) -> int | None:
    """The number of logged events if it changed since the last KPI event and that event is at least
    `debounce_seconds` old, else None. Locks the state row: replicas take turns.

    A count, not the highest `seq`: sequence values are drawn before commit, so a batch holding lower
    values may commit after a higher one has been announced; the count still changes then.
    """
    row = await conn.fetchrow(
        "SELECT (SELECT count(*) FROM event_log) AS logged, emitted_count,"
        " emitted_at IS NULL OR emitted_at <= clock_timestamp() - make_interval(secs => $1) AS due"
        " FROM kpi_state WHERE id = 1 FOR UPDATE",
        debounce_seconds,
    )
    if row is None or row["logged"] == row["emitted_count"] or not row["due"]:
        return None
    return int(row["logged"])


async def mark_kpi_emitted(conn: asyncpg.Connection, logged: int) -> None:
    await conn.execute(
        "UPDATE kpi_state SET emitted_count = $1, emitted_at = clock_timestamp() WHERE id = 1", logged
    )


async def reset_kpi_state(conn: asyncpg.Connection) -> None:
    await conn.execute("UPDATE kpi_state SET emitted_count = -1 WHERE id = 1")


@dataclass(frozen=True)
class SnapshotFile:
    media_type: str
    sha256: str
    body: bytes


@dataclass(frozen=True)
class Snapshot:
    """A frozen report: the JSON document first, further renderings (the PDF) beside it."""

    snapshot_id: str
    period: str
    files: tuple[SnapshotFile, ...]


async def save_snapshot(conn: asyncpg.Connection, snapshot: Snapshot) -> datetime:
    document, *others = snapshot.files
    created: datetime = await conn.fetchval(
        "INSERT INTO snapshots (snapshot_id, period, media_type, sha256, body) VALUES ($1, $2, $3, $4, $5)"
        " RETURNING created_at",
        snapshot.snapshot_id,
        snapshot.period,
        document.media_type,
        document.sha256,
        document.body,
    )
    await conn.executemany(
        "INSERT INTO snapshot_files (snapshot_id, media_type, sha256, body) VALUES ($1, $2, $3, $4)",
        [(snapshot.snapshot_id, f.media_type, f.sha256, f.body) for f in others],
    )
    return created


async def get_snapshot(
    conn: asyncpg.Connection, snapshot_id: str, media_type: str | None = None
) -> asyncpg.Record | None:
    """The stored file of a snapshot: its JSON document, or (by media type) another rendering."""
    if media_type is None:
        return await conn.fetchrow("SELECT * FROM snapshots WHERE snapshot_id = $1", snapshot_id)
    return await conn.fetchrow(
        "SELECT * FROM snapshot_files WHERE snapshot_id = $1 AND media_type = $2", snapshot_id, media_type
    )


async def list_snapshots(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return list(
        await conn.fetch("SELECT snapshot_id, period, created_at, sha256 FROM snapshots ORDER BY created_at")
    )
