"""Pure rules of the notification service: ids, pseudonyms, state transitions, schedules (no I/O)."""

from __future__ import annotations

import hashlib
import hmac
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final, Literal

from qti_contracts import Session

RegistrationStatus = Literal["confirmed", "waitlisted", "cancelled"]

# Templates that carry an iCalendar attachment, and with which iTIP method.
ICS_REQUEST_TEMPLATES: Final = frozenset({"confirmation", "promoted", "offering_changed", "reminder"})
ICS_CANCEL_TEMPLATES: Final = frozenset({"cancelled", "offering_cancelled"})


def notification_id(trigger: str, template: str, registration: str) -> str:
    """Deterministic id of one mail: the same trigger, template and registration give the same id.

    `trigger` is the id of the event that caused the mail (for offering-wide mails whose duplicates may
    come from two events, a key naming the offering instead). `registration` is the registration id or,
    for rejections, the request id.
    """
    digest = hashlib.sha256(f"{trigger}\x1f{template}\x1f{registration}".encode()).hexdigest()
    return f"ntf-{digest[:32]}"


def message_id(notification: str, domain: str) -> str:
    """The Message-ID header of a notification: stable across retries and replicas."""
    return f"<{notification}@{domain}>"


def pseudonym(email: str, key: str) -> str:
    """Keyed HMAC-SHA256 of the lower-cased, trimmed address: stable per person, not reversible."""
    mac = hmac.new(key.encode(), email.strip().lower().encode(), hashlib.sha256).hexdigest()
    return f"rcpt-{mac[:40]}"


def mask_email(email: str) -> str:
    """`anna.schmidt@example.de` → `a***@e***.de` (for the staff delivery-log view)."""
    local, sep, domain = email.rpartition("@")
    if not sep:
        return "***"
    host, dot, tld = domain.rpartition(".")
    masked_domain = f"{host[:1]}***{dot}{tld}" if dot else f"{domain[:1]}***"
    return f"{local[:1]}***@{masked_domain}"


@dataclass(frozen=True, slots=True)
class Transition:
    """What an incoming registration event does to the stored recipient."""

    status: RegistrationStatus
    send: bool  # send the event's own mail
    send_deferred_cancellation: bool = False  # a cancellation seen earlier can now be mailed


def on_registration_outcome(
    current: RegistrationStatus | None, has_address: bool, incoming: Literal["confirmed", "waitlisted"]
) -> Transition:
    """Registration outcomes may be redelivered or overtake each other; never step backwards.

    waitlisted → confirmed is progress; confirmed → waitlisted is a stale event (no mail);
    a cancellation seen before (tombstone without address) wins, and is mailed now.
    """
    if current is None:
        return Transition(incoming, send=True)
    if current == "cancelled":
        return Transition("cancelled", send=False, send_deferred_cancellation=not has_address)
    if current == "waitlisted" and incoming == "confirmed":
        return Transition("confirmed", send=True)
    return Transition(current, send=False)


def sessions_changed(before: Sequence[Session], after: Sequence[Session]) -> bool:
    """True if dates or places changed (added/removed sessions, times, locations); titles do not count."""

    def key(sessions: Sequence[Session]) -> list[tuple[str, datetime, datetime, str]]:
        return sorted((s.session_id, s.starts_at, s.ends_at, s.location.strip()) for s in sessions)

    return key(before) != key(after)


def reminder_due(first_starts_at: datetime, lead_days: float, now: datetime) -> datetime | None:
    """When to send the reminder, or None if that moment has already passed (no late reminders:
    whoever registers within the lead time has the confirmation fresh in the inbox)."""
    due = first_starts_at - timedelta(days=lead_days)
    if due <= now or first_starts_at <= now:
        return None
    return due


def first_session_key(first_starts_at: datetime) -> str:
    """The first session's start as it identifies a reminder (UTC, so that every source of the same
    instant, an event's offset or the database's, gives the same reminder id)."""
    return first_starts_at.astimezone(UTC).isoformat()


def backoff_seconds(attempts: int, base: float, maximum: float, *, jitter: float = 0.1) -> float:
    """Exponential back-off after `attempts` failed tries (1 → base, 2 → 2·base, …), capped, ±jitter."""
    delay = min(base * (2.0 ** max(attempts - 1, 0)), maximum)
    factor: float = 1 + random.uniform(-jitter, jitter)
    return max(0.0, delay * factor)
