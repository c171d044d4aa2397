"""SQL of the catalogue. Every function takes a connection, so callers choose the transaction."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import asyncpg

from qti_contracts.events import KIND_LABELS, TOPIC_LABELS, OfferingKind, OfferingStatus, Topic
from qti_runtime.db import unnest_columns
from qti_runtime.german import BERLIN
from services.catalogue.domain import Node, Offering, OfferingSession, offering_payload, teaching_units

_OFFERING_COLUMNS = (
    "o.offering_id, o.node_id, o.kind, o.topic, o.title, o.description, o.target_group, o.capacity,"
    " o.registration_deadline, o.fee_eur, o.max_per_company, o.waitlist_limit, o.status, o.revision,"
    " o.etag, o.cancel_reason, o.created_at, o.updated_at, o.published_at"
)


def iso_local(moment: datetime | None) -> str | None:
    """ISO 8601 in Europe/Berlin local time with offset (the API's format for dates of offerings)."""
    return moment.astimezone(BERLIN).isoformat() if moment is not None else None


def session_fields(sessions: Sequence[OfferingSession]) -> list[dict[str, Any]]:
    """JSON-ready `SessionOut` items."""
    return [
        {
            "session_id": str(s.session_id),
            "starts_at": iso_local(s.starts_at),
            "ends_at": iso_local(s.ends_at),
            "location": s.location,
            "teaching_units": teaching_units(s),
        }
        for s in sessions
    ]


@dataclass(frozen=True, slots=True)
class Occupancy:
    """Seats as last reported by registration; `as_of` None = no registration seen yet."""

    confirmed: int = 0
    waitlisted: int = 0
    version: int = 0
    as_of: datetime | None = None


@dataclass(frozen=True, slots=True)
class StoredOffering:
    offering: Offering
    etag: str
    cancel_reason: str | None
    created_at: datetime
    updated_at: datetime
    published_at: datetime | None
    occupancy: Occupancy = field(default_factory=Occupancy)
    node: Node | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class OfferingFilter:
    """Criteria of a listing; None / empty = no restriction."""

    statuses: Sequence[OfferingStatus]
    node_ids: Sequence[UUID] = ()
    county: str | None = None
    topics: Sequence[Topic] = ()
    kinds: Sequence[OfferingKind] = ()
    ends_from: datetime | None = None
    starts_before: datetime | None = None
    text: str | None = None
    available: bool | None = None


def compute_digest(payload: dict[str, Any]) -> str:
    """A short stable digest of a JSON-ready payload."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def compute_etag(offering: Offering) -> str:
    """A new opaque tag per stored state: the revision plus a digest of the full payload."""
    return f"{offering.revision}-{compute_digest(offering_payload(offering))}"


# --- nodes -------------------------------------------------------------------------------------


_NODE_FIELDS = (
    "node_id",
    "name",
    "town",
    "county",
    "host",
    "address",
    "opened_on",
    "description",
    "contact_name",
    "contact_email",
    "contact_phone",
    "revision",
)
_NODE_COLUMNS = ", ".join(_NODE_FIELDS)


@dataclass(frozen=True, slots=True)
class NodeListing:
    """A node with the number of its published offerings that have not ended yet."""

    node: Node
    upcoming_offerings: int


def _node(record: asyncpg.Record, prefix: str = "") -> Node:
    return Node(**{name: record[f"{prefix}{name}"] for name in _NODE_FIELDS})


def _node_values(node: Node) -> tuple[Any, ...]:
    return tuple(getattr(node, name) for name in _NODE_FIELDS)


async def insert_node_if_missing(conn: asyncpg.Connection, node: Node) -> bool:
    """True if the node was created, False if a node with this id already existed (left unchanged)."""
    inserted = await conn.fetchval(
        f"INSERT INTO nodes ({_NODE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
        " ON CONFLICT (node_id) DO NOTHING RETURNING true",
        *_node_values(node),
    )
    return bool(inserted)


async def update_node(conn: asyncpg.Connection, node: Node) -> None:
    """Write the full new state of an existing node."""
    assignments = ", ".join(f"{name} = ${index}" for index, name in enumerate(_NODE_FIELDS, start=1))
    await conn.execute(
        f"UPDATE nodes SET {assignments}, updated_at = now() WHERE node_id = $1", *_node_values(node)
    )


_UPCOMING = (
    "(SELECT count(*) FROM offerings o WHERE o.node_id = nodes.node_id AND o.status = 'published'"
    " AND o.last_ends_at >= $1) AS upcoming_offerings"
)


async def list_nodes(conn: asyncpg.Connection, now: datetime) -> list[NodeListing]:
    """The active nodes in the order they opened, each with its count of upcoming offerings."""
    records = await conn.fetch(
        f"SELECT {_NODE_COLUMNS}, {_UPCOMING} FROM nodes WHERE status = 'active' ORDER BY opened_on, node_id",
        now,
    )
    return [NodeListing(_node(record), record["upcoming_offerings"]) for record in records]


async def get_node_listing(conn: asyncpg.Connection, node_id: UUID, now: datetime) -> NodeListing | None:
    record = await conn.fetchrow(
        f"SELECT {_NODE_COLUMNS}, {_UPCOMING} FROM nodes WHERE node_id = $2", now, node_id
    )
    return NodeListing(_node(record), record["upcoming_offerings"]) if record else None


async def get_node(conn: asyncpg.Connection, node_id: UUID, *, for_update: bool = False) -> Node | None:
    lock = " FOR UPDATE" if for_update else ""
    record = await conn.fetchrow(f"SELECT {_NODE_COLUMNS} FROM nodes WHERE node_id = $1{lock}", node_id)
    return _node(record) if record else None


# --- offerings ---------------------------------------------------------------------------------


def _session(record: asyncpg.Record) -> OfferingSession:
    return OfferingSession(
        session_id=record["session_id"],
        starts_at=record["starts_at"],
        ends_at=record["ends_at"],
        location=record["location"],
    )


def _stored(
    record: asyncpg.Record, sessions: Sequence[OfferingSession], *, with_extras: bool = False
) -> StoredOffering:
    offering = Offering(
        offering_id=record["offering_id"],
        node_id=record["node_id"],
        kind=OfferingKind(record["kind"]),
        topic=Topic(record["topic"]),
        title=record["title"],
        description=record["description"],
        target_group=record["target_group"],
        sessions=tuple(sessions),
        capacity=record["capacity"],
        registration_deadline=record["registration_deadline"],
        fee_eur=Decimal(record["fee_eur"]),
        max_per_company=record["max_per_company"],
        waitlist_limit=record["waitlist_limit"],
        status=OfferingStatus(record["status"]),
        revision=record["revision"],
    )
    occupancy = Occupancy()
    node = None
    if with_extras:
        occupancy = Occupancy(
            confirmed=record["oc_confirmed"] or 0,
            waitlisted=record["oc_waitlisted"] or 0,
            version=record["oc_version"] or 0,
            as_of=record["oc_as_of"],
        )
        node = _node(record, "n_")
    return StoredOffering(
        offering=offering,
        etag=record["etag"],
        cancel_reason=record["cancel_reason"],
        created_at=record["created_at"],
        updated_at=record["updated_at"],
        published_at=record["published_at"],
        occupancy=occupancy,
        node=node,
    )


async def _sessions_of(conn: asyncpg.Connection, ids: Sequence[UUID]) -> dict[UUID, list[OfferingSession]]:
    records = await conn.fetch(
        "SELECT offering_id, session_id, starts_at, ends_at, location FROM sessions"
        " WHERE offering_id = ANY($1::uuid[]) ORDER BY offering_id, position",
        list(ids),
    )
    result: dict[UUID, list[OfferingSession]] = {offering_id: [] for offering_id in ids}
    for record in records:
        result[record["offering_id"]].append(_session(record))
    return result


_EXTRA_COLUMNS = (
    ", oc.confirmed AS oc_confirmed, oc.waitlisted AS oc_waitlisted, oc.version AS oc_version,"
    " oc.as_of AS oc_as_of, " + ", ".join(f"n.{name} AS n_{name}" for name in _NODE_FIELDS)
)
_EXTRA_JOINS = (
    " JOIN nodes n ON n.node_id = o.node_id LEFT JOIN occupancy oc ON oc.offering_id = o.offering_id"
)


async def get_offering(
    conn: asyncpg.Connection, offering_id: UUID, *, for_update: bool = False
) -> StoredOffering | None:
    """The offering with node and seat snapshot; `for_update` locks the offering row."""
    lock = " FOR UPDATE OF o" if for_update else ""
    record = await conn.fetchrow(
        f"SELECT {_OFFERING_COLUMNS}{_EXTRA_COLUMNS} FROM offerings o{_EXTRA_JOINS}"
        f" WHERE o.offering_id = $1{lock}",
        offering_id,
    )
    if record is None:
        return None
    sessions = await _sessions_of(conn, [offering_id])
    return _stored(record, sessions[offering_id], with_extras=True)


async def _write_sessions(conn: asyncpg.Connection, offering: Offering) -> None:
    await conn.executemany(
        "INSERT INTO sessions"
        " (offering_id, session_id, position, starts_at, ends_at, location, teaching_units)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7)",
        [
            (
                offering.offering_id,
                session.session_id,
                position,
                session.starts_at,
                session.ends_at,
                session.location,
                teaching_units(session),
            )
            for position, session in enumerate(offering.sessions)
        ],
    )


def _bounds(offering: Offering) -> tuple[datetime, datetime]:
    return (
        min(session.starts_at for session in offering.sessions),
        max(session.ends_at for session in offering.sessions),
    )


def _values(offering: Offering) -> tuple[Any, ...]:
    first, last = _bounds(offering)
    return (
        offering.offering_id,
        offering.node_id,
        offering.kind.value,
        offering.topic.value,
        offering.title,
        offering.description,
        offering.target_group,
        offering.capacity,
        offering.registration_deadline,
        offering.fee_eur,
        offering.max_per_company,
        offering.waitlist_limit,
        offering.status.value,
        offering.revision,
        compute_etag(offering),
        first,
        last,
        # The listing's pre-formatted fields (see `search_offerings_json`).
        json.dumps(session_fields(offering.sessions), ensure_ascii=False),
        sum(teaching_units(session) for session in offering.sessions),
        iso_local(first),
        iso_local(last),
        iso_local(offering.registration_deadline),
    )


async def insert_offering(conn: asyncpg.Connection, offering: Offering, *, if_missing: bool = False) -> bool:
    """Store a new offering; with `if_missing`, an existing id is left unchanged and False returned."""
    conflict = " ON CONFLICT (offering_id) DO NOTHING" if if_missing else ""
    published = " , CASE WHEN $13 = 'published' THEN now() END"
    inserted = await conn.fetchval(
        "INSERT INTO offerings (offering_id, node_id, kind, topic, title, description, target_group,"
        " capacity, registration_deadline, fee_eur, max_per_company, waitlist_limit, status, revision,"
        " etag, first_starts_at, last_ends_at, listing_sessions, listing_units, listing_starts,"
        " listing_ends, listing_deadline, published_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17,"
        f" $18, $19, $20, $21, $22{published})"
        f"{conflict} RETURNING true",
        *_values(offering),
    )
    if not inserted:
        return False
    await _write_sessions(conn, offering)
    return True


async def update_offering(
    conn: asyncpg.Connection,
    offering: Offering,
    *,
    replace_sessions: bool = True,
    cancel_reason: str | None = None,
) -> str:
    """Write the full new state of an existing offering; returns its new etag."""
    values = _values(offering)
    await conn.execute(
        "UPDATE offerings SET node_id = $2, kind = $3, topic = $4, title = $5, description = $6,"
        " target_group = $7, capacity = $8, registration_deadline = $9, fee_eur = $10,"
        " max_per_company = $11, waitlist_limit = $12, status = $13, revision = $14, etag = $15,"
        " first_starts_at = $16, last_ends_at = $17, listing_sessions = $18, listing_units = $19,"
        " listing_starts = $20, listing_ends = $21, listing_deadline = $22, updated_at = now(),"
        " published_at = CASE WHEN $13 = 'published' AND published_at IS NULL THEN now()"
        "                     ELSE published_at END,"
        " cancel_reason = coalesce($23, cancel_reason)"
        " WHERE offering_id = $1",
        *values,
        cancel_reason,
    )
    if replace_sessions:
        await conn.execute("DELETE FROM sessions WHERE offering_id = $1", offering.offering_id)
        await _write_sessions(conn, offering)
    return str(values[14])


def _where(criteria: OfferingFilter, *, first: int = 1) -> tuple[str, list[Any]]:
    """Conditions on `offerings o` alone (node and seat criteria as subqueries), so that the
    listing index can deliver rows in order and the page is cut before any join. Placeholders
    are numbered from `first` on."""
    clauses: list[str] = []
    args: list[Any] = []

    def arg(value: Any) -> str:
        args.append(value)
        return f"${first + len(args) - 1}"

    def one_of(column: str, values: Sequence[Any], cast: str) -> str:
        # A single value as `=` lets the planner use the (column, status, first_starts_at) indexes.
        if len(values) == 1:
            return f"{column} = {arg(values[0])}::{cast}"
        return f"{column} = ANY({arg(list(values))}::{cast}[])"

    clauses.append(one_of("o.status", [s.value for s in criteria.statuses], "text"))
    if criteria.node_ids:
        clauses.append(one_of("o.node_id", list(criteria.node_ids), "uuid"))
    if criteria.county:
        clauses.append(
            f"o.node_id IN (SELECT node_id FROM nodes WHERE lower(county) = lower({arg(criteria.county)}))"
        )
    if criteria.topics:
        clauses.append(one_of("o.topic", [t.value for t in criteria.topics], "text"))
    if criteria.kinds:
        clauses.append(one_of("o.kind", [k.value for k in criteria.kinds], "text"))
    if criteria.ends_from is not None:
        clauses.append(f"o.last_ends_at >= {arg(criteria.ends_from)}")
    if criteria.starts_before is not None:
        clauses.append(f"o.first_starts_at < {arg(criteria.starts_before)}")
    if criteria.text:
        pattern = "%" + criteria.text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        placeholder = arg(pattern)
        clauses.append(f"o.search_text LIKE lower({placeholder})")  # lower-cased column, trigram index
    # Booked out = a seat snapshot with confirmed >= capacity (no snapshot: nothing confirmed yet). As
    # (NOT) EXISTS the planner can use a hash (anti-)join instead of a subquery per offering.
    booked_out = (
        "EXISTS (SELECT 1 FROM occupancy c WHERE c.offering_id = o.offering_id AND c.confirmed >= o.capacity)"
    )
    if criteria.available is True:
        clauses.append(f"NOT {booked_out}")
    elif criteria.available is False:
        clauses.append(booked_out)
    return " AND ".join(clauses), args


def _utc_iso(expr: str) -> str:
    """SQL text for `datetime.isoformat()` of a timestamptz as asyncpg returns it (UTC):
    `2027-01-10T12:00:00+00:00`, `.ffffff` only when there are microseconds; NULL stays NULL."""
    utc = f"({expr} AT TIME ZONE 'UTC')"
    return (
        f"(to_char({utc}, 'YYYY-MM-DD\"T\"HH24:MI:SS')"
        f" || CASE WHEN extract(microseconds FROM {utc})::bigint % 1000000 <> 0"
        f" THEN to_char({utc}, '.US') ELSE '' END || '+00:00')"
    )


def _label_sql(column: str, labels: Mapping[Any, str]) -> str:
    """The German label of an enum column as a CASE over literals (no per-row lookup)."""

    def literal(text: str) -> str:
        return "'" + text.replace("'", "''") + "'"

    cases = " ".join(f"WHEN {literal(key.value)} THEN {literal(label)}" for key, label in labels.items())
    return f"(CASE {column} {cases} END)"


# One listing item as JSON, built by Postgres in the key order of `api.OfferingOut` (and
# `api.StaffOfferingOut`), with the same values as `api._offering_fields`; a test keeps the two equal.
# `$1` is the current time, `$2` / `$3` limit and offset; `{staff}` takes the staff fields.
_ITEM_JSON = (
    "json_build_object("
    "'offering_id', o.offering_id, 'node_id', o.node_id,"
    " 'node', json_build_object('node_id', n.node_id, 'name', n.name, 'town', n.town, 'county', n.county),"
    " 'kind', o.kind, 'kind_label', "
    + _label_sql("o.kind", KIND_LABELS)
    + ", 'topic', o.topic, 'topic_label', "
    + _label_sql("o.topic", TOPIC_LABELS)
    + ", 'title', o.title, 'description', o.description,"
    " 'target_group', o.target_group, 'sessions', o.listing_sessions,"
    " 'total_units', o.listing_units, 'starts_at', o.listing_starts, 'ends_at', o.listing_ends,"
    " 'capacity', o.capacity, 'registration_deadline', o.listing_deadline,"
    " 'registration_open', o.status = 'published'"
    " AND $1::timestamptz < coalesce(o.registration_deadline, o.first_starts_at),"
    # float(Decimal) as Python's json writes it: 49.9, 25.0, 0.0
    " 'fee_eur', CASE WHEN o.fee_eur = trunc(o.fee_eur) THEN trunc(o.fee_eur)::numeric(12, 1)"
    " ELSE trim_scale(o.fee_eur) END,"
    " 'max_per_company', o.max_per_company, 'waitlist_limit', o.waitlist_limit, 'status', o.status,"
    " 'revision', o.revision, 'cancel_reason', o.cancel_reason,"
    " 'confirmed', coalesce(oc.confirmed, 0), 'waitlisted', coalesce(oc.waitlisted, 0),"
    " 'seats_left', greatest(o.capacity - coalesce(oc.confirmed, 0), 0),"
    f" 'seats_as_of', {_utc_iso('oc.as_of')}"
    "{staff})"
)
_STAFF_JSON = (
    f", 'etag', o.etag, 'created_at', {_utc_iso('o.created_at')},"
    f" 'updated_at', {_utc_iso('o.updated_at')}, 'published_at', {_utc_iso('o.published_at')}"
)


async def search_offerings_json(
    conn: asyncpg.Connection,
    criteria: OfferingFilter,
    *,
    limit: int,
    offset: int,
    now: datetime,
    staff: bool = False,
) -> tuple[str, int]:
    """One page in stable order (first session start, then id) as a JSON array of listing items, and
    the total number of matches, in one round trip. The page is cut on `offerings` alone (index order)
    before node and seats are joined (sessions are stored pre-formatted); the count runs only when
    the page does not tell it."""
    where, filter_args = _where(criteria, first=4)
    lim, off = "$2::bigint", "$3::bigint"  # parameters, so that one prepared statement serves all pages
    item = _ITEM_JSON.replace("{staff}", _STAFF_JSON if staff else "")
    sql = (
        "WITH page AS MATERIALIZED ("
        f" SELECT o.* FROM offerings o WHERE {where}"
        f" ORDER BY o.first_starts_at, o.offering_id LIMIT {lim} OFFSET {off}),"
        " found AS (SELECT count(*) AS n FROM page)"
        f" SELECT (SELECT coalesce(json_agg({item} ORDER BY o.first_starts_at, o.offering_id), '[]'::json)"
        "          FROM page o JOIN nodes n ON n.node_id = o.node_id"
        "          LEFT JOIN occupancy oc ON oc.offering_id = o.offering_id)::text AS items,"
        f" CASE WHEN found.n < {lim} AND (found.n > 0 OR {off} = 0) THEN {off} + found.n"
        f" ELSE (SELECT count(*) FROM offerings o WHERE {where}) END AS total"
        " FROM found"
    )
    record = await conn.fetchrow(sql, now, limit, offset, *filter_args)
    assert record is not None
    return str(record["items"]), int(record["total"])


async def calendar_offerings(conn: asyncpg.Connection, node_id: UUID) -> list[StoredOffering]:
    """Published and cancelled offerings of a node, with sessions, for its iCalendar feed."""
    records = await conn.fetch(
        f"SELECT {_OFFERING_COLUMNS}{_EXTRA_COLUMNS} FROM offerings o{_EXTRA_JOINS}"
        " WHERE o.node_id = $1 AND o.status IN ('published', 'cancelled')"
        " ORDER BY o.first_starts_at, o.offering_id",
        node_id,
    )
    sessions = await _sessions_of(conn, [record["offering_id"] for record in records])
    return [_stored(record, sessions[record["offering_id"]], with_extras=True) for record in records]


# --- seat snapshot -----------------------------------------------------------------------------


@dataclass(frozen=True)
class OccupancySnapshot:
    """An offering's seat counts as registration published them, `version` counting its changes."""

    offering_id: UUID
    version: int
    confirmed: int
    waitlisted: int
    capacity: int | None
    as_of: datetime


_APPLY_SNAPSHOTS = """
INSERT INTO occupancy (offering_id, confirmed, waitlisted, capacity, version, as_of)
SELECT * FROM unnest($1::uuid[], $2::int[], $3::int[], $4::int[], $5::bigint[], $6::timestamptz[])
    AS s(offering_id, confirmed, waitlisted, capacity, version, as_of)
ORDER BY offering_id
ON CONFLICT (offering_id) DO UPDATE SET confirmed = EXCLUDED.confirmed,
    waitlisted = EXCLUDED.waitlisted, capacity = EXCLUDED.capacity, version = EXCLUDED.version,
    as_of = EXCLUDED.as_of, updated_at = now()
WHERE occupancy.version < EXCLUDED.version
RETURNING offering_id
"""


async def apply_occupancy_snapshots(
    conn: asyncpg.Connection, snapshots: Sequence[OccupancySnapshot]
) -> set[UUID]:
    """Keep per offering the snapshot with the highest version, in one statement (rows locked in id
    order, so concurrent batches wait instead of deadlocking); returns the offerings it replaced.
    At most one snapshot per offering."""
    if not snapshots:
        return set()
    fields = ("offering_id", "confirmed", "waitlisted", "capacity", "version", "as_of")
    columns = unnest_columns(snapshots, *fields)
    records = await conn.fetch(_APPLY_SNAPSHOTS, *columns)
    return {record["offering_id"] for record in records}


async def apply_occupancy_snapshot(
    conn: asyncpg.Connection,
    offering_id: UUID,
    *,
    version: int,
    confirmed: int,
    waitlisted: int,
    capacity: int | None,
    as_of: datetime,
) -> bool:
    """Keep the snapshot with the highest version; True if this one replaced the stored one."""
    snapshot = OccupancySnapshot(offering_id, version, confirmed, waitlisted, capacity, as_of)
    return bool(await apply_occupancy_snapshots(conn, [snapshot]))


async def apply_occupancy_delta(
    conn: asyncpg.Connection, offering_id: UUID, *, confirmed: int, waitlisted: int, as_of: datetime
) -> None:
    """Fallback for events without a snapshot: adjust the counters (never below zero)."""
    await conn.execute(
        "INSERT INTO occupancy (offering_id, confirmed, waitlisted, version, as_of)"
        " VALUES ($1, greatest($2, 0), greatest($3, 0), 0, $4)"
        " ON CONFLICT (offering_id) DO UPDATE SET"
        " confirmed = greatest(occupancy.confirmed + $2, 0),"
        " waitlisted = greatest(occupancy.waitlisted + $3, 0),"
        " as_of = greatest(occupancy.as_of, EXCLUDED.as_of), updated_at = now()",
        offering_id,
        confirmed,
        waitlisted,
        as_of,
    )
