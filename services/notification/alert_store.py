"""SQL of offer alerts and interest (tables in migrations/0005_alerts.sql).

Matching a newly published offering against every confirmed subscription is one statement that inserts
the alert mails straight into the delivery log (`deliveries`), however many subscribers match: with
10,000 subscribers that is one INSERT … SELECT, not 10,000 round trips or broker messages
(`python -m bench.alerts`). The WHERE clause is the rule of `alerts.matches`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import asyncpg

from qti_contracts import AlertEndCause, AlertFrequency, AlertKind, County, OfferingKind, Topic
from services.notification.alerts import (
    ALERT_TEMPLATE,
    INTEREST_TEMPLATE,
    Interests,
    Subscription,
)


@dataclass(frozen=True, slots=True)
class OfferingFacts:
    """What matching needs of a published offering."""

    offering_id: str
    topic: str
    kind: str
    node_id: str
    county: str | None  # the node's county code, None while the node is unknown


@dataclass(frozen=True, slots=True)
class MailIdentity:
    """Where the rows come from: the trigger event and the Message-ID domain."""

    event_id: str
    event_type: str
    correlation_id: str | None
    message_id_domain: str


# The subscription's filters against the offering ($2 topic, $3 kind, $4 county, $5 node).
_WANTS: Final = """
    s.status = 'confirmed' AND s.email IS NOT NULL
    AND (cardinality(s.topics) = 0 OR $2 = ANY (s.topics))
    AND (cardinality(s.kinds) = 0 OR $3 = ANY (s.kinds))
    AND ((cardinality(s.counties) = 0 AND cardinality(s.nodes) = 0)
         OR $4 = ANY (s.counties) OR $5 = ANY (s.nodes))
"""

# One mail per matching subscription (alerts sent at once, and interests); the notification id is
# `domain.notification_id('alert:<offering>', template, subscription id)`, computed in SQL.
MATCH_IMMEDIATE: Final = f"""
INSERT INTO deliveries (notification_id, template, trigger_event_id, trigger_type, correlation_id,
                        offering_id, email, recipient_ref, params, message_id)
SELECT m.nid, m.template, $6, $7, $8, $1, s.email, s.recipient_ref,
       jsonb_build_object('subscription_id', s.subscription_id, 'kind', s.kind),
       '<' || m.nid || '@' || $9 || '>'
FROM alert_subscriptions s
CROSS JOIN LATERAL (
    SELECT t.template,
           'ntf-' || left(encode(sha256(convert_to(
               'alert:' || $1 || chr(31) || t.template || chr(31) || s.subscription_id, 'UTF8')), 'hex'), 32)
           AS nid
    FROM (SELECT CASE s.kind WHEN 'interest' THEN '{INTEREST_TEMPLATE}' ELSE '{ALERT_TEMPLATE}' END
          AS template) t
) m
WHERE {_WANTS} AND s.frequency = 'immediate'
ON CONFLICT (notification_id) DO NOTHING
RETURNING params ->> 'subscription_id' AS subscription_id, template
"""

MATCH_WEEKLY: Final = f"""
INSERT INTO alert_digest_items (subscription_id, offering_id)
SELECT s.subscription_id, $1 FROM alert_subscriptions s
WHERE {_WANTS} AND s.frequency = 'weekly' AND s.kind = 'alert'
ON CONFLICT DO NOTHING
"""

_COLUMNS: Final = (
    "subscription_id, kind, recipient_ref, topics, kinds, counties, nodes, frequency, status, "
    "consent_text_version, consent_source, expires_at"
)


def _subscription(record: asyncpg.Record) -> Subscription:
    return Subscription(
        subscription_id=record["subscription_id"],
        kind=AlertKind(record["kind"]),
        recipient_ref=record["recipient_ref"],
        interests=Interests(
            topics=tuple(Topic(t) for t in record["topics"]),
            kinds=tuple(OfferingKind(k) for k in record["kinds"]),
            counties=tuple(County(c) for c in record["counties"]),
            nodes=tuple(record["nodes"]),
        ),
        frequency=AlertFrequency(record["frequency"]),
        status=record["status"],
        consent_text_version=record["consent_text_version"],
        source=record["consent_source"],
        expires_at=record["expires_at"],
    )


async def insert(
    conn: asyncpg.Connection, sub: Subscription, email: str, hashes: tuple[str, str], now: datetime
) -> None:
    """A new pending subscription with its consent record; `hashes`: confirm and unsubscribe token."""
    want = sub.interests
    await conn.execute(
        "INSERT INTO alert_subscriptions (subscription_id, kind, email, recipient_ref, topics, kinds,"
        " counties, nodes, frequency, status, confirm_hash, unsubscribe_hash, consent_at,"
        " consent_text_version, consent_source, expires_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'pending', $10, $11, $12, $13, $14, $15)",
        sub.subscription_id,
        sub.kind.value,
        email,
        sub.recipient_ref,
        [t.value for t in want.topics],
        [k.value for k in want.kinds],
        [c.value for c in want.counties],
        list(want.nodes),
        sub.frequency.value,
        hashes[0],
        hashes[1],
        now,
        sub.consent_text_version,
        sub.source,
        sub.expires_at,
    )


async def by_token_hash(
    conn: asyncpg.Connection, column: str, digest: str
) -> tuple[Subscription, str | None] | None:
    """The subscription a link's token belongs to, locked for the transaction; with its address."""
    if column not in ("confirm_hash", "unsubscribe_hash"):
        raise ValueError(column)
    record = await conn.fetchrow(
        f"SELECT {_COLUMNS}, email FROM alert_subscriptions WHERE {column} = $1 FOR UPDATE", digest
    )
    return (_subscription(record), record["email"]) if record is not None else None


