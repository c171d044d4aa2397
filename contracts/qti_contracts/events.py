"""Payload models (the CloudEvents `data` part) of every event and command of qti-net v1.

All models are frozen and ignore unknown fields, so a producer may add fields without breaking older
consumers (INTERFACE.md: "Unknown attributes and unknown `data` fields are ignored"). A breaking change
needs a new type with a version suffix, e.g. `registration.requested.v2`.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Final

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    EmailStr,
    Field,
    NonNegativeInt,
    PlainSerializer,
    PositiveInt,
    StringConstraints,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from .limits import amqp_short

# --------------------------------------------------------------------------------------------------
# Reusable field types
# --------------------------------------------------------------------------------------------------


def _single_line(value: str) -> str:
    """Reject control characters (line breaks, tabs, NUL …) in one-line texts such as names and titles."""
    if any(unicodedata.category(char) == "Cc" for char in value):
        raise ValueError("must be a single line without control characters")
    return value


def _no_control_except_newlines(value: str) -> str:
    """Multi-line texts may contain line breaks and tabs, but no other control characters."""
    if any(unicodedata.category(char) == "Cc" and char not in "\n\r\t" for char in value):
        raise ValueError("must not contain control characters")
    return value


def _blank_to_none(value: Any) -> Any:
    """Optional texts: an empty or blank string means "not given"."""
    if isinstance(value, str) and not value.strip():
        return None
    return value


def _no_at_sign(value: str) -> str:
    if "@" in value:
        raise ValueError("must be a pseudonym, not an e-mail address (contains '@')")
    return value


def _strip(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


def _email_length(value: str) -> str:
    if len(value) > 254:
        raise ValueError("e-mail address must have at most 254 characters")
    return value


Identifier = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:\-]*$"
    ),
]
"""Id of an entity (offering, node, registration, session, notification).

Letters, digits, `.`, `_`, `:` and `-`."""

EventRef = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), AfterValidator(amqp_short)
]
"""Reference to a CloudEvents `id` (same limits as the envelope's `id`)."""

TypeRef = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
"""Reference to a CloudEvents `type`."""

PersonName = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100), AfterValidator(_single_line)
]
ShortText = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), AfterValidator(_single_line)
]
OptionalShortText = Annotated[ShortText | None, BeforeValidator(_blank_to_none)]
LongText = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=0, max_length=10_000),
    AfterValidator(_no_control_except_newlines),
]
ReasonText = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=2_000),
    AfterValidator(_no_control_except_newlines),
]
OptionalReasonText = Annotated[ReasonText | None, BeforeValidator(_blank_to_none)]
Email = Annotated[EmailStr, BeforeValidator(_strip), AfterValidator(_email_length)]

_PLZ_PATTERN: Final = r"^(0[1-9]|[1-9][0-9])[0-9]{3}$"


def _german_postal_code(value: str) -> str:
    if not re.fullmatch(_PLZ_PATTERN, value):
        raise ValueError("must be a German postal code of five digits (e.g. 99610)")
    return value


PostalCode = Annotated[
    str,
    StringConstraints(strip_whitespace=True, max_length=16),
    AfterValidator(_german_postal_code),
    Field(
        description="German postal code (PLZ): five digits, 01001–99998.",
        examples=["99610"],
        json_schema_extra={"pattern": _PLZ_PATTERN},
    ),
]

EuroAmount = Annotated[
    Decimal,
    Field(ge=0, max_digits=9, decimal_places=2, allow_inf_nan=False),
    PlainSerializer(float, return_type=float, when_used="json"),
    WithJsonSchema({"type": "number", "minimum": 0, "description": "Euro, at most two decimal places."}),
]
"""A non-negative amount in euro with at most two decimal places; a JSON number on the wire."""

Pseudonym = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=128),
    AfterValidator(_no_at_sign),
    Field(description="Pseudonymous reference to a recipient; never an e-mail address."),
]

Slug = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_.-]*$")
]

FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]

