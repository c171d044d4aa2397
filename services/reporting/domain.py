"""Reporting rules without I/O: scrubbing personal data, indicator math, grouping and suppression."""

from __future__ import annotations

import hashlib
import hmac
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import cached_property
from typing import Any, Final

from pydantic import TypeAdapter, ValidationError

from qti_contracts import (
    AGE_BAND_LABELS,
    COUNTY_LABELS,
    GENDER_LABELS,
    KIND_LABELS,
    MIN_GROUP_SIZE,
    SIZE_CLASS_LABELS,
    TOPIC_LABELS,
    AgeBand,
    County,
    Gender,
    KpiFigure,
    OfferingKind,
    RegistrationSource,
    RejectionReason,
    SizeClass,
    Topic,
)
from qti_contracts.events import (
    AlertEnded,
    AlertSubscription,
    CountyField,
    FeedbackInvited,
    FeedbackSubmitted,
    NodePublished,
    NotificationFailed,
    NotificationSent,
    OfferingCancelled,
    OfferingState,
    RegistrationAttendanceRecorded,
    RegistrationCancellationRequested,
    RegistrationCancelled,
    RegistrationCompleted,
    RegistrationConfirmed,
    RegistrationRejected,
    RegistrationRequested,
    RegistrationWaitlisted,
)
from qti_contracts.registry import parse_data
from qti_runtime.german import BERLIN, MONTHS

SUPPRESSED: Final = "<5"  # a count of 0–4 persons or companies
WITHHELD: Final = "gesperrt"  # withheld so that no "<5" can be recomputed, or derived from one
MARKERS: Final = frozenset({SUPPRESSED, WITHHELD})
# Counts behind derived figures, kept beside the persons behind each indicator (never published).
SEATED: Final = "_seated"  # participations in held offerings: utilisation = seated ÷ seats
ATTENDED_UNITS: Final = "_attended_units"  # participant hours = units · 45 min
UNKNOWN: Final = "unbekannt"
UNKNOWN_LABEL: Final = "unbekannt"
NO_COUNTY_LABEL: Final = "keine Angabe"

Number = int | float
Value = Number | str | None  # str only for the suppression marker

# --------------------------------------------------------------------------------------------------
# Scrubbing: what is stored of an event (no names, no e-mail addresses, no free texts)
# --------------------------------------------------------------------------------------------------

_EMAIL: Final = re.compile(r"[^\s@]+@[^\s@]+")


def pseudonym(key: bytes, kind: str, value: str) -> str:
    """Keyed pseudonym (HMAC-SHA256): stable per key, not reversible without it."""
    digest = hmac.new(key, f"{kind}\x00{value}".encode(), hashlib.sha256).hexdigest()
    return f"{kind[0]}-{digest[:32]}"


def person_ref(key: bytes, email: str) -> str:
    return pseudonym(key, "person", email.strip().lower())


def company_ref(key: bytes, name: str, postal_code: str) -> str:
    normalized = " ".join(name.casefold().split())
    return pseudonym(key, "company", f"{normalized}\x00{postal_code.strip()}")


_COUNTY_ADAPTER: Final = TypeAdapter(CountyField)
_COUNTY_CODES: Final = frozenset(county.value for county in County)


def county_code(value: Any) -> str | None:
    """The closed-list code of a county given as code or German label; None for anything else.

    Older events (and the log) may hold free text typed by a registrant: it never gets further than here.
    """
    if isinstance(value, str) and value in _COUNTY_CODES:
        return value
    try:
        county = _COUNTY_ADAPTER.validate_python(value)
    except ValidationError:
        return None
    return county.value if county is not None else None


def county_label(code: str | None) -> str:
    """German label of a county code; anything not on the closed list reads "keine Angabe"."""
    if code is not None and code in _COUNTY_CODES:
        return COUNTY_LABELS[County(code)]
    return NO_COUNTY_LABEL


