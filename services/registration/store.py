"""SQL of the registration schema. Every function runs on the caller's connection and transaction."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from qti_contracts import OfferingKind, OfferingState, OfferingStatus
from services.registration.domain import LiveHolders, Offering, Status
from services.registration.seats import OfferingSeats


@dataclass(frozen=True)
class OfferingRow:
    offering: Offering
    sessions: list[dict[str, Any]]
    revision: int
    confirmed: int
    waitlisted: int
    seat_version: int

    @property
    def offering_id(self) -> str:
        return self.offering.offering_id

    def seats(self) -> OfferingSeats:
        """The offering's seat aggregate as stored (its live holders are loaded on demand)."""
        return OfferingSeats(self.offering, self.confirmed, self.waitlisted, self.seat_version, self.revision)


def _offering(record: asyncpg.Record) -> OfferingRow:
    return OfferingRow(
        offering=Offering(
            offering_id=record["offering_id"],
            status=OfferingStatus(record["status"]),
            kind=OfferingKind(record["kind"]),
            capacity=record["capacity"],
            registration_deadline=record["registration_deadline"],
            first_session_start=record["first_session_start"],
            max_per_company=record["max_per_company"],
            waitlist_limit=record["waitlist_limit"],
        ),
        sessions=json.loads(record["sessions"]),
        revision=record["revision"],
        confirmed=record["confirmed"],
        waitlisted=record["waitlisted"],
        seat_version=record["seat_version"],
    )


def offering_of_state(state: OfferingState) -> Offering:
    """The facts of catalogue's state, as `upsert_offering` stores them."""
    return Offering(
        offering_id=state.offering_id,
        status=state.status,
        kind=state.kind,
        capacity=state.capacity,
        registration_deadline=state.registration_deadline,
        first_session_start=min((s.starts_at for s in state.sessions), default=None),
        max_per_company=state.max_per_company,
        waitlist_limit=state.waitlist_limit,
    )


async def lock_offering(conn: asyncpg.Connection, offering_id: str) -> OfferingRow | None:
    """The row lock serialises every seat decision for one offering, across all replicas."""
    record = await conn.fetchrow("SELECT * FROM offerings WHERE offering_id = $1 FOR UPDATE", offering_id)
    return _offering(record) if record else None


async def lock_offerings(conn: asyncpg.Connection, offering_ids: Sequence[str]) -> list[OfferingRow]:
    """`lock_offering` for many at once, in id order (transactions locking overlapping sets wait, never
    deadlock); unknown ids are left out."""
    records = await conn.fetch(
        "SELECT * FROM offerings WHERE offering_id = ANY($1::text[]) ORDER BY offering_id FOR UPDATE",
        sorted(set(offering_ids)),
    )
    return [_offering(record) for record in records]


async def upsert_offering(conn: asyncpg.Connection, state: OfferingState) -> None:
    sessions = [
        {
            "session_id": s.session_id,
            "starts_at": s.starts_at.isoformat(),
            "ends_at": s.ends_at.isoformat(),
            "teaching_units": s.teaching_units,
        }
        for s in state.sessions
    ]
    facts = offering_of_state(state)
    await conn.execute(
        """
        INSERT INTO offerings (offering_id, status, kind, capacity, registration_deadline,
                               first_session_start, max_per_company, waitlist_limit, sessions, revision)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb, $10)
        ON CONFLICT (offering_id) DO UPDATE SET
            status = EXCLUDED.status, kind = EXCLUDED.kind, capacity = EXCLUDED.capacity,
            registration_deadline = EXCLUDED.registration_deadline,
            first_session_start = EXCLUDED.first_session_start,
            max_per_company = EXCLUDED.max_per_company, waitlist_limit = EXCLUDED.waitlist_limit,
            sessions = EXCLUDED.sessions, revision = EXCLUDED.revision, updated_at = now()
        -- Monotonic even when two catalogue events race for a new offering: newer revisions win and
        -- a cancellation is final.
        WHERE offerings.status <> 'cancelled' AND offerings.revision < EXCLUDED.revision
        """,
        state.offering_id,
        state.status.value,
        state.kind.value,
        state.capacity,
        state.registration_deadline,
        facts.first_session_start,
        state.max_per_company,
        state.waitlist_limit,
        json.dumps(sessions),
        state.revision,
    )


