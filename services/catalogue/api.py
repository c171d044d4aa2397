"""HTTP API of the catalogue: public reads, the iCalendar feed and the staff commands.

Endpoints are methods of small classes that hold the database; the router functions below only say
which method answers which path. Staff routers carry the bearer-token check as a router dependency.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Header, Path, Query
from fastapi.responses import Response

from qti_contracts.events import OfferingStatus
from qti_runtime.db import Database
from qti_runtime.http import Problem, staff_guard
from qti_runtime.settings import Settings
from services.catalogue import handlers, node_commands, store
from services.catalogue.calendar import node_calendar
from services.catalogue.handlers import NODE_NOT_FOUND, OFFERING_NOT_FOUND
from services.catalogue.http_errors import (
    answered,
    field_problem,
    install_german_validation,
    uuid_or_404,
)
from services.catalogue.http_models import (
    CancelBody,
    NodeCreate,
    NodeList,
    NodeOut,
    NodePatch,
    OfferingCreate,
    OfferingOut,
    OfferingPage,
    OfferingPatch,
    StaffOfferingOut,
    StaffOfferingPage,
    problems,
)
from services.catalogue.http_queries import DEFAULT_LIMIT, LimitQuery, ListingQuery, OffsetQuery
from services.catalogue.representations import (
    draft_of,
    json_response,
    listing_response,
    node_changes,
    node_of,
    node_out,
    offering_changes,
    public_offering,
    staff_offering_response,
)

__all__ = ["install_german_validation", "public_router", "staff_read_router", "staff_router"]

PUBLIC_STATUSES = (OfferingStatus.PUBLISHED, OfferingStatus.COMPLETED, OfferingStatus.CANCELLED)
REASON_MAX_LENGTH = 2000

OfferingIdPath = Annotated[str, Path()]
NodeIdPath = Annotated[str, Path()]
Listing = Annotated[ListingQuery, Depends()]
IfMatch = Annotated[str | None, Header(description="Optional: nur ausführen, wenn dies der Stand ist.")]
RequiredIfMatch = Annotated[str | None, Header(description="ETag des bearbeiteten Stands.")]
PublicStatusQuery = Annotated[
    list[OfferingStatus] | None, Query(description="published (Standard), completed, cancelled.")
]
StaffStatusQuery = Annotated[list[OfferingStatus] | None, Query(description="Standard: alle.")]


def _cancel_reason(body: CancelBody) -> str:
    reason = body.reason.strip()
    if not reason:
        raise field_problem("reason", "Bitte einen Grund für die Absage angeben.")
    if len(reason) > REASON_MAX_LENGTH or any(ord(c) < 32 and c not in "\n\r\t" for c in reason):
        raise field_problem(
            "reason", "Der Grund darf höchstens 2.000 Zeichen und keine Steuerzeichen enthalten."
        )
    return reason


class PublicEndpoints:
    """What everyone may read: nodes, their calendars and published offerings."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def list_nodes(self) -> Response:
        async with self._db.pool.acquire() as conn:
            nodes = await store.list_nodes(conn, datetime.now(UTC))
        return json_response(NodeList(items=[node_out(node) for node in nodes], total=len(nodes)))

    async def get_node(self, node_id: NodeIdPath) -> Response:
        identifier = uuid_or_404(node_id, NODE_NOT_FOUND)
        async with self._db.pool.acquire() as conn:
            listing = await store.get_node_listing(conn, identifier, datetime.now(UTC))
        if listing is None:
            raise Problem(404, NODE_NOT_FOUND)
        return json_response(node_out(listing))

    async def calendar(self, node_id: NodeIdPath) -> Response:
        node_uuid = uuid_or_404(node_id, NODE_NOT_FOUND)
        async with self._db.pool.acquire() as conn:
            node = await store.get_node(conn, node_uuid)
            if node is None:
                raise Problem(404, NODE_NOT_FOUND)
            offerings = await store.calendar_offerings(conn, node_uuid)
        return Response(
            node_calendar(node, offerings),
            media_type="text/calendar; charset=utf-8",
            headers={"Content-Disposition": f'inline; filename="qti-{node.town.lower()}.ics"'},
        )

    async def list_offerings(
        self,
        listing: Listing,
        status: PublicStatusQuery = None,
        limit: LimitQuery = DEFAULT_LIMIT,
        offset: OffsetQuery = 0,
    ) -> Response:
        statuses = status or [OfferingStatus.PUBLISHED]
        if OfferingStatus.DRAFT in statuses:
            raise field_problem("status", "Entwürfe sind nicht öffentlich.")
        criteria = listing.criteria(statuses)
        return await listing_response(self._db, criteria, limit=limit, offset=offset, staff=False)

    async def get_offering(self, offering_id: OfferingIdPath) -> Response:
        identifier = uuid_or_404(offering_id)
        async with self._db.pool.acquire() as conn:
            item = await store.get_offering(conn, identifier)
        if item is None or item.offering.status not in PUBLIC_STATUSES:
            raise Problem(404, OFFERING_NOT_FOUND)
        return json_response(public_offering(item, datetime.now(UTC)))


