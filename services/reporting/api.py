"""HTTP API of reporting: figures as JSON, CSV/XLSX/PDF exports, the dashboard, frozen snapshots.

Every output of one filter is a slice of the same `FullReport`, so a cell reads alike everywhere.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping
from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, Field

from qti_runtime.http import Problem, staff_guard
from qti_runtime.settings import Settings
from services.reporting import feedback, store
from services.reporting.dashboard import render_dashboard
from services.reporting.domain import Filters, county_code
from services.reporting.exports import CSV_MEDIA_TYPE, XLSX_MEDIA_TYPE, csv_bytes, xlsx_bytes
from services.reporting.pdf import PDF_MEDIA_TYPE, report_pdf
from services.reporting.queries import DatabaseSource, ReportingQueries
from services.reporting.report import filters_for_period, kpi_document, period_range
from services.reporting.views import filter_form, filter_query, snapshot_link

Grouping = Literal["node", "county", "topic", "kind", "size_class", "month", "quarter", "year"]
SNAPSHOT_MEDIA_TYPE = "application/json"
_BAD_ORDER = "Der Beginn des Zeitraums (from) liegt nach seinem Ende (to)."
_BAD_COUNTY = "Unbekannter Landkreis: bitte einen Landkreis oder eine kreisfreie Stadt Thüringens angeben."
_BAD_DATE = "Bitte ein gültiges Datum angeben (z. B. 2026-03-31)."
_BAD_PERIOD = "Unbekannter Zeitraum: bitte ein Jahr oder ein Quartal aus der Liste wählen."


class SnapshotRequest(BaseModel):
    period: Annotated[
        str, Field(pattern=r"^((19|20)\d{2}(-Q[1-4])?|project)$", examples=["2026", "2026-Q2", "project"])
    ]


class SnapshotCreated(BaseModel):
    snapshot_id: str
    period: str
    created_at: datetime
    sha256: str
    url: str
    pdf_url: str


def _date(text: str | None, field: str, errors: dict[str, str]) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        errors[field] = _BAD_DATE
        return None


def parse_filters(raw: Mapping[str, str | None]) -> tuple[Filters, dict[str, str]]:
    """Filters from query parameters (empty = not set) and German messages by parameter for bad ones."""
    errors: dict[str, str] = {}
    date_from = _date(raw.get("from"), "from", errors)
    date_to = _date(raw.get("to"), "to", errors)
    if date_from and date_to and date_from > date_to:
        errors["to"] = _BAD_ORDER
    county = raw.get("county") or None
    code = county_code(county) if county else None
    if county and code is None:
        errors["county"] = _BAD_COUNTY
    node, topic, kind = (raw.get(name) or None for name in ("node", "topic", "kind"))
    return Filters(date_from, date_to, node, code, topic, kind), errors


def query_filters(
    date_from: Annotated[str | None, Query(alias="from", description="Erster Tag (einschließlich)")] = None,
    date_to: Annotated[str | None, Query(alias="to", description="Letzter Tag (einschließlich)")] = None,
    node: Annotated[str | None, Query(description="Knoten-ID")] = None,
    county: Annotated[str | None, Query(description="Landkreis des Knotens")] = None,
    topic: Annotated[str | None, Query(description="Themenschlüssel, z. B. elektromobilitaet")] = None,
    kind: Annotated[str | None, Query(description="Format, z. B. workshop")] = None,
) -> Filters:
    raw = {"from": date_from, "to": date_to, "node": node, "county": county, "topic": topic, "kind": kind}
    filters, errors = parse_filters(raw)
    if errors:
        raise Problem(422, " ".join(dict.fromkeys(errors.values())))
    return filters


FiltersDep = Annotated[Filters, Depends(query_filters)]
GroupingQuery = Annotated[Grouping | None, Query(description="Gruppierung")]
PeriodQuery = Annotated[str | None, Query(description="Jahr (2026) oder Quartal (2026-Q2) der Auswahl")]
TextQuery = Annotated[str | None, Query()]


def _attachment(body: bytes, media_type: str, filename: str) -> Response:
    return Response(
        body, media_type=media_type, headers={"Content-Disposition": f'attachment; filename="{filename}"'}
    )


class ReportingApi:
    """The endpoints; the queries are handed in when the router is built (no reach into app state)."""

    def __init__(self, queries: ReportingQueries) -> None:
        self.queries = queries

    async def kpis(self, filters: FiltersDep, group_by: GroupingQuery = None) -> dict[str, Any]:
        return kpi_document(await self.queries.report(filters), group_by)

    async def export_csv(self, filters: FiltersDep, group_by: GroupingQuery = None) -> Response:
        report = await self.queries.report(filters)
        return _attachment(csv_bytes(report.tables[group_by]), CSV_MEDIA_TYPE, "kennzahlen.csv")

    async def export_xlsx(self, filters: FiltersDep) -> Response:
        report = await self.queries.report(filters)
        return _attachment(xlsx_bytes(report), XLSX_MEDIA_TYPE, "kennzahlen.xlsx")

    async def export_pdf(self, filters: FiltersDep) -> Response:
        report = await self.queries.report(filters)
        names = await self.queries.node_names()
        return _attachment(report_pdf(report, names), PDF_MEDIA_TYPE, "sachbericht-kennzahlen.pdf")

    async def dashboard(
        self,
        period: PeriodQuery = None,
        date_from: Annotated[str | None, Query(alias="from")] = None,
        date_to: Annotated[str | None, Query(alias="to")] = None,
        node: TextQuery = None,
        topic: TextQuery = None,
        kind: TextQuery = None,
    ) -> Response:
        raw = {"from": date_from, "to": date_to, "node": node, "topic": topic, "kind": kind}
        filters, errors = parse_filters(raw)
        if period and not errors:
            try:
                start, end = period_range(period)
            except ValueError:
                errors["period"] = _BAD_PERIOD
            else:  # the URL holds the filter as from/to: bookmarkable, and what the exports take
                chosen = Filters(start, end, filters.node, None, filters.topic, filters.kind)
                return RedirectResponse(f"/dashboard{filter_query(chosen)}", status_code=303)
        if errors:
            filters = Filters(node=filters.node, topic=filters.topic, kind=filters.kind)
        report = await self.queries.report(filters)
        names = await self.queries.node_names()
        today = report.generated_at.date()
        frozen = [snapshot_link(row) for row in await self.queries.snapshots()]
        scores = feedback.publish(await self.queries.feedback_sums(), names)
        page = render_dashboard(report, names, filter_form(filters, names, today, errors), frozen, scores)
        return HTMLResponse(page, status_code=422 if errors else 200)

    async def create_snapshot(self, body: SnapshotRequest) -> SnapshotCreated:
        try:
            filters = filters_for_period(body.period)
        except ValueError as exc:
            raise Problem(422, "Zeitraum muss ein Jahr, ein Quartal oder „project“ sein.") from exc
        report = await self.queries.report(filters)
        document = report.as_document()
        document["snapshot_period"] = body.period
        payload = json.dumps(document, ensure_ascii=False, sort_keys=True, indent=1).encode("utf-8")
        pdf = report_pdf(report, await self.queries.node_names())
        snapshot_id = str(uuid.uuid4())
        files = tuple(
            store.SnapshotFile(media_type, hashlib.sha256(body).hexdigest(), body)
            for media_type, body in ((SNAPSHOT_MEDIA_TYPE, payload), (PDF_MEDIA_TYPE, pdf))
        )
        created = await self.queries.save_snapshot(store.Snapshot(snapshot_id, body.period, files))
        return SnapshotCreated(
            snapshot_id=snapshot_id,
            period=body.period,
            created_at=created,
            sha256=files[0].sha256,
            url=f"/snapshots/{snapshot_id}",
            pdf_url=f"/snapshots/{snapshot_id}.pdf",
        )

    async def snapshots(self) -> list[dict[str, Any]]:
        return [
            {
                **dict(row),
                "created_at": row["created_at"].isoformat(),
                "url": f"/snapshots/{row['snapshot_id']}",
                "pdf_url": f"/snapshots/{row['snapshot_id']}.pdf",
            }
            for row in await self.queries.snapshots()
        ]

    async def snapshot(self, snapshot_id: str) -> Response:
        return _stored(await self.queries.snapshot(snapshot_id))

    async def snapshot_pdf(self, snapshot_id: str) -> Response:
        return _stored(await self.queries.snapshot(snapshot_id, PDF_MEDIA_TYPE))


def _stored(row: Any) -> Response:
    """A snapshot file byte for byte as stored."""
    if row is None:
        raise Problem(404, "Diesen Berichtsstand gibt es nicht.")
    return Response(
        bytes(row["body"]),
        media_type=row["media_type"],
        headers={"ETag": f'"{row["sha256"]}"', "X-Content-SHA256": row["sha256"]},
    )


def _get(router: APIRouter, path: str, endpoint: Any, summary: str, kind: type[Response] = Response) -> None:
    router.add_api_route(path, endpoint, methods=["GET"], response_class=kind, summary=summary)


def build_router(settings: Settings, source: DatabaseSource) -> APIRouter:
    """The routes; `source` gives the database once the service runs (the runtime or the service)."""
    api = ReportingApi(ReportingQueries(source))
    router = APIRouter(tags=["reporting"])
    router.add_api_route(
        "/kpis", api.kpis, methods=["GET"], summary="Kennzahlen als JSON (Filter, Gruppierung, Zeitraum)"
    )
    _get(router, "/exports/kpis.csv", api.export_csv, "Kennzahlen als CSV (Semikolon, deutsche Spaltenköpfe)")
    _get(
        router,
        "/exports/kpis.xlsx",
        api.export_xlsx,
        "Kennzahlen als Excel-Datei (Blätter je Quartal)",
    )
    _get(
        router,
        "/exports/kpis.pdf",
        api.export_pdf,
        "Sachbericht Kennzahlen als PDF (getaggt)",
    )
    _get(router, "/dashboard", api.dashboard, "Dashboard (HTML, deutsch, Filter im URL)", HTMLResponse)
    router.add_api_route(
        "/snapshots",
        api.create_snapshot,
        methods=["POST"],
        status_code=201,
        dependencies=[Depends(staff_guard(settings.staff_token))],
        summary="Kennzahlen eines Berichtszeitraums einfrieren (Jahr, Quartal oder ganzes Projekt)",
    )
    router.add_api_route("/snapshots", api.snapshots, methods=["GET"], summary="Eingefrorene Berichtsstände")
    # The PDF route first: "/snapshots/{snapshot_id}" would take "….pdf" as an id.
    _get(router, "/snapshots/{snapshot_id}.pdf", api.snapshot_pdf, "Eingefrorener Berichtsstand als PDF")
    _get(router, "/snapshots/{snapshot_id}", api.snapshot, "Eingefrorener Berichtsstand, Byte für Byte")
    return router