async def mark_cancelled(conn: asyncpg.Connection, offering_id: str, now: datetime) -> None:
    """Cancelled is final; an offering first heard of through its cancellation gets a tombstone row."""
    await conn.execute(
        """
        INSERT INTO offerings (offering_id, status, kind, capacity, registration_deadline, revision)
        VALUES ($1, 'cancelled', 'course', 1, $2, 0)
        ON CONFLICT (offering_id) DO UPDATE SET status = 'cancelled', updated_at = now()
        """,
        offering_id,
        now,
    )


async def load_live_holders(conn: asyncpg.Connection, keys: Sequence[tuple[str, str, str]]) -> LiveHolders:
    """Live registrations held by these (offering, e-mail, company key)s, in one query.

    Run after the offerings' row locks, so it sees every decision committed before this transaction.
    """
    # Correlated subqueries: one index probe per key, whatever the table's statistics say.
    records = await conn.fetch(
        """
        SELECT w.offering_id, w.email, w.company_key,
            EXISTS (SELECT FROM registrations r WHERE r.offering_id = w.offering_id AND r.email = w.email
                    AND r.status IN ('confirmed', 'waitlisted')) AS registered,
            (SELECT count(*) FROM registrations r
             WHERE r.offering_id = w.offering_id AND r.company_key = w.company_key
                   AND r.status IN ('confirmed', 'waitlisted')) AS company
        FROM (SELECT DISTINCT * FROM unnest($1::text[], $2::text[], $3::text[])
              AS k(offering_id, email, company_key)) AS w
        """,
        [key[0] for key in keys],
        [key[1] for key in keys],
        [key[2] for key in keys],
    )
    holders = LiveHolders(
        loaded_emails={(offering, email) for offering, email, _ in keys},
        loaded_companies={(offering, company) for offering, _, company in keys},
    )
    for record in records:
        if record["registered"]:
            holders.emails.add((record["offering_id"], record["email"]))
        holders.companies[(record["offering_id"], record["company_key"])] = int(record["company"])
    return holders


@dataclass(frozen=True)
class RegistrationRow:
    registration_id: str
    request_id: str
    offering_id: str
    status: Status
    participant: dict[str, Any]
    company: dict[str, Any]
    from_waitlist: bool
    waitlist_seq: int
    created_at: datetime
    updated_at: datetime
    cancel_cause: str | None
    completion: dict[str, Any] | None
    privacy_notice_version: str | None = None
    promoted_by: str | None = None
    promoted_at: datetime | None = None


def _registration(record: asyncpg.Record) -> RegistrationRow:
    completion = record["completion"]
    return RegistrationRow(
        registration_id=record["registration_id"],
        request_id=record["request_id"],
        offering_id=record["offering_id"],
        status=Status(record["status"]),
        participant=json.loads(record["participant"]),
        company=json.loads(record["company"]),
        from_waitlist=record["from_waitlist"],
        waitlist_seq=record["waitlist_seq"],
        created_at=record["created_at"],
        updated_at=record["updated_at"],
        cancel_cause=record["cancel_cause"],
        completion=json.loads(completion) if completion else None,
        privacy_notice_version=record.get("privacy_notice_version"),
        promoted_by=record.get("promoted_by"),
        promoted_at=record.get("promoted_at"),
    )


@dataclass(frozen=True)
class NewRegistration:
    registration_id: str
    request_id: str
    offering_id: str
    status: Status
    email: str
    company_key: str
    participant: dict[str, Any]
    company: dict[str, Any]
    token_hash: str
    privacy_notice_version: str | None = None


