"""Rate limits shared by every replica of a service: fixed-window counters in the service's schema.

One statement per hit counts all of a request's rules at once (`INSERT ... ON CONFLICT DO UPDATE ...
RETURNING`), with the database's clock, so replicas on different machines agree on the windows. A fixed
window may let up to twice the limit through around a window's end; that is accepted for one round trip
and an exact `Retry-After` (the seconds until the window ends).

Subjects (a client address, an e-mail address) are stored only as a keyed hash (HMAC-SHA256), and a row
lives no longer than its window: expired rows are deleted, a bounded batch at a time, by whichever
replica counts next after `cleanup_seconds`.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import time
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from qti_runtime.logging import get_logger

log = get_logger(__name__)

_HIT = """
WITH clock AS (SELECT extract(epoch FROM clock_timestamp())::float8 AS now),
hit AS (
    SELECT r.bucket, (floor(clock.now / r.seconds) * r.seconds)::bigint AS window_start, r.seconds
    FROM unnest($1::text[], $2::integer[]) AS r(bucket, seconds), clock
)
INSERT INTO rate_limits AS rl (bucket, window_start, window_end, hits)
SELECT bucket, window_start, window_start + seconds, 1 FROM hit
ON CONFLICT (bucket, window_start) DO UPDATE SET hits = least(rl.hits + 1, 2147483647)
RETURNING rl.bucket, rl.hits, rl.window_end, (SELECT now FROM clock) AS now
"""

# Bounded, so a cleanup after a long quiet period never holds a hit up for long; rows another replica
# is deleting (or counting) are skipped, never waited for.
_CLEANUP = """
DELETE FROM rate_limits WHERE ctid = ANY(ARRAY(
    SELECT ctid FROM rate_limits WHERE window_end < extract(epoch FROM clock_timestamp())
    LIMIT 1000 FOR UPDATE SKIP LOCKED))
"""


@dataclass(frozen=True, slots=True)
class Rule:
    """At most `limit` hits per subject in each window of `window_seconds` (aligned to Unix time)."""

    name: str
    limit: int
    window_seconds: int


@dataclass(frozen=True, slots=True)
class Verdict:
    rule: Rule
    hits: int  # in the current window, this hit included
    retry_after: int  # whole seconds until the window ends (at least 1)

    @property
    def allowed(self) -> bool:
        return self.hits <= self.rule.limit


class RateLimiter:
    """Counts hits per (rule, subject) in the `rate_limits` table of the connection's schema."""

    def __init__(self, secret: str, *, cleanup_seconds: float = 60.0) -> None:
        # A key of its own, derived from the given secret: the stored hashes reveal nothing about links
        # or pseudonyms made with the secret itself.
        self._key = hmac.new(secret.encode(), b"qti-rate-limit", hashlib.sha256).digest()
        self._cleanup_seconds = cleanup_seconds
        self._last_cleanup = time.monotonic()

    def bucket(self, rule: Rule, subject: str) -> str:
        digest = hmac.new(self._key, subject.encode(), hashlib.sha256).hexdigest()[:32]
        return f"{rule.name}:{digest}"

    async def hit(self, conn: asyncpg.Connection, checks: Sequence[tuple[Rule, str]]) -> list[Verdict]:
        """Count one hit for each (rule, subject); verdicts in the order of `checks`."""
        if not checks:
            return []
        buckets = {self.bucket(rule, subject): rule for rule, subject in checks}
        # Rows are locked in bucket order, so concurrent hits on overlapping buckets cannot deadlock.
        ordered = sorted(buckets)
        records = await conn.fetch(_HIT, ordered, [buckets[b].window_seconds for b in ordered])
        by_bucket = {r["bucket"]: (r["hits"], max(1, math.ceil(r["window_end"] - r["now"]))) for r in records}
        await self._cleanup(conn)
        verdicts = []
        for rule, subject in checks:
            hits, retry_after = by_bucket[self.bucket(rule, subject)]
            verdicts.append(Verdict(rule, hits, retry_after))
        return verdicts

    async def exceeded(self, conn: asyncpg.Connection, checks: Sequence[tuple[Rule, str]]) -> Verdict | None:
        """Count the hits; the exceeded rule that frees up last, or None if every rule allows it."""
        over = [v for v in await self.hit(conn, checks) if not v.allowed]
        return max(over, key=lambda v: v.retry_after) if over else None

    async def _cleanup(self, conn: asyncpg.Connection) -> None:
        if time.monotonic() - self._last_cleanup < self._cleanup_seconds:
            return
        self._last_cleanup = time.monotonic()
        try:
            # A savepoint when the caller is inside a transaction: a failure here must not abort it.
            async with conn.transaction():
                await conn.execute(_CLEANUP)
        except asyncpg.PostgresError as exc:  # best effort: the next replica's turn will do it
            log.warning("ratelimit.cleanup_failed", error=repr(exc))


def mailbox(email: str) -> str:
    """The mailbox an address reaches, as a rate-limit subject: trimmed, NFC, lower case, without a
    `+tag` (so `anna+1@…` and `anna+2@…` count as `anna@…`, as most mail servers deliver them)."""
    local, _, domain = unicodedata.normalize("NFC", email.strip()).lower().rpartition("@")
    return f"{local.split('+', 1)[0]}@{domain}"