async def mark_confirmed(conn: asyncpg.Connection, subscription_id: str, now: datetime) -> None:
    await conn.execute(
        "UPDATE alert_subscriptions SET status = 'confirmed', confirmed_at = $2 WHERE subscription_id = $1",
        subscription_id,
        now,
    )


async def mark_ended(
    conn: asyncpg.Connection, subscription_ids: Sequence[str], cause: AlertEndCause, now: datetime
) -> None:
    """Ended, the address erased; mails still queued for these subscriptions are skipped."""
    await conn.execute(
        "UPDATE alert_subscriptions SET status = 'ended', ended_at = $2, end_cause = $3, email = NULL"
        " WHERE subscription_id = ANY ($1::text[])",
        list(subscription_ids),
        now,
        cause.value,
    )
    if cause is not AlertEndCause.FULFILLED:  # an interest's one mail is what fulfils it
        await conn.execute(
            "UPDATE deliveries SET status = 'skipped', last_error = 'Abonnement beendet', updated_at = now()"
            " WHERE params ->> 'subscription_id' = ANY ($1::text[]) AND params ? 'subscription_id'"
            " AND status = 'pending'",
            list(subscription_ids),
        )
        await conn.execute(
            "DELETE FROM alert_digest_items WHERE subscription_id = ANY ($1::text[])", list(subscription_ids)
        )


async def get_many(conn: asyncpg.Connection, subscription_ids: Sequence[str]) -> list[Subscription]:
    records = await conn.fetch(
        f"SELECT {_COLUMNS} FROM alert_subscriptions WHERE subscription_id = ANY ($1::text[])"
        " ORDER BY subscription_id FOR UPDATE",
        list(subscription_ids),
    )
    return [_subscription(r) for r in records]


async def first_match(conn: asyncpg.Connection, offering_id: str) -> bool:
    """True the first time alerts are matched for `offering_id` (a republication is no news)."""
    status: str = await conn.execute(
        "INSERT INTO alert_offerings_matched (offering_id) VALUES ($1) ON CONFLICT DO NOTHING", offering_id
    )
    return status.endswith(" 1")


async def match(
    conn: asyncpg.Connection, offering: OfferingFacts, ident: MailIdentity
) -> list[asyncpg.Record]:
    """Queue the mails of every confirmed matching subscription; returns (subscription id, template) of
    the immediate ones, so that fulfilled interests can be ended."""
    args = (offering.offering_id, offering.topic, offering.kind, offering.county, offering.node_id)
    await conn.execute(MATCH_WEEKLY, *args)
    rows: list[asyncpg.Record] = await conn.fetch(
        MATCH_IMMEDIATE,
        *args,
        ident.event_id,
        ident.event_type,
        ident.correlation_id,
        ident.message_id_domain,
    )
    return rows


async def county_of_node(conn: asyncpg.Connection, node_id: str) -> str | None:
    label: str | None = await conn.fetchval("SELECT county FROM nodes WHERE node_id = $1", node_id)
    return label


# ------------------------------------------------------------------------------------ periodic work


async def due_digests(conn: asyncpg.Connection, period_seconds: float, limit: int) -> list[asyncpg.Record]:
    """Weekly subscribers whose period has passed and who have offerings waiting (locked, skip others)."""
    return list(
        await conn.fetch(
            "SELECT s.subscription_id, s.email, s.recipient_ref,"
            " array_agg(i.offering_id ORDER BY i.added_at, i.offering_id) AS offering_ids"
            " FROM alert_subscriptions s JOIN alert_digest_items i USING (subscription_id)"
            " WHERE s.status = 'confirmed' AND s.frequency = 'weekly' AND s.email IS NOT NULL"
            " AND (s.last_digest_at IS NULL OR s.last_digest_at <= now() - make_interval(secs => $1))"
            " AND s.subscription_id IN (SELECT subscription_id FROM alert_subscriptions"
            "   WHERE status = 'confirmed' AND frequency = 'weekly' FOR UPDATE SKIP LOCKED)"
            " GROUP BY s.subscription_id LIMIT $2",
            period_seconds,
            limit,
        )
    )


async def digest_done(conn: asyncpg.Connection, subscription_ids: Sequence[str], now: datetime) -> None:
    ids = list(subscription_ids)
    await conn.execute("DELETE FROM alert_digest_items WHERE subscription_id = ANY ($1::text[])", ids)
    await conn.execute(
        "UPDATE alert_subscriptions SET last_digest_at = $2 WHERE subscription_id = ANY ($1::text[])",
        ids,
        now,
    )


async def purge_expired(conn: asyncpg.Connection, now: datetime, limit: int) -> list[Subscription]:
    """Delete pending sign-ups past their expiry, address, consent record and all."""
    records = await conn.fetch(
        f"DELETE FROM alert_subscriptions WHERE subscription_id IN (SELECT subscription_id"
        f" FROM alert_subscriptions WHERE status = 'pending' AND expires_at <= $1"
        f" LIMIT $2 FOR UPDATE SKIP LOCKED) RETURNING {_COLUMNS}",
        now,
        limit,
    )
    return [_subscription(r) for r in records]


async def forget(conn: asyncpg.Connection, email: str) -> list[Subscription]:
    """`qti forget-person`: every subscription of the address, deleted."""
    records = await conn.fetch(
        f"DELETE FROM alert_subscriptions WHERE lower(btrim(email)) = lower(btrim($1)) RETURNING {_COLUMNS}",
        email,
    )
    return [_subscription(r) for r in records]


def params_json(params: dict[str, Any]) -> str:
    return json.dumps(params, ensure_ascii=False, sort_keys=True)