@dataclass(frozen=True)
class Outcome:
    request_id: str
    offering_id: str | None
    outcome_type: str
    outcome_json: str


@dataclass(frozen=True)
class SeatCounters:
    offering_id: str
    confirmed: int
    waitlisted: int
    seat_version: int


async def write_decisions(
    conn: asyncpg.Connection,
    registrations: Sequence[NewRegistration],
    outcomes: Sequence[Outcome],
    counters: Sequence[SeatCounters],
) -> None:
    """New registrations (in decision order, which is their waiting-list order), the requests' outcomes
    and the offerings' seat counters, in one statement: a round trip costs more than the SQL here."""
    await conn.execute(
        """
        WITH registered AS (
            INSERT INTO registrations (registration_id, request_id, offering_id, status, email, company_key,
                                       participant, company, token_hash, privacy_notice_version)
            SELECT registration_id, request_id, offering_id, status, email, company_key, participant, company,
                   token_hash, privacy_notice_version
            FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::jsonb[],
                        $8::jsonb[], $17::text[], $18::text[]) WITH ORDINALITY
                AS n(registration_id, request_id, offering_id, status, email, company_key, participant,
                     company, token_hash, privacy_notice_version, ord)
            ORDER BY ord
        ), seats AS (
            UPDATE offerings o SET confirmed = c.confirmed, waitlisted = c.waitlisted,
                seat_version = c.seat_version, updated_at = now()
            FROM unnest($9::text[], $10::int[], $11::int[], $12::int[])
                AS c(offering_id, confirmed, waitlisted, seat_version)
            WHERE o.offering_id = c.offering_id
        )
        INSERT INTO requests (request_id, offering_id, status, outcome_type, outcome, decided_at)
        SELECT request_id, offering_id, 'decided', outcome_type, outcome, now()
        FROM unnest($13::text[], $14::text[], $15::text[], $16::jsonb[])
            AS d(request_id, offering_id, outcome_type, outcome)
        ON CONFLICT (request_id) DO UPDATE SET status = 'decided', outcome_type = EXCLUDED.outcome_type,
            outcome = EXCLUDED.outcome, decided_at = now(), envelope = NULL
        """,
        [r.registration_id for r in registrations],
        [r.request_id for r in registrations],
        [r.offering_id for r in registrations],
        [r.status.value for r in registrations],
        [r.email for r in registrations],
        [r.company_key for r in registrations],
        [json.dumps(r.participant) for r in registrations],
        [json.dumps(r.company) for r in registrations],
        [c.offering_id for c in counters],
        [c.confirmed for c in counters],
        [c.waitlisted for c in counters],
        [c.seat_version for c in counters],
        [o.request_id for o in outcomes],
        [o.offering_id for o in outcomes],
        [o.outcome_type for o in outcomes],
        [o.outcome_json for o in outcomes],
        [r.token_hash for r in registrations],
        [r.privacy_notice_version for r in registrations],
    )


async def get_registration(
    conn: asyncpg.Connection, registration_id: str, *, lock: bool = False
) -> RegistrationRow | None:
    sql = "SELECT * FROM registrations WHERE registration_id = $1" + (" FOR UPDATE" if lock else "")
    record = await conn.fetchrow(sql, registration_id)
    return _registration(record) if record else None


async def registration_id_by_token_hash(conn: asyncpg.Connection, token_hash: str) -> str | None:
    value = await conn.fetchval("SELECT registration_id FROM registrations WHERE token_hash = $1", token_hash)
    return str(value) if value is not None else None


async def without_token_hash(conn: asyncpg.Connection, limit: int) -> list[tuple[str, str]]:
    """(registration id, request id) of rows from before personal tokens, to give them their hash."""
    records = await conn.fetch(
        "SELECT registration_id, request_id FROM registrations WHERE token_hash IS NULL"
        " ORDER BY registration_id LIMIT $1 FOR UPDATE SKIP LOCKED",
        limit,
    )
    return [(r["registration_id"], r["request_id"]) for r in records]


