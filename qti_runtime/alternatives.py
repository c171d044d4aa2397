"""Alternatives when an offering is full: up to three offerings on the same topic with free seats, at
other nodes or on later dates, nearest first to the company's district. Pure and data-only, so that the
catalogue (its HTTP API) and notification (its waiting-list mail, from its own replica) rank the same way
without importing each other.

Distances are great-circle distances between the seats of the district administrations
(`DISTRICT_SEATS`), which is as precise as the data allow: a company gives its district, not its address.

Source of the coordinates: the geographic coordinates given in the German Wikipedia articles of the towns
that seat the district administrations (and of the district-free cities), rounded to two decimals (about
1 km). Approximate by design: they only order nodes by nearness, they are never shown.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from pydantic import TypeAdapter, ValidationError

from qti_contracts.events import County, CountyField

MAX_ALTERNATIVES: Final = 3
EARTH_RADIUS_KM: Final = 6371.0

# (latitude, longitude) of each district's seat; `ausserhalb` has none (no distance, date order only).
DISTRICT_SEATS: Final[dict[County, tuple[float, float]]] = {
    County.ALTENBURGER_LAND: (50.99, 12.43),  # Altenburg
    County.EICHSFELD: (51.38, 10.14),  # Heilbad Heiligenstadt
    County.GOTHA: (50.95, 10.70),  # Gotha
    County.GREIZ: (50.66, 12.20),  # Greiz
    County.HILDBURGHAUSEN: (50.43, 10.73),  # Hildburghausen
    County.ILM_KREIS: (50.83, 10.95),  # Arnstadt
    County.KYFFHAEUSERKREIS: (51.37, 10.87),  # Sondershausen
    County.NORDHAUSEN: (51.50, 10.79),  # Nordhausen
    County.SAALE_HOLZLAND_KREIS: (50.97, 11.90),  # Eisenberg
    County.SAALE_ORLA_KREIS: (50.58, 11.81),  # Schleiz
    County.SAALFELD_RUDOLSTADT: (50.65, 11.36),  # Saalfeld/Saale
    County.SCHMALKALDEN_MEININGEN: (50.57, 10.42),  # Meiningen
    County.SOEMMERDA: (51.16, 11.12),  # Sömmerda
    County.SONNEBERG: (50.36, 11.17),  # Sonneberg
    County.UNSTRUT_HAINICH_KREIS: (51.21, 10.46),  # Mühlhausen
    County.WARTBURGKREIS: (50.81, 10.23),  # Bad Salzungen
    County.WEIMARER_LAND: (51.03, 11.51),  # Apolda
    County.ERFURT: (50.98, 11.03),
    County.GERA: (50.88, 12.08),
    County.JENA: (50.93, 11.59),
    County.SUHL: (50.61, 10.69),
    County.WEIMAR: (50.98, 11.33),
}

_COUNTY: Final = TypeAdapter(CountyField)


def county_of(text: str | None) -> County | None:
    """The closed-list district named by a code or German label; None for anything else."""
    if not text or len(text) > 100:
        return None
    try:
        return _COUNTY.validate_python(text)
    except ValidationError:
        return None


def distance_km(origin: County | None, target: County | None) -> float | None:
    """Haversine distance between two districts' seats; None if either has no seat (or is unknown)."""
    if origin is None or target is None:
        return None
    a, b = DISTRICT_SEATS.get(origin), DISTRICT_SEATS.get(target)
    if a is None or b is None:
        return None
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


@dataclass(frozen=True, slots=True)
class Candidate:
    """What ranking needs of an offering: where, on what, when, and whether one can still get a seat."""

    offering_id: str
    node_id: str
    node_county: County | None
    topic: str
    starts_at: datetime
    seats_left: int
    registration_open: bool


@dataclass(frozen=True, slots=True)
class Ranked:
    candidate: Candidate
    distance_km: float | None


def qualifies(full: Candidate, candidate: Candidate) -> bool:
    """Same topic, another offering, open for registration with a free seat, and at another node or
    starting later than the full one."""
    return (
        candidate.offering_id != full.offering_id
        and candidate.topic == full.topic
        and candidate.registration_open
        and candidate.seats_left > 0
        and (candidate.node_id != full.node_id or candidate.starts_at > full.starts_at)
    )


def rank_alternatives(
    full: Candidate,
    candidates: Iterable[Candidate],
    origin: County | None = None,
    limit: int = MAX_ALTERNATIVES,
) -> list[Ranked]:
    """Up to `limit` qualifying candidates, nearest first to `origin` (the company's district; without
    one, or outside Thuringia, the full offering's district), then earliest start, then id. Candidates
    without a known district come after those with one."""
    start = origin if origin in DISTRICT_SEATS else full.node_county
    ranked = [
        Ranked(candidate, distance_km(start, candidate.node_county))
        for candidate in candidates
        if qualifies(full, candidate)
    ]

    def key(item: Ranked) -> tuple[bool, int, datetime, str]:
        distance = item.distance_km
        # Whole kilometres: nodes in the same district tie and fall back to the date.
        return (distance is None, round(distance or 0), item.candidate.starts_at, item.candidate.offering_id)

    return sorted(ranked, key=key)[: max(0, limit)]
