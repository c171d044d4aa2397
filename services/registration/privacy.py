"""Registration's adapter for the purge command `qti forget-person <email>` (`qti_runtime.ops`).

`forget_person(db, email)` makes registration forget one person, in one transaction, on a running system
(replicas may be deciding and cancelling meanwhile), and returns how many rows it anonymised. The SQL of
the purge lives here, next to the calls into the service's own cancellation and rejection logic.

What happens, in the lock order every handler uses (offering row `FOR UPDATE`, then registrations):

1. The person's registrations are found by e-mail (stored trimmed and lower-cased; the address given is
   normalised the same way, NFC and lower case, so the match ignores case and surrounding spaces).
2. Every registration that is still live and not yet history is cancelled through
   `RegistrationService._cancel_registration` with cause `participant` (the person asked): the seat is
   freed, the first on the waiting list is promoted, and `registration.cancelled` /
   `registration.confirmed` (`from_waitlist`) leave through the outbox, as for any cancellation.
   "Not yet history" means: waitlisted (always), or confirmed for a published offering whose first
   session has not begun. A confirmed place in an offering that has begun or taken place stays confirmed
   (attendance and completion are facts the funder's figures need); it is only anonymised.
3. Each of those registrations is anonymised: `email` becomes `forgotten+<registration_id>@invalid`
   (unique, undeliverable by design), the `participant` document keeps no name, address, gender or age
   band. Company data and all counters stay (they are not the person's data).
4. The stored outcomes of the person's requests (`requests.outcome`, replayed to a client that repeats
   its request id) keep their shape, so a redelivered request is still answered idempotently, but their
   participant is replaced by the same anonymous document.
5. Requests still waiting for their offering (`deferred`, the envelope holds the person's data) are
   answered now with `registration.rejected` / `consent_missing` (asking to be forgotten withdraws the
   consent); that also drops the envelope.

Not covered, by nature:

* Events already published (to notification, reporting, frontends' reply queues) are gone; the other
  services run their own purge. While an event about the person is still unpublished in this service's
  outbox (it normally leaves within milliseconds), the purge waits for the relay up to
  `OUTBOX_WAIT_SECONDS` and otherwise refuses with an error: rewriting or dropping such an event would
  leave the other services inconsistent, and publishing it after the purge would bring the data back.
* A request of the person still queued in the broker is decided after the purge. Run the command again
  once the queues are empty; it is idempotent (a second run finds nothing and returns 0).
"""

from __future__ import annotations

import asyncio
import json
import time
import unicodedata
import uuid
from typing import Any, Final

import asyncpg

from qti_contracts import CancellationCause, OfferingStatus, RejectionReason
from qti_runtime.db import Database
from qti_runtime.logging import get_logger
from qti_runtime.ops import OpsError
from qti_runtime.unit_of_work import UnitOfWork, unit_of_work
from services.registration import store
from services.registration.domain import Status
from services.registration.handlers import Decisions, RegistrationService, RequestContext

log = get_logger(__name__)

CANCEL_REASON: Final = "Löschung der personenbezogenen Daten auf Wunsch der angemeldeten Person"
REJECT_DETAIL: Final = (
    "Die Einwilligung in die Datenverarbeitung wurde widerrufen und die Daten wurden gelöscht. "
    "Die Anfrage wird deshalb nicht bearbeitet."
)
ANONYMOUS_NAME: Final = "[gelöscht]"
OUTBOX_WAIT_SECONDS: Final = 15.0
RETRIES: Final = 5


class PurgeBlocked(OpsError):
    """The outbox still holds unpublished events about the person."""


class _OutboxBusy(Exception):
    def __init__(self, count: int) -> None:
        super().__init__(count)
        self.count = count


def normalise(email: str) -> str:
    return unicodedata.normalize("NFC", email.strip()).lower()


def placeholder(registration_id: str) -> str:
    return f"forgotten+{registration_id}@invalid"


def anonymous_participant(registration_id: str) -> dict[str, Any]:
    return {
        "given_name": ANONYMOUS_NAME,
        "family_name": ANONYMOUS_NAME,
        "email": placeholder(registration_id),
        "gender": "unspecified",
        "age_band": "unspecified",
    }


async def forget_person(db: Database, email: str) -> int:
    """Cancel the person's live registrations and anonymise everything kept of them; rows changed."""
    target = normalise(email)
    if not target:
        raise OpsError("no e-mail address given")
    service = RegistrationService(db)
    deadline = time.monotonic() + OUTBOX_WAIT_SECONDS
    attempt = 0
    while True:
        try:
            async with unit_of_work(db) as uow:
                waiting = await _unpublished_about(uow.conn, target)
                if waiting:
                    raise _OutboxBusy(waiting)
                return await _forget(uow, service, target)
        except _OutboxBusy as busy:
            if time.monotonic() > deadline:
                raise PurgeBlocked(
                    f"registration: {busy.count} event(s) about this person are not published yet "
                    "(is the registration service running? see `qti outbox registration`); "
                    "nothing was changed, run the command again once they are published"
                ) from None
            await asyncio.sleep(0.2)
        except (asyncpg.DeadlockDetectedError, asyncpg.SerializationError):
            attempt += 1
            if attempt >= RETRIES:
                raise
            await asyncio.sleep(0.05 * attempt)


