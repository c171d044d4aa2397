"""Commands of the staff directory: create accounts, sign in, reset passwords, disable, record actions.

Passwords are hashed with argon2id (argon2-cffi's recommended parameters; a hash made with older
parameters is replaced at the next successful sign-in). Hashing runs in a worker thread, at most two at
a time (each takes 64 MiB). Sign-in answers an unknown address, a wrong password, a disabled and a
locked account alike (`None`), and spends the same hashing work on each.
"""

from __future__ import annotations

import asyncio
import uuid
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Final
from uuid import UUID

import asyncpg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from qti_runtime.db import Database
from services.catalogue import staff_store
from services.catalogue.domain import ValidationProblem
from services.catalogue.handlers import (
    NODE_NOT_FOUND,
    OFFERING_NOT_FOUND,
    CatalogueError,
    Conflict,
    Invalid,
    NotFound,
)
from services.catalogue.staff_rules import (
    Role,
    StaffAccount,
    action_problems,
    after_failure,
    after_success,
    detail_problems,
    email_problems,
    is_locked,
    may_act_on,
    normalise_email,
    normalise_password,
    password_problems,
    role_problems,
    subject_problems,
)
from services.catalogue.staff_store import AuditEntry, NewAuditEntry

ACCOUNT_NOT_FOUND: Final = "Dieses Mitarbeiterkonto gibt es nicht."
EMAIL_TAKEN: Final = "Ein Mitarbeiterkonto mit dieser E-Mail-Adresse gibt es bereits."
NOT_ON_THIS_NODE: Final = "Dieses Konto darf für diesen QTI-Knoten nicht handeln."

_hasher: Final = PasswordHasher()
_DUMMY_HASH: Final = _hasher.hash("kein-konto-" + uuid.uuid4().hex)
_HASHING_AT_ONCE: Final = 2
_gates: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = weakref.WeakKeyDictionary()


class Forbidden(CatalogueError):
    """The account may not do this (disabled, or another node)."""


def _gate() -> asyncio.Semaphore:
    """The semaphore of the running event loop (a semaphore may not be shared between loops)."""
    loop = asyncio.get_running_loop()
    gate = _gates.get(loop)
    if gate is None:
        gate = _gates[loop] = asyncio.Semaphore(_HASHING_AT_ONCE)
    return gate


async def hash_password(password: str) -> str:
    async with _gate():
        return await asyncio.to_thread(_hasher.hash, password)


def _matches(stored: str, password: str) -> bool:
    try:
        return _hasher.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


async def _verify(stored: str, password: str) -> bool:
    async with _gate():
        return await asyncio.to_thread(_matches, stored, password)


def _checked_password(password: str) -> str:
    normalised = normalise_password(password)
    problems = password_problems(normalised)
    if problems:
        raise Invalid(problems)
    return normalised


# --- accounts ------------------------------------------------------------------------------------


async def create_account(
    db: Database, email: str, password: str, *, node_id: UUID | None, now: datetime
) -> StaffAccount:
    """A new account: node staff of `node_id`, or the project lead when `node_id` is None."""
    address = normalise_email(email)
    role = Role.NODE if node_id is not None else Role.LEAD
    problems = email_problems(address) + password_problems(normalise_password(password))
    problems += role_problems(role, node_id)
    if problems:
        raise Invalid(problems)
    hashed = await hash_password(normalise_password(password))
    account = StaffAccount(account_id=uuid.uuid4(), email=address, role=role, node_id=node_id, created_at=now)
    async with db.transaction() as conn:
        if node_id is not None and not await staff_store.node_exists(conn, node_id):
            raise Invalid([ValidationProblem("node_id", NODE_NOT_FOUND)])
        created = await staff_store.insert_account(conn, account, hashed)
    if created is None:
        raise Conflict(EMAIL_TAKEN)
    return created


async def _by_email(conn: asyncpg.Connection, email: str) -> StaffAccount:
    account = await staff_store.get_account_by_email(conn, normalise_email(email), for_update=True)
    if account is None:
        raise NotFound(ACCOUNT_NOT_FOUND)
    return account


async def reset_password(db: Database, email: str, password: str) -> StaffAccount:
    """A new password; failures and any lock are forgotten (a disabled account stays disabled)."""
    hashed = await hash_password(_checked_password(password))
    async with db.transaction() as conn:
        account = await _by_email(conn, email)
        await staff_store.set_password_hash(conn, account.account_id, hashed, unlock=True)
        found = await staff_store.get_account(conn, account.account_id)
    assert found is not None
    return found


