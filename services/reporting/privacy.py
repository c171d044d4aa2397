"""Reporting's adapter for the purge command `qti forget-person <email>` (`qti_runtime.ops`).

Reporting never stores names or addresses: a person appears only as the keyed pseudonym `person_ref`
(`domain.person_ref`: HMAC of the trimmed, lower-cased address with `QTI_PSEUDONYM_KEY`). Whoever holds
the key and the address can recompute it, so the purge cuts that link, in one transaction:

* the person's pseudonym is computed with the configured key (`ReportingSettings`, as the service does);
* it is replaced by one fresh random token of the same form (`p-` + 32 hex digits) everywhere it is kept:
  the raw log (`event_log.data`, wherever it occurs; today `data -> person -> person_ref` of
  `registration.confirmed` / `.waitlisted`, the only events whose scrubbed form names a person, see
  `domain.scrub`) and the projection (`registrations.person_ref`).

Because every occurrence gets the same token, the figures stay exactly as they were (unique participants,
participations, groupings) and a rebuild from the log gives the same projections; only aggregates about
the person are left. Company pseudonyms, gender and age band stay: they are not the person's identity
and the funder's figures need them. Nothing else holds person refs: `requests` and `notifications` have
no person, KPI events and snapshots hold aggregates only, `inbox` holds event ids.

Locks: the projection rows first, then the log rows (row locks of the `UPDATE`s), in one transaction;
a rebuild (one transaction, `TRUNCATE` of the projections) and the purge therefore run one after the
other. An event about the person that arrives after the purge (it can only come from registration,
which the purge command handles first) would carry the old pseudonym; run the command again once the
queues are empty. It is idempotent: once the pseudonym is gone nothing matches and it returns 0.

Rows pseudonymised under an earlier key (after a key change) cannot be found from the address.
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
from services.reporting.domain import person_ref
from services.reporting.settings import ReportingSettings

log = get_logger(__name__)

RETRIES: Final = 5


def normalise(email: str) -> str:
    return unicodedata.normalize("NFC", email.strip()).lower()


def fresh_ref() -> str:
    """A random stand-in of the same form as `domain.pseudonym(key, "person", …)`."""
    return f"p-{secrets.token_hex(16)}"


async def forget_person(db: Database, email: str, settings: ReportingSettings | None = None) -> int:
    """Replace the person's pseudonym by a random token in the log and the projections; rows changed."""
    target = normalise(email)
    if not target:
        raise OpsError("no e-mail address given")
    config = settings or ReportingSettings()
    old = person_ref(config.pseudonym_key.get_secret_value().encode(), target)
    attempt = 0
    while True:
        try:
            async with db.transaction() as conn:
                return await _replace(conn, old, fresh_ref())
        except (asyncpg.DeadlockDetectedError, asyncpg.SerializationError):
            attempt += 1
            if attempt >= RETRIES:
                raise
            await asyncio.sleep(0.05 * attempt)


async def _replace(conn: asyncpg.Connection, old: str, new: str) -> int:
    projection = _count(
        await conn.execute("UPDATE registrations SET person_ref = $2 WHERE person_ref = $1", old, new)
    )
    logged = _count(
        await conn.execute(
            # Text replacement: catches the ref wherever a scrubbed event keeps it (today only
            # data.person.person_ref); the ref is `p-` and hex digits, so it never matches anything else.
            "UPDATE event_log SET data = replace(data::text, $1, $2)::jsonb WHERE strpos(data::text, $1) > 0",
            old,
            new,
        )
    )
    log.info("privacy.forgotten", projection_rows=projection, log_rows=logged)
    return projection + logged


def _count(status: str) -> int:
    """Rows affected, from a command status such as `UPDATE 3`."""
    return int(status.rsplit(maxsplit=1)[-1])
