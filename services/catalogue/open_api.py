"""Public reads added for the front door: alternatives to a full offering and the open-Qcat export."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query
from fastapi.responses import Response
from pydantic import BaseModel, Field

from qti_runtime.alternatives import county_of
from qti_runtime.db import Database
from qti_runtime.http import Problem
from services.catalogue import store
from services.catalogue.alternatives import alternatives_for, distance_field
from services.catalogue.api import PUBLIC_STATUSES
from services.catalogue.domain import has_control_chars
from services.catalogue.handlers import OFFERING_NOT_FOUND
from services.catalogue.http_errors import field_problem, uuid_or_404
from services.catalogue.http_models import OfferingOut, problems
from services.catalogue.openqcat import exported_offerings, openqcat_document
from services.catalogue.representations import json_response, public_offering

CountyParam = Annotated[
    str | None,
    Query(
        max_length=100,
        description="Landkreis des Unternehmens (Code oder deutsche Bezeichnung, z. B. `soemmerda`); "
        "ohne ihn zählt die Entfernung vom Knoten des ausgebuchten Angebots.",
    ),
]


class AlternativeOut(OfferingOut):
    distance_km: int | None = Field(
        description="Ungefähre Entfernung in km zwischen den Kreissitzen; null = unbekannt."
    )


class AlternativeList(BaseModel):
    items: list[AlternativeOut]
    total: int


def _origin(county: str | None) -> str | None:
    if county is None or not county.strip():
        return None
    if has_control_chars(county) or county_of(county) is None:
        raise field_problem("county", "Bitte einen Landkreis aus der Liste angeben (z. B. soemmerda).")
    return county


class OpenDataEndpoints:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def alternatives(self, offering_id: Annotated[str, Path()], county: CountyParam = None) -> Response:
        identifier = uuid_or_404(offering_id)
        origin = _origin(county)
        now = datetime.now(UTC)
        async with self._db.pool.acquire() as conn:
            item = await store.get_offering(conn, identifier)
            if item is None or item.offering.status not in PUBLIC_STATUSES:
                raise Problem(404, OFFERING_NOT_FOUND)
            found = await alternatives_for(conn, item, origin, now)
        items = [{**public_offering(stored, now), **distance_field(ranked)} for stored, ranked in found]
        return json_response({"items": items, "total": len(items)})

    async def openqcat(self) -> Response:
        now = datetime.now(UTC)
        async with self._db.pool.acquire() as conn:
            offerings = await exported_offerings(conn, now)
        # Building the XML is CPU work (about 0.7 s for 1,000 courses on a loaded machine): off the loop.
        document = await asyncio.to_thread(openqcat_document, offerings, now)
        return Response(
            document,
            media_type="application/xml; charset=utf-8",
            headers={"Content-Disposition": 'inline; filename="qti-net-openqcat.xml"'},
        )


def open_data_router(db: Database) -> APIRouter:
    endpoints = OpenDataEndpoints(db)
    router = APIRouter(tags=["Katalog"], responses=problems(422))
    router.add_api_route(
        "/offerings/{offering_id}/alternatives",
        endpoints.alternatives,
        methods=["GET"],
        response_model=AlternativeList,
        summary="Freie Plätze in anderen Angeboten zum selben Thema",
        description="Bis zu drei veröffentlichte, noch offene Angebote zum selben Thema mit freien "
        "Plätzen, an anderen Knoten oder zu späteren Terminen; die nächstgelegenen zuerst (Entfernung "
        "der Kreissitze), dann nach Beginn.",
        responses=problems(404),
    )
    router.add_api_route(
        "/exports/openqcat.xml",
        endpoints.openqcat,
        methods=["GET"],
        summary="Lehrgänge im Format open-Qcat (für KURSNET)",
        description="Veröffentlichte, noch nicht beendete Lehrgänge, Zertifikatslehrgänge und Workshops ab "
        "vier Unterrichtseinheiten (siehe docs/openqcat.md).",
        response_class=Response,
        responses={200: {"content": {"application/xml": {}}}},
    )
    return router