async def disable_account(db: Database, email: str, now: datetime) -> StaffAccount:
    """The account can no longer sign in or act; it stays, as the actor of its audit entries."""
    async with db.transaction() as conn:
        account = await _by_email(conn, email)
        await staff_store.disable_account(conn, account.account_id, now)
        found = await staff_store.get_account(conn, account.account_id)
    assert found is not None
    return found


# --- sign-in -------------------------------------------------------------------------------------


async def sign_in(db: Database, email: str, password: str, now: datetime) -> StaffAccount | None:
    """The account if the password is right and the account usable; None for every other case."""
    address, typed = normalise_email(email), normalise_password(password)
    async with db.transaction() as conn:
        found = await staff_store.account_for_sign_in(conn, address)
        if found is None:
            await _verify(_DUMMY_HASH, typed)
            return None
        account, stored = found
        matches = await _verify(stored, typed)
        if account.disabled or is_locked(account.lockout, now):
            return None
        if not matches:
            await _count_failure(conn, account, now)
            return None
        await _signed_in(conn, account, stored, typed, now)
    return account


async def _count_failure(conn: asyncpg.Connection, account: StaffAccount, now: datetime) -> None:
    lockout = after_failure(account.lockout, now)
    await staff_store.save_lockout(conn, account.account_id, lockout)
    locked = lockout.locked_until is not None
    detail = {"locked": locked, "attempt": lockout.failed_attempts if not locked else None}
    entry = NewAuditEntry(
        actor=account, action="staff.sign_in_failed", node_id=account.node_id, detail=detail
    )
    await staff_store.append_audit(conn, entry, now)


async def _signed_in(
    conn: asyncpg.Connection, account: StaffAccount, stored: str, password: str, now: datetime
) -> None:
    if account.lockout != after_success():
        await staff_store.save_lockout(conn, account.account_id, after_success())
    if _hasher.check_needs_rehash(stored):
        new_hash = await hash_password(password)
        await staff_store.set_password_hash(conn, account.account_id, new_hash, unlock=False)
    entry = NewAuditEntry(actor=account, action="staff.signed_in", node_id=account.node_id)
    await staff_store.append_audit(conn, entry, now)


# --- audit ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditRequest:
    """What the console says an account did."""

    actor_account_id: UUID
    action: str
    node_id: UUID | None = None
    offering_id: UUID | None = None
    subject: str | None = None
    detail: Mapping[str, object] | None = None


def _audit_problems(request: AuditRequest) -> list[ValidationProblem]:
    return (
        action_problems(request.action)
        + subject_problems(request.subject)
        + detail_problems(request.detail or {})
    )


async def _node_of(conn: asyncpg.Connection, request: AuditRequest) -> UUID | None:
    """The node the action was on: the offering's node (which `node_id`, if given, must name)."""
    if request.offering_id is not None:
        node = await staff_store.node_of_offering(conn, request.offering_id)
        if node is None:
            raise Invalid([ValidationProblem("offering_id", OFFERING_NOT_FOUND)])
        if request.node_id is not None and request.node_id != node:
            message = "Das Angebot gehört zu einem anderen QTI-Knoten."
            raise Invalid([ValidationProblem("node_id", message)])
        return node
    if request.node_id is not None and not await staff_store.node_exists(conn, request.node_id):
        raise Invalid([ValidationProblem("node_id", NODE_NOT_FOUND)])
    return request.node_id


async def record_action(db: Database, request: AuditRequest, now: datetime) -> AuditEntry:
    """Append one entry; the actor must exist, be enabled and be allowed on the action's node."""
    problems = _audit_problems(request)
    if problems:
        raise Invalid(problems)
    async with db.transaction() as conn:
        actor = await staff_store.get_account(conn, request.actor_account_id)
        if actor is None:
            raise Invalid([ValidationProblem("actor_account_id", ACCOUNT_NOT_FOUND)])
        node_id = await _node_of(conn, request)
        if actor.disabled:
            raise Forbidden("Dieses Mitarbeiterkonto ist deaktiviert.")
        if not may_act_on(actor, node_id):
            raise Forbidden(NOT_ON_THIS_NODE)
        entry = NewAuditEntry(
            actor=actor,
            action=request.action,
            node_id=node_id,
            offering_id=request.offering_id,
            subject=request.subject,
            detail=request.detail,
        )
        return await staff_store.append_audit(conn, entry, now)
