"""SQL of the staff directory (`staff_accounts`, `staff_audit`). Every function takes a connection.

Password hashes are read by one function only (`account_for_sign_in`) and never returned elsewhere.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from services.catalogue.staff_rules import Lockout, Role, StaffAccount

_ACCOUNT_COLUMNS = (
    "account_id, email, role, node_id, created_at, disabled_at,"
    " failed_attempts, first_failure_at, locked_until"
)


@dataclass(frozen=True, slots=True, kw_only=True)
class NewAuditEntry:
    actor: StaffAccount
    action: str
    node_id: UUID | None = None
    offering_id: UUID | None = None
    subject: str | None = None
    detail: Mapping[str, object] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditEntry:
    id: int
    at: datetime
    actor_account_id: UUID
    actor_email: str
    action: str
    node_id: UUID | None
    offering_id: UUID | None
    subject: str | None
    detail: dict[str, Any]


def _account(record: asyncpg.Record) -> StaffAccount:
    return StaffAccount(
        account_id=record["account_id"],
        email=record["email"],
        role=Role(record["role"]),
        node_id=record["node_id"],
        created_at=record["created_at"],
        disabled_at=record["disabled_at"],
        lockout=Lockout(record["failed_attempts"], record["first_failure_at"], record["locked_until"]),
    )


async def insert_account(
    conn: asyncpg.Connection, account: StaffAccount, password_hash: str
) -> StaffAccount | None:
    """The new account, or None if the address is taken."""
    record = await conn.fetchrow(
        "INSERT INTO staff_accounts (account_id, email, password_hash, role, node_id, created_at)"
        f" VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (email) DO NOTHING RETURNING {_ACCOUNT_COLUMNS}",
        account.account_id,
        account.email,
        password_hash,
        account.role.value,
        account.node_id,
        account.created_at,
    )
    return _account(record) if record is not None else None


async def get_account(conn: asyncpg.Connection, account_id: UUID) -> StaffAccount | None:
    record = await conn.fetchrow(
        f"SELECT {_ACCOUNT_COLUMNS} FROM staff_accounts WHERE account_id = $1", account_id
    )
    return _account(record) if record is not None else None


async def get_account_by_email(
    conn: asyncpg.Connection, email: str, *, for_update: bool = False
) -> StaffAccount | None:
    lock = " FOR UPDATE" if for_update else ""
    record = await conn.fetchrow(
        f"SELECT {_ACCOUNT_COLUMNS} FROM staff_accounts WHERE email = $1{lock}", email
    )
    return _account(record) if record is not None else None


async def account_for_sign_in(conn: asyncpg.Connection, email: str) -> tuple[StaffAccount, str] | None:
    """The account (locked for this transaction) and its password hash."""
    record = await conn.fetchrow(
        f"SELECT {_ACCOUNT_COLUMNS}, password_hash FROM staff_accounts WHERE email = $1 FOR UPDATE", email
    )
    return (_account(record), record["password_hash"]) if record is not None else None


async def list_accounts(conn: asyncpg.Connection) -> list[StaffAccount]:
    records = await conn.fetch(f"SELECT {_ACCOUNT_COLUMNS} FROM staff_accounts ORDER BY email")
    return [_account(r) for r in records]


async def save_lockout(conn: asyncpg.Connection, account_id: UUID, lockout: Lockout) -> None:
    await conn.execute(
        "UPDATE staff_accounts SET failed_attempts = $2, first_failure_at = $3, locked_until = $4"
        " WHERE account_id = $1",
        account_id,
        lockout.failed_attempts,
        lockout.first_failure_at,
        lockout.locked_until,
    )


async def set_password_hash(
    conn: asyncpg.Connection, account_id: UUID, password_hash: str, *, unlock: bool
) -> None:
    """A new hash (a rehash on sign-in, or a reset that also clears failures and any lock)."""
    reset = ", failed_attempts = 0, first_failure_at = NULL, locked_until = NULL" if unlock else ""
    await conn.execute(
        f"UPDATE staff_accounts SET password_hash = $2{reset} WHERE account_id = $1",
        account_id,
        password_hash,
    )


async def disable_account(conn: asyncpg.Connection, account_id: UUID, now: datetime) -> None:
    await conn.execute(
        "UPDATE staff_accounts SET disabled_at = coalesce(disabled_at, $2) WHERE account_id = $1",
        account_id,
        now,
    )


async def node_exists(conn: asyncpg.Connection, node_id: UUID) -> bool:
    return bool(await conn.fetchval("SELECT EXISTS (SELECT 1 FROM nodes WHERE node_id = $1)", node_id))


async def node_of_offering(conn: asyncpg.Connection, offering_id: UUID) -> UUID | None:
    node: UUID | None = await conn.fetchval(
        "SELECT node_id FROM offerings WHERE offering_id = $1", offering_id
    )
    return node


# --- audit -----------------------------------------------------------------------------------------


async def append_audit(conn: asyncpg.Connection, entry: NewAuditEntry, now: datetime) -> AuditEntry:
    record = await conn.fetchrow(
        "INSERT INTO staff_audit (at, actor_account_id, actor_email, action, node_id, offering_id,"
        " subject, detail) VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb) RETURNING *",
        now,
        entry.actor.account_id,
        entry.actor.email,
        entry.action,
        entry.node_id,
        entry.offering_id,
        entry.subject,
        json.dumps(entry.detail or {}, ensure_ascii=False),
    )
    return _audit(record)


def _audit(record: asyncpg.Record) -> AuditEntry:
    detail = json.loads(record["detail"]) if isinstance(record["detail"], str) else record["detail"]
    return AuditEntry(
        id=record["id"],
        at=record["at"],
        actor_account_id=record["actor_account_id"],
        actor_email=record["actor_email"],
        action=record["action"],
        node_id=record["node_id"],
        offering_id=record["offering_id"],
        subject=record["subject"],
        detail=detail,
    )


async def list_audit(
    conn: asyncpg.Connection, *, limit: int, before: int | None = None, node_id: UUID | None = None
) -> list[AuditEntry]:
    """Newest first (by the order of recording); `before` is an entry id, for the next page."""
    records = await conn.fetch(
        "SELECT * FROM staff_audit WHERE ($1::bigint IS NULL OR id < $1)"
        " AND ($2::uuid IS NULL OR node_id = $2) ORDER BY id DESC LIMIT $3",
        before,
        node_id,
        limit,
    )
    return [_audit(r) for r in records]
