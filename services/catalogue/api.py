"""HTTP API of the catalogue: public reads, the iCalendar feed and the staff commands (thin)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Annotated, Any
from uuid import UUID, uuid4

from fastapi import APIRouter, Depends, FastAPI, Header, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from qti_contracts.events import KIND_LABELS, TOPIC_LABELS, OfferingKind, OfferingStatus, Topic
from qti_runtime.db import Database
from qti_runtime.german import BERLIN
from qti_runtime.http import PROBLEM_JSON, Problem, problem_response, staff_guard
from qti_runtime.settings import Settings
from services.catalogue import handlers, store
from services.catalogue.calendar import node_calendar
from services.catalogue.domain import (
    Node,
    OfferingDraft,
    OfferingSession,
    ValidationProblem,
    effective_registration_deadline,
    seats_left,
    total_teaching_units,
)

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
PUBLIC_STATUSES = (OfferingStatus.PUBLISHED, OfferingStatus.COMPLETED, OfferingStatus.CANCELLED)


# --- response models ---------------------------------------------------------------------------


class ProblemDetails(BaseModel):
    """RFC 9457 problem details; `errors` lists the affected fields for 422."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    errors: list[dict[str, str]] | None = None


def _problems(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {
        code: {"model": ProblemDetails, "content": {PROBLEM_JSON: {}}, "description": "Problem details"}
        for code in codes
    }


class NodeOut(BaseModel):
    node_id: UUID
    name: str
    town: str
    county: str
    host: str = Field(description="Die Einrichtung, die den Knoten betreibt.")
    address: str
    opened_on: date
    calendar_url: str = Field(description="iCalendar-Feed der veröffentlichten Termine des Knotens.")


class NodeList(BaseModel):
    items: list[NodeOut]
    total: int


class NodeRef(BaseModel):
    node_id: UUID
    name: str
    town: str
    county: str


class SessionOut(BaseModel):
    session_id: UUID
    starts_at: datetime = Field(description="Beginn, Ortszeit Europe/Berlin mit Offset.")
    ends_at: datetime
    location: str
    teaching_units: int = Field(description="Unterrichtseinheiten zu 45 Minuten.")


class OfferingOut(BaseModel):
    offering_id: UUID
    node_id: UUID
    node: NodeRef
    kind: OfferingKind
    kind_label: str
    topic: Topic
    topic_label: str
    title: str
    description: str
    target_group: str | None
    sessions: list[SessionOut]
    total_units: int
    starts_at: datetime
    ends_at: datetime
    capacity: int
    registration_deadline: datetime | None
    registration_open: bool = Field(description="Veröffentlicht und Anmeldeschluss noch nicht erreicht.")
    fee_eur: float = Field(description="Gebühr in Euro; 0 = kostenfrei.")
    max_per_company: int | None
    waitlist_limit: int
    status: OfferingStatus
    revision: int
    cancel_reason: str | None = None
    confirmed: int = Field(description="Bestätigte Anmeldungen laut letzter Meldung der Anmeldung.")
    waitlisted: int = Field(description="Personen auf der Warteliste laut letzter Meldung.")
    seats_left: int = Field(description="Freie Plätze (nie negativ).")
    seats_as_of: datetime | None = Field(
        description="Stand der Platzzahlen. Sie folgen den Ereignissen der Anmeldung und sind daher "
        "nur letztendlich konsistent (eventually consistent); null = noch keine Anmeldung bekannt."
    )


class StaffOfferingOut(OfferingOut):
    etag: str = Field(description="Aktueller Stand für If-Match (auch im ETag-Header).")
    created_at: datetime
    updated_at: datetime
    published_at: datetime | None


class OfferingPage(BaseModel):
    items: list[OfferingOut]
    total: int
    limit: int
    offset: int


class StaffOfferingPage(BaseModel):
    items: list[StaffOfferingOut]
    total: int
    limit: int
    offset: int


# --- request models ----------------------------------------------------------------------------


class SessionIn(BaseModel):
    session_id: UUID | None = Field(default=None, description="Wird erzeugt, wenn sie fehlt.")
    starts_at: datetime = Field(description="Mit Zeitzone, z. B. 2027-03-02T09:00:00+01:00.")
    ends_at: datetime
    location: str


class OfferingCreate(BaseModel):
    """The offering fields of `catalogue.offering.published`, without `offering_id`."""

    model_config = ConfigDict(extra="ignore")

    node_id: UUID
    kind: OfferingKind
    topic: Topic
    title: str
    description: str = ""
    target_group: str | None = None
    sessions: list[SessionIn]
    capacity: int
    registration_deadline: datetime | None = Field(
        default=None, description="Fehlt er, ist die Anmeldung bis zum Beginn des ersten Termins möglich."
    )
    fee_eur: Decimal = Decimal("0")
    max_per_company: int | None = None
    waitlist_limit: int = 0


class OfferingPatch(BaseModel):
    """Only the fields sent are changed; `sessions` replaces all sessions."""

    model_config = ConfigDict(extra="forbid")

    node_id: UUID | None = None
    kind: OfferingKind | None = None
    topic: Topic | None = None
    title: str | None = None
    description: str | None = None
    target_group: str | None = None
    sessions: list[SessionIn] | None = None
    capacity: int | None = None
    registration_deadline: datetime | None = None
    fee_eur: Decimal | None = None
    max_per_company: int | None = None
    waitlist_limit: int | None = None
    allow_below_confirmed: bool = Field(
        default=False, description="Erlaubt eine Kapazität unter der Zahl der bestätigten Anmeldungen."
    )


class CancelBody(BaseModel):
    reason: str = Field(description="Grund der Absage, für die Angemeldeten (Deutsch).")


_NULLABLE = {"target_group", "registration_deadline", "max_per_company"}


# --- conversions -------------------------------------------------------------------------------


def _sessions(items: Sequence[SessionIn]) -> tuple[OfferingSession, ...]:
    return tuple(
        OfferingSession(
            session_id=item.session_id or uuid4(),
            starts_at=item.starts_at,
            ends_at=item.ends_at,
            location=item.location,
        )
        for item in items
    )


def _draft(body: OfferingCreate) -> OfferingDraft:
    return OfferingDraft(
        node_id=body.node_id,
        kind=body.kind,
        topic=body.topic,
        title=body.title,
        description=body.description,
        target_group=body.target_group,
        sessions=_sessions(body.sessions),
        capacity=body.capacity,
        registration_deadline=body.registration_deadline,
        fee_eur=body.fee_eur,
        max_per_company=body.max_per_company,
        waitlist_limit=body.waitlist_limit,
    )


def _changes(body: OfferingPatch) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    missing: list[ValidationProblem] = []
    for name in sorted(body.model_fields_set - {"allow_below_confirmed"}):
        value = getattr(body, name)
        if value is None and name not in _NULLABLE:
            missing.append(ValidationProblem(name, "Dieses Feld darf nicht leer sein."))
        elif name == "sessions":
            changes[name] = _sessions(value)
        else:
            changes[name] = value
    if missing:
        raise handlers.Invalid(missing)
    return changes


def _offering_fields(item: store.StoredOffering, now: datetime) -> dict[str, Any]:
    """JSON-ready fields of `OfferingOut`. Listings build the same in SQL (`store.search_offerings_json`);
    tests/catalogue/test_listing_json.py keeps the two equal."""
    offering = item.offering
    node = item.node
    assert node is not None
    deadline = effective_registration_deadline(offering)
    occupancy = item.occupancy
    return {
        "offering_id": str(offering.offering_id),
        "node_id": str(offering.node_id),
        "node": {"node_id": str(node.node_id), "name": node.name, "town": node.town, "county": node.county},
        "kind": offering.kind.value,
        "kind_label": KIND_LABELS[offering.kind],
        "topic": offering.topic.value,
        "topic_label": TOPIC_LABELS[offering.topic],
        "title": offering.title,
        "description": offering.description,
        "target_group": offering.target_group,
        "sessions": store.session_fields(offering.sessions),
        "total_units": total_teaching_units(offering.sessions),
        "starts_at": store.iso_local(min(s.starts_at for s in offering.sessions)),
        "ends_at": store.iso_local(max(s.ends_at for s in offering.sessions)),
        "capacity": offering.capacity,
        "registration_deadline": store.iso_local(offering.registration_deadline),
        "registration_open": offering.status is OfferingStatus.PUBLISHED
        and deadline is not None
        and now < deadline,
        "fee_eur": float(offering.fee_eur),
        "max_per_company": offering.max_per_company,
        "waitlist_limit": offering.waitlist_limit,
        "status": offering.status.value,
        "revision": offering.revision,
        "cancel_reason": item.cancel_reason,
        "confirmed": occupancy.confirmed,
        "waitlisted": occupancy.waitlisted,
        "seats_left": seats_left(offering.capacity, occupancy.confirmed),
        "seats_as_of": occupancy.as_of.isoformat() if occupancy.as_of else None,
    }


def public_offering(item: store.StoredOffering, now: datetime) -> dict[str, Any]:
    return _offering_fields(item, now)


def staff_offering(item: store.StoredOffering, now: datetime) -> dict[str, Any]:
    return {
        **_offering_fields(item, now),
        "etag": item.etag,
        "created_at": item.created_at.isoformat(),
        "updated_at": item.updated_at.isoformat(),
        "published_at": item.published_at.isoformat() if item.published_at else None,
    }


async def _listing(
    db: Database, criteria: store.OfferingFilter, *, limit: int, offset: int, staff: bool
) -> Response:
    """A page of `OfferingPage` / `StaffOfferingPage`: Postgres builds the items' JSON in the query
    (the same fields as `public_offering` / `staff_offering`), so no per-item work happens here."""
    async with db.pool.acquire() as conn:
        items, total = await store.search_offerings_json(
            conn, criteria, limit=limit, offset=offset, now=datetime.now(UTC), staff=staff
        )
    body = f'{{"items":{items},"total":{total},"limit":{limit},"offset":{offset}}}'
    return Response(body, media_type="application/json")


def _node_out(node: Node) -> NodeOut:
    return NodeOut(
        **{f.name: getattr(node, f.name) for f in dataclasses.fields(Node)},
        calendar_url=f"/nodes/{node.node_id}/calendar.ics",
    )


def _json(data: BaseModel | dict[str, Any], status_code: int = 200, etag: str | None = None) -> Response:
    """The documented response model's shape, serialised directly (no second validation pass)."""
    headers = {"ETag": f'"{etag}"'} if etag else None
    body = data.model_dump_json() if isinstance(data, BaseModel) else json.dumps(data, ensure_ascii=False)
    return Response(body, status_code=status_code, media_type="application/json", headers=headers)


def _uuid_or_404(value: str, what: str = "Dieses Angebot gibt es nicht.") -> UUID:
    try:
        return UUID(value)
    except ValueError:
        raise Problem(404, what) from None


def _moment(value: str | None, field: str, *, end_of_day: bool) -> datetime | None:
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
        moment = datetime.fromisoformat(text)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        message = "Bitte ein Datum (2027-03-01) oder Datum und Uhrzeit mit Zeitzone angeben."
        raise Problem(422, f"{field}: {message}", errors=[{"field": field, "message": message}])
    return moment


def _validation_problem(exc: handlers.Invalid) -> Problem:
    errors = [{"field": p.field, "message": p.message} for p in exc.problems]
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    return Problem(422, f"Die Angaben sind nicht gültig: {detail}", errors=errors)


def _command_problem(exc: handlers.CatalogueError) -> Problem:
    if isinstance(exc, handlers.Invalid):
        return _validation_problem(exc)
    if isinstance(exc, handlers.NotFound):
        return Problem(404, exc.message)
    if isinstance(exc, handlers.PreconditionFailed):
        return Problem(412, exc.message, current_etag=exc.current_etag)
    return Problem(409, exc.message)


# --- German validation messages ----------------------------------------------------------------

_MESSAGES: dict[str, str] = {
    "missing": "Pflichtangabe fehlt.",
    "int_parsing": "Bitte eine ganze Zahl angeben.",
    "int_type": "Bitte eine ganze Zahl angeben.",
    "int_from_float": "Bitte eine ganze Zahl angeben.",
    "decimal_parsing": "Bitte einen Betrag angeben (z. B. 49.00).",
    "decimal_type": "Bitte einen Betrag angeben (z. B. 49.00).",
    "float_parsing": "Bitte eine Zahl angeben.",
    "datetime_parsing": "Bitte Datum und Uhrzeit angeben, z. B. 2027-03-02T09:00:00+01:00.",
    "datetime_from_date_parsing": "Bitte Datum und Uhrzeit angeben, z. B. 2027-03-02T09:00:00+01:00.",
    "datetime_type": "Bitte Datum und Uhrzeit angeben, z. B. 2027-03-02T09:00:00+01:00.",
    "uuid_parsing": "Bitte eine gültige ID (UUID) angeben.",
    "uuid_type": "Bitte eine gültige ID (UUID) angeben.",
    "string_type": "Bitte einen Text angeben.",
    "string_too_long": "Der Text ist zu lang.",
    "bool_parsing": "Bitte true oder false angeben.",
    "bool_type": "Bitte true oder false angeben.",
    "json_invalid": "Der Inhalt ist kein gültiges JSON.",
    "model_attributes_type": "Bitte ein JSON-Objekt angeben.",
    "dict_type": "Bitte ein JSON-Objekt angeben.",
    "list_type": "Bitte eine Liste angeben.",
    "extra_forbidden": "Dieses Feld ist unbekannt oder kann nicht geändert werden.",
}


def _german(error: dict[str, Any]) -> str:
    kind = str(error.get("type", ""))
    ctx = error.get("ctx") or {}
    if kind in ("enum", "literal_error"):
        return f"Ungültiger Wert; erlaubt sind: {ctx.get('expected', '')}."
    if kind == "greater_than_equal":
        return f"Der Wert muss mindestens {ctx.get('ge')} betragen."
    if kind == "less_than_equal":
        return f"Der Wert darf höchstens {ctx.get('le')} betragen."
    return _MESSAGES.get(kind, "Ungültige Angabe.")


def field_path(loc: Sequence[Any]) -> str:
    """`("body", "sessions", 0, "ends_at")` → `sessions[0].ends_at` (the paths the domain uses)."""
    path = ""
    for part in loc:
        if part in ("body", "query", "path", "header") and not path:
            continue
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path or "body"


def install_german_validation(app: FastAPI) -> None:
    """Replaces the runtime's handler for request validation: same shape, German messages."""

    async def on_validation(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors: list[dict[str, str]] = []
        for err in exc.errors():
            item = {"field": field_path(err.get("loc", ())), "message": _german(err)}
            if item not in errors:
                errors.append(item)
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        return problem_response(422, f"Die Anfrage enthält ungültige Angaben: {detail}", errors=errors)

    app.add_exception_handler(RequestValidationError, on_validation)


# --- routers -----------------------------------------------------------------------------------

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
IfMatch = Annotated[str | None, Header(description="Optional: nur ausführen, wenn dies der Stand ist.")]
LimitQuery = Annotated[int, Query(ge=1, le=MAX_LIMIT)]
OffsetQuery = Annotated[int, Query(ge=0, le=1_000_000)]


def _filter(
    statuses: Sequence[OfferingStatus],
    node: list[UUID] | None,
    county: str | None,
    topic: list[Topic] | None,
    kind: list[OfferingKind] | None,
    from_: str | None,
    to: str | None,
    q: str | None,
    available: bool | None,
) -> store.OfferingFilter:
    return store.OfferingFilter(
        statuses=statuses,
        node_ids=node or (),
        county=county.strip() if county and county.strip() else None,
        topics=topic or (),
        kinds=kind or (),
        ends_from=_moment(from_, "from", end_of_day=False),
        starts_before=_moment(to, "to", end_of_day=True),
        text=q.strip() if q and q.strip() else None,
        available=available,
    )


def public_router(db: Database) -> APIRouter:
    router = APIRouter(tags=["Katalog"], responses=_problems(422))

    @router.get("/nodes", response_model=NodeList, summary="Die QTI-Knoten")
    async def list_nodes() -> Response:
        async with db.pool.acquire() as conn:
            nodes = await store.list_nodes(conn)
        return _json(NodeList(items=[_node_out(node) for node in nodes], total=len(nodes)))

    @router.get(
        "/nodes/{node_id}/calendar.ics",
        summary="iCalendar-Feed der Termine eines Knotens",
        response_class=Response,
        responses={200: {"content": {"text/calendar": {}}}, **_problems(404)},
    )
    async def calendar(node_id: Annotated[str, Path()]) -> Response:
        node_uuid = _uuid_or_404(node_id, "Diesen QTI-Knoten gibt es nicht.")
        async with db.pool.acquire() as conn:
            node = await store.get_node(conn, node_uuid)
            if node is None:
                raise Problem(404, "Diesen QTI-Knoten gibt es nicht.")
            offerings = await store.calendar_offerings(conn, node_uuid)
        body = node_calendar(node, offerings)
        return Response(
            body,
            media_type="text/calendar; charset=utf-8",
            headers={"Content-Disposition": f'inline; filename="qti-{node.town.lower()}.ics"'},
        )

    @router.get(
        "/offerings",
        response_model=OfferingPage,
        summary="Angebote suchen",
        description="Veröffentlichte Angebote, sortiert nach Beginn des ersten Termins, dann ID. "
        "`status` kann auch abgeschlossene oder abgesagte Angebote einschließen.",
    )
    async def list_offerings(
        node: NodeQuery = None,
        county: CountyQuery = None,
        topic: TopicQuery = None,
        kind: KindQuery = None,
        from_: FromQuery = None,
        to: ToQuery = None,
        q: TextQuery = None,
        available: AvailableQuery = None,
        status: Annotated[
            list[OfferingStatus] | None, Query(description="published (Standard), completed, cancelled.")
        ] = None,
        limit: LimitQuery = DEFAULT_LIMIT,
        offset: OffsetQuery = 0,
    ) -> Response:
        statuses = status or [OfferingStatus.PUBLISHED]
        if OfferingStatus.DRAFT in statuses:
            message = "Entwürfe sind nicht öffentlich."
            raise Problem(422, f"status: {message}", errors=[{"field": "status", "message": message}])
        criteria = _filter(statuses, node, county, topic, kind, from_, to, q, available)
        return await _listing(db, criteria, limit=limit, offset=offset, staff=False)

    @router.get(
        "/offerings/{offering_id}",
        response_model=OfferingOut,
        summary="Ein Angebot mit freien Plätzen",
        responses=_problems(404),
    )
    async def get_offering(offering_id: Annotated[str, Path()]) -> Response:
        identifier = _uuid_or_404(offering_id)
        async with db.pool.acquire() as conn:
            item = await store.get_offering(conn, identifier)
        if item is None or item.offering.status not in PUBLIC_STATUSES:
            raise Problem(404, "Dieses Angebot gibt es nicht.")
        return _json(public_offering(item, datetime.now(UTC)))

    return router


def staff_router(db: Database, settings: Settings) -> APIRouter:
    guard = staff_guard(settings.staff_token)
    router = APIRouter(
        tags=["Mitarbeitende"], dependencies=[Depends(guard)], responses=_problems(401, 403, 422)
    )
    offering_responses = _problems(404, 409, 412)

    def _done(item: store.StoredOffering, status_code: int = 200) -> Response:
        return _json(staff_offering(item, datetime.now(UTC)), status_code, etag=item.etag)

    @router.post(
        "/offerings",
        status_code=201,
        response_model=StaffOfferingOut,
        summary="Entwurf anlegen",
        responses=_problems(409),
    )
    async def create(body: OfferingCreate) -> Response:
        try:
            item = await handlers.create_draft(db, _draft(body))
        except handlers.CatalogueError as exc:
            raise _command_problem(exc) from None
        response = _done(item, 201)
        response.headers["Location"] = f"/staff/offerings/{item.offering.offering_id}"
        return response

    @router.patch(
        "/offerings/{offering_id}",
        response_model=StaffOfferingOut,
        summary="Angebot ändern (If-Match nötig)",
        responses={**offering_responses, **_problems(428)},
    )
    async def edit(
        offering_id: Annotated[str, Path()],
        body: OfferingPatch,
        if_match: Annotated[str | None, Header(description="ETag des bearbeiteten Stands.")] = None,
    ) -> Response:
        identifier = _uuid_or_404(offering_id)
        if if_match is None or not if_match.strip():
            raise Problem(
                428,
                "Bitte den bearbeiteten Stand im Header If-Match angeben (ETag aus der letzten Antwort), "
                "damit keine Änderung anderer verloren geht.",
            )
        try:
            item = await handlers.edit_offering(
                db,
                identifier,
                _changes(body),
                if_match=if_match,
                allow_below_confirmed=body.allow_below_confirmed,
            )
        except handlers.CatalogueError as exc:
            raise _command_problem(exc) from None
        return _done(item)

    @router.post(
        "/offerings/{offering_id}/publish",
        response_model=StaffOfferingOut,
        summary="Entwurf veröffentlichen",
        responses=offering_responses,
    )
    async def publish(offering_id: Annotated[str, Path()], if_match: IfMatch = None) -> Response:
        try:
            item = await handlers.publish_offering(db, _uuid_or_404(offering_id), if_match=if_match)
        except handlers.CatalogueError as exc:
            raise _command_problem(exc) from None
        return _done(item)

    @router.post(
        "/offerings/{offering_id}/cancel",
        response_model=StaffOfferingOut,
        summary="Angebot absagen",
        responses=offering_responses,
    )
    async def cancel(
        offering_id: Annotated[str, Path()], body: CancelBody, if_match: IfMatch = None
    ) -> Response:
        identifier = _uuid_or_404(offering_id)
        reason = body.reason.strip()
        problem: str | None = None
        if not reason:
            problem = "Bitte einen Grund für die Absage angeben."
        elif len(reason) > 2000 or any(ord(c) < 32 and c not in "\n\r\t" for c in reason):
            problem = "Der Grund darf höchstens 2.000 Zeichen und keine Steuerzeichen enthalten."
        if problem:
            raise Problem(422, f"reason: {problem}", errors=[{"field": "reason", "message": problem}])
        try:
            item = await handlers.cancel_offering(db, identifier, reason, if_match=if_match)
        except handlers.CatalogueError as exc:
            raise _command_problem(exc) from None
        return _done(item)

    @router.post(
        "/offerings/{offering_id}/complete",
        response_model=StaffOfferingOut,
        summary="Angebot abschließen",
        responses=offering_responses,
    )
    async def complete(offering_id: Annotated[str, Path()], if_match: IfMatch = None) -> Response:
        try:
            item = await handlers.complete_offering(db, _uuid_or_404(offering_id), if_match=if_match)
        except handlers.CatalogueError as exc:
            raise _command_problem(exc) from None
        return _done(item)

    return router


def staff_read_router(db: Database, settings: Settings) -> APIRouter:
    """Staff views: every status, with the ETag needed for edits."""
    guard = staff_guard(settings.staff_token)
    router = APIRouter(
        tags=["Mitarbeitende"], dependencies=[Depends(guard)], responses=_problems(401, 403, 422)
    )

    def _done(item: store.StoredOffering, status_code: int = 200) -> Response:
        return _json(staff_offering(item, datetime.now(UTC)), status_code, etag=item.etag)

    @router.get(
        "/staff/offerings",
        response_model=StaffOfferingPage,
        summary="Alle Angebote einschließlich Entwürfen",
    )
    async def staff_list(
        node: NodeQuery = None,
        county: CountyQuery = None,
        topic: TopicQuery = None,
        kind: KindQuery = None,
        from_: FromQuery = None,
        to: ToQuery = None,
        q: TextQuery = None,
        available: AvailableQuery = None,
        status: Annotated[list[OfferingStatus] | None, Query(description="Standard: alle.")] = None,
        limit: LimitQuery = DEFAULT_LIMIT,
        offset: OffsetQuery = 0,
    ) -> Response:
        criteria = _filter(status or list(OfferingStatus), node, county, topic, kind, from_, to, q, available)
        return await _listing(db, criteria, limit=limit, offset=offset, staff=True)

    @router.get(
        "/staff/offerings/{offering_id}",
        response_model=StaffOfferingOut,
        summary="Ein Angebot (auch Entwurf) mit ETag",
        responses=_problems(404),
    )
    async def staff_get(offering_id: Annotated[str, Path()]) -> Response:
        async with db.pool.acquire() as conn:
            item = await store.get_offering(conn, _uuid_or_404(offering_id))
        if item is None:
            raise Problem(404, "Dieses Angebot gibt es nicht.")
        return _done(item)

    return router
