"""SQL of certificates (tables of migrations/0004_certificates.sql)."""

from __future__ import annotations

import json
from typing import Final

import asyncpg

from services.notification.certificates import Certificate

_COLUMNS: Final = (
    "code, registration_id, offering_id, title, kind, sessions, attended_units, total_units, node_id,"
    " node_name, node_address, issuer, issued_at, revoked_at, revoked_reason"
)


def _certificate(record: asyncpg.Record) -> Certificate:
    return Certificate(
        code=record["code"],
        registration_id=record["registration_id"],
        offering_id=record["offering_id"],
        title=record["title"],
        kind=record["kind"],
        sessions=json.loads(record["sessions"]),
        attended_units=record["attended_units"],
        total_units=record["total_units"],
        node_id=record["node_id"],
        node_name=record["node_name"],
        node_address=record["node_address"],
        issuer=record["issuer"],
        issued_at=record["issued_at"],
        revoked_at=record["revoked_at"],
        revoked_reason=record["revoked_reason"],
    )


async def insert(conn: asyncpg.Connection, cert: Certificate, trigger_event_id: str) -> bool:
    """Store a new certificate; False if the registration has one already (nothing changes then)."""
    code = await conn.fetchval(
        "INSERT INTO certificates (code, registration_id, offering_id, title, kind, sessions,"
        " attended_units, total_units, node_id, node_name, node_address, issuer, issued_at,"
        " trigger_event_id) VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8, $9, $10, $11, $12, $13, $14)"
        " ON CONFLICT (registration_id) DO NOTHING RETURNING code",
        cert.code,
        cert.registration_id,
        cert.offering_id,
        cert.title,
        cert.kind,
        json.dumps(cert.sessions),
        cert.attended_units,
        cert.total_units,
        cert.node_id,
        cert.node_name,
        cert.node_address,
        cert.issuer,
        cert.issued_at,
        trigger_event_id,
    )
    return code is not None


async def by_code(conn: asyncpg.Connection, code: str, *, lock: bool = False) -> Certificate | None:
    suffix = " FOR UPDATE" if lock else ""
    record = await conn.fetchrow(f"SELECT {_COLUMNS} FROM certificates WHERE code = $1{suffix}", code)
    return _certificate(record) if record else None


async def of_registration(conn: asyncpg.Connection, registration_id: str) -> Certificate | None:
    record = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM certificates WHERE registration_id = $1", registration_id
    )
    return _certificate(record) if record else None


async def of_offering(conn: asyncpg.Connection, offering_id: str, limit: int) -> list[Certificate]:
    records = await conn.fetch(
        f"SELECT {_COLUMNS} FROM certificates WHERE offering_id = $1 ORDER BY issued_at, code LIMIT $2",
        offering_id,
        limit,
    )
    return [_certificate(r) for r in records]


async def revoke(conn: asyncpg.Connection, code: str, reason: str) -> None:
    await conn.execute(
        "UPDATE certificates SET revoked_at = now(), revoked_reason = $2"
        " WHERE code = $1 AND revoked_at IS NULL",
        code,
        reason,
    )
    # A certificate mail not sent yet must not go out any more.
    await conn.execute(
        "UPDATE deliveries SET status = 'skipped', last_error = 'Bescheinigung widerrufen',"
        " updated_at = now()"
        " WHERE template = 'certificate' AND status = 'pending' AND params->'certificate'->>'code' = $1",
        code,
    )


async def record_action(
    conn: asyncpg.Connection, code: str, action: str, actor: str, reason: str | None = None
) -> None:
    await conn.execute(
        "INSERT INTO certificate_actions (code, action, actor, reason) VALUES ($1, $2, $3, $4)",
        code,
        action,
        actor,
        reason,
    )
