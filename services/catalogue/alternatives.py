"""Alternatives to a full offering (`GET /offerings/{id}/alternatives`): the catalogue's query for the
candidates and the shared ranking (`qti_runtime.alternatives`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final
from uuid import UUID

import asyncpg

from qti_runtime.alternatives import Candidate, Ranked, county_of, rank_alternatives
from services.catalogue import store

# Enough for ranking by distance: a topic has a few dozen upcoming offerings across the network.
CANDIDATE_LIMIT: Final = 500

_CANDIDATES_SQL: Final = (
    "SELECT o.offering_id, o.node_id, n.county, o.topic, o.first_starts_at,"
    " greatest(o.capacity - coalesce(oc.confirmed, 0), 0) AS seats_left"
    " FROM offerings o JOIN nodes n ON n.node_id = o.node_id"
    " LEFT JOIN occupancy oc ON oc.offering_id = o.offering_id"
    " WHERE o.topic = $1 AND o.status = 'published' AND o.offering_id <> $2"
    " AND o.first_starts_at > $3 AND $3 < coalesce(o.registration_deadline, o.first_starts_at)"
    " AND o.capacity > coalesce(oc.confirmed, 0)"
    " ORDER BY o.first_starts_at, o.offering_id LIMIT $4"
)


def candidate_of(item: store.StoredOffering, now: datetime) -> Candidate:
    """The full offering itself as a ranking input (its seats do not matter)."""
    offering, node = item.offering, item.node
    deadline = offering.registration_deadline or min(s.starts_at for s in offering.sessions)
    return Candidate(
        offering_id=str(offering.offering_id),
        node_id=str(offering.node_id),
        node_county=county_of(node.county if node else None),
        topic=offering.topic.value,
        starts_at=min(s.starts_at for s in offering.sessions),
        seats_left=0,
        registration_open=now < deadline,
    )


async def candidates(conn: asyncpg.Connection, full: Candidate, now: datetime) -> list[Candidate]:
    """Published offerings on the full one's topic, upcoming and open, with a free seat."""
    records = await conn.fetch(_CANDIDATES_SQL, full.topic, UUID(full.offering_id), now, CANDIDATE_LIMIT)
    return [
        Candidate(
            offering_id=str(r["offering_id"]),
            node_id=str(r["node_id"]),
            node_county=county_of(r["county"]),
            topic=r["topic"],
            starts_at=r["first_starts_at"],
            seats_left=r["seats_left"],
            registration_open=True,
        )
        for r in records
    ]


def distance_field(ranked: Ranked) -> dict[str, Any]:
    distance = ranked.distance_km
    return {"distance_km": round(distance) if distance is not None else None}


async def alternatives_for(
    conn: asyncpg.Connection, item: store.StoredOffering, county: str | None, now: datetime
) -> list[tuple[store.StoredOffering, Ranked]]:
    """Up to three ranked alternatives to `item` with their stored offerings."""
    full = candidate_of(item, now)
    ranked = rank_alternatives(full, await candidates(conn, full, now), county_of(county))
    result: list[tuple[store.StoredOffering, Ranked]] = []
    for entry in ranked:
        stored = await store.get_offering(conn, UUID(entry.candidate.offering_id))
        if stored is not None:
            result.append((stored, entry))
    return result
