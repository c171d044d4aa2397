"""Browser-facing safety: a session cookie, CSRF tokens bound to it, security headers, rate limits.

- Session: a random id in an HttpOnly, SameSite=Lax cookie (no personal data, nothing stored with it).
- CSRF: every form carries `HMAC(form secret, session id)`; a POST without the matching pair is refused
  (403). SameSite alone is not enough for older browsers, the token alone not against a stolen page.
- Headers: CSP without inline scripts and without any third-party origin, no framing, no referrer.
- Rate limits: fixed-window counters in Redis, shared by every portal replica; subjects (a client
  address, an e-mail address) only as keyed hashes, and each counter expires with its window.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from http.cookies import SimpleCookie

from redis.asyncio import Redis
from starlette.types import ASGIApp, Message, Receive, Scope, Send

SESSION_COOKIE = "qti_sitzung"
CSRF_FIELD = "csrf_token"
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "font-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
        "base-uri 'none'; object-src 'none'"
    ),
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "permissions-policy": "geolocation=(), camera=(), microphone=(), interest-cohort=()",
    "cross-origin-opener-policy": "same-origin",
}


def _cookie_session(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"cookie":
            cookie: SimpleCookie = SimpleCookie()
            try:
                cookie.load(value.decode("latin-1"))
            except Exception:  # a malformed cookie header is treated as no cookie
                return None
            morsel = cookie.get(SESSION_COOKIE)
            if morsel is not None and 20 <= len(morsel.value) <= 64 and morsel.value.isascii():
                return morsel.value
    return None


class BrowserSafety:
    """ASGI middleware: the session cookie (made when missing) and the security headers on every answer."""

    def __init__(self, app: ASGIApp, *, secure_cookie: bool) -> None:
        self.app = app
        self.secure_cookie = secure_cookie

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        session = _cookie_session(scope)
        fresh = session is None
        scope.setdefault("state", {})["session"] = session or secrets.token_urlsafe(32)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
                if fresh:
                    headers.append((b"set-cookie", self._cookie(scope["state"]["session"]).encode()))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def _cookie(self, session: str) -> str:
        secure = "; Secure" if self.secure_cookie else ""
        return f"{SESSION_COOKIE}={session}; Path=/; HttpOnly; SameSite=Lax{secure}"


@dataclass(frozen=True)
class FormKeys:
    """Keys derived from the portal's form secret."""

    secret: bytes

    def _mac(self, purpose: str, value: str) -> str:
        return hmac.new(self.secret, f"{purpose}\0{value}".encode(), hashlib.sha256).hexdigest()

    def csrf_token(self, session: str) -> str:
        return self._mac("csrf", session)

    def csrf_valid(self, session: str, token: str | None) -> bool:
        return token is not None and hmac.compare_digest(self.csrf_token(session), token)

    def session_tag(self, session: str) -> str:
        """Stands for a browser session in Redis (the session id itself is stored nowhere)."""
        return self._mac("owner", session)

    def subject_hash(self, subject: str) -> str:
        return self._mac("rate", subject)


@dataclass(frozen=True)
class RateRule:
    name: str
    limit: int
    window_seconds: int


class RateLimiter:
    """Fixed windows in Redis (INCR + EXPIRE in one transaction); returns seconds to wait, or 0."""

    def __init__(self, redis: Redis, prefix: str, keys: FormKeys) -> None:
        self.redis = redis
        self.prefix = prefix
        self.keys = keys

    async def wait_seconds(self, checks: list[tuple[RateRule, str]]) -> int:
        now = int(time.time())
        pipe = self.redis.pipeline(transaction=True)
        for rule, subject in checks:
            window = now - now % rule.window_seconds
            key = f"{self.prefix}:rate:{rule.name}:{self.keys.subject_hash(subject)}:{window}"
            pipe.incr(key)
            pipe.expire(key, rule.window_seconds + 1)
        results = await pipe.execute()
        waits = [
            rule.window_seconds - now % rule.window_seconds
            for (rule, _), hits in zip(checks, results[::2], strict=True)
            if int(hits) > rule.limit
        ]
        return max(waits, default=0)


@dataclass
class Ownership:
    """Which browser session submitted which request: only that browser is shown the personal token."""

    redis: Redis
    prefix: str
    keys: FormKeys
    ttl_seconds: int = 3600

    async def claim(self, request_id: str, session: str) -> None:
        key = f"{self.prefix}:owner:{request_id}"
        await self.redis.set(key, self.keys.session_tag(session), ex=self.ttl_seconds, nx=True)

    async def owns(self, request_id: str, session: str) -> bool:
        tag = await self.redis.get(f"{self.prefix}:owner:{request_id}")
        expected = self.keys.session_tag(session).encode()
        return isinstance(tag, bytes) and hmac.compare_digest(tag, expected)
