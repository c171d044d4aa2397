"""Rate limits of `POST /registrations`: per client address and per e-mail address (429 beyond).

Every accepted request makes the system write to the address in it, so without limits anyone could make
it mail any address at any rate. The defaults are far above what people do: a company's HR person who
registers 10 employees from one office sends 10 requests in a minute or two (a third of the per-client
limit) for 10 different addresses (one each); a person registers for a handful of offerings at most, not
more than 5 within an hour. A larger batch from one address waits for the next minute (`Retry-After`).

The counters live in registration's schema (`qti_runtime.ratelimit`), so every replica sees the same
counts. Behind a reverse proxy (e.g. the portal) every request comes from the proxy: name it in
`QTI_TRUSTED_PROXIES` so that its `X-Forwarded-For` is used instead; never trust the header otherwise, or
anyone could choose their own address.
"""

from __future__ import annotations

from fastapi import Request
from pydantic import Field, field_validator
from starlette.exceptions import HTTPException

from qti_runtime.client_address import ClientAddress, trusted_networks
from qti_runtime.db import Database
from qti_runtime.ratelimit import RateLimiter, Rule, Verdict, mailbox
from qti_runtime.settings import Settings


class RateLimitSettings(Settings):
    """`QTI_REGISTRATION_RATE_*` and `QTI_TRUSTED_PROXIES`."""

    registration_rate_per_client: int = Field(
        default=30, ge=1, description="POST /registrations per client address and window"
    )
    registration_rate_client_window_seconds: int = Field(default=60, ge=1, le=86_400)
    registration_rate_per_email: int = Field(
        default=5, ge=1, description="POST /registrations per e-mail address and window"
    )
    registration_rate_email_window_seconds: int = Field(default=3600, ge=1, le=86_400)
    trusted_proxies: str = Field(
        default="",
        description="comma-separated addresses/networks of reverse proxies whose X-Forwarded-For is used",
    )

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: str) -> str:
        trusted_networks(value)  # a typo fails at start, not silently at the first request
        return value


class SubmissionLimits:
    def __init__(self, db: Database, settings: RateLimitSettings) -> None:
        self._db = db
        self._limiter = RateLimiter(settings.link_secret.get_secret_value())
        self._clients = ClientAddress(settings.trusted_proxies)
        self._per_client = Rule(
            "registration.client",
            settings.registration_rate_per_client,
            settings.registration_rate_client_window_seconds,
        )
        self._per_email = Rule(
            "registration.email",
            settings.registration_rate_per_email,
            settings.registration_rate_email_window_seconds,
        )

    @classmethod
    def for_settings(cls, db: Database, settings: Settings) -> SubmissionLimits:
        if not isinstance(settings, RateLimitSettings):
            settings = RateLimitSettings(**settings.model_dump())
        return cls(db, settings)

    async def check(self, request: Request, email: str) -> None:
        """Count the request; 429 with `Retry-After` and a German problem detail beyond a limit."""
        checks = [(self._per_client, self.client_of(request)), (self._per_email, mailbox(email))]
        async with self._db.pool.acquire() as conn:
            verdict = await self._limiter.exceeded(conn, checks)
        if verdict is not None:
            raise HTTPException(429, _detail(verdict), headers={"Retry-After": str(verdict.retry_after)})

    def client_of(self, request: Request) -> str:
        return self._clients.of(request)


def _detail(verdict: Verdict) -> str:
    wait = _readable_wait(verdict.retry_after)
    if verdict.rule.name == "registration.email":
        return (
            "Für diese E-Mail-Adresse sind in kurzer Zeit zu viele Anmeldungen eingegangen. "
            f"Bitte versuchen Sie es in {wait} erneut."
        )
    return (
        "Von Ihrem Anschluss sind in kurzer Zeit zu viele Anmeldungen eingegangen. "
        f"Bitte versuchen Sie es in {wait} erneut."
    )


def _readable_wait(seconds: int) -> str:
    if seconds < 120:
        return "1 Sekunde" if seconds == 1 else f"{seconds} Sekunden"
    return f"{-(-seconds // 60)} Minuten"
