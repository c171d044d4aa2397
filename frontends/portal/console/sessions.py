"""Console sessions: a random 256-bit id in a cookie; in Redis (shared by every portal replica) only its
SHA-256, with the account id and the times of sign-in and of the last request.

The cookie is `__Host-qti-staff` on https (Secure, Path=/, no Domain: bound to this host) and
`qti-staff` on plain http (local runs); HttpOnly and SameSite=Strict in both. A session ends after
`console_idle_minutes` without a request, after `console_absolute_hours` in any case, and at sign-out;
the account itself is read again from the staff directory on every request (a disabled one is out).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from dataclasses import dataclass
from http.cookies import SimpleCookie

from redis.asyncio import Redis
from starlette.requests import Request
from starlette.responses import Response

SECURE_COOKIE = "__Host-qti-staff"
PLAIN_COOKIE = "qti-staff"


def session_hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


@dataclass(frozen=True)
class SessionPolicy:
    secure: bool
    idle_seconds: int
    absolute_seconds: int

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
        morsel["max-age"] = self.absolute_seconds
        if self.secure:
            morsel["secure"] = True
        response.headers.append("set-cookie", morsel.OutputString())

    def clear_cookie(self, response: Response) -> None:
        secure = "; Secure" if self.secure else ""
        response.headers.append(
            "set-cookie", f"{self.cookie_name}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict{secure}"
        )


@dataclass(frozen=True)
class SessionStore:
    redis: Redis
    prefix: str
    policy: SessionPolicy

    def _key(self, session_id: str) -> str:
        return f"{self.prefix}:staff-session:{session_hash(session_id)}"

    async def start(self, account_id: str) -> str:
        """A fresh session id for the account (never one the browser brought: no session fixation)."""
        session_id = secrets.token_urlsafe(32)
        now = int(time.time())
        value = json.dumps({"account_id": account_id, "created": now, "seen": now})
        await self.redis.set(self._key(session_id), value, ex=self.policy.idle_seconds)
        return session_id

    async def account_id(self, session_id: str) -> str | None:
        """The session's account, the session kept alive; None if unknown or timed out."""
        key = self._key(session_id)
        raw = await self.redis.get(key)
        if raw is None:
            return None
        try:
            found = json.loads(raw)
            created, seen, account_id = int(found["created"]), int(found["seen"]), str(found["account_id"])
        except (ValueError, KeyError, TypeError):
            return None
        now = int(time.time())
        if now - seen > self.policy.idle_seconds or now - created > self.policy.absolute_seconds:
            await self.redis.delete(key)
            return None
        value = json.dumps({"account_id": account_id, "created": created, "seen": now})
        await self.redis.set(key, value, ex=self.policy.idle_seconds)
        return account_id

    async def end(self, session_id: str) -> None:
        await self.redis.delete(self._key(session_id))