NoticeVersion = Annotated[
    str,
    StringConstraints(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$"),
    Field(description="Version label of a privacy notice text, e.g. `2026-12-v1`."),
]


class Payload(BaseModel):
    """Base of every payload: immutable, unknown fields are ignored (forward compatible)."""

    model_config = ConfigDict(frozen=True, extra="ignore", str_max_length=10_000)


# --------------------------------------------------------------------------------------------------
# Enumerations and their German labels
# --------------------------------------------------------------------------------------------------


class Gender(StrEnum):
    FEMALE = "female"
    MALE = "male"
    DIVERSE = "diverse"
    UNSPECIFIED = "unspecified"


class AgeBand(StrEnum):
    UNDER_30 = "under_30"
    FROM_30_TO_54 = "30_54"
    FROM_55 = "55_plus"
    UNSPECIFIED = "unspecified"


class SizeClass(StrEnum):
    """Company size by the EU SME definition (employees)."""

    MICRO = "micro"
    SMALL = "small"
    MEDIUM = "medium"
    LARGE = "large"


class County(StrEnum):
    """Where a company sits: the 17 districts and 5 district-free cities of Thuringia (since the 2021
    merger of Eisenach into the Wartburgkreis), or outside Thuringia. A closed list, so that no free text
    typed by a registrant reaches reporting's figures."""

    ALTENBURGER_LAND = "altenburger_land"
    EICHSFELD = "eichsfeld"
    GOTHA = "gotha"
    GREIZ = "greiz"
    HILDBURGHAUSEN = "hildburghausen"
    ILM_KREIS = "ilm_kreis"
    KYFFHAEUSERKREIS = "kyffhaeuserkreis"
    NORDHAUSEN = "nordhausen"
    SAALE_HOLZLAND_KREIS = "saale_holzland_kreis"
    SAALE_ORLA_KREIS = "saale_orla_kreis"
    SAALFELD_RUDOLSTADT = "saalfeld_rudolstadt"
    SCHMALKALDEN_MEININGEN = "schmalkalden_meiningen"
    SOEMMERDA = "soemmerda"
    SONNEBERG = "sonneberg"
    UNSTRUT_HAINICH_KREIS = "unstrut_hainich_kreis"
    WARTBURGKREIS = "wartburgkreis"
    WEIMARER_LAND = "weimarer_land"
    ERFURT = "erfurt"
    GERA = "gera"
    JENA = "jena"
    SUHL = "suhl"
    WEIMAR = "weimar"
    AUSSERHALB = "ausserhalb"


class OfferingKind(StrEnum):
    COURSE = "course"
    CERTIFICATE_COURSE = "certificate_course"
    WORKSHOP = "workshop"
    INFO_EVENT = "info_event"
    CONSULTATION = "consultation"
    NETWORK_EVENT = "network_event"


class Topic(StrEnum):
    ELEKTROMOBILITAET = "elektromobilitaet"
    INDUSTRIE_4_0 = "industrie_4_0"
    FAHRZEUGKOMPONENTEN = "fahrzeugkomponenten"
    ELEKTRIK_ELEKTRONIK = "elektrik_elektronik"
    WASSERSTOFF = "wasserstoff"
    NACHHALTIGKEIT = "nachhaltigkeit"
    INNOVATION = "innovation"
    WEITERBILDUNG = "weiterbildung"
    FACHKRAEFTESICHERUNG = "fachkraeftesicherung"
    UNTERNEHMENSNACHFOLGE = "unternehmensnachfolge"
    FOERDERMITTEL = "foerdermittel"


class RejectionReason(StrEnum):
    INVALID_REQUEST = "invalid_request"
    OFFERING_NOT_FOUND = "offering_not_found"
    OFFERING_NOT_OPEN = "offering_not_open"
    REGISTRATION_CLOSED = "registration_closed"
    DUPLICATE_REGISTRATION = "duplicate_registration"
    COMPANY_LIMIT_REACHED = "company_limit_reached"
    WAITLIST_FULL = "waitlist_full"
    CONSENT_MISSING = "consent_missing"


class RegistrationSource(StrEnum):
    """Where a registration came from (attribution without personal data): an offer-alert mail, the
    alternatives shown when an offering was full, or an expression of interest."""

    ANGEBOTSALARM = "angebotsalarm"
    ALTERNATIVE = "alternative"
    INTERESSE = "interesse"


def _known_source(value: Any) -> Any:
    """A source not on the closed list is ignored (None), never a reason to refuse a registration."""
    known = isinstance(value, str) and value in {s.value for s in RegistrationSource}
    return value if known else None


SourceField = Annotated[
    RegistrationSource | None,
    BeforeValidator(_known_source),
    Field(
        description="Since v2: where the registration came from (`angebotsalarm`, `alternative`, "
        "`interesse`); any other value is ignored. No personal data."
    ),
]


class CancellationCause(StrEnum):
    PARTICIPANT = "participant"
    ORGANISER = "organiser"
    OFFERING_CANCELLED = "offering_cancelled"


class OfferingStatus(StrEnum):
    DRAFT = "draft"
    PUBLISHED = "published"
    CANCELLED = "cancelled"
    COMPLETED = "completed"


TOPIC_LABELS: Final[dict[Topic, str]] = {
    Topic.ELEKTROMOBILITAET: "Elektromobilität",
    Topic.INDUSTRIE_4_0: "Industrie 4.0/Digitale Transformation",
    Topic.FAHRZEUGKOMPONENTEN: "Fahrzeugkomponenten (Leichtbau, 3D-Druck)",
    Topic.ELEKTRIK_ELEKTRONIK: "Elektrik/Elektronik",
    Topic.WASSERSTOFF: "Wasserstoff",
    Topic.NACHHALTIGKEIT: "Nachhaltige Unternehmensentwicklung",
    Topic.INNOVATION: "Innovation",
    Topic.WEITERBILDUNG: "Weiterbildung",
    Topic.FACHKRAEFTESICHERUNG: "Personalgewinnung/Fachkräftesicherung",
    Topic.UNTERNEHMENSNACHFOLGE: "Unternehmensnachfolge",
    Topic.FOERDERMITTEL: "Fördermittel",
}

COUNTY_LABELS: Final[dict[County, str]] = {
    County.ALTENBURGER_LAND: "Altenburger Land",
    County.EICHSFELD: "Eichsfeld",
    County.GOTHA: "Gotha",
    County.GREIZ: "Greiz",
    County.HILDBURGHAUSEN: "Hildburghausen",
    County.ILM_KREIS: "Ilm-Kreis",
    County.KYFFHAEUSERKREIS: "Kyffhäuserkreis",
    County.NORDHAUSEN: "Nordhausen",
    County.SAALE_HOLZLAND_KREIS: "Saale-Holzland-Kreis",
    County.SAALE_ORLA_KREIS: "Saale-Orla-Kreis",
    County.SAALFELD_RUDOLSTADT: "Saalfeld-Rudolstadt",
    County.SCHMALKALDEN_MEININGEN: "Schmalkalden-Meiningen",
    County.SOEMMERDA: "Sömmerda",
    County.SONNEBERG: "Sonneberg",
    County.UNSTRUT_HAINICH_KREIS: "Unstrut-Hainich-Kreis",
    County.WARTBURGKREIS: "Wartburgkreis",
    County.WEIMARER_LAND: "Weimarer Land",
    County.ERFURT: "Erfurt (kreisfreie Stadt)",
    County.GERA: "Gera (kreisfreie Stadt)",
    County.JENA: "Jena (kreisfreie Stadt)",
    County.SUHL: "Suhl (kreisfreie Stadt)",
    County.WEIMAR: "Weimar (kreisfreie Stadt)",
    County.AUSSERHALB: "außerhalb Thüringens",
}


def _county_key(text: str) -> str:
    """Lower case without prefixes, umlauts spelt out, separators unified: how a label is matched."""
    key = text.strip().casefold()
    for prefix in ("landkreis ", "lk ", "kreisfreie stadt ", "stadt "):
        key = key.removeprefix(prefix)
    key = key.removesuffix(" (kreisfreie stadt)")
    for umlaut, spelt in (("ä", "ae"), ("ö", "oe"), ("ü", "ue"), ("ß", "ss")):
        key = key.replace(umlaut, spelt)
    return re.sub(r"[\s\-]+", "_", key)


_COUNTY_BY_KEY: Final[dict[str, County]] = {
    **{_county_key(label): county for county, label in COUNTY_LABELS.items()},
    **{county.value: county for county in County},
    "ausserhalb_thueringens": County.AUSSERHALB,
    "eisenach": County.WARTBURGKREIS,  # district-free until 2021, now part of the Wartburgkreis
}


def _county_from_label(value: Any) -> Any:
    """Accept the code or its German label (v1 clients sent "Sömmerda"); anything else stays invalid."""
    if isinstance(value, str) and len(value) <= 100:
        if not value.strip():
            return None
        return _COUNTY_BY_KEY.get(_county_key(value), value)
    return value


CountyField = Annotated[
    County | None,
    BeforeValidator(_county_from_label),
    Field(
        description="District (Landkreis or district-free city) of Thuringia, or `ausserhalb`. The German "
        "label (e.g. `Sömmerda`) is accepted on input and stored as its code."
    ),
]

KIND_LABELS: Final[dict[OfferingKind, str]] = {
    OfferingKind.COURSE: "Lehrgang",
    OfferingKind.CERTIFICATE_COURSE: "Zertifikatslehrgang",
    OfferingKind.WORKSHOP: "Workshop",
    OfferingKind.INFO_EVENT: "Informationsveranstaltung",
    OfferingKind.CONSULTATION: "Beratung",
    OfferingKind.NETWORK_EVENT: "Netzwerkveranstaltung",
}

GENDER_LABELS: Final[dict[Gender, str]] = {
    Gender.FEMALE: "weiblich",
    Gender.MALE: "männlich",
    Gender.DIVERSE: "divers",
    Gender.UNSPECIFIED: "keine Angabe",
}

AGE_BAND_LABELS: Final[dict[AgeBand, str]] = {
    AgeBand.UNDER_30: "unter 30 Jahre",
    AgeBand.FROM_30_TO_54: "30 bis 54 Jahre",
    AgeBand.FROM_55: "55 Jahre und älter",
    AgeBand.UNSPECIFIED: "keine Angabe",
}

SIZE_CLASS_LABELS: Final[dict[SizeClass, str]] = {
    SizeClass.MICRO: "Kleinstunternehmen (unter 10 Beschäftigte)",
    SizeClass.SMALL: "Kleines Unternehmen (10 bis 49 Beschäftigte)",
    SizeClass.MEDIUM: "Mittleres Unternehmen (50 bis 249 Beschäftigte)",
    SizeClass.LARGE: "Großunternehmen (ab 250 Beschäftigte)",
}

REJECTION_LABELS: Final[dict[RejectionReason, str]] = {
    RejectionReason.INVALID_REQUEST: "Die Anmeldung ist unvollständig oder fehlerhaft.",
    RejectionReason.OFFERING_NOT_FOUND: "Das Angebot wurde nicht gefunden.",
    RejectionReason.OFFERING_NOT_OPEN: "Für dieses Angebot ist keine Anmeldung möglich.",
    RejectionReason.REGISTRATION_CLOSED: "Die Anmeldefrist ist abgelaufen.",
    RejectionReason.DUPLICATE_REGISTRATION: "Sie sind für dieses Angebot bereits angemeldet.",
    RejectionReason.COMPANY_LIMIT_REACHED: "Für Ihr Unternehmen sind bereits alle möglichen Plätze belegt.",
    RejectionReason.WAITLIST_FULL: "Das Angebot und die Warteliste sind ausgebucht.",
    RejectionReason.CONSENT_MISSING: (
        "Ohne Einwilligung in die Datenverarbeitung ist keine Anmeldung möglich."
    ),
}

CANCELLATION_CAUSE_LABELS: Final[dict[CancellationCause, str]] = {
    CancellationCause.PARTICIPANT: "Abmeldung durch die teilnehmende Person",
    CancellationCause.ORGANISER: "Abmeldung durch den Veranstalter",
    CancellationCause.OFFERING_CANCELLED: "Das Angebot wurde abgesagt.",
}

# --------------------------------------------------------------------------------------------------
# People and companies
# --------------------------------------------------------------------------------------------------


class Participant(Payload):
    """The person who registers. Personal data: travels only on registration events."""

    given_name: PersonName
    family_name: PersonName
    email: Email
    gender: Gender = Gender.UNSPECIFIED
    age_band: AgeBand = AgeBand.UNSPECIFIED


class Company(Payload):
    """The company that sends the participant."""

    name: ShortText
    postal_code: PostalCode
    county: CountyField = None
    size_class: SizeClass | None = None
    automotive_supplier: bool | None = None


# --------------------------------------------------------------------------------------------------
# Commands from frontends
# --------------------------------------------------------------------------------------------------


class RegistrationRequested(Payload):
    """Command `registration.requested`. `privacy_consent: false` is valid here; the service answers
    `registration.rejected` with reason `consent_missing`."""

    offering_id: Identifier
    participant: Participant
    company: Company
    privacy_consent: bool
    privacy_notice_version: NoticeVersion | None = Field(
        default=None,
        description="Since v2: the version of the privacy notice the person consented to (DSGVO Art. 7(1): "
        "the controller must be able to show the consent); registration stores it with the registration.",
    )
    source: SourceField = None


PersonalToken = Annotated[
    str,
    StringConstraints(min_length=22, max_length=128, pattern=r"^[A-Za-z0-9_-]+$"),
    Field(description="The participant's personal token (from the link in their mails); a secret."),
]


class RegistrationCancellationRequested(Payload):
    """Command `registration.cancellation_requested`. Since v2 it takes effect only with the
    participant's `personal_token`; without it (or with another's) it changes nothing."""

    registration_id: Identifier
    reason: OptionalReasonText = None
    personal_token: PersonalToken | None = None


# --------------------------------------------------------------------------------------------------
# Registration outcome and lifecycle events
# --------------------------------------------------------------------------------------------------


class Occupancy(Payload):
    """The offering's seat count right after the change that this event reports.

    `version` grows by one with every seat change of the offering in the registration service, so a
    consumer keeps the snapshot with the highest version and is immune to duplicates and reordering.
    """

    version: PositiveInt
    confirmed: NonNegativeInt
    waitlisted: NonNegativeInt
    capacity: PositiveInt


class RegistrationConfirmed(Payload):
    registration_id: Identifier
    request_id: EventRef = Field(description="`id` of the `registration.requested` command.")
    offering_id: Identifier
    participant: Participant
    company: Company
    from_waitlist: bool = False
    occupancy: Occupancy | None = Field(default=None, description="Seats after this confirmation.")
    source: SourceField = None  # the request's, on the first outcome of a request only


class RegistrationWaitlisted(Payload):
    registration_id: Identifier
    request_id: EventRef = Field(description="`id` of the `registration.requested` command.")
    offering_id: Identifier
    participant: Participant
    company: Company
    from_waitlist: bool = False
    position: PositiveInt = Field(description="Place on the waiting list; 1 = next in line.")
    occupancy: Occupancy | None = Field(default=None, description="Seats after this change.")
    source: SourceField = None  # the request's, on the first outcome of a request only


class RegistrationRejected(Payload):
    request_id: EventRef = Field(description="`id` of the `registration.requested` command.")
    offering_id: Identifier | None = None
    reason: RejectionReason
    detail: ReasonText = Field(description="Explanation in German, for people.")
    recipient: Participant | None = Field(
        default=None,
        description=(
            "Who asked (addition to v1), so that notification can tell them without mirroring requests. "
            "Absent when the request carried no valid participant. Personal data: consumers other than "
            "notification ignore it."
        ),
    )


class RegistrationCancelled(Payload):
    registration_id: Identifier
    offering_id: Identifier
    cause: CancellationCause
    reason: OptionalReasonText = None
    was_confirmed: bool | None = Field(default=None, description="True if the registration held a seat.")
    occupancy: Occupancy | None = Field(default=None, description="Seats after this cancellation.")


class RegistrationAttendanceRecorded(Payload):
    registration_id: Identifier
    offering_id: Identifier
    session_id: Identifier
    attended: bool


class RegistrationCompleted(Payload):
    """Published once an offering is over: the participant's attendance summary (addition to v1)."""

    registration_id: Identifier
    offering_id: Identifier
    attended_units: NonNegativeInt
    total_units: NonNegativeInt
    attendance_ratio: Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
    completed: bool
    certificate_eligible: bool

    @model_validator(mode="after")
    def _units_consistent(self) -> RegistrationCompleted:
        if self.attended_units > self.total_units:
            raise ValueError("attended_units must not exceed total_units")
        return self


class FeedbackInvited(Payload):
    """`registration.feedback.invited`: an attendee of a finished offering may answer its anonymous
    questionnaire once (addition to v1). Notification mails the link; the link's token is derived from
    the registration id with `QTI_LINK_SECRET` and travels in no event."""

    registration_id: Identifier
    offering_id: Identifier


Score = Annotated[int, Field(ge=1, le=5, description="1 (worst) to 5 (best).")]


class FeedbackSubmitted(Payload):
    """`registration.feedback.submitted`: one anonymous answer to an offering's questionnaire (addition
    to v1). It names the offering only: no registration, no token, no person. `comment` is free text
    for the node's staff; reporting keeps it out of every figure, export and KPI event."""

    offering_id: Identifier
    rating: Score = Field(description="Overall rating, 1 (poor) to 5 (excellent).")
    usefulness: Score = Field(description="Usefulness for the job, 1 (none) to 5 (very useful).")
    would_recommend: bool
    comment: OptionalReasonText = None


# --------------------------------------------------------------------------------------------------
# Catalogue events
# --------------------------------------------------------------------------------------------------

TEACHING_UNIT_MINUTES: Final = 45


class Session(Payload):
    """One dated session of an offering."""

    session_id: Identifier
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    location: ShortText
    teaching_units: NonNegativeInt = Field(
        default=0,
        description="Teaching units of 45 minutes. When omitted, the whole 45-minute units between "
        "starts_at and ends_at.",
    )

    @model_validator(mode="before")
    @classmethod
    def _derive_teaching_units(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("teaching_units") is None:
            starts, ends = data.get("starts_at"), data.get("ends_at")
            try:
                start = starts if isinstance(starts, datetime) else datetime.fromisoformat(str(starts))
                end = ends if isinstance(ends, datetime) else datetime.fromisoformat(str(ends))
                minutes = (end - start).total_seconds() / 60
            except (TypeError, ValueError):
                return data  # field validation reports the bad timestamps
            return {**data, "teaching_units": max(0, int(minutes // TEACHING_UNIT_MINUTES))}
        return data

    @model_validator(mode="after")
    def _ends_after_start(self) -> Session:
        if self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        return self


class OfferingState(Payload):
    """The full offering, carried by `catalogue.offering.published` and `catalogue.offering.updated`."""

    offering_id: Identifier
    node_id: Identifier
    kind: OfferingKind
    topic: Topic
    title: ShortText
    description: LongText = ""
    sessions: Annotated[list[Session], Field(min_length=1, max_length=500)] = Field(
        description="Dated sessions, in chronological order."
    )
    capacity: PositiveInt
    registration_deadline: AwareDatetime
    fee_eur: EuroAmount = Field(default=Decimal("0.00"), json_schema_extra={"default": 0})
    max_per_company: PositiveInt | None = Field(
        default=None, description="Most registrations per company; null = no limit."
    )
    waitlist_limit: NonNegativeInt = Field(default=0, description="Size of the waiting list; 0 = none.")
    status: OfferingStatus = OfferingStatus.PUBLISHED
    revision: PositiveInt = Field(
        default=1, description="Increases with every change; consumers ignore updates with a lower revision."
    )
    target_group: OptionalReasonText = None

    @field_validator("sessions")
    @classmethod
    def _chronological(cls, sessions: list[Session]) -> list[Session]:
        ids = [session.session_id for session in sessions]
        if len(set(ids)) != len(ids):
            raise ValueError("session_id must be unique within an offering")
        return sorted(sessions, key=lambda session: (session.starts_at, session.ends_at))

    @property
    def total_units(self) -> int:
        return sum(session.teaching_units for session in self.sessions)

    @property
    def starts_at(self) -> datetime:
        return self.sessions[0].starts_at

    @property
    def ends_at(self) -> datetime:
        return max(session.ends_at for session in self.sessions)


OfferingPublished = OfferingState
OfferingUpdated = OfferingState


class OfferingCancelled(Payload):
    offering_id: Identifier
    reason: ReasonText = Field(description="Reason in German, for people.")
    revision: PositiveInt | None = None


class NodePublished(Payload):
    """A QTI node (training office) of the network, carried by `catalogue.node.published` when it opens.

    The node's contact person is staff data and stays in the catalogue's HTTP API (`GET /nodes`), so
    node events carry no personal data."""

    node_id: Identifier
    name: ShortText
    town: ShortText
    county: ShortText = Field(description="The district's German label, e.g. `Sömmerda`.")
    host: ShortText = Field(description="The organisation that runs the node.")
    address: ShortText
    opened_on: date
    description: OptionalReasonText = Field(default=None, description="A short description (German).")
    revision: PositiveInt | None = Field(
        default=None,
        description="Increases with every change; consumers ignore updates with a lower revision.",
    )


class NodeUpdated(NodePublished):
    """The full new state of a node after a change, carried by `catalogue.node.updated`."""


# --------------------------------------------------------------------------------------------------
# Notification events: no e-mail address in clear
# --------------------------------------------------------------------------------------------------


class NotificationSent(Payload):
    notification_id: Identifier
    template: Slug = Field(description="Template name, e.g. `confirmation`.")
    trigger_event_id: EventRef
    trigger_type: TypeRef
    registration_id: Identifier | None = None
    offering_id: Identifier | None = None
    recipient_ref: Pseudonym
    attempts: NonNegativeInt = 1


class NotificationFailed(NotificationSent):
    error: ReasonText
    permanent: bool


# --------------------------------------------------------------------------------------------------
# Offer alerts ("Angebotsalarm") and interest ("Interesse melden"): no e-mail address in clear
# --------------------------------------------------------------------------------------------------


class AlertKind(StrEnum):
    ALERT = "alert"  # a mail for each newly published matching offering (or a weekly digest)
    INTEREST = "interest"  # one topic and one county where nothing is offered: told once, then ended


class AlertFrequency(StrEnum):
    IMMEDIATE = "immediate"
    WEEKLY = "weekly"


class AlertEndCause(StrEnum):
    UNSUBSCRIBED = "unsubscribed"
    EXPIRED = "expired"  # never confirmed in time
    FULFILLED = "fulfilled"  # an interest whose matching offering was published and mailed
    FORGOTTEN = "forgotten"  # erased on request (`qti forget-person`)


class AlertSubscription(Payload):
    """A subscription's state change, carried by `notification.alert.subscribed` (pending, before the
    double opt-in) and `notification.alert.confirmed`. The address stays in notification; only a keyed
    pseudonym of it travels."""

    subscription_id: Identifier
    kind: AlertKind
    recipient_ref: Pseudonym
    topics: Annotated[list[Topic], Field(max_length=len(Topic))] = Field(default_factory=list)
    kinds: Annotated[list[OfferingKind], Field(max_length=len(OfferingKind))] = Field(default_factory=list)
    counties: Annotated[list[County], Field(max_length=len(County))] = Field(default_factory=list)
    nodes: Annotated[list[Identifier], Field(max_length=100)] = Field(default_factory=list)
    frequency: AlertFrequency = AlertFrequency.IMMEDIATE
    consent_text_version: ShortText
    source: ShortText = Field(description="Where the consent was given, e.g. `portal Angebotsalarm`.")


AlertSubscribed = AlertSubscription
AlertConfirmed = AlertSubscription


class AlertEnded(Payload):
    """`notification.alert.ended`: unsubscribed, expired unconfirmed, fulfilled (interest) or forgotten."""

    subscription_id: Identifier
    kind: AlertKind
    recipient_ref: Pseudonym
    cause: AlertEndCause
    was_confirmed: bool
    topics: Annotated[list[Topic], Field(max_length=len(Topic))] = Field(default_factory=list)
    counties: Annotated[list[County], Field(max_length=len(County))] = Field(default_factory=list)


# --------------------------------------------------------------------------------------------------
# Reporting events: aggregates only
# --------------------------------------------------------------------------------------------------

MIN_GROUP_SIZE: Final = 5
"""Figures about fewer persons than this are suppressed."""


GroupLabel = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class KpiFigure(Payload):
    indicator: Slug
    dimension: (
        Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)] | None
    ) = Field(default=None, description="What the figures are grouped by, e.g. `county`; null = total.")
    group: GroupLabel | None = Field(default=None, description="The group within the dimension.")
    value: int | FiniteFloat | None = None
    suppressed: bool = Field(
        default=False,
        description="True when the figure is withheld: fewer than 5 persons or companies behind it, or it "
        "would let such a figure be recomputed; value is null.",
    )

    @model_validator(mode="after")
    def _suppressed_has_no_value(self) -> KpiFigure:
        if self.suppressed and self.value is not None:
            raise ValueError("a suppressed figure must not carry a value")
        return self


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, BaseModel):
        return _strings(dict(value))
    if isinstance(value, dict):
        return [s for key, item in value.items() for s in (*_strings(key), *_strings(item))]
    if isinstance(value, list | tuple):
        return [s for item in value for s in _strings(item)]
    return []


class KpiUpdated(Payload):
    generated_at: AwareDatetime
    period_from: date | None = None
    period_to: date | None = None
    figures: Annotated[list[KpiFigure], Field(max_length=100_000)] = Field(default_factory=list)

    @model_validator(mode="after")
    def _aggregates_only(self) -> KpiUpdated:
        if self.period_from and self.period_to and self.period_from > self.period_to:
            raise ValueError("period_from must not be after period_to")
        if any("@" in text for text in _strings(self)):
            raise ValueError("aggregates must not contain '@' (no e-mail addresses)")
        return self
