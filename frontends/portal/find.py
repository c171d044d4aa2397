"""Finding offerings: the start page with its filters, the offering page and its calendar file."""

from __future__ import annotations

import math
import re
from datetime import date
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from starlette.responses import HTMLResponse, Response

from frontends.portal import views
from frontends.portal.alternatives import FULL_STATES, HEADING, alternative_items, source_of
from frontends.portal.context import Portal, portal_of
from frontends.portal.forms import form_key
from qti_contracts import (
    AGE_BAND_LABELS,
    COUNTY_LABELS,
    GENDER_LABELS,
    KIND_LABELS,
    SIZE_CLASS_LABELS,
    TOPIC_LABELS,
)
from qti_runtime.german import BERLIN

PAGE_SIZE = 20
FILTERS = ("q", "node", "county", "topic", "kind", "von", "bis")
UUID_PATTERN = re.compile(r"^[0-9a-fA-F-]{36}$")
CONSENT_LABEL = (
    "Ich habe die Datenschutzhinweise gelesen und bin mit der Verarbeitung meiner Angaben einverstanden."
)
GROUP_CONSENT_LABEL = (
    "Ich habe die Datenschutzhinweise gelesen und melde die Beschäftigten mit ihrem Wissen an."
)

router = APIRouter()


def choice_options() -> dict[str, list[tuple[str, str]]]:
    """The select options shared by the forms (value, German label)."""
    return {
        "county_options": [(c.value, label) for c, label in COUNTY_LABELS.items()],
        "topic_options": [(t.value, label) for t, label in TOPIC_LABELS.items()],
        "kind_options": [(k.value, label) for k, label in KIND_LABELS.items()],
        "size_options": [(s.value, label) for s, label in SIZE_CLASS_LABELS.items()],
        "gender_options": [
            (g.value, label) for g, label in GENDER_LABELS.items() if g.value != "unspecified"
        ],
        "age_options": [(a.value, label) for a, label in AGE_BAND_LABELS.items() if a.value != "unspecified"],
    }


def _valid_date(value: str) -> bool:
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return len(value) == 10


