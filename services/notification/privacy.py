"""Notification's adapter for the purge command `qti forget-person <email>` (`qti_runtime.ops`).

`forget_person(db, email)` removes or anonymises, in one transaction, everything notification keeps of
one person, and returns the number of rows changed. The SQL of the purge lives here.

* `requests` (name and address kept until a request's outcome arrives, for a rejection mail): deleted.
  A rejection arriving later finds no address and is kept without one, as for any unknown request.
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

The address is matched case-insensitively (trimmed, NFC, `lower()`). Handlers of one registration or
request serialise on a transaction-scoped advisory lock (`store.lock`); the purge takes the same locks,
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
    """Delete the person's requests, anonymise recipients and deliveries, stop unsent mails; rows changed."""
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
    keys: set[tuple[str, str]] = set()
    for row in await conn.fetch(f"SELECT registration_id FROM recipients WHERE {_MATCH}", target):
        keys.add(("registration", row["registration_id"]))
    for row in await conn.fetch(f"SELECT request_id FROM requests WHERE {_MATCH}", target):
        keys.add(("request", row["request_id"]))
    for row in await conn.fetch(
        f"SELECT DISTINCT registration_id, request_id FROM deliveries WHERE {_MATCH}", target
    ):
        if row["registration_id"] is not None:
            keys.add(("registration", row["registration_id"]))
        elif row["request_id"] is not None:
            keys.add(("request", row["request_id"]))
    for namespace, key in sorted(keys):
        await store.lock(conn, namespace, key)

    requests = _count(await conn.execute(f"DELETE FROM requests WHERE {_MATCH}", target))
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
    log.info("privacy.forgotten", requests=requests, recipients=recipients, deliveries=deliveries)
    return requests + recipients + deliveries


def _count(status: str) -> int:
    """Rows affected, from a command status such as `UPDATE 3`."""
    return int(status.rsplit(maxsplit=1)[-1])
