"""Query parameters of the offering listings and how they become a `store.OfferingFilter`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Annotated
from uuid import UUID

from fastapi import Query

from qti_contracts.events import COUNTY_LABELS, OfferingKind, OfferingStatus, Topic
from qti_runtime.german import BERLIN
from services.catalogue import store
from services.catalogue.domain import has_control_chars
from services.catalogue.http_errors import field_problem
from services.catalogue.node_rules import county_code

DEFAULT_LIMIT = 50
MAX_LIMIT = 200

NodeQuery = Annotated[list[UUID] | None, Query(description="Knoten-ID(s).")]
CountyQuery = Annotated[str | None, Query(max_length=200, description="Landkreis, z. B. Sömmerda.")]
TopicQuery = Annotated[list[Topic] | None, Query()]
KindQuery = Annotated[list[OfferingKind] | None, Query()]
FromQuery = Annotated[
    str | None,
    Query(
        alias="from",
        max_length=40,
        description="Nur Angebote, deren letzter Termin an/nach diesem Datum (ganzer Tag) "
        "bzw. Zeitpunkt endet.",
    ),
]
ToQuery = Annotated[
    str | None,
    Query(
        max_length=40,
        description="Nur Angebote, deren erster Termin bis zu diesem Datum (einschließlich) bzw. vor "
        "diesem Zeitpunkt beginnt.",
    ),
]
TextQuery = Annotated[
    str | None, Query(max_length=200, description="Suchtext in Titel und Beschreibung (Teilwort).")
]
AvailableQuery = Annotated[
    bool | None, Query(description="true: nur Angebote mit freien Plätzen; false: nur ausgebuchte.")
]
LimitQuery = Annotated[int, Query(ge=1, le=MAX_LIMIT)]
OffsetQuery = Annotated[int, Query(ge=0, le=1_000_000)]


@dataclass(frozen=True, slots=True)
class ListingQuery:
    """The filters shared by the public and the staff listing (a FastAPI dependency: its parameters
    are the query parameters)."""

    node: NodeQuery = None
    county: CountyQuery = None
    topic: TopicQuery = None
    kind: KindQuery = None
    from_: FromQuery = None
    to: ToQuery = None
    q: TextQuery = None
    available: AvailableQuery = None

    def criteria(self, statuses: Sequence[OfferingStatus]) -> store.OfferingFilter:
        return store.OfferingFilter(
            statuses=statuses,
            node_ids=self.node or (),
            county=_county(_one_line(self.county, "county")),
            topics=self.topic or (),
            kinds=self.kind or (),
            ends_from=moment(_one_line(self.from_, "from"), "from", end_of_day=False),
            starts_before=moment(_one_line(self.to, "to"), "to", end_of_day=True),
            text=_stripped(_one_line(self.q, "q")),
            available=self.available,
        )


def _one_line(value: str | None, field: str) -> str | None:
    """Search text without control characters: Postgres refuses NUL in text, so it must not get that far."""
    if value is not None and has_control_chars(value):
        raise field_problem(field, "Bitte nur Text ohne Steuerzeichen angeben.")
    return value


def _stripped(value: str | None) -> str | None:
    return value.strip() if value and value.strip() else None


def _county(value: str | None) -> str | None:
    """Nodes keep the county's German label; a code (`unstrut_hainich_kreis`) names the same county."""
    text = _stripped(value)
    code = county_code(text) if text else None
    return COUNTY_LABELS[code] if code else text


def moment(value: str | None, field: str, *, end_of_day: bool) -> datetime | None:
    """A date (whole day in Europe/Berlin) or a date-time with zone."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            if end_of_day:
                day += timedelta(days=1)
            return datetime.combine(day, time(0), tzinfo=BERLIN)
        parsed: datetime | None = datetime.fromisoformat(text)
    except (ValueError, OverflowError):  # 9999-12-31 has no next day
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise field_problem(
            field, "Bitte ein Datum (2027-03-01) oder Datum und Uhrzeit mit Zeitzone angeben."
        )
    return parsed
