"""Alternatives in waiting-list (and waiting-list-full) mails: offerings on the same topic with free seats,
at other nodes or on later dates, nearest first to the company's district.

Services talk only through events, so notification ranks from its own replica: the offerings and nodes it
keeps from the catalogue's events, and the seats (`offering_seats`) from the occupancy snapshots that
registration's outcome and cancellation events carry. The ranking is the catalogue's
(`qti_runtime.alternatives`), so the mail and the portal's offering page name the same offerings, up to
the short delay with which each side sees the events.

The alternatives are chosen when the mail is written and kept in its parameters (offering id, title,
node, first date, seats then): the mail says what was free at that moment, however late it goes out.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, Final
from urllib.parse import quote

import asyncpg

from qti_contracts import Occupancy
from qti_runtime.alternatives import Candidate, county_of, rank_alternatives
from services.notification import store
from services.notification.render import AlternativeInfo

PARAM: Final = "alternatives"
CANDIDATE_LIMIT: Final = 500

_SEATS_SQL: Final = (
    "INSERT INTO offering_seats (offering_id, confirmed, capacity, version)"
    " SELECT * FROM unnest($1::text[], $2::int[], $3::int[], $4::int[])"
    " ON CONFLICT (offering_id) DO UPDATE SET confirmed = excluded.confirmed, capacity = excluded.capacity,"
    " version = excluded.version, updated_at = now() WHERE offering_seats.version < excluded.version"
)

_CANDIDATES_SQL: Final = (
    "SELECT o.offering_id, o.node_id, n.county, n.name AS node_name, n.town, o.first_starts_at,"
    " o.state ->> 'title' AS title, (o.state ->> 'capacity')::int AS capacity,"
    " (o.state ->> 'registration_deadline')::timestamptz AS deadline, coalesce(s.confirmed, 0) AS confirmed"
    " FROM offerings o LEFT JOIN nodes n ON n.node_id = o.node_id"
    " LEFT JOIN offering_seats s ON s.offering_id = o.offering_id"
    " WHERE NOT o.cancelled AND o.state IS NOT NULL AND o.state ->> 'topic' = $1 AND o.first_starts_at > $2"
    " AND coalesce(o.state ->> 'status', 'published') = 'published' AND o.offering_id <> $3"
    " ORDER BY o.first_starts_at, o.offering_id LIMIT $4"
)


async def save_seats(conn: asyncpg.Connection, snapshots: Iterable[tuple[str, Occupancy | None]]) -> None:
    """Keep the newest snapshot per offering (duplicates and reordering change nothing)."""
    newest: dict[str, Occupancy] = {}
    for offering_id, occupancy in snapshots:
        if occupancy is not None and (
            offering_id not in newest or newest[offering_id].version < occupancy.version
        ):
            newest[offering_id] = occupancy
    if not newest:
        return
    ids = sorted(newest)
    await conn.execute(
        _SEATS_SQL,
        ids,
        [newest[i].confirmed for i in ids],
        [newest[i].capacity for i in ids],
        [newest[i].version for i in ids],
    )


def _param(record: asyncpg.Record, seats_left: int) -> dict[str, Any]:
    return {
        "offering_id": record["offering_id"],
        "title": record["title"] or "",
        "node": record["node_name"] or "",
        "town": record["town"] or "",
        "starts_at": record["first_starts_at"].isoformat(),
        "seats_left": seats_left,
    }


async def alternatives_param(
    conn: asyncpg.Connection, offering_id: str, county: str | None, now: datetime
) -> list[dict[str, Any]]:
    """Up to three alternatives to `offering_id` as mail parameters; [] if its offering is not known."""
    full_row = await store.get_offering(conn, offering_id)
    if full_row is None or full_row.state is None:
        return []
    full = full_row.state
    nodes = await store.get_nodes(conn, [full.node_id])
    node = nodes.get(full.node_id)
    full_candidate = Candidate(
        offering_id=full.offering_id,
        node_id=full.node_id,
        node_county=county_of(node["county"] if node is not None else None),
        topic=full.topic.value,
        starts_at=full.starts_at,
        seats_left=0,
        registration_open=True,
    )
    records = await conn.fetch(_CANDIDATES_SQL, full.topic.value, now, offering_id, CANDIDATE_LIMIT)
    by_id = {r["offering_id"]: r for r in records}
    candidates = [
        Candidate(
            offering_id=r["offering_id"],
            node_id=r["node_id"] or "",
            node_county=county_of(r["county"]),
            topic=full.topic.value,
            starts_at=r["first_starts_at"],
            seats_left=max(0, (r["capacity"] or 0) - r["confirmed"]),
            registration_open=r["deadline"] is not None and now < r["deadline"],
        )
        for r in records
    ]
    ranked = rank_alternatives(full_candidate, candidates, county_of(county))
    return [_param(by_id[r.candidate.offering_id], r.candidate.seats_left) for r in ranked]


def alternative_infos(value: object, portal_url: str) -> tuple[AlternativeInfo, ...]:
    """The stored parameter as mail values, each with its link `{portal}/angebote/{id}?quelle=alternative`;
    anything malformed is left out (a mail must go out even if a stored row looks odd)."""
    if not isinstance(value, list):
        return ()
    infos: list[AlternativeInfo] = []
    for item in value[:3]:
        try:
            offering_id = quote(str(item["offering_id"]), safe="")
            starts_at = datetime.fromisoformat(str(item["starts_at"]))
            node = ", ".join(part for part in (str(item.get("node", "")), str(item.get("town", ""))) if part)
            infos.append(
                AlternativeInfo(
                    title=str(item["title"]),
                    node=node,
                    starts_at=starts_at,
                    seats_left=int(item["seats_left"]),
                    url=f"{portal_url.rstrip('/')}/angebote/{offering_id}?quelle=alternative",
                )
            )
        except (AttributeError, KeyError, TypeError, ValueError):
            continue
    return tuple(infos)
