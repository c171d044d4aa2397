"""The QTI nodes and what each offers: `/knoten` (every node with its address, host, contact and number of
upcoming offerings) and `/knoten/{node_id}` (one node with its upcoming offerings and calendar feed)."""

from __future__ import annotations

from datetime import date
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import HTMLResponse, Response

from frontends.portal import views
from frontends.portal.backend import ID_PATTERN
from frontends.portal.context import portal_of
from frontends.portal.find import card

router = APIRouter()
NODE_OFFERINGS_SHOWN = 50


def node_view(node: dict[str, Any], today: date) -> dict[str, Any]:
    """A node as the pages show it, in German; a node that opens later says so."""
    opened_on = date.fromisoformat(str(node["opened_on"]))
    opened = f"eröffnet am {views.german_date(opened_on.isoformat())}"
    if opened_on > today:
        opened = f"eröffnet am {views.german_date(opened_on.isoformat())} (demnächst)"
    return {
        **node,
        "opened_text": opened,
        "map_url": views.map_link(str(node["address"])),
        "offerings_href": f"/?node={node['node_id']}",
        "calendar_href": f"/knoten/{node['node_id']}/kalender.ics",
        "page_href": f"/knoten/{node['node_id']}",
    }


@router.get("/knoten", response_class=HTMLResponse)
async def node_list(request: Request) -> Response:
    portal = portal_of(request)
    today = date.today()
    nodes = sorted(await portal.backend.nodes(), key=lambda n: (str(n["opened_on"]), str(n["name"])))
    return portal.render(request, "nodes.html", nodes=[node_view(n, today) for n in nodes])


@router.get("/knoten/{node_id}", response_class=HTMLResponse)
async def node_page(request: Request, node_id: str) -> Response:
    portal = portal_of(request)
    node = None
    if ID_PATTERN.match(node_id):
        node = next((n for n in await portal.backend.nodes() if str(n["node_id"]) == node_id), None)
    if node is None:
        return portal.error_page(
            request, 404, "Knoten nicht gefunden", "Diesen QTI-Knoten gibt es nicht oder nicht mehr."
        )
    found = await portal.backend.offerings([("node", node_id)], NODE_OFFERINGS_SHOWN)
    return portal.render(
        request,
        "node.html",
        node=node_view(node, date.today()),
        offerings=[card(o) for o in found["items"]],
        total=int(found.get("total", 0)),
        shown=NODE_OFFERINGS_SHOWN,
    )