async def set_token_hashes(conn: asyncpg.Connection, hashes: Sequence[tuple[str, str]]) -> None:
    await conn.execute(
        "UPDATE registrations r SET token_hash = h.token_hash"
        " FROM unnest($1::text[], $2::text[]) AS h(registration_id, token_hash)"
        " WHERE r.registration_id = h.registration_id",
        [registration_id for registration_id, _ in hashes],
        [token_hash for _, token_hash in hashes],
    )


async def offering_of_registration(conn: asyncpg.Connection, registration_id: str) -> str | None:
    value = await conn.fetchval(
        "SELECT offering_id FROM registrations WHERE registration_id = $1", registration_id
    )
    return str(value) if value is not None else None


async def set_status(
    conn: asyncpg.Connection,
    registration_id: str,
    status: Status,
    *,
    from_waitlist: bool | None = None,
    cancel_cause: str | None = None,
) -> None:
    await conn.execute(
        "UPDATE registrations SET status = $2, from_waitlist = coalesce($3, from_waitlist),"
        " cancel_cause = coalesce($4, cancel_cause), updated_at = now() WHERE registration_id = $1",
        registration_id,
        status.value,
        from_waitlist,
        cancel_cause,
    )


async def first_waitlisted(conn: asyncpg.Connection, offering_id: str, limit: int) -> list[RegistrationRow]:
    records = await conn.fetch(
        "SELECT * FROM registrations WHERE offering_id = $1 AND status = 'waitlisted'"
        " ORDER BY waitlist_seq LIMIT $2 FOR UPDATE",
        offering_id,
        limit,
    )
    return [_registration(r) for r in records]


async def live_registrations(conn: asyncpg.Connection, offering_id: str) -> list[RegistrationRow]:
    records = await conn.fetch(
        "SELECT * FROM registrations WHERE offering_id = $1 AND status IN ('confirmed', 'waitlisted')"
        " ORDER BY waitlist_seq FOR UPDATE",
        offering_id,
    )
    return [_registration(r) for r in records]


async def waitlist_position(conn: asyncpg.Connection, registration: RegistrationRow) -> int | None:
    if registration.status != Status.WAITLISTED:
        return None
    return int(
        await conn.fetchval(
            "SELECT count(*) FROM registrations WHERE offering_id = $1 AND status = 'waitlisted'"
            " AND waitlist_seq <= $2",
            registration.offering_id,
            registration.waitlist_seq,
        )
    )


# Requests and their outcomes --------------------------------------------------------------------------


@dataclass(frozen=True)
class RequestRow:
    request_id: str
    offering_id: str | None
    status: str
    outcome_type: str | None
    outcome: dict[str, Any] | None
    envelope: dict[str, Any] | None
    reply_to: str | None
    correlation_id: str | None
    received_at: datetime


def request_row(record: asyncpg.Record) -> RequestRow:
    return RequestRow(
        request_id=record["request_id"],
        offering_id=record["offering_id"],
        status=record["status"],
        outcome_type=record["outcome_type"],
        outcome=json.loads(record["outcome"]) if record["outcome"] else None,
        envelope=json.loads(record["envelope"]) if record["envelope"] else None,
        reply_to=record["reply_to"],
        correlation_id=record["correlation_id"],
        received_at=record["received_at"],
    )


async def get_request(conn: asyncpg.Connection, request_id: str) -> RequestRow | None:
    record = await conn.fetchrow("SELECT * FROM requests WHERE request_id = $1", request_id)
    return request_row(record) if record else None


async def insert_pending(conn: asyncpg.Connection, request_id: str, offering_id: str) -> bool:
    """A request accepted over HTTP; False if that request id was submitted before."""
    inserted = await conn.fetchval(
        "INSERT INTO requests (request_id, offering_id, status) VALUES ($1, $2, 'pending')"
        " ON CONFLICT (request_id) DO NOTHING RETURNING true",
        request_id,
        offering_id,
    )
    return bool(inserted)


