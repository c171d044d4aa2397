"""Offer alerts ("Angebotsalarm") and interest ("Interesse melden"): the pure rules, no I/O.

A subscription is `pending` from the sign-up until its confirmation link is used (double opt-in: nothing
but the confirmation mail goes to the address before), then `confirmed`, and `ended` when unsubscribed,
expired unconfirmed, fulfilled (an interest, once told) or forgotten. Ended is final.

Tokens are HMAC-SHA256 of the subscription id with `QTI_LINK_SECRET` (256 bits, one key per purpose), so
the sender can put them into mails without storing them; the table keeps only their SHA-256 hashes to
find a subscription by the token of a link.

Matching (`matches`, and the one SQL statement in `alert_store.MATCH_*` that must agree with it): a
subscription wants an offering when its topic is among the subscription's topics (none named: every
topic), its kind among the kinds (none: every kind), and it takes place in one of the counties or at
one of the nodes named (neither named: anywhere).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final, Literal

from pydantic import SecretStr

from qti_contracts import (
    AlertEndCause,
    AlertEnded,
    AlertFrequency,
    AlertKind,
    AlertSubscription,
    County,
    OfferingKind,
    Topic,
)

Status = Literal["pending", "confirmed", "ended"]
TokenPurpose = Literal["confirm", "unsubscribe"]

CONFIRM_TEMPLATE: Final = "alert_confirm"
ALERT_TEMPLATE: Final = "alert"
DIGEST_TEMPLATE: Final = "alert_digest"
INTEREST_TEMPLATE: Final = "interest_match"
ALERT_TEMPLATES: Final = frozenset({CONFIRM_TEMPLATE, ALERT_TEMPLATE, DIGEST_TEMPLATE, INTEREST_TEMPLATE})
# Mails that carry List-Unsubscribe (RFC 8058): every mail sent because of a confirmed subscription.
UNSUBSCRIBABLE_TEMPLATES: Final = frozenset({ALERT_TEMPLATE, DIGEST_TEMPLATE, INTEREST_TEMPLATE})

SOURCES: Final = {AlertKind.ALERT: "portal Angebotsalarm", AlertKind.INTEREST: "portal Interesse melden"}
_PURPOSES: Final[dict[TokenPurpose, bytes]] = {
    "confirm": b"qti-net alert confirm v1\x00",
    "unsubscribe": b"qti-net alert unsubscribe v1\x00",
}


def new_subscription_id() -> str:
    return f"alr-{secrets.token_hex(16)}"


def token(link_secret: SecretStr, purpose: TokenPurpose, subscription_id: str) -> str:
    """The token of a confirm or unsubscribe link (43 URL-safe characters)."""
    digest = hmac.new(
        link_secret.get_secret_value().encode(), _PURPOSES[purpose] + subscription_id.encode(), hashlib.sha256
    ).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def token_hash(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


def confirm_link(portal_url: str, value: str) -> str:
    return f"{portal_url.rstrip('/')}/angebotsalarm/bestaetigen/{value}"


def unsubscribe_link(portal_url: str, value: str) -> str:
    return f"{portal_url.rstrip('/')}/angebotsalarm/abmelden/{value}"


@dataclass(frozen=True, slots=True)
class Interests:
    """What a subscription asks for; empty tuples mean "any"."""

    topics: tuple[Topic, ...] = ()
    kinds: tuple[OfferingKind, ...] = ()
    counties: tuple[County, ...] = ()
    nodes: tuple[str, ...] = ()


def matches(want: Interests, *, topic: str, kind: str, county: str | None, node_id: str) -> bool:
    """Whether an offering (its topic, kind, node and the node's county) is one the subscriber wants."""
    if want.topics and topic not in want.topics:
        return False
    if want.kinds and kind not in want.kinds:
        return False
    if not want.counties and not want.nodes:
        return True
    return (county is not None and county in want.counties) or node_id in want.nodes


@dataclass
class Subscription:
    """The aggregate: state transitions record the events to publish in `events`."""

    subscription_id: str
    kind: AlertKind
    recipient_ref: str
    interests: Interests
    frequency: AlertFrequency
    status: Status
    consent_text_version: str
    source: str
    expires_at: datetime
    events: list[tuple[str, AlertSubscription | AlertEnded]] = field(default_factory=list)

    @classmethod
    def sign_up(
        cls,
        *,
        kind: AlertKind,
        recipient_ref: str,
        interests: Interests,
        frequency: AlertFrequency,
        consent_text_version: str,
        now: datetime,
        expiry: timedelta,
    ) -> Subscription:
        sub = cls(
            subscription_id=new_subscription_id(),
            kind=kind,
            recipient_ref=recipient_ref,
            interests=interests,
            frequency=AlertFrequency.IMMEDIATE if kind is AlertKind.INTEREST else frequency,
            status="pending",
            consent_text_version=consent_text_version,
            source=SOURCES[kind],
            expires_at=now + expiry,
        )
        sub.events.append(("notification.alert.subscribed", sub.snapshot()))
        return sub

    def snapshot(self) -> AlertSubscription:
        return AlertSubscription(
            subscription_id=self.subscription_id,
            kind=self.kind,
            recipient_ref=self.recipient_ref,
            topics=list(self.interests.topics),
            kinds=list(self.interests.kinds),
            counties=list(self.interests.counties),
            nodes=list(self.interests.nodes),
            frequency=self.frequency,
            consent_text_version=self.consent_text_version,
            source=self.source,
        )

    def confirm(self, now: datetime) -> bool:
        """pending → confirmed (True); a confirmed one stays (False, idempotent). Raises `Gone` when the
        subscription ended or its sign-up expired."""
        if self.status == "confirmed":
            return False
        if self.status == "ended" or now >= self.expires_at:
            raise Gone(self.subscription_id)
        self.status = "confirmed"
        self.events.append(("notification.alert.confirmed", self.snapshot()))
        return True

    def end(self, cause: AlertEndCause) -> bool:
        """→ ended (True); an ended one stays ended (False, idempotent)."""
        if self.status == "ended":
            return False
        was_confirmed = self.status == "confirmed"
        self.status = "ended"
        self.events.append(
            (
                "notification.alert.ended",
                AlertEnded(
                    subscription_id=self.subscription_id,
                    kind=self.kind,
                    recipient_ref=self.recipient_ref,
                    cause=cause,
                    was_confirmed=was_confirmed,
                    topics=list(self.interests.topics),
                    counties=list(self.interests.counties),
                ),
            )
        )
        return True


class Gone(Exception):
    """The subscription ended or its sign-up expired: the link no longer works."""


def unique(values: Sequence[str]) -> tuple[str, ...]:
    """Values in first-seen order, each once."""
    return tuple(dict.fromkeys(values))