def _no_emails(value: Any) -> Any:
    """Last line of defence: any string that looks like an e-mail address is dropped."""
    if isinstance(value, str):
        return "[entfernt]" if _EMAIL.search(value) else value
    if isinstance(value, dict):
        return {k: _no_emails(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_no_emails(v) for v in value]
    return value


def _iso(moment: datetime) -> str:
    return moment.isoformat()


def _person(key: bytes, model: RegistrationConfirmed | RegistrationWaitlisted) -> dict[str, Any]:
    return {
        "person_ref": person_ref(key, str(model.participant.email)),
        "gender": model.participant.gender.value,
        "age_band": model.participant.age_band.value,
    }


def _company(
    key: bytes, model: RegistrationConfirmed | RegistrationWaitlisted | RegistrationRequested
) -> Any:
    company = model.company
    return {
        "company_ref": company_ref(key, company.name, company.postal_code),
        "county": company.county.value if company.county else None,
        "size_class": company.size_class.value if company.size_class else None,
        "automotive_supplier": company.automotive_supplier,
    }


def scrub(key: bytes, event_type: str, data: Mapping[str, Any]) -> dict[str, Any]:
    """The part of an event's `data` that reporting keeps. Invalid payloads keep only `{"invalid": true}`.

    What registrants provide and what of it is kept (nothing they type reaches the figures):

    * participant name, e-mail address: only `person_ref`, a keyed pseudonym of the address;
    * gender, age band, company size class: enums; automotive supplier, consent: booleans;
    * company name and postal code: only `company_ref`, a keyed pseudonym of both;
    * company county: the code of the closed list (`County`), None for anything else;
    * cancellation reasons and every other free text: dropped.

    Staff data kept: offering enums, capacities and dates, the node's name (a group label; exports
    neutralise it) and its county reduced to the closed list. Ids are kept as ids.
    """
    try:
        model = parse_data(event_type, dict(data))
    except (ValidationError, LookupError):
        return {"invalid": True}
    out = _scrub_catalogue(model)
    if out is None:
        out = _scrub_registration(key, model)
    if out is None:
        out = _scrub_notification(model)
    if out is None:
        out = _scrub_alert(model)
    result: dict[str, Any] = _no_emails(out if out is not None else {})
    return result


def _scrub_catalogue(model: Any) -> dict[str, Any] | None:
    match model:
        case OfferingState():
            return {
                "offering_id": model.offering_id,
                "node_id": model.node_id,
                "kind": model.kind.value,
                "topic": model.topic.value,
                "capacity": model.capacity,
                "status": model.status.value,
                "revision": model.revision,
                "waitlist_limit": model.waitlist_limit,
                "sessions": [
                    {
                        "session_id": s.session_id,
                        "starts_at": _iso(s.starts_at),
                        "teaching_units": s.teaching_units,
                    }
                    for s in model.sessions
                ],
            }
        case OfferingCancelled():
            return {"offering_id": model.offering_id, "revision": model.revision}
        case NodePublished():
            # The node's name is staff text (a group label); its county is reduced to the closed list.
            return {"node_id": model.node_id, "name": model.name, "county": county_code(model.county)}
    return None


def _scrub_registration(key: bytes, model: Any) -> dict[str, Any] | None:
    match model:
        case RegistrationRequested():
            return {
                "offering_id": model.offering_id,
                "privacy_consent": model.privacy_consent,
                "company": _company(key, model),
            }
        case RegistrationConfirmed() | RegistrationWaitlisted():
            return {
                "registration_id": model.registration_id,
                "request_id": model.request_id,
                "offering_id": model.offering_id,
                "from_waitlist": model.from_waitlist,
                "source": model.source.value if model.source else None,
                "person": _person(key, model),
                "company": _company(key, model),
            }
        case RegistrationRejected():
            return {
                "request_id": model.request_id,
                "offering_id": model.offering_id,
                "reason": model.reason.value,
            }
        case RegistrationCancelled():
            return {
                "registration_id": model.registration_id,
                "offering_id": model.offering_id,
                "cause": model.cause.value,
                "was_confirmed": model.was_confirmed,
            }
        case RegistrationCancellationRequested():
            return {"registration_id": model.registration_id}
        case RegistrationAttendanceRecorded():
            return dict(model.model_dump(mode="json"))
        case RegistrationCompleted():
            return dict(model.model_dump(mode="json", exclude={"attendance_ratio"}))
        case FeedbackSubmitted():
            # The scores only: the comment is free text (services/reporting/feedback.py keeps it apart).
            return dict(model.model_dump(mode="json", exclude={"comment"}))
        case FeedbackInvited():
            return {"offering_id": model.offering_id}
    return None


def _scrub_notification(model: Any) -> dict[str, Any] | None:
    if not isinstance(model, NotificationFailed | NotificationSent):
        return None
    failed = isinstance(model, NotificationFailed)
    return {
        "notification_id": model.notification_id,
        "template": model.template,
        "trigger_type": model.trigger_type,
        "registration_id": model.registration_id,
        "offering_id": model.offering_id,
        "failed": failed,
        "permanent": model.permanent if isinstance(model, NotificationFailed) else False,
    }


def _scrub_alert(model: Any) -> dict[str, Any] | None:
    """Offer alerts and interest: what was asked for, never who (the pseudonym is dropped too)."""
    if isinstance(model, AlertSubscription):
        return {
            "subscription_id": model.subscription_id,
            "kind": model.kind.value,
            "topics": [t.value for t in model.topics],
            "counties": [c.value for c in model.counties],
        }
    if isinstance(model, AlertEnded):
        return {
            "subscription_id": model.subscription_id,
            "kind": model.kind.value,
            "cause": model.cause.value,
            "topics": [t.value for t in model.topics],
            "counties": [c.value for c in model.counties],
        }
    return None


# --------------------------------------------------------------------------------------------------
# Facts: normalized rows the projections keep, from which every indicator is computed
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OfferingFact:
    offering_id: str
    node_id: str
    node_name: str
    county: str
    topic: str
    kind: str
    capacity: int
    starts_at: datetime | None
    held: bool  # published or completed, not cancelled
    sessions: tuple[tuple[datetime, int], ...] = ()  # (starts_at, teaching units)


@dataclass(frozen=True)
class RegistrationFact:
    registration_id: str
    offering_id: str | None
    first_seen_at: datetime
    person_ref: str | None
    company_ref: str | None
    company_county: str | None
    size_class: str | None
    automotive_supplier: bool | None
    gender: str | None
    age_band: str | None
    confirmed: bool
    waitlisted: bool
    cancelled: bool
    attended_units: int
    completed: bool
    certificate_eligible: bool
    source: str | None = None  # RegistrationSource value: came from an alert, an alternative, interest

    @property
    def participates(self) -> bool:
        return self.confirmed and not self.cancelled


@dataclass(frozen=True)
class RequestFact:
    request_id: str
    offering_id: str | None
    at: datetime
    outcome: str | None  # confirmed | waitlisted | rejected | None (pending)
    reason: str | None
    size_class: str | None = None


@dataclass(frozen=True)
class NotificationFact:
    notification_id: str
    offering_id: str | None
    at: datetime
    sent: bool
    failed_permanent: bool
    template: str | None = None


ALERT_MAIL_TEMPLATES: Final = frozenset({"alert", "alert_digest", "interest_match"})


@dataclass(frozen=True)
class AlertFact:
    """A confirmed offer-alert or interest subscription. Dated to its confirmation; counted under the
    topic and county it names when it names exactly one (an interest always does), else "keine Angabe"."""

    subscription_id: str
    kind: str  # alert | interest
    topic: str | None
    county: str | None
    confirmed_at: datetime
    end_cause: str | None

    @property
    def dims(self) -> dict[str, str]:
        return {"node": UNKNOWN, "county": self.county or UNKNOWN, "topic": self.topic or UNKNOWN,
                "kind": UNKNOWN}  # fmt: skip

    @property
    def unmet(self) -> bool:
        """Interest still waiting for an offering (not fulfilled; withdrawn interest is no demand)."""
        return self.kind == "interest" and self.end_cause is None


# Where a fact counts: its offering's dimensions and the local day it is dated to.
Anchor = tuple[dict[str, str], date]


@dataclass(frozen=True)
class Anchored:
    """Every fact with its anchor, worked out once per `Facts` however many tables are computed."""

    offerings: list[tuple[dict[str, str], date, OfferingFact]]
    sessions: list[tuple[dict[str, str], date, tuple[datetime, int]]]
    registrations: list[tuple[dict[str, str], date, RegistrationFact]]
    requests: list[tuple[dict[str, str], date, RequestFact]]
    notifications: list[tuple[dict[str, str], date, NotificationFact]]
    alerts: list[tuple[dict[str, str], date, AlertFact]] = field(default_factory=list)


@dataclass(frozen=True)
class Facts:
    offerings: Mapping[str, OfferingFact]
    registrations: Sequence[RegistrationFact]
    requests: Sequence[RequestFact]
    notifications: Sequence[NotificationFact]
    alerts: Sequence[AlertFact] = ()

    @cached_property
    def anchored(self) -> Anchored:
        dims_of = {offering_id: _offering_dims(o) for offering_id, o in self.offerings.items()}
        unknown = _offering_dims(None)

        def anchor(offering_id: str | None, fallback: datetime) -> Anchor:
            offering = self.offerings.get(offering_id) if offering_id else None
            if offering is None:
                return unknown, local_day(fallback)
            return dims_of[offering.offering_id], local_day(offering.starts_at or fallback)

        offerings = [
            (dims_of[o.offering_id], local_day(o.starts_at), o)
            for o in self.offerings.values()
            if o.starts_at is not None
        ]
        sessions = [
            (dims_of[o.offering_id], local_day(session[0]), session)
            for o in self.offerings.values()
            if o.held
            for session in o.sessions
        ]
        return Anchored(
            offerings=offerings,
            sessions=sessions,
            registrations=[(*anchor(r.offering_id, r.first_seen_at), r) for r in self.registrations],
            requests=[(*anchor(r.offering_id, r.at), r) for r in self.requests],
            notifications=[(*anchor(n.offering_id, n.at), n) for n in self.notifications],
            alerts=[(a.dims, local_day(a.confirmed_at), a) for a in self.alerts],
        )


# --------------------------------------------------------------------------------------------------
# Indicators
# --------------------------------------------------------------------------------------------------

_REJECTION_SHORT: Final[dict[RejectionReason, str]] = {
    RejectionReason.INVALID_REQUEST: "ungültige Anfrage",
    RejectionReason.OFFERING_NOT_FOUND: "Angebot nicht gefunden",
    RejectionReason.OFFERING_NOT_OPEN: "Angebot nicht offen",
    RejectionReason.REGISTRATION_CLOSED: "Anmeldefrist abgelaufen",
    RejectionReason.DUPLICATE_REGISTRATION: "Doppelanmeldung",
    RejectionReason.COMPANY_LIMIT_REACHED: "Unternehmenskontingent erschöpft",
    RejectionReason.WAITLIST_FULL: "Warteliste voll",
    RejectionReason.CONSENT_MISSING: "Einwilligung fehlt",
}
_SOURCE_SHORT: Final[dict[RegistrationSource, str]] = {
    RegistrationSource.ANGEBOTSALARM: "Angebotsalarm",
    RegistrationSource.ALTERNATIVE: "Alternativvorschlag (Angebot ausgebucht)",
    RegistrationSource.INTERESSE: "Interessenbekundung",
}
_SIZE_SHORT: Final[dict[SizeClass, str]] = {
    SizeClass.MICRO: "Kleinstunternehmen",
    SizeClass.SMALL: "kleine Unternehmen",
    SizeClass.MEDIUM: "mittlere Unternehmen",
    SizeClass.LARGE: "Großunternehmen",
}


@dataclass(frozen=True)
class Indicator:
    key: str
    label: str
    persons: bool = False  # counts persons or companies: suppressed below MIN_GROUP_SIZE
    offering_level: bool = False  # not defined when grouped by company size class


def _indicators() -> tuple[Indicator, ...]:
    items = [
        Indicator("offerings", "Angebote", offering_level=True),
        Indicator("sessions", "Termine", offering_level=True),
        Indicator("seats", "Angebotene Plätze", offering_level=True),
        Indicator("requested", "Anmeldeanfragen", persons=True),
        Indicator("confirmed", "Bestätigte Anmeldungen", persons=True),
        Indicator("waitlisted", "Auf die Warteliste gesetzt", persons=True),
        Indicator("rejected", "Abgelehnte Anfragen", persons=True),
        *(
            Indicator(f"rejected_{r.value}", f"Abgelehnt: {_REJECTION_SHORT[r]}", persons=True)
            for r in RejectionReason
        ),
        Indicator("cancelled", "Stornierte Anmeldungen", persons=True),
        *(
            Indicator(f"registrations_source_{s.value}", f"Anmeldungen über {_SOURCE_SHORT[s]}", persons=True)
            for s in RegistrationSource
        ),
        Indicator("utilisation", "Auslastung (bestätigt ÷ Plätze)", persons=True, offering_level=True),
        Indicator("unmet_demand", "Ungedeckte Nachfrage (Warteliste und volle Warteliste)", persons=True),
        Indicator("participants", "Teilnehmende (Personen)", persons=True),
        Indicator("participations", "Teilnahmen", persons=True),
        Indicator("participant_hours", "Teilnehmendenstunden", persons=True),
        Indicator("completions", "Abschlüsse", persons=True),
        Indicator("certificate_eligible", "Zertifikatsberechtigte", persons=True),
        # A small company is as identifiable as a person: company counts are suppressed alike.
        Indicator("companies", "Erreichte Unternehmen", persons=True),
        Indicator("smes", "davon KMU", persons=True),
        *(
            Indicator(f"companies_{s.value}", f"Unternehmen: {_SIZE_SHORT[s]}", persons=True)
            for s in SizeClass
        ),
        Indicator("automotive_suppliers", "Automobilzulieferer", persons=True),
        *(
            Indicator(f"participants_gender_{g.value}", f"Teilnehmende {GENDER_LABELS[g]}", persons=True)
            for g in Gender
        ),
        *(
            Indicator(f"participants_age_{a.value}", f"Teilnehmende {AGE_BAND_LABELS[a]}", persons=True)
            for a in AgeBand
        ),
        Indicator("notifications_sent", "Benachrichtigungen zugestellt", persons=True),
        Indicator("notifications_failed", "Benachrichtigungen endgültig fehlgeschlagen", persons=True),
        Indicator("notification_delivery_rate", "Zustellquote Benachrichtigungen", persons=True),
        Indicator("alerts_sent", "Angebotsalarme versandt", persons=True),
        Indicator(
            "alert_signups_confirmed", "Bestätigte Anmeldungen zu Angebotsalarm und Interesse", persons=True
        ),
        Indicator("interest_unmet", "Gemeldetes Interesse ohne Angebot", persons=True),
    ]
    return tuple(items)


INDICATORS: Final[tuple[Indicator, ...]] = _indicators()
PEOPLE_BREAKDOWN: Final = tuple(
    [f"participants_gender_{g.value}" for g in Gender] + [f"participants_age_{a.value}" for a in AgeBand]
)
INDICATOR_BY_KEY: Final[dict[str, Indicator]] = {i.key: i for i in INDICATORS}

GROUPINGS: Final[dict[str, str]] = {
    "node": "Knoten",
    "county": "Landkreis",
    "topic": "Thema",
    "kind": "Format",
    "size_class": "Unternehmensgröße",
    "month": "Monat",
    "quarter": "Quartal",
    "year": "Jahr",
}
TIME_GROUPINGS: Final = frozenset({"month", "quarter", "year"})
SIZE_ORDER: Final = tuple(size.value for size in SizeClass)


@dataclass(frozen=True)
class Filters:
    date_from: date | None = None
    date_to: date | None = None
    node: str | None = None
    county: str | None = None
    topic: str | None = None
    kind: str | None = None


def local_day(moment: datetime) -> date:
    return moment.astimezone(BERLIN).date()


def time_key(day: date, grouping: str) -> str:
    if grouping == "month":
        return f"{day.year:04d}-{day.month:02d}"
    if grouping == "quarter":
        return f"{day.year:04d}-Q{(day.month - 1) // 3 + 1}"
    return f"{day.year:04d}"


def time_label(key: str, grouping: str) -> str:
    if grouping == "month":
        year, month = key.split("-")
        return f"{MONTHS[int(month) - 1]} {year}"
    if grouping == "quarter":
        year, quarter = key.split("-Q")
        return f"{quarter}. Quartal {year}"
    return key


def group_label(grouping: str, key: str, node_names: Mapping[str, str]) -> str:
    if key == UNKNOWN:
        return UNKNOWN_LABEL
    if grouping in TIME_GROUPINGS:
        return time_label(key, grouping)
    if grouping == "node":
        return node_names.get(key, key)
    if grouping == "county":
        return county_label(key)
    if grouping == "topic":
        return TOPIC_LABELS.get(Topic(key), key) if key in Topic._value2member_map_ else key
    if grouping == "kind":
        return KIND_LABELS.get(OfferingKind(key), key) if key in OfferingKind._value2member_map_ else key
    if grouping == "size_class":
        return SIZE_CLASS_LABELS[SizeClass(key)] if key in SizeClass._value2member_map_ else key
    return key


def _offering_dims(offering: OfferingFact | None) -> dict[str, str]:
    if offering is None:
        return {"node": UNKNOWN, "county": UNKNOWN, "topic": UNKNOWN, "kind": UNKNOWN}
    return {
        "node": offering.node_id,
        "county": offering.county,
        "topic": offering.topic,
        "kind": offering.kind,
    }


def _passes(filters: Filters, dims: Mapping[str, str], day: date) -> bool:
    if filters.date_from and day < filters.date_from:
        return False
    if filters.date_to and day > filters.date_to:
        return False
    return all(
        wanted is None or dims.get(name) == wanted
        for name, wanted in (
            ("node", filters.node),
            ("county", filters.county),
            ("topic", filters.topic),
            ("kind", filters.kind),
        )
    )


@dataclass
class _Bucket:
    offerings: list[OfferingFact] = field(default_factory=list)
    sessions: list[tuple[datetime, int]] = field(default_factory=list)
    registrations: list[RegistrationFact] = field(default_factory=list)
    requests: list[RequestFact] = field(default_factory=list)
    notifications: list[NotificationFact] = field(default_factory=list)
    alerts: list[AlertFact] = field(default_factory=list)


def _ratio(numerator: int, denominator: int) -> float | None:
    return round(numerator / denominator, 4) if denominator else None


class _Figures:
    """The raw values of one group being collected, with the number of persons behind each."""

    def __init__(self) -> None:
        self.values: dict[str, Number | None] = {}
        self.persons: dict[str, int] = {}

    def put(self, key: str, value: Number | None, behind: int | None = None) -> None:
        self.values[key] = value
        if INDICATOR_BY_KEY[key].persons:
            self.persons[key] = int(value or 0) if behind is None else behind


def _values(
    bucket: _Bucket, offering_level: bool, *, total: bool = True
) -> tuple[dict[str, Number | None], dict[str, int]]:
    """Raw indicator values of one group, and for person-based ones the number of persons behind them.

    Participants by gender and age band are figures of the total only: per group they are nearly always
    1–4 persons, and publishing them per group would force many more figures to be withheld.
    """
    figures = _Figures()
    participations = [r for r in bucket.registrations if r.participates]
    _offering_values(figures, bucket, participations, offering_level)
    _request_values(figures, bucket)
    _participation_values(figures, participations)
    _company_values(figures, participations)
    _people_values(figures, participations if total else None)
    _notification_values(figures, bucket, offering_level)
    _alert_values(figures, bucket, offering_level)
    return figures.values, figures.persons


def _offering_values(
    figures: _Figures, bucket: _Bucket, participations: list[RegistrationFact], offering_level: bool
) -> None:
    held = [o for o in bucket.offerings if o.held]
    if not offering_level:  # not defined per company size
        for key in ("offerings", "sessions", "seats", "utilisation"):
            figures.put(key, None, 0)
        return
    figures.put("offerings", len(held))
    figures.put("sessions", len(bucket.sessions))
    figures.put("seats", sum(o.capacity for o in held))
    held_ids = {o.offering_id for o in held}
    seated = sum(1 for r in participations if r.offering_id in held_ids)
    figures.put("utilisation", _ratio(seated, sum(o.capacity for o in held)), seated)
    figures.persons[SEATED] = seated


def _request_values(figures: _Figures, bucket: _Bucket) -> None:
    regs = bucket.registrations
    figures.put("requested", len(bucket.requests))
    figures.put("confirmed", sum(1 for r in regs if r.confirmed))
    figures.put("waitlisted", sum(1 for r in regs if r.waitlisted))
    rejected = [q for q in bucket.requests if q.outcome == "rejected"]
    figures.put("rejected", len(rejected))
    by_reason = Counter(q.reason for q in rejected)
    for reason in RejectionReason:
        figures.put(f"rejected_{reason.value}", by_reason[reason.value])
    figures.put("cancelled", sum(1 for r in regs if r.cancelled))
    by_source = Counter(r.source for r in regs if r.source)
    for source in RegistrationSource:
        figures.put(f"registrations_source_{source.value}", by_source[source.value])
    never_seated = sum(1 for r in regs if r.waitlisted and not r.confirmed)
    full = sum(1 for q in rejected if q.reason == RejectionReason.WAITLIST_FULL)
    figures.put("unmet_demand", never_seated + full)


def _participation_values(figures: _Figures, participations: list[RegistrationFact]) -> None:
    figures.put("participants", len({r.person_ref or r.registration_id for r in participations}))
    figures.put("participations", len(participations))
    attending = [r for r in participations if r.attended_units > 0]
    units = sum(r.attended_units for r in attending)
    behind = len({r.person_ref or r.registration_id for r in attending})
    figures.put("participant_hours", round(units * 45 / 60, 2), behind)
    figures.persons[ATTENDED_UNITS] = units
    figures.put("completions", sum(1 for r in participations if r.completed))
    figures.put("certificate_eligible", sum(1 for r in participations if r.certificate_eligible))


def _company_values(figures: _Figures, participations: list[RegistrationFact]) -> None:
    companies: dict[str, tuple[str | None, bool]] = {}
    for r in sorted(participations, key=lambda r: r.registration_id):
        if r.company_ref is None:
            continue
        size, automotive = companies.get(r.company_ref, (None, False))
        companies[r.company_ref] = (size or r.size_class, automotive or bool(r.automotive_supplier))
    figures.put("companies", len(companies))
    sizes = [size for size, _ in companies.values()]
    figures.put("smes", sum(1 for s in sizes if s in ("micro", "small", "medium")))
    by_size = Counter(sizes)
    for size_class in SizeClass:
        figures.put(f"companies_{size_class.value}", by_size[size_class.value])
    figures.put("automotive_suppliers", sum(1 for _, automotive in companies.values() if automotive))


def _people_values(figures: _Figures, participations: list[RegistrationFact] | None) -> None:
    if participations is None:
        for key in PEOPLE_BREAKDOWN:
            figures.put(key, None, 0)
        return
    people: dict[str, RegistrationFact] = {}
    for r in sorted(participations, key=lambda r: r.registration_id):
        people.setdefault(r.person_ref or r.registration_id, r)
    by_gender = Counter(r.gender or "unspecified" for r in people.values())
    for gender in Gender:
        figures.put(f"participants_gender_{gender.value}", by_gender[gender.value])
    by_age = Counter(r.age_band or "unspecified" for r in people.values())
    for band in AgeBand:
        figures.put(f"participants_age_{band.value}", by_age[band.value])


def _notification_values(figures: _Figures, bucket: _Bucket, offering_level: bool) -> None:
    keys = ("notifications_sent", "notifications_failed", "notification_delivery_rate")
    if not offering_level:  # notifications have no company size
        for key in keys:
            figures.put(key, None, 0)
        return
    sent = sum(1 for n in bucket.notifications if n.sent)
    failed = sum(1 for n in bucket.notifications if n.failed_permanent and not n.sent)
    figures.put("notifications_sent", sent)
    figures.put("notifications_failed", failed)
    figures.put("notification_delivery_rate", _ratio(sent, sent + failed), sent + failed)


def _alert_values(figures: _Figures, bucket: _Bucket, offering_level: bool) -> None:
    """Alert mails sent, sign-ups confirmed, unmet demand; like notifications, no company size."""
    keys = ("alerts_sent", "alert_signups_confirmed", "interest_unmet")
    if not offering_level:
        for key in keys:
            figures.put(key, None, 0)
        return
    figures.put(
        "alerts_sent", sum(1 for n in bucket.notifications if n.sent and n.template in ALERT_MAIL_TEMPLATES)
    )
    figures.put("alert_signups_confirmed", len(bucket.alerts))
    figures.put("interest_unmet", sum(1 for a in bucket.alerts if a.unmet))


def is_small(count: int) -> bool:
    """A count below 5, zero included: shown as "<5".

    Zero too: if 0 were shown as 0, every "<5" would say "1 to 4", and a "<5" total of four "<5" parts
    would give each part away (four parts of at least 1 adding up to at most 4 are all 1).
    """
    return 0 <= count < MIN_GROUP_SIZE


@dataclass(frozen=True)
class Row:
    """One row of a table. Raw rows (before disclosure control) also carry the persons behind each figure
    and the counts behind the derived ones (`SEATED`, `ATTENDED_UNITS`); published rows carry none."""

    key: str | None
    label: str
    values: dict[str, Value]
    persons: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Table:
    grouping: str | None
    total: Row
    groups: list[Row]


def _bucketize(
    facts: Facts, filters: Filters, key_of: Callable[[dict[str, str], date, str | None], str]
) -> dict[str, _Bucket]:
    buckets: dict[str, _Bucket] = defaultdict(_Bucket)
    anchored = facts.anchored
    everything = filters == Filters()

    def passes(dims: dict[str, str], day: date) -> bool:
        return everything or _passes(filters, dims, day)

    for dims, day, offering in anchored.offerings:
        if passes(dims, day):
            buckets[key_of(dims, day, None)].offerings.append(offering)
    for dims, day, session in anchored.sessions:
        if passes(dims, day):
            buckets[key_of(dims, day, None)].sessions.append(session)
    for dims, day, reg in anchored.registrations:
        if passes(dims, day):
            buckets[key_of(dims, day, reg.size_class)].registrations.append(reg)
    for dims, day, request in anchored.requests:
        if passes(dims, day):
            buckets[key_of(dims, day, request.size_class)].requests.append(request)
    for dims, day, notification in anchored.notifications:
        if passes(dims, day):
            buckets[key_of(dims, day, None)].notifications.append(notification)
    for dims, day, alert in anchored.alerts:
        if passes(dims, day):
            buckets[key_of(dims, day, None)].alerts.append(alert)
    return buckets


def _whole(_dims: dict[str, str], _day: date, _size_class: str | None) -> str:
    return ""


@dataclass(frozen=True)
class _GroupKey:
    """Which group a fact falls into under one grouping."""

    grouping: str

    def __call__(self, dims: dict[str, str], day: date, size_class: str | None) -> str:
        if self.grouping in TIME_GROUPINGS:
            return time_key(day, self.grouping)
        if self.grouping == "size_class":
            return size_class or UNKNOWN
        return dims[self.grouping]


def compute(
    facts: Facts, filters: Filters, grouping: str | None, *, node_names: Mapping[str, str] | None = None
) -> Table:
    """Raw figures (no disclosure control; `disclosure.publish` applies it) for the filtered period, in
    total and (if `grouping`) per group, sorted by group key."""
    if grouping is not None and grouping not in GROUPINGS:
        raise ValueError(f"unknown grouping {grouping!r}")
    total_bucket = _bucketize(facts, filters, _whole).get("", _Bucket())
    values, persons = _values(total_bucket, True)
    total = Row(None, "Gesamt", dict(values), persons)
    groups: list[Row] = []
    if grouping is not None:
        buckets = _bucketize(facts, filters, _GroupKey(grouping))
        if grouping == "size_class":
            # Every class always: a row that appears only with data would tell that someone is in it.
            # Offerings, sessions and notifications have no company size: their bucket is not a group.
            buckets = {key: buckets.get(key, _Bucket()) for key in [*SIZE_ORDER, UNKNOWN]}
            buckets[UNKNOWN] = _Bucket(
                registrations=buckets[UNKNOWN].registrations, requests=buckets[UNKNOWN].requests
            )
        for key in sorted(buckets, key=lambda k: (k == UNKNOWN, k)):
            bucket = buckets[key]
            values, persons = _values(bucket, grouping != "size_class", total=False)
            label = group_label(grouping, key, node_names or {})
            groups.append(Row(key, label, dict(values), persons))
    return Table(grouping, total, groups)


COMPANY_COUNTY_DIMENSION: Final = "company_county"


def companies_by_county(facts: Facts, filters: Filters) -> list[Row]:
    """Unique companies reached (with a participation), by the company's own county (code of the closed
    list, German label; anything else counts as "keine Angabe"); raw counts. Every county always: a row
    that appeared only with data would tell that a company from there took part."""
    bucket = _bucketize(facts, filters, _whole).get("", _Bucket())
    seen: dict[str, set[str]] = {county.value: set() for county in County}
    seen[UNKNOWN] = set()
    for reg in bucket.registrations:
        if reg.participates and reg.company_ref:
            seen[county_code(reg.company_county) or UNKNOWN].add(reg.company_ref)
    return [
        Row(code, county_label(code), {"companies": len(seen[code])}, {"companies": len(seen[code])})
        for code in sorted(seen, key=lambda k: (k == UNKNOWN, county_label(k)))
    ]


def kpi_figures(tables: Iterable[Table], company_counties: Sequence[Row]) -> list[KpiFigure]:
    """Figures for `reporting.kpi.updated`: withheld values ("<5", "gesperrt") carry `suppressed: true` and
    no value. Groups are ids and codes of closed lists, never free text."""
    figures: list[KpiFigure] = []
    grouped = [
        (table.grouping, [table.total] if table.grouping is None else table.groups) for table in tables
    ]
    for dimension, rows in [*grouped, (COMPANY_COUNTY_DIMENSION, list(company_counties))]:
        for row in rows:
            for key, value in row.values.items():
                if value is None:
                    continue
                withheld = isinstance(value, str) and value in MARKERS
                figures.append(
                    KpiFigure(
                        indicator=key,
                        dimension=dimension,
                        group=row.key,
                        value=None if withheld else value,
                        suppressed=withheld,
                    )
                )
    return figures


def format_value(value: Value, *, decimal_comma: bool = False) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        text = f"{value:.4f}".rstrip("0").rstrip(".")
        return text.replace(".", ",") if decimal_comma else text
    return str(value)