def node_counties(nodes: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """The districts the nodes are in, as the catalogue names them (its `county` filter matches those)."""
    return [(c, c) for c in sorted({str(n["county"]) for n in nodes if n.get("county")})]


def clean_filters(query: dict[str, str], nodes: list[dict[str, Any]]) -> dict[str, str]:
    """The filters as entered, each dropped when it is not one of the allowed values."""
    options = choice_options()
    allowed = {
        "county": {v for v, _ in node_counties(nodes)},
        "topic": {v for v, _ in options["topic_options"]},
        "kind": {v for v, _ in options["kind_options"]},
    }
    kept: dict[str, str] = {}
    for name in FILTERS:
        value = str(query.get(name, "")).strip()
        valid = {
            "q": len(value) <= 200 and value.isprintable(),
            "node": bool(UUID_PATTERN.match(value)),
            "von": _valid_date(value),
            "bis": _valid_date(value),
        }.get(name, value in allowed.get(name, set()))
        if value and valid:
            kept[name] = value
    return kept


def catalogue_params(filters: dict[str, str]) -> list[tuple[str, str]]:
    """The catalogue's query (`from` defaults to today: the start page lists upcoming offerings)."""
    names = {"q": "q", "node": "node", "county": "county", "topic": "topic", "kind": "kind", "bis": "to"}
    params = [(names[k], v) for k, v in filters.items() if k in names]
    params.append(("from", filters.get("von") or date.today().isoformat()))
    return params


def card(offering: dict[str, Any]) -> dict[str, Any]:
    """The offering with what the pages show of it, in German."""
    state = views.seat_state(offering)
    seat_class = {"Warteliste": "warteliste", "ausgebucht": "voll", "Anmeldung geschlossen": "voll"}
    return {
        **offering,
        "first_session": views.session_line(offering["sessions"][0]) if offering["sessions"] else "",
        "fee_text": views.fee_text(offering),
        "seat_state": state,
        "seat_class": seat_class.get(state, "frei"),
        "deadline_text": views.german_date(offering["registration_deadline"])
        if offering.get("registration_deadline")
        else "keiner",
        "paragraphs": [p for p in str(offering.get("description") or "").split("\n") if p.strip()],
        "session_lines": [
            {"when": views.session_line(s), "location": s.get("location") or offering["node"]["name"]}
            for s in offering["sessions"]
        ],
    }


def _page_number(value: str | None) -> int:
    return int(value) if value and value.isdigit() and len(value) < 6 else 1


@router.get("/", response_class=HTMLResponse)
async def start(request: Request) -> Response:
    portal = portal_of(request)
    nodes = await portal.backend.nodes()
    filters = clean_filters(dict(request.query_params), nodes)
    page = _page_number(request.query_params.get("seite"))
    params = [*catalogue_params(filters), ("offset", str((page - 1) * PAGE_SIZE))]
    found = await portal.backend.offerings(params, PAGE_SIZE)
    total = int(found.get("total", 0))

    def page_query(number: int) -> str:
        return urlencode({**filters, "seite": number})

    options: dict[str, Any] = choice_options()
    return portal.render(
        request,
        "start.html",
        values=filters,
        offerings=[card(o) for o in found["items"]],
        total=total,
        page=page,
        pages=max(1, math.ceil(total / PAGE_SIZE)),
        page_query=page_query,
        node_options=[(n["node_id"], f"{n['name']} ({n['town']})") for n in nodes],
        **{**options, "county_options": node_counties(nodes)},
    )


async def node_of(portal: Portal, offering: dict[str, Any]) -> dict[str, Any] | None:
    nodes = await portal.backend.nodes()
    return next((n for n in nodes if n["node_id"] == offering["node_id"]), None)


async def offering_page(
    request: Request, offering: dict[str, Any], status_code: int = 200, **context: Any
) -> Response:
    """The offering with the registration form (empty, or as submitted with its errors)."""
    portal = portal_of(request)
    node = await node_of(portal, offering)
    address = f"{node['address']}" if node else offering["node"]["town"]
    context.setdefault("form_key", form_key(None))
    shown = card(offering)
    full = shown["seat_state"] in FULL_STATES or shown["status"] == "cancelled"
    alternatives = await alternative_items(portal, offering["offering_id"]) if full else []
    context.setdefault("quelle", source_of(request.query_params.get("quelle")))
    return portal.render(
        request,
        "offering.html",
        status_code,
        o=shown,
        node=node,
        node_host=(node or {}).get("host"),
        alternatives=[card(item) | {"link": item["link"]} for item in alternatives],
        alternatives_heading=HEADING,
        map_url=views.map_link(address),
        json_ld=views.json_ld(offering, node, portal.settings.portal_url),
        consent_label=CONSENT_LABEL,
        **choice_options(),
        **context,
    )


def not_found(request: Request) -> Response:
    return portal_of(request).error_page(
        request, 404, "Angebot nicht gefunden", "Dieses Angebot gibt es nicht oder nicht mehr."
    )


@router.get("/angebote/{offering_id}", response_class=HTMLResponse)
async def offering(request: Request, offering_id: str) -> Response:
    found = await portal_of(request).backend.offering(offering_id)
    if found is None:
        return not_found(request)
    return await offering_page(request, found)


@router.get("/angebote/{offering_id}/kalender.ics")
async def offering_calendar(request: Request, offering_id: str) -> Response:
    portal = portal_of(request)
    found = await portal.backend.offering(offering_id)
    if found is None:
        return not_found(request)
    return calendar_response(found, portal.settings.portal_url)


def calendar_response(offering: dict[str, Any], portal_url: str) -> Response:
    stamp = views.moment(offering["starts_at"]).astimezone(BERLIN).strftime("%Y-%m-%d")
    return Response(
        views.calendar_file(offering, portal_url),
        media_type="text/calendar; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="qti-angebot-{stamp}.ics"'},
    )
