"""Anonymous feedback: registration decides who may answer (once), and passes answers on without a person.

Eligibility: a confirmed participant who attended at least one session, decided when the last session's
attendance of that participant is recorded (the moment registration also decides completion). Then a
ticket is kept and `registration.feedback.invited` asks notification to mail the link.

The ticket is the SHA-256 of the token `HMAC(QTI_LINK_SECRET, "feedback ticket", registration id)`
(`qti_runtime.links.feedback_token`) with the offering id and a `spent` flag: no registration id, no
person, no time. Notification derives the same token for the mail; it travels in no event.

Spending it (`POST /feedback` with the token in `X-Feedback-Token`) marks the ticket spent and writes
`registration.feedback.submitted` (offering id and answers only) to the outbox in one transaction. That
event's id is random and its time is the day only, so neither carries anything of the ticket. What is
left (docs/security.md): whoever holds `QTI_LINK_SECRET` and reads the tickets table can tell *which*
registrations answered, not what; an answer's arrival moment is seen by the outbox relay and the broker
for the instant it travels, and a single answer on a day could be matched with a single spent ticket by
someone watching the database at that moment.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime, time
from typing import Any, Final

import asyncpg
from pydantic import SecretStr

from qti_contracts import FeedbackInvited, FeedbackSubmitted, RoutingKey, make_event
from qti_runtime import links
from qti_runtime.db import Database
from qti_runtime.unit_of_work import UnitOfWork, unit_of_work
from services.registration.repository import SOURCE

MAX_COMMENT: Final = 2000
TOKEN_LENGTH: Final = 43
_TOKEN_CHARS: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


class TicketUnknown(Exception):
    """No ticket for this token (never issued, forged or malformed)."""


class TicketSpent(Exception):
    """The ticket was used already."""


@dataclass(frozen=True, slots=True)
class Answer:
    rating: int
    usefulness: int
    would_recommend: bool
    comment: str | None


def plausible_token(token: str | None) -> bool:
    """Shape check before any hashing or database work (43 URL-safe characters)."""
    return token is not None and len(token) == TOKEN_LENGTH and set(token) <= _TOKEN_CHARS


def _score(raw: dict[str, Any], field: str, label: str, errors: dict[str, str]) -> int:
    value = raw.get(field)
    if isinstance(value, str) and value.strip().isdigit() and len(value.strip()) == 1:
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 5:
        errors[field] = f"Bitte wählen Sie bei „{label}“ einen Wert von 1 bis 5."
        return 0
    return value


def _recommend(raw: dict[str, Any], errors: dict[str, str]) -> bool:
    value = raw.get("would_recommend")
    if value in ("ja", "yes", "true"):
        return True
    if value in ("nein", "no", "false"):
        return False
    if not isinstance(value, bool):
        errors["would_recommend"] = "Bitte wählen Sie, ob Sie die Veranstaltung weiterempfehlen würden."
        return False
    return value


def _comment(raw: dict[str, Any], errors: dict[str, str]) -> str | None:
    value = raw.get("comment")
    if value is None:
        return None
    if not isinstance(value, str):
        errors["comment"] = "Der Kommentar muss ein Text sein."
        return None
    text = unicodedata.normalize("NFC", value.replace("\r\n", "\n")).strip()
    if len(text) > MAX_COMMENT:
        errors["comment"] = f"Der Kommentar darf höchstens {MAX_COMMENT} Zeichen lang sein."
    elif any(unicodedata.category(ch) in {"Cc", "Cs"} and ch not in "\n\t" for ch in text):
        errors["comment"] = "Der Kommentar enthält Steuerzeichen; bitte nur normalen Text eingeben."
    return text or None


def check_answer(raw: object) -> tuple[Answer | None, dict[str, str]]:
    """The answer, or German messages per field (closed values; free text ≤ 2000 characters)."""
    if not isinstance(raw, dict):
        return None, {"(root)": "Die Rückmeldung muss ein JSON-Objekt sein."}
    errors: dict[str, str] = {}
    answer = Answer(
        rating=_score(raw, "rating", "Gesamteindruck", errors),
        usefulness=_score(raw, "usefulness", "Nutzen für die Arbeit", errors),
        would_recommend=_recommend(raw, errors),
        comment=_comment(raw, errors),
    )
    return (None, errors) if errors else (answer, {})


async def invite_once(
    uow: UnitOfWork, link_secret: SecretStr, offering_id: str, registration_id: str
) -> None:
    """Keep the attendee's ticket and ask notification to mail the link, once per registration."""
    token_hash = links.token_hash(links.feedback_token(link_secret, registration_id))
    created = await uow.conn.fetchval(
        "INSERT INTO feedback_tickets (token_hash, offering_id) VALUES ($1, $2)"
        " ON CONFLICT (token_hash) DO NOTHING RETURNING true",
        token_hash,
        offering_id,
    )
    if created:
        payload = FeedbackInvited(registration_id=registration_id, offering_id=offering_id)
        uow.emit(
            make_event(
                RoutingKey.FEEDBACK_INVITED,
                payload,
                source=SOURCE,
                subject=registration_id,
                correlationid=registration_id,
            )
        )


async def ticket_state(db: Database, token: str) -> tuple[str, bool] | None:
    """(offering id, spent) of the token's ticket, or None."""
    async with db.pool.acquire() as conn:
        record = await conn.fetchrow(
            "SELECT offering_id, spent FROM feedback_tickets WHERE token_hash = $1", links.token_hash(token)
        )
    return (record["offering_id"], record["spent"]) if record else None


async def submit(db: Database, token: str, answer: Answer) -> str:
    """Spend the ticket and publish the answer (one transaction); returns the offering id.
    Raises TicketUnknown or TicketSpent."""
    async with unit_of_work(db) as uow:
        offering_id = await _spend(uow.conn, links.token_hash(token))
        payload = FeedbackSubmitted(
            offering_id=offering_id,
            rating=answer.rating,
            usefulness=answer.usefulness,
            would_recommend=answer.would_recommend,
            comment=answer.comment,
        )
        day = datetime.combine(datetime.now(UTC).date(), time(0, tzinfo=UTC))
        uow.emit(
            make_event(RoutingKey.FEEDBACK_SUBMITTED, payload, source=SOURCE, subject=offering_id, time=day)
        )
    return offering_id


async def _spend(conn: asyncpg.Connection, token_hash: str) -> str:
    offering_id = await conn.fetchval(
        "UPDATE feedback_tickets SET spent = true WHERE token_hash = $1 AND NOT spent RETURNING offering_id",
        token_hash,
    )
    if offering_id is not None:
        return str(offering_id)
    if await conn.fetchval("SELECT true FROM feedback_tickets WHERE token_hash = $1", token_hash):
        raise TicketSpent
    raise TicketUnknown
