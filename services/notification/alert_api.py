"""Public HTTP API of offer alerts and interest (the portal's `/angebotsalarm` and `/interesse` call it).

- `POST /alerts`: sign up (202, the same answer whether the address is new or known, so it cannot be used
  to probe addresses); the only mail before confirmation is the confirmation mail, and those count
  against the cap on unsolicited mails (mailcap.py). Rate limited per client and per address (429).
- `POST /alerts/confirm`, `POST /alerts/unsubscribe`: the token of the link; both idempotent.
- staff: `POST /alerts/maintenance` sends due weekly digests and purges expired sign-ups now.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from qti_contracts import AlertFrequency, AlertKind, County, OfferingKind, Topic
from qti_contracts.events import Email, Identifier
from qti_runtime.client_address import ClientAddress
from qti_runtime.db import Database
from qti_runtime.http import Problem, staff_guard
from qti_runtime.ratelimit import RateLimiter, Rule, mailbox
from services.notification.alert_handlers import AlertService, Gone, NotFound, SignUp
from services.notification.alerts import Interests, unique
from services.notification.settings import NotificationSettings

Token = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{22,128}$")]
Version = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=40)]


class SignUpRequest(BaseModel):
    model_config = ConfigDict(extra="ignore", str_max_length=1000)

    email: Email
    kind: AlertKind = AlertKind.ALERT
    topics: Annotated[list[Topic], Field(max_length=len(Topic))] = Field(default_factory=list)
    kinds: Annotated[list[OfferingKind], Field(max_length=len(OfferingKind))] = Field(default_factory=list)
    counties: Annotated[list[County], Field(max_length=len(County))] = Field(default_factory=list)
    nodes: Annotated[list[Identifier], Field(max_length=50)] = Field(default_factory=list)
    frequency: AlertFrequency = AlertFrequency.IMMEDIATE
    privacy_consent: Literal[True] = Field(description="Consent to the privacy notice shown before.")
    consent_text_version: Version = Field(description="Version of the privacy notice the person saw.")

    @field_validator("topics", "kinds", "counties", "nodes")
    @classmethod
    def _once_each(cls, values: list[str]) -> list[str]:
        return list(unique(values))

    def signup(self) -> SignUp:
        if self.kind is AlertKind.INTEREST and (len(self.topics) != 1 or len(self.counties) != 1):
            raise Problem(
                422, "Für eine Interessensmeldung bitte genau ein Thema und einen Landkreis angeben."
            )
        return SignUp(
            email=str(self.email),
            kind=self.kind,
            interests=Interests(
                tuple(self.topics), tuple(self.kinds), tuple(self.counties), tuple(self.nodes)
            ),
            frequency=self.frequency,
            consent_text_version=self.consent_text_version,
        )


class TokenRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    token: Token


class Accepted(BaseModel):
    status: Literal["pending"] = "pending"
    detail: str = (
        "Wir haben Ihnen eine E-Mail mit einem Bestätigungslink geschickt. Erst nach der Bestätigung "
        "erhalten Sie Nachrichten."
    )


class SubscriptionState(BaseModel):
    status: Literal["confirmed", "ended"]
    kind: AlertKind


class Maintenance(BaseModel):
    digests: int
    purged: int


UNKNOWN = "Dieser Link ist ungültig oder abgelaufen."


def alerts_router(db: Database, settings: NotificationSettings, service: AlertService) -> APIRouter:
    router = APIRouter(tags=["alerts"])
    limiter = RateLimiter(settings.link_secret.get_secret_value())
    clients = ClientAddress(settings.trusted_proxies)
    per_client = Rule(
        "alerts.client", settings.alert_rate_per_client, settings.alert_rate_client_window_seconds
    )
    per_email = Rule("alerts.email", settings.alert_rate_per_email, settings.alert_rate_email_window_seconds)

    @router.post("/alerts", status_code=202, response_model=Accepted, summary="Sign up for offer alerts")
    async def subscribe(body: SignUpRequest, request: Request) -> Accepted:
        signup = body.signup()
        async with db.pool.acquire() as conn:
            verdict = await limiter.exceeded(
                conn, [(per_client, clients.of(request)), (per_email, mailbox(signup.email))]
            )
        if verdict is not None:
            raise Problem(
                429,
                "Zu viele Anmeldungen in kurzer Zeit. Bitte versuchen Sie es später noch einmal.",
                headers={"Retry-After": str(verdict.retry_after)},
            )
        await service.subscribe(signup)
        return Accepted()

    @router.post("/alerts/confirm", response_model=SubscriptionState, summary="Confirm (double opt-in)")
    async def confirm(body: TokenRequest) -> SubscriptionState:
        try:
            sub = await service.confirm(body.token)
        except (NotFound, Gone):
            raise Problem(404, UNKNOWN) from None
        return SubscriptionState(status="confirmed", kind=sub.kind)

    @router.post("/alerts/unsubscribe", response_model=SubscriptionState, summary="End a subscription")
    async def unsubscribe(body: TokenRequest) -> SubscriptionState:
        try:
            sub = await service.unsubscribe(body.token)
        except NotFound:
            raise Problem(404, UNKNOWN) from None
        return SubscriptionState(status="ended", kind=sub.kind)

    @router.post(
        "/alerts/maintenance",
        response_model=Maintenance,
        dependencies=[Depends(staff_guard(settings.staff_token))],
        summary="Send due weekly digests and purge expired sign-ups now (staff)",
    )
    async def maintenance() -> Maintenance:
        digests, purged = await service.maintain()
        return Maintenance(digests=digests, purged=purged)

    return router