class StaffNodeEndpoints:
    """Staff commands on nodes: open one, change one."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def create_node(self, body: NodeCreate) -> Response:
        node = await answered(node_commands.open_node(self._db, node_of(body)))
        response = await self._answer(node.node_id, 201)
        response.headers["Location"] = f"/nodes/{node.node_id}"
        return response

    async def edit_node(self, node_id: NodeIdPath, body: NodePatch) -> Response:
        identifier = uuid_or_404(node_id, NODE_NOT_FOUND)
        node = await answered(node_commands.change_node(self._db, identifier, node_changes(body)))
        return await self._answer(node.node_id)

    async def _answer(self, node_id: UUID, status_code: int = 200) -> Response:
        async with self._db.pool.acquire() as conn:
            listing = await store.get_node_listing(conn, node_id, datetime.now(UTC))
        assert listing is not None
        return json_response(node_out(listing), status_code)


class StaffOfferingEndpoints:
    """Staff commands on offerings and the staff views (every status, with ETags)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(self, body: OfferingCreate) -> Response:
        item = await answered(handlers.create_draft(self._db, draft_of(body)))
        response = staff_offering_response(item, 201)
        response.headers["Location"] = f"/staff/offerings/{item.offering.offering_id}"
        return response

    async def edit(
        self, offering_id: OfferingIdPath, body: OfferingPatch, if_match: RequiredIfMatch = None
    ) -> Response:
        identifier = uuid_or_404(offering_id)
        if if_match is None or not if_match.strip():
            raise Problem(
                428,
                "Bitte den bearbeiteten Stand im Header If-Match angeben (ETag aus der letzten Antwort), "
                "damit keine Änderung anderer verloren geht.",
            )
        command = handlers.edit_offering(
            self._db,
            identifier,
            offering_changes(body),
            if_match=if_match,
            allow_below_confirmed=body.allow_below_confirmed,
        )
        item = await answered(command)
        return staff_offering_response(item)

    async def publish(self, offering_id: OfferingIdPath, if_match: IfMatch = None) -> Response:
        item = await answered(
            handlers.publish_offering(self._db, uuid_or_404(offering_id), if_match=if_match)
        )
        return staff_offering_response(item)

    async def cancel(
        self, offering_id: OfferingIdPath, body: CancelBody, if_match: IfMatch = None
    ) -> Response:
        identifier = uuid_or_404(offering_id)
        reason = _cancel_reason(body)
        item = await answered(handlers.cancel_offering(self._db, identifier, reason, if_match=if_match))
        return staff_offering_response(item)

    async def complete(self, offering_id: OfferingIdPath, if_match: IfMatch = None) -> Response:
        item = await answered(
            handlers.complete_offering(self._db, uuid_or_404(offering_id), if_match=if_match)
        )
        return staff_offering_response(item)

    async def staff_list(
        self,
        listing: Listing,
        status: StaffStatusQuery = None,
        limit: LimitQuery = DEFAULT_LIMIT,
        offset: OffsetQuery = 0,
    ) -> Response:
        criteria = listing.criteria(status or list(OfferingStatus))
        return await listing_response(self._db, criteria, limit=limit, offset=offset, staff=True)

    async def staff_get(self, offering_id: OfferingIdPath) -> Response:
        async with self._db.pool.acquire() as conn:
            item = await store.get_offering(conn, uuid_or_404(offering_id))
        if item is None:
            raise Problem(404, OFFERING_NOT_FOUND)
        return staff_offering_response(item)


# --- routers -----------------------------------------------------------------------------------


def _staff_api_router(settings: Settings) -> APIRouter:
    guard = staff_guard(settings.staff_token)
    return APIRouter(tags=["Mitarbeitende"], dependencies=[Depends(guard)], responses=problems(401, 403, 422))


