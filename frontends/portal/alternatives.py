"""Alternatives when an offering is full, where a registration came from, and the nodes' calendar feeds.

* A full offering's page and the outcome page of a waiting-list (or waiting-list-full) decision show up to
  three offerings on the same topic with free seats, from the catalogue's
  `GET /offerings/{id}/alternatives`; on the outcome page nearest first to the company's district.
* Links to them carry `?quelle=alternative`; alerts and interest mails carry `angebotsalarm` /
  `interesse`. The offering page keeps a known `quelle` in a hidden form field, and the registration
  command carries it as `source` (attribution without personal data, counted by reporting). Any other
  value is dropped.
* `/knoten/{id}/kalender.ics` passes the catalogue's iCalendar feed of a node through the portal's own
  address, so subscribers need not know the catalogue's.
"""

from __future__ import annotations

from typing import Any, Final

from fastapi import APIRouter, Request
from starlette.responses import Response

from frontends.portal.context import Portal, portal_of
from qti_contracts import County

SOURCES: Final = frozenset({"angebotsalarm", "alternative", "interesse"})
FULL_STATES: Final = frozenset({"Warteliste", "ausgebucht"})
HEADING: Final = "Freie Plätze in anderen Kursen zum selben Thema"

router = APIRouter()


def source_of(value: object) -> str | None:
    """The `quelle` of a link if it is one of the known sources, else None."""
    text = str(value or "").strip()
    return text if text in SOURCES else None


def county_of(value: object) -> str | None:
    """A closed-list county code (the form's `landkreis` values), else None."""
    text = str(value or "").strip()
    return text if text in {c.value for c in County} else None


async def alternative_items(
    portal: Portal, offering_id: str, county: str | None = None
) -> list[dict[str, Any]]:
    """The catalogue's alternatives, each with its link; [] if there are none."""
    found = await portal.backend.alternatives(offering_id, county)
    return [{**item, "link": f"/angebote/{item['offering_id']}?quelle=alternative"} for item in found]


@router.get("/knoten/{node_id}/kalender.ics")
async def node_calendar(request: Request, node_id: str) -> Response:
    portal = portal_of(request)
    feed = await portal.backend.node_calendar(node_id)
    if feed is None:
        return portal.error_page(request, 404, "Knoten nicht gefunden", "Diesen QTI-Knoten gibt es nicht.")
    return Response(
        feed,
        media_type="text/calendar; charset=utf-8",
        headers={"Content-Disposition": 'inline; filename="qti-knoten.ics"'},
    )
