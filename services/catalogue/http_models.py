"""Request and response models of the catalogue's HTTP API (they shape the OpenAPI document)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from qti_contracts.events import County, CountyField, OfferingKind, OfferingStatus, Topic
from qti_runtime.http import PROBLEM_JSON


class ProblemDetails(BaseModel):
    """RFC 9457 problem details; `errors` lists the affected fields for 422."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    errors: list[dict[str, str]] | None = None


def problems(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries documenting problem details for `codes`."""
    return {
        code: {"model": ProblemDetails, "content": {PROBLEM_JSON: {}}, "description": "Problem details"}
        for code in codes
    }


class NodeOut(BaseModel):
    node_id: UUID
    name: str
    town: str
    county: str = Field(description="Landkreis oder kreisfreie Stadt (deutsche Bezeichnung).")
    county_code: County | None = Field(description="Derselbe Landkreis als Code der geschlossenen Liste.")
    host: str = Field(description="Die Einrichtung, die den Knoten betreibt.")
    address: str
    opened_on: date
    description: str | None = Field(description="Kurzbeschreibung des Knotens.")
    contact_name: str | None = Field(description="Ansprechperson am Knoten.")
    contact_email: str | None
    contact_phone: str | None
    revision: int = Field(description="Wächst mit jeder Änderung (wie in `catalogue.node.updated`).")
    upcoming_offerings: int = Field(
        description="Veröffentlichte Angebote des Knotens, deren letzter Termin noch nicht vorbei ist."
    )
    offerings_url: str = Field(description="Diese Angebote: die Angebotssuche, gefiltert auf den Knoten.")
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


class NodeCreate(BaseModel):
    """A new QTI node. `county` is a code of the closed list (`soemmerda`); the German label
    (`Sömmerda`) is accepted too."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="z. B. QTI-Knoten Sömmerda")
    town: str
    county: CountyField
    host: str = Field(description="Die Einrichtung, die den Knoten betreibt.")
    address: str = Field(description="Anschrift, z. B. Bahnhofstraße 10, 99610 Sömmerda")
    opened_on: date = Field(description="Eröffnungstag, z. B. 2027-03-01.")
    description: str | None = Field(default=None, description="Kurzbeschreibung (höchstens 2.000 Zeichen).")
    contact_name: str | None = None
    contact_email: str | None = None
    contact_phone: str | None = None


class NodePatch(BaseModel):
    """Only the fields sent are changed; `null` clears the description and the contact fields."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    town: str | None = None
    county: CountyField = None
    host: str | None = None
    address: str | None = None
    opened_on: date | None = None
    description: str | None = None
    contact_name: str | None = None
    contact_email: str | None = None
    contact_phone: str | None = None