def public_router(db: Database) -> APIRouter:
    endpoints = PublicEndpoints(db)
    router = APIRouter(tags=["Katalog"], responses=problems(422))
    router.add_api_route(
        "/nodes", endpoints.list_nodes, methods=["GET"], response_model=NodeList, summary="Die QTI-Knoten"
    )
    router.add_api_route(
        "/nodes/{node_id}",
        endpoints.get_node,
        methods=["GET"],
        response_model=NodeOut,
        summary="Ein QTI-Knoten mit der Zahl seiner kommenden Angebote",
        responses=problems(404),
    )
    router.add_api_route(
        "/nodes/{node_id}/calendar.ics",
        endpoints.calendar,
        methods=["GET"],
        summary="iCalendar-Feed der Termine eines Knotens",
        response_class=Response,
        responses={200: {"content": {"text/calendar": {}}}, **problems(404)},
    )
    router.add_api_route(
        "/offerings",
        endpoints.list_offerings,
        methods=["GET"],
        response_model=OfferingPage,
        summary="Angebote suchen",
        description="Veröffentlichte Angebote, sortiert nach Beginn des ersten Termins, dann ID. "
        "`status` kann auch abgeschlossene oder abgesagte Angebote einschließen.",
    )
    router.add_api_route(
        "/offerings/{offering_id}",
        endpoints.get_offering,
        methods=["GET"],
        response_model=OfferingOut,
        summary="Ein Angebot mit freien Plätzen",
        responses=problems(404),
    )
    return router


def staff_router(db: Database, settings: Settings) -> APIRouter:
    """Staff commands on nodes and offerings."""
    router = _staff_api_router(settings)
    _add_node_commands(router, StaffNodeEndpoints(db))
    _add_offering_commands(router, StaffOfferingEndpoints(db))
    return router


def _add_node_commands(router: APIRouter, nodes: StaffNodeEndpoints) -> None:
    router.add_api_route(
        "/nodes",
        nodes.create_node,
        methods=["POST"],
        status_code=201,
        response_model=NodeOut,
        summary="QTI-Knoten eröffnen",
        description="Legt den Knoten an und meldet ihn mit `catalogue.node.published`.",
        responses=problems(409),
    )
    router.add_api_route(
        "/nodes/{node_id}",
        nodes.edit_node,
        methods=["PATCH"],
        response_model=NodeOut,
        summary="QTI-Knoten ändern",
        description="Ändert die gesendeten Felder und meldet den neuen Stand mit `catalogue.node.updated`.",
        responses=problems(404, 409),
    )


def _add_offering_commands(router: APIRouter, endpoints: StaffOfferingEndpoints) -> None:
    on_offering = problems(404, 409, 412)
    router.add_api_route(
        "/offerings",
        endpoints.create,
        methods=["POST"],
        status_code=201,
        response_model=StaffOfferingOut,
        summary="Entwurf anlegen",
        responses=problems(409),
    )
    router.add_api_route(
        "/offerings/{offering_id}",
        endpoints.edit,
        methods=["PATCH"],
        response_model=StaffOfferingOut,
        summary="Angebot ändern (If-Match nötig)",
        responses={**on_offering, **problems(428)},
    )
    for action, summary in (
        ("publish", "Entwurf veröffentlichen"),
        ("cancel", "Angebot absagen"),
        ("complete", "Angebot abschließen"),
    ):
        router.add_api_route(
            f"/offerings/{{offering_id}}/{action}",
            getattr(endpoints, action),
            methods=["POST"],
            response_model=StaffOfferingOut,
            summary=summary,
            responses=on_offering,
        )


def staff_read_router(db: Database, settings: Settings) -> APIRouter:
    """Staff views: every status, with the ETag needed for edits."""
    endpoints = StaffOfferingEndpoints(db)
    router = _staff_api_router(settings)
    router.add_api_route(
        "/staff/offerings",
        endpoints.staff_list,
        methods=["GET"],
        response_model=StaffOfferingPage,
        summary="Alle Angebote einschließlich Entwürfen",
    )
    router.add_api_route(
        "/staff/offerings/{offering_id}",
        endpoints.staff_get,
        methods=["GET"],
        response_model=StaffOfferingOut,
        summary="Ein Angebot (auch Entwurf) mit ETag",
        responses=problems(404),
    )
    return router