async def defer_request(
    conn: asyncpg.Connection,
    request_id: str,
    offering_id: str,
    envelope: str,
    reply_to: str | None,
    correlation_id: str | None,
) -> None:
    await conn.execute(
        """
        INSERT INTO requests (request_id, offering_id, status, envelope, reply_to, correlation_id)
        VALUES ($1, $2, 'deferred', $3::jsonb, $4, $5)
        ON CONFLICT (request_id) DO UPDATE SET status = 'deferred', envelope = EXCLUDED.envelope,
            reply_to = EXCLUDED.reply_to, correlation_id = EXCLUDED.correlation_id
        """,
        request_id,
        offering_id,
        envelope,
        reply_to,
        correlation_id,
    )


async def deferred_for(conn: asyncpg.Connection, offering_id: str) -> list[RequestRow]:
    records = await conn.fetch(
        "SELECT * FROM requests WHERE offering_id = $1 AND status = 'deferred'"
        " ORDER BY received_at FOR UPDATE",
        offering_id,
    )
    return [request_row(r) for r in records]


async def expired_deferred(
    conn: asyncpg.Connection, older_than_seconds: float, limit: int = 100
) -> list[RequestRow]:
    records = await conn.fetch(
        "SELECT * FROM requests WHERE status = 'deferred'"
        " AND received_at < now() - make_interval(secs => $1)"
        " ORDER BY received_at LIMIT $2 FOR UPDATE SKIP LOCKED",
        older_than_seconds,
        limit,
    )
    return [request_row(r) for r in records]


# Attendance -------------------------------------------------------------------------------------------


async def upsert_attendance(
    conn: asyncpg.Connection, registration_id: str, session_id: str, attended: bool
) -> bool:
    """True if this changed what was recorded."""
    previous = await conn.fetchval(
        "SELECT attended FROM attendance WHERE registration_id = $1 AND session_id = $2",
        registration_id,
        session_id,
    )
    if previous is not None and previous == attended:
        return False
    await conn.execute(
        "INSERT INTO attendance (registration_id, session_id, attended) VALUES ($1, $2, $3)"
        " ON CONFLICT (registration_id, session_id) DO UPDATE SET attended = $3, recorded_at = now()",
        registration_id,
        session_id,
        attended,
    )
    return True


async def attendance_of(conn: asyncpg.Connection, registration_id: str) -> dict[str, bool]:
    records = await conn.fetch(
        "SELECT session_id, attended FROM attendance WHERE registration_id = $1", registration_id
    )
    return {r["session_id"]: r["attended"] for r in records}


async def save_completion(conn: asyncpg.Connection, registration_id: str, completion: dict[str, Any]) -> None:
    await conn.execute(
        "UPDATE registrations SET completion = $2::jsonb, updated_at = now() WHERE registration_id = $1",
        registration_id,
        json.dumps(completion),
    )


async def registrations_of_offering(conn: asyncpg.Connection, offering_id: str) -> list[RegistrationRow]:
    records = await conn.fetch(
        "SELECT * FROM registrations WHERE offering_id = $1 ORDER BY waitlist_seq", offering_id
    )
    return [_registration(r) for r in records]


async def attendance_of_offering(conn: asyncpg.Connection, offering_id: str) -> dict[str, dict[str, bool]]:
    """Per registration of the offering: session id -> attended, as recorded so far."""
    records = await conn.fetch(
        "SELECT a.registration_id, a.session_id, a.attended FROM attendance a"
        " JOIN registrations r USING (registration_id) WHERE r.offering_id = $1",
        offering_id,
    )
    found: dict[str, dict[str, bool]] = {}
    for r in records:
        found.setdefault(r["registration_id"], {})[r["session_id"]] = r["attended"]
    return found


async def set_promoted(conn: asyncpg.Connection, registration_id: str, actor: str, now: datetime) -> None:
    await conn.execute(
        "UPDATE registrations SET promoted_by = $2, promoted_at = $3 WHERE registration_id = $1",
        registration_id,
        actor,
        now,
    )
