"""Staff accounts: argon2id password hashes, roles and the lockout after repeated failures.

Roles: `node` (staff of one QTI node: that node's offerings only) and `lead` (the project lead: every
node, the audit log). Sign-in answers an unknown address, a wrong password and a locked account alike,
and verifies a dummy hash when there is no account, so that neither the answer nor its time tells
whether an address has an account.
"""

from __future__ import annotations

import asyncio
import re
import unicodedata
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import asyncpg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

LOCKOUT_FAILURES = 5
LOCKOUT_WINDOW = timedelta(minutes=15)
MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024
EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,189}\.[^@\s]{2,63}$")
_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters
_DUMMY_HASH = _hasher.hash("kein-konto-" + uuid.uuid4().hex)


class AccountProblem(ValueError):
    """An account cannot be created as asked; the message says why (English, for the CLI)."""


@dataclass(frozen=True)
class Account:
    account_id: str
    email: str
    role: str  # "node" or "lead"
    node_id: str | None

    @property
    def is_lead(self) -> bool:
        return self.role == "lead"

    def may_manage(self, node_id: object) -> bool:
        """Whether this account may act on an offering of `node_id`."""
        return self.is_lead or (self.node_id is not None and str(node_id) == self.node_id)


def account_of(record: asyncpg.Record) -> Account:
    return Account(record["account_id"], record["email"], record["role"], record["node_id"])


def normalised_email(email: str) -> str:
    return unicodedata.normalize("NFC", email.strip()).lower()


def password_problem(password: str) -> str | None:
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"the password needs at least {MIN_PASSWORD_LENGTH} characters"
    if len(password) > MAX_PASSWORD_LENGTH:
        return f"the password may have at most {MAX_PASSWORD_LENGTH} characters"
    return None


def _checked(email: str, password: str, node_id: str | None) -> str:
    address = normalised_email(email)
    if not EMAIL.match(address):
        raise AccountProblem(f"not an e-mail address: {email!r}")
    if (problem := password_problem(password)) is not None:
        raise AccountProblem(problem)
    if node_id is not None:
        try:
            uuid.UUID(node_id)
        except ValueError:
            raise AccountProblem(f"not a node id (UUID): {node_id!r}") from None
    return address


async def add_account(conn: asyncpg.Connection, email: str, password: str, node_id: str | None) -> Account:
    """A new account, or the existing one with a new password and role (`node_id` None: the lead)."""
    address = _checked(email, password, node_id)
    hashed = await asyncio.to_thread(_hasher.hash, password)
    record = await conn.fetchrow(
        "INSERT INTO portal.staff_accounts (email, password_hash, role, node_id) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (email) DO UPDATE SET password_hash = $2, role = $3, node_id = $4,"
        " failed_attempts = 0, first_failed_at = NULL, locked_until = NULL"
        " RETURNING account_id, email, role, node_id",
        address,
        hashed,
        "node" if node_id else "lead",
        str(uuid.UUID(node_id)) if node_id else None,
    )
    # A changed password ends every session of the account.
    await conn.execute("DELETE FROM portal.staff_sessions WHERE account_id = $1", record["account_id"])
    return account_of(record)


async def list_accounts(conn: asyncpg.Connection) -> list[Account]:
    records = await conn.fetch(
        "SELECT account_id, email, role, node_id FROM portal.staff_accounts ORDER BY email"
    )
    return [account_of(r) for r in records]


async def remove_account(conn: asyncpg.Connection, email: str) -> bool:
    result = await conn.execute("DELETE FROM portal.staff_accounts WHERE email = $1", normalised_email(email))
    return str(result).endswith(" 1")


def _verify(stored: str, password: str) -> bool:
    try:
        return _hasher.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


async def authenticate(pool: asyncpg.Pool, email: str, password: str) -> Account | None:
    """The account if the password is right and the account not locked; None otherwise (same for all)."""
    address = normalised_email(email)[:254]
    password = password[:MAX_PASSWORD_LENGTH]
    async with pool.acquire() as conn, conn.transaction():
        record = await conn.fetchrow(
            "SELECT *, locked_until > now() AS locked FROM portal.staff_accounts WHERE email = $1 FOR UPDATE",
            address,
        )
        if record is None or record["locked"]:
            await asyncio.to_thread(_verify, _DUMMY_HASH, password)
            return None
        if not await asyncio.to_thread(_verify, record["password_hash"], password):
            await _count_failure(conn, record)
            return None
        await _signed_in(conn, record, password)
        return account_of(record)


async def _count_failure(conn: asyncpg.Connection, record: Any) -> None:
    """Failures within LOCKOUT_WINDOW of the first one count; the fifth locks for LOCKOUT_WINDOW."""
    await conn.execute(
        "UPDATE portal.staff_accounts SET"
        " failed_attempts = CASE WHEN first_failed_at > now() - $2::interval"
        "   THEN failed_attempts + 1 ELSE 1 END,"
        " first_failed_at = CASE WHEN first_failed_at > now() - $2::interval"
        "   THEN first_failed_at ELSE now() END"
        " WHERE account_id = $1",
        record["account_id"],
        LOCKOUT_WINDOW,
    )
    await conn.execute(
        "UPDATE portal.staff_accounts SET locked_until = now() + $2::interval, failed_attempts = 0,"
        " first_failed_at = NULL WHERE account_id = $1 AND failed_attempts >= $3",
        record["account_id"],
        LOCKOUT_WINDOW,
        LOCKOUT_FAILURES,
    )


async def _signed_in(conn: asyncpg.Connection, record: Any, password: str) -> None:
    rehash = _hasher.check_needs_rehash(record["password_hash"])
    new_hash = await asyncio.to_thread(_hasher.hash, password) if rehash else record["password_hash"]
    await conn.execute(
        "UPDATE portal.staff_accounts SET failed_attempts = 0, first_failed_at = NULL, locked_until = NULL,"
        " password_hash = $2 WHERE account_id = $1",
        record["account_id"],
        new_hash,
    )
