"""Between the HTTP models and the domain: request bodies to domain values, stored state to JSON."""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

from fastapi.responses import Response
from pydantic import BaseModel

from qti_contracts.events import (
    KIND_LABELS,
    TOPIC_LABELS,
    OfferingStatus,
)
from qti_runtime.db import Database
from services.catalogue import store
from services.catalogue.domain import (
    Node,
    OfferingDraft,
    OfferingSession,
    ValidationProblem,
    effective_registration_deadline,
    seats_left,
    total_teaching_units,
)
from services.catalogue.http_errors import validation_problem
from services.catalogue.http_models import (
    NodeCreate,
    NodeOut,
    NodePatch,
    OfferingCreate,
    OfferingPatch,
    SessionIn,
)
from services.catalogue.node_rules import county_code, county_label

OFFERING_NULLABLE = frozenset({"target_group", "registration_deadline", "max_per_company"})


def json_response(
    data: BaseModel | dict[str, Any], status_code: int = 200, etag: str | None = None
) -> Response:
    """The documented response model's shape, serialised directly (no second validation pass)."""
    headers = {"ETag": f'"{etag}"'} if etag else None
    body = data.model_dump_json() if isinstance(data, BaseModel) else json.dumps(data, ensure_ascii=False)
    return Response(body, status_code=status_code, media_type="application/json", headers=headers)


# --- requests to domain values -----------------------------------------------------------------


def sessions_of(items: Sequence[SessionIn]) -> tuple[OfferingSession, ...]:
    return tuple(
        OfferingSession(
            session_id=item.session_id or uuid4(),
            starts_at=item.starts_at,
            ends_at=item.ends_at,
            location=item.location,
        )
        for item in items
    )


def draft_of(body: OfferingCreate) -> OfferingDraft:
    fields = body.model_dump(exclude={"sessions"})
    return OfferingDraft(**fields, sessions=sessions_of(body.sessions))


def changes_of(body: BaseModel, *, nullable: Collection[str], ignore: Collection[str] = ()) -> dict[str, Any]:
    """The fields a PATCH body sets (field name → new value); null only where `nullable` allows it."""
    changes: dict[str, Any] = {}
    missing: list[ValidationProblem] = []
    for name in sorted(body.model_fields_set - set(ignore)):
        value = getattr(body, name)
        if value is None and name not in nullable:
            missing.append(ValidationProblem(name, "Dieses Feld darf nicht leer sein."))
        else:
            changes[name] = value
    if missing:
        raise validation_problem(missing)
    return changes


def offering_changes(body: OfferingPatch) -> dict[str, Any]:
    changes = changes_of(body, nullable=OFFERING_NULLABLE, ignore={"allow_below_confirmed"})
    if changes.get("sessions") is not None:
        changes["sessions"] = sessions_of(body.sessions or ())
    return changes


# --- nodes ------------------------------------------------------------------------------------

NODE_NULLABLE = frozenset({"description", "contact_name", "contact_email", "contact_phone"})


def node_of(body: NodeCreate) -> Node:
    fields = body.model_dump(exclude={"county"})
    return Node(**fields, node_id=uuid4(), county=county_label(body.county))


def node_changes(body: NodePatch) -> dict[str, Any]:
    changes = changes_of(body, nullable=NODE_NULLABLE)
    if "county" in changes:
        changes["county"] = county_label(body.county)
    return changes


def node_out(listing: store.NodeListing) -> NodeOut:
    node = listing.node
    return NodeOut(
        node_id=node.node_id,
        name=node.name,
        town=node.town,
        county=node.county,
        county_code=county_code(node.county),
        host=node.host,
        address=node.address,
        opened_on=node.opened_on,
        description=node.description,
        contact_name=node.contact_name,
        contact_email=node.contact_email,
        contact_phone=node.contact_phone,
        revision=node.revision,
        upcoming_offerings=listing.upcoming_offerings,
        offerings_url=f"/offerings?node={node.node_id}",
        calendar_url=f"/nodes/{node.node_id}/calendar.ics",
    )


# --- stored offerings to JSON ------------------------------------------------------------------


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


def staff_offering_response(item: store.StoredOffering, status_code: int = 200) -> Response:
    """A `StaffOfferingOut` with its ETag header."""
    return json_response(staff_offering(item, datetime.now(UTC)), status_code, etag=item.etag)


async def listing_response(
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
