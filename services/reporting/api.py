"""HTTP API of reporting: figures as JSON, CSV/XLSX exports, the dashboard, frozen snapshots."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, Field

from qti_runtime.db import Database
from qti_runtime.http import Problem, staff_guard
from qti_runtime.settings import Settings
from services.reporting import store
from services.reporting.dashboard import render
from services.reporting.domain import Facts, Filters, companies_by_county, compute, county_code
from services.reporting.exports import CSV_MEDIA_TYPE, XLSX_MEDIA_TYPE, csv_bytes, xlsx_bytes
from services.reporting.report import filters_for_period, full_report, kpi_document

Grouping = Literal["node", "county", "topic", "kind", "size_class", "month", "quarter", "year"]
SNAPSHOT_MEDIA_TYPE = "application/json"


class SnapshotRequest(BaseModel):
    period: Annotated[str, Field(pattern=r"^((19|20)\d{2}|project)$", examples=["2026", "project"])]


class SnapshotCreated(BaseModel):
    snapshot_id: str
    period: str
    created_at: datetime
    sha256: str
    url: str


def _db(request: Request) -> Database:
    db: Database = request.app.state.runtime.db
    return db


def query_filters(
    date_from: Annotated[date | None, Query(alias="from", description="Erster Tag (einschließlich)")] = None,
    date_to: Annotated[date | None, Query(alias="to", description="Letzter Tag (einschließlich)")] = None,
    node: Annotated[str | None, Query(description="Knoten-ID")] = None,
    county: Annotated[str | None, Query(description="Landkreis des Knotens")] = None,
    topic: Annotated[str | None, Query(description="Themenschlüssel, z. B. elektromobilitaet")] = None,
    kind: Annotated[str | None, Query(description="Format, z. B. workshop")] = None,
) -> Filters:
    if date_from and date_to and date_from > date_to:
        raise Problem(422, "Der Beginn des Zeitraums (from) liegt nach seinem Ende (to).")
    code = county_code(county) if county else None
    if county and code is None:
        raise Problem(
            422, "Unbekannter Landkreis: bitte einen Landkreis oder eine kreisfreie Stadt Thüringens angeben."
        )
    return Filters(date_from, date_to, node, code, topic, kind)


FiltersDep = Annotated[Filters, Depends(query_filters)]
GroupingQuery = Annotated[Grouping | None, Query(description="Gruppierung")]


async def _load(db: Database) -> tuple[Facts, dict[str, str]]:
    async with db.pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        return await store.load_facts(conn), await store.node_names(conn)


def build_router(settings: Settings) -> APIRouter:
    router = APIRouter(tags=["reporting"])
    require_staff = staff_guard(settings.staff_token)

    @router.get("/kpis", summary="Kennzahlen als JSON (Filter, Gruppierung, Zeitraum)")
    async def kpis(request: Request, filters: FiltersDep, group_by: GroupingQuery = None) -> dict[str, Any]:
        facts, names = await _load(_db(request))
        return kpi_document(facts, filters, group_by, names, datetime.now(UTC))

    @router.get(
        "/exports/kpis.csv",
        summary="Kennzahlen als CSV (Semikolon, deutsche Spaltenköpfe)",
        response_class=Response,
    )
    async def export_csv(request: Request, filters: FiltersDep, group_by: GroupingQuery = None) -> Response:
        facts, names = await _load(_db(request))
        table = compute(facts, filters, group_by, node_names=names)
        return Response(
            csv_bytes(table),
            media_type=CSV_MEDIA_TYPE,
            headers={"Content-Disposition": 'attachment; filename="kennzahlen.csv"'},
        )

    @router.get(
        "/exports/kpis.xlsx",
        summary="Kennzahlen als Excel-Datei (Deckblatt, ein Blatt je Gruppierung)",
        response_class=Response,
    )
    async def export_xlsx(request: Request, filters: FiltersDep) -> Response:
        facts, names = await _load(_db(request))
        report = full_report(facts, filters, names, datetime.now(UTC))
        return Response(
            xlsx_bytes(report),
            media_type=XLSX_MEDIA_TYPE,
            headers={"Content-Disposition": 'attachment; filename="kennzahlen.xlsx"'},
        )

    @router.get("/dashboard", summary="Dashboard (HTML, deutsch)", response_class=HTMLResponse)
    async def dashboard(request: Request) -> HTMLResponse:
        facts, names = await _load(_db(request))
        filters = Filters()
        total = compute(facts, filters, None, node_names=names).total
        by_month = compute(facts, filters, "month", node_names=names)
        by_node = compute(facts, filters, "node", node_names=names)
        counties = companies_by_county(facts, filters)
        return HTMLResponse(render(total, by_month, by_node, counties, datetime.now(UTC)))

    @router.post(
        "/snapshots",
        status_code=201,
        summary="Kennzahlen eines Berichtszeitraums einfrieren (Jahr oder ganzes Projekt)",
        dependencies=[Depends(require_staff)],
    )
    async def create_snapshot(request: Request, body: SnapshotRequest) -> SnapshotCreated:
        try:
            filters = filters_for_period(body.period)
        except ValueError as exc:
            raise Problem(422, "Zeitraum muss ein Kalenderjahr (z. B. 2026) oder „project“ sein.") from exc
        db = _db(request)
        facts, names = await _load(db)
        document = full_report(facts, filters, names, datetime.now(UTC)).as_document()
        document["snapshot_period"] = body.period
        payload = json.dumps(document, ensure_ascii=False, sort_keys=True, indent=1).encode("utf-8")
        snapshot_id = str(uuid.uuid4())
        digest = hashlib.sha256(payload).hexdigest()
        async with db.pool.acquire() as conn:
            created = await store.save_snapshot(
                conn, snapshot_id, body.period, SNAPSHOT_MEDIA_TYPE, digest, payload
            )
        return SnapshotCreated(
            snapshot_id=snapshot_id,
            period=body.period,
            created_at=created,
            sha256=digest,
            url=f"/snapshots/{snapshot_id}",
        )

    @router.get("/snapshots", summary="Eingefrorene Berichtsstände")
    async def snapshots(request: Request) -> list[dict[str, Any]]:
        async with _db(request).pool.acquire() as conn:
            rows = await store.list_snapshots(conn)
        return [
            {
                **dict(row),
                "created_at": row["created_at"].isoformat(),
                "url": f"/snapshots/{row['snapshot_id']}",
            }
            for row in rows
        ]

    @router.get(
        "/snapshots/{snapshot_id}",
        summary="Eingefrorener Berichtsstand, Byte für Byte wie gespeichert",
        response_class=Response,
    )
    async def snapshot(request: Request, snapshot_id: str) -> Response:
        async with _db(request).pool.acquire() as conn:
            row = await store.get_snapshot(conn, snapshot_id)
        if row is None:
            raise Problem(404, "Diesen Berichtsstand gibt es nicht.")
        return Response(
            bytes(row["body"]),
            media_type=row["media_type"],
            headers={"ETag": f'"{row["sha256"]}"', "X-Content-SHA256": row["sha256"]},
        )

    return router
