"""Notification's adapter for the purge command `qti forget-person <email>` (`qti_runtime.ops`).

`forget_person(db, email)` removes or anonymises, in one transaction, everything notification keeps of
one person, and returns the number of rows changed. The SQL of the purge lives here.

* `recipients` (per registration): name, address and gender are cleared (`NULL`), exactly the shape of
  a tombstone. So later events for those registrations mail nobody: a cancellation is recorded without
  a mail, offering changes and cancellations skip recipients without an address (`live_recipients`).
* `deliveries` (the delivery log): the row stays for the log and the counts, but the address becomes the
  placeholder `forgotten@invalid`, the names are emptied, the parameters (which may quote the mail) are
  cleared and the keyed `recipient_ref` becomes a fresh random token (one per purge). Rows not sent yet
  (`pending`, reminders due later, and `sending`) become `skipped` with `last_error` "forgotten on
  request": the sender only claims `pending`/`sending` rows, so nothing goes out to the person afterwards.
  A mail that a sender is handing to the SMTP server at this very moment may still arrive; its `sent`
  mark is then refused (the row is no longer `sending`), so the log says `skipped`.

The address is matched case-insensitively (trimmed, NFC, `lower()`). Handlers of one registration
serialise on a transaction-scoped advisory lock (`store.lock`); the purge takes the same locks,
in a fixed order, before it touches the rows, then locks recipients before deliveries as the handlers do.
A deadlock or serialisation failure with a concurrent handler is retried.

Events already published by the other services may still bring the person's data in, e.g. a
`registration.confirmed` that was queued when the purge ran; run the command again once the queues are
empty (it is idempotent: a second run returns 0).
"""

from __future__ import annotations

import asyncio
import secrets
import unicodedata
from typing import Final

import asyncpg

from qti_runtime.db import Database
from qti_runtime.logging import get_logger
from qti_runtime.ops import OpsError
from services.notification import store

log = get_logger(__name__)

PLACEHOLDER_EMAIL: Final = "forgotten@invalid"
FORGOTTEN: Final = "forgotten on request"
RETRIES: Final = 5

_MATCH: Final = "lower(btrim(email)) = $1"


def normalise(email: str) -> str:
    return unicodedata.normalize("NFC", email.strip()).lower()


async def forget_person(db: Database, email: str) -> int:
    """Anonymise the person's recipients and deliveries, stop unsent mails; returns the rows changed."""
    target = normalise(email)
    if not target:
        raise OpsError("no e-mail address given")
    attempt = 0
    while True:
        try:
            async with db.transaction() as conn:
                return await _forget(conn, target)
        except (asyncpg.DeadlockDetectedError, asyncpg.SerializationError):
            attempt += 1
            if attempt >= RETRIES:
                raise
            await asyncio.sleep(0.05 * attempt)


async def _forget(conn: asyncpg.Connection, target: str) -> int:
    registrations = await conn.fetch(
        f"SELECT registration_id FROM recipients WHERE {_MATCH}"
        f" UNION SELECT registration_id FROM deliveries WHERE {_MATCH} AND registration_id IS NOT NULL"
        " ORDER BY 1",
        target,
    )
    for row in registrations:
        await store.lock(conn, "registration", row["registration_id"])
    recipients = _count(
        await conn.execute(
            "UPDATE recipients SET given_name = NULL, family_name = NULL, email = NULL,"
            f" gender = 'unspecified', updated_at = now() WHERE {_MATCH}",
            target,
        )
    )
    token = f"rcpt-{secrets.token_hex(20)}"
    deliveries = _count(
        await conn.execute(
            "UPDATE deliveries SET email = $2, given_name = '', family_name = '', gender = 'unspecified',"
            " recipient_ref = $3, params = '{}'::jsonb,"
            " last_error = CASE WHEN status IN ('pending', 'sending') THEN $4 ELSE last_error END,"
            " lease_token = CASE WHEN status IN ('pending', 'sending') THEN NULL ELSE lease_token END,"
            " status = CASE WHEN status IN ('pending', 'sending') THEN 'skipped' ELSE status END,"
            f" updated_at = now() WHERE {_MATCH}",
            target,
            PLACEHOLDER_EMAIL,
            token,
            FORGOTTEN,
        )
    )
    # Offer alerts and interest of the address (ended ones hold no address any more).
    subscriptions = _count(await conn.execute(f"DELETE FROM alert_subscriptions WHERE {_MATCH}", target))
    log.info("privacy.forgotten", recipients=recipients, deliveries=deliveries, subscriptions=subscriptions)
    return recipients + deliveries + subscriptions


def _count(status: str) -> int:
    """Rows affected, from a command status such as `UPDATE 3`."""
    return int(status.rsplit(maxsplit=1)[-1])