async def _unpublished_about(conn: asyncpg.Connection, target: str) -> int:
    count = await conn.fetchval(
        "SELECT count(*) FROM outbox WHERE position($1 IN lower(convert_from(body, 'UTF8'))) > 0", target
    )
    return int(count)


# The person's registrations: `email` is stored normalised; the participant document is checked too.
_PERSON: Final = "(r.email = $1 OR lower(btrim(r.participant->>'email')) = $1)"


async def _lock_registrations(uow: UnitOfWork, target: str) -> list[asyncpg.Record]:
    """The person's registrations, locked after their offerings (the handlers' lock order)."""
    locked: set[str] = set()
    while True:
        offerings = {
            r["offering_id"]
            for r in await uow.conn.fetch(
                f"SELECT DISTINCT r.offering_id FROM registrations r WHERE {_PERSON}", target
            )
        }
        for offering_id in sorted(offerings - locked):
            await store.lock_offering(uow.conn, offering_id)
            locked.add(offering_id)
        rows = await uow.conn.fetch(
            "SELECT r.registration_id, r.request_id, r.offering_id, r.status,"
            " o.status AS offering_status,"
            " (o.first_session_start IS NULL OR o.first_session_start > now()) AS not_begun"
            f" FROM registrations r JOIN offerings o USING (offering_id) WHERE {_PERSON}"
            " ORDER BY r.registration_id FOR UPDATE OF r",
            target,
        )
        if {r["offering_id"] for r in rows} <= locked:
            return list(rows)
        # A registration for another offering was decided meanwhile: lock that offering too.


# A stored outcome keeps its shape (a repeated request is answered again), without the person in it.
_SCRUB_OUTCOME: Final = (
    "UPDATE requests SET outcome = jsonb_set(outcome, '{data,participant}', $2::jsonb), envelope = NULL"
    " WHERE request_id = $1 AND outcome->'data' ? 'participant'"
)


async def _forget(uow: UnitOfWork, service: RegistrationService, target: str) -> int:
    rows = await _lock_registrations(uow, target)
    correlation = str(uuid.uuid4())
    cancelled = 0
    for row in rows:
        waitlisted = row["status"] == Status.WAITLISTED
        upcoming = (
            row["status"] == Status.CONFIRMED
            and row["offering_status"] == OfferingStatus.PUBLISHED
            and row["not_begun"]
        )
        if waitlisted or upcoming:
            await service._cancel_registration(
                uow, row["registration_id"], CancellationCause.PARTICIPANT, CANCEL_REASON, correlation
            )
            cancelled += 1
    changed = 0
    for row in rows:
        anonymous = json.dumps(anonymous_participant(row["registration_id"]))
        await uow.conn.execute(
            "UPDATE registrations SET email = $2, participant = $3::jsonb, updated_at = now()"
            " WHERE registration_id = $1",
            row["registration_id"],
            placeholder(row["registration_id"]),
            anonymous,
        )
        changed += 1
        changed += _count(await uow.conn.execute(_SCRUB_OUTCOME, row["request_id"], anonymous))
    # Outcomes naming the person whose registration row is gone or was never written (defensive).
    for request in await uow.conn.fetch(
        "SELECT request_id FROM requests WHERE lower(btrim(outcome->'data'->'participant'->>'email')) = $1"
        " ORDER BY request_id FOR UPDATE",
        target,
    ):
        anonymous = json.dumps(anonymous_participant(request["request_id"]))
        changed += _count(await uow.conn.execute(_SCRUB_OUTCOME, request["request_id"], anonymous))
    # A rejection's stored outcome names its recipient (for notification's mail): the recipient goes.
    changed += _count(
        await uow.conn.execute(
            "UPDATE requests SET outcome = outcome #- '{data,recipient}', envelope = NULL"
            " WHERE lower(btrim(outcome->'data'->'recipient'->>'email')) = $1",
            target,
        )
    )
    changed += await _reject_deferred(uow, service, target)
    log.info("privacy.forgotten", registrations=len(rows), cancelled=cancelled, changed=changed)
    return changed


async def _reject_deferred(uow: UnitOfWork, service: RegistrationService, target: str) -> int:
    """Requests waiting for their offering are answered now (consent withdrawn); the envelope goes."""
    records = await uow.conn.fetch(
        "SELECT * FROM requests WHERE status = 'deferred'"
        " AND lower(btrim(envelope->'data'->'participant'->>'email')) = $1"
        " ORDER BY request_id FOR UPDATE",
        target,
    )
    decisions = Decisions()
    for record in records:
        envelope = json.loads(record["envelope"])
        ctx = RequestContext(
            record["request_id"],
            envelope.get("correlationid") or record["request_id"],
            record["reply_to"],
            record["correlation_id"],
        )
        service._reject(
            uow, decisions, ctx, record["offering_id"], RejectionReason.CONSENT_MISSING, REJECT_DETAIL
        )
    await decisions.write(uow)
    # Anything else still carrying the person's envelope (not expected: decided requests drop it).
    result: str = await uow.conn.execute(
        "UPDATE requests SET envelope = NULL WHERE status <> 'deferred'"
        " AND lower(btrim(envelope->'data'->'participant'->>'email')) = $1",
        target,
    )
    return len(records) + _count(result)


def _count(status: str) -> int:
    """Rows affected, from a command status such as `UPDATE 3`."""
    return int(status.rsplit(maxsplit=1)[-1])
