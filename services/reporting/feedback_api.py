"""HTTP of participants' feedback: scores (public, like `/kpis`: aggregates under the one suppression rule)
and free text (staff only, one node at a time)."""

# No `from __future__ import annotations`: FastAPI reads the endpoints' annotations at run time.
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from qti_runtime.http import Problem, staff_guard
from qti_runtime.settings import Settings
from services.reporting import feedback, store
from services.reporting.queries import DatabaseSource


def feedback_router(settings: Settings, source: DatabaseSource) -> APIRouter:
    router = APIRouter(tags=["feedback"])

    @router.get(
        "/feedback/ratings",
        summary="Bewertungen je Angebot, Thema und Knoten (Gruppen unter 5 Antworten unterdrückt)",
    )
    async def feedback_ratings() -> dict[str, Any]:
        async with (
            source.db.pool.acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            sums = await feedback.offering_sums(conn)
            names = await store.node_names(conn)
        return feedback.publish(sums, names)

    @router.get(
        "/feedback/comments",
        summary="Freitexte der Rückmeldungen eines Knotens (nur Mitarbeitende)",
        dependencies=[Depends(staff_guard(settings.staff_token))],
    )
    async def feedback_comments(
        node: Annotated[str | None, Query(max_length=100, description="Knoten-ID")] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    ) -> dict[str, Any]:
        if not node:
            raise Problem(422, "Bitte einen Knoten angeben (node): Freitexte gibt es nur je Knoten.")
        async with source.db.pool.acquire() as conn:
            comments = await feedback.comments_of_node(conn, node, limit)
        return {"node": node, "comments": comments}

    return router
