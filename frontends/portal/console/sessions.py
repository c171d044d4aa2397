"""Console sessions: a random 256-bit id in a cookie, only its SHA-256 in the database.

The cookie is `__Host-qti-staff` on https (Secure, Path=/, no Domain: bound to this host) and
`qti-staff` on plain http (local runs); HttpOnly and SameSite=Strict in both. A session ends after
`console_idle_minutes` without a request, after `console_absolute_hours` in any case, and at sign-out.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta
from http.cookies import SimpleCookie

import asyncpg
from starlette.requests import Request
from starlette.responses import Response

from frontends.portal.console.accounts import Account, account_of

SECURE_COOKIE = "__Host-qti-staff"
PLAIN_COOKIE = "qti-staff"


def session_hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


@dataclass(frozen=True)
class SessionPolicy:
    secure: bool
    idle: timedelta
    absolute: timedelta

    @property
    def cookie_name(self) -> str:
        return SECURE_COOKIE if self.secure else PLAIN_COOKIE

    def cookie_of(self, request: Request) -> str | None:
        value = request.cookies.get(self.cookie_name)
        if value is None or not (40 <= len(value) <= 64) or not value.isascii():
            return None
        return value

    def set_cookie(self, response: Response, session_id: str) -> None:
        cookie: SimpleCookie = SimpleCookie()
        cookie[self.cookie_name] = session_id
        morsel = cookie[self.cookie_name]
        morsel["path"] = "/"
        morsel["httponly"] = True
        morsel["samesite"] = "Strict"
        morsel["max-age"] = int(self.absolute.total_seconds())
        if self.secure:
            morsel["secure"] = True
        response.headers.append("set-cookie", morsel.OutputString())

    def clear_cookie(self, response: Response) -> None:
        secure = "; Secure" if self.secure else ""
        response.headers.append(
            "set-cookie", f"{self.cookie_name}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict{secure}"
        )


async def start_session(pool: asyncpg.Pool, account: Account, policy: SessionPolicy) -> str:
    """A fresh session id for the account (never one the browser brought: no session fixation)."""
    session_id = secrets.token_urlsafe(32)
    async with pool.acquire() as conn:
        await conn.execute(
            "DELETE FROM portal.staff_sessions WHERE last_seen_at < now() - $1::interval"
            " OR created_at < now() - $2::interval",
            policy.idle,
            policy.absolute,
        )
        await conn.execute(
            "INSERT INTO portal.staff_sessions (session_hash, account_id) VALUES ($1, $2)",
            session_hash(session_id),
            account.account_id,
        )
    return session_id


async def session_account(pool: asyncpg.Pool, session_id: str, policy: SessionPolicy) -> Account | None:
    """The signed-in account, its session kept alive; None if unknown or timed out."""
    async with pool.acquire() as conn:
        record = await conn.fetchrow(
            "UPDATE portal.staff_sessions s SET last_seen_at = now() FROM portal.staff_accounts a"
            " WHERE s.session_hash = $1 AND a.account_id = s.account_id"
            " AND s.last_seen_at >= now() - $2::interval AND s.created_at >= now() - $3::interval"
            " RETURNING a.account_id, a.email, a.role, a.node_id",
            session_hash(session_id),
            policy.idle,
            policy.absolute,
        )
    return account_of(record) if record else None


async def end_session(pool: asyncpg.Pool, session_id: str) -> None:
    async with pool.acquire() as conn:
        await conn.execute(
            "DELETE FROM portal.staff_sessions WHERE session_hash = $1", session_hash(session_id)
        )
