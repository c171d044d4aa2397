"""A scripted history of catalogue, registration and notification events with known figures."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from devtools.demo_data import demo_nodes
from qti_contracts import CloudEvent, make_event
from services.catalogue.domain import node_payload

NODES = {node.town: node for node in demo_nodes()}
GOTHA = str(NODES["Gotha"].node_id)
SOEMMERDA = str(NODES["Sömmerda"].node_id)
T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)

# (given name, family name, e-mail, gender, age band, company key)
PEOPLE: dict[str, tuple[str, str, str, str, str, str]] = {
    "p1": ("Annegret", "Quastenberg", "annegret.quastenberg@example.de", "female", "30_54", "c1"),
    "p2": ("Brunhilde", "Zwiebelmann", "b.zwiebelmann@example.de", "female", "under_30", "c1"),
    "p3": ("Cordula", "Pfefferkorn", "cordula@pfefferkorn-test.de", "female", "30_54", "c2"),
    "p4": ("Dagmar", "Rübezahlowski", "dagmar.r@example.org", "female", "30_54", "c2"),
    "p5": ("Edeltraud", "Schnabelweid", "edeltraud@schnabelweid.example", "female", "30_54", "c3"),
    "p6": ("Friedlinde", "Taubenschlag", "f.taubenschlag@example.net", "female", "30_54", "c3"),
    "p7": ("Gunhild", "Ulmenhaupt", "gunhild.ulmenhaupt@example.de", "female", "30_54", "c4"),
    "p8": ("Hartmut", "Vogelsang", "hartmut.vogelsang@example.de", "male", "30_54", "c5"),
    "p9": ("Isidor", "Wackelbart", "isidor.wackelbart@example.de", "male", "30_54", "c5"),
    "p10": ("Jobst", "Xylanderer", "jobst.xylanderer@example.de", "male", "30_54", "c2b"),
    "p11": ("Kunibert", "Yppsilanti", "kunibert@yppsilanti.example", "male", "30_54", "c6"),
    "p12": ("Leberecht", "Zinnoberrot", "leberecht.zinnoberrot@example.de", "male", "30_54", "c6"),
    "w1": ("Mechthild", "Oberschnepf", "mechthild.oberschnepf@example.de", "male", "30_54", "c6"),
    "w2": ("Notburga", "Pilzhuber", "notburga.pilzhuber@example.de", "female", "55_plus", "c7"),
}
# p1 registers for B with her address in capitals: the same person.
EMAIL_VARIANTS = {("p1", "B"): "Annegret.Quastenberg@Example.DE"}

COMPANIES: dict[str, dict[str, Any]] = {
    "c1": {
        "name": "Quastenberg Zulieferteile GmbH",
        "postal_code": "99867",
        "county": "Gotha",
        "size_class": "micro",
        "automotive_supplier": True,
    },
    "c2": {
        "name": "Pfefferkorn Antriebstechnik GmbH",
        "postal_code": "99610",
        "county": "Sömmerda",
        "size_class": "small",
        "automotive_supplier": False,
    },
    # the same company, spelled differently
    "c2b": {
        "name": "  pfefferkorn antriebstechnik  GMBH",
        "postal_code": "99610",
        "county": "Sömmerda",
        "size_class": "small",
        "automotive_supplier": False,
    },
    "c3": {
        "name": "Schnabelweid Leichtbau AG",
        "postal_code": "99084",
        "county": "erfurt",  # the code; the others give German labels
        "size_class": "medium",
        "automotive_supplier": True,
    },
    "c4": {
        "name": "Ulmenhaupt Großguss SE",
        "postal_code": "07743",
        "county": "Jena",
        "size_class": "large",
        "automotive_supplier": False,
    },
    "c5": {
        "name": "Vogelsang Elektronikwerke GmbH",
        "postal_code": "99423",
        "county": "Weimar",
        "size_class": "large",
        "automotive_supplier": False,
    },
    "c6": {
        "name": "Yppsilanti Wasserstoffsysteme GmbH",
        "postal_code": "99610",
        "county": "Sömmerda",
        "size_class": "small",
        "automotive_supplier": False,
    },
    "c7": {
        "name": "Pilzhuber Metallbau KG",
        "postal_code": "99947",
        "county": "Unstrut-Hainich-Kreis",
        "size_class": "micro",
        "automotive_supplier": True,
    },
}
NAMES = [text for p in PEOPLE.values() for text in p[:3]] + [c["name"].strip() for c in COMPANIES.values()]


def _session(sid: str, start: datetime, units: int) -> dict[str, Any]:
    return {
        "session_id": sid,
        "starts_at": start.isoformat(),
        "ends_at": (start + timedelta(minutes=45 * units)).isoformat(),
        "location": "Schulungsraum 1",
        "teaching_units": units,
    }


def offering(
    offering_id: str,
    node: str,
    topic: str,
    kind: str,
    capacity: int,
    sessions: list[dict[str, Any]],
    revision: int = 1,
) -> dict[str, Any]:
    return {
        "offering_id": offering_id,
        "node_id": node,
        "kind": kind,
        "topic": topic,
        "title": f"Angebot {offering_id}",
        "description": "Beschreibung",
        "sessions": sessions,
        "capacity": capacity,
        "registration_deadline": "2026-01-31T00:00:00+00:00",
        "fee_eur": 0,
        "max_per_company": None,
        "waitlist_limit": 2,
        "status": "published",
        "revision": revision,
    }


A_START = datetime(2026, 3, 10, 8, 0, tzinfo=UTC)
B_START = datetime(2026, 5, 5, 8, 0, tzinfo=UTC)
A_SESSIONS = [_session(f"a-s{i}", A_START + timedelta(days=7 * i), 4) for i in range(3)]
B_SESSIONS = [_session(f"b-s{i}", B_START + timedelta(days=1 * i), 8) for i in range(2)]


@dataclass
class History:
    events: list[CloudEvent[Any]] = field(default_factory=list)
    clock: datetime = T0

    def add(self, type_: str, data: dict[str, Any], *, id_: str | None = None) -> CloudEvent[Any]:
        self.clock += timedelta(minutes=1)
        event = make_event(type_, data, source="/tests", id_=id_, time=self.clock)
        self.events.append(event)
        return event


def participant(key: str, offering_key: str) -> dict[str, Any]:
    given, family, email, gender, age, _company = PEOPLE[key]
    email = EMAIL_VARIANTS.get((key, offering_key), email)
    return {"given_name": given, "family_name": family, "email": email, "gender": gender, "age_band": age}


def registration(
    h: History, key: str, offering_key: str, offering_id: str, outcome: str, **extra: Any
) -> str:
    request_id = f"req-{key}-{offering_key}"
    registration_id = f"reg-{key}-{offering_key}"
    data = {
        "registration_id": registration_id,
        "request_id": request_id,
        "offering_id": offering_id,
        "participant": participant(key, offering_key),
        "company": COMPANIES[PEOPLE[key][5]],
        "from_waitlist": False,
        **extra,
    }
    h.add(f"registration.{outcome}", data)
    return registration_id


def scripted_history(seed: int = 7) -> tuple[list[CloudEvent[Any]], list[CloudEvent[Any]]]:
    """(events in the order they are published, incl. duplicates; the distinct events)."""
    h = History()
    for node in demo_nodes():
        h.add("catalogue.node.published", node_payload(node))
    a1 = offering("off-a", GOTHA, "elektromobilitaet", "course", 10, A_SESSIONS)
    h.add("catalogue.offering.published", a1)
    h.add("catalogue.offering.updated", {**a1, "capacity": 12, "revision": 2})
    h.add(
        "catalogue.offering.published", offering("off-b", SOEMMERDA, "wasserstoff", "workshop", 8, B_SESSIONS)
    )
    h.add("catalogue.offering.published", offering("off-c", GOTHA, "innovation", "workshop", 20, A_SESSIONS))
    h.add("catalogue.offering.cancelled", {"offering_id": "off-c", "reason": "Zu wenige Anmeldungen."})

    # Offering A: p1..p7 confirmed (with their commands), p7 cancels; one duplicate registration.
    for key in ["p1", "p2", "p3", "p4", "p5", "p6", "p7"]:
        command = {
            "offering_id": "off-a",
            "participant": participant(key, "A"),
            "company": COMPANIES[PEOPLE[key][5]],
            "privacy_consent": True,
        }
        h.add("registration.requested", command, id_=f"req-{key}-A")
        registration(h, key, "A", "off-a", "confirmed")
    h.add("registration.requested", {"offering_id": "off-a", "participant": {"email": "kaputt"}})
    h.add(
        "registration.cancelled",
        {
            "registration_id": "reg-p7-A",
            "offering_id": "off-a",
            "cause": "participant",
            "reason": "Gunhild Ulmenhaupt ist krank.",
        },
    )
    h.add(
        "registration.rejected",
        {
            "request_id": "req-dup",
            "offering_id": "off-a",
            "reason": "duplicate_registration",
            "detail": "Bereits angemeldet.",
        },
    )
    units = {"p1": 12, "p2": 12, "p3": 12, "p4": 12, "p5": 12, "p6": 8}
    for key, attended in units.items():
        h.add(
            "registration.completed",
            {
                "registration_id": f"reg-{key}-A",
                "offering_id": "off-a",
                "attended_units": attended,
                "total_units": 12,
                "attendance_ratio": attended / 12,
                "completed": attended == 12,
                "certificate_eligible": attended == 12,
            },
        )

    # Offering B: p1, p8..p12 confirmed; w1, w2 waitlisted, w1 moves up; three turned away.
    for key in ["p1", "p8", "p9", "p10", "p11", "p12"]:
        registration(h, key, "B", "off-b", "confirmed")
    registration(h, "w1", "B", "off-b", "waitlisted", position=1)
    registration(h, "w2", "B", "off-b", "waitlisted", position=2)
    registration(h, "w1", "B", "off-b", "confirmed", from_waitlist=True)
    for i in range(3):
        h.add(
            "registration.rejected",
            {
                "request_id": f"req-full-{i}",
                "offering_id": "off-b",
                "reason": "waitlist_full",
                "detail": "Ausgebucht.",
            },
        )
    h.add(
        "registration.rejected",
        {
            "request_id": "req-nf",
            "offering_id": "off-zz",
            "reason": "offering_not_found",
            "detail": "Nicht gefunden.",
        },
    )
    for key in ["p1", "p8", "p9", "p10", "p11", "p12", "w1"]:
        h.add(
            "registration.attendance_recorded",
            {
                "registration_id": f"reg-{key}-B",
                "offering_id": "off-b",
                "session_id": "b-s0",
                "attended": True,
            },
        )
    h.add(
        "registration.attendance_recorded",
        {"registration_id": "reg-p8-B", "offering_id": "off-b", "session_id": "b-s1", "attended": True},
    )
    h.add(
        "registration.attendance_recorded",
        {"registration_id": "reg-p8-B", "offering_id": "off-b", "session_id": "b-s1", "attended": False},
    )  # correction
    h.add(
        "registration.attendance_recorded",
        {"registration_id": "reg-p9-B", "offering_id": "off-b", "session_id": "b-s1", "attended": True},
    )

    # Notifications: 10 sent, one sent after a temporary failure, one failed for good.
    def note(nid: str, type_: str, **extra: Any) -> None:
        h.add(
            type_,
            {
                "notification_id": nid,
                "template": "confirmation",
                "trigger_event_id": f"t-{nid}",
                "trigger_type": "registration.confirmed",
                "registration_id": "reg-p1-A",
                "offering_id": "off-a",
                "recipient_ref": f"rcp-{nid}",
                "attempts": 1,
                **extra,
            },
        )

    for i in range(10):
        note(f"n{i}", "notification.sent")
    note(
        "n10", "notification.failed", error="451 annegret.quastenberg@example.de greylisted", permanent=False
    )
    note("n10", "notification.sent")
    note("n11", "notification.failed", error="550 user unknown", permanent=True)

    distinct = list(h.events)
    rng = random.Random(seed)
    shuffled = list(distinct)
    rng.shuffle(shuffled)
    duplicates = rng.sample(distinct, 15)
    return shuffled + duplicates, distinct


EXPECTED_TOTAL: dict[str, Any] = {
    "offerings": 2,
    "sessions": 5,
    "seats": 20,
    "requested": 20,
    "confirmed": 14,
    "waitlisted": "<5",
    "rejected": "gesperrt",  # 5, but with its "<5" reasons it would give them away
    "rejected_waitlist_full": "<5",
    "rejected_duplicate_registration": "<5",
    "rejected_offering_not_found": "<5",
    "rejected_consent_missing": "<5",  # 0 reads "<5" as well
    "cancelled": "<5",
    "utilisation": 0.65,
    "unmet_demand": "<5",
    "participants": 12,
    "participations": 13,
    "participant_hours": 99.0,
    "companies": 5,
    "smes": "<5",  # company counts are suppressed below 5 like person counts
    "companies_micro": "<5",
    "companies_small": "<5",
    "companies_medium": "<5",
    "companies_large": "<5",
    "automotive_suppliers": "<5",
    "participants_gender_male": 6,
    "participants_gender_diverse": "<5",
    "participants_age_under_30": "<5",
    "participants_age_55_plus": "<5",
    "notifications_sent": 11,
    "notifications_failed": "<5",
    "notification_delivery_rate": "gesperrt",  # 11 sent and the rate would give the "<5" failed
}
EXPECTED_RAW = {
    "waitlisted": 2,
    "rejected_waitlist_full": 3,
    "cancelled": 1,
    "unmet_demand": 4,
    "participants_age_under_30": 1,
    "notifications_failed": 1,
    "smes": 4,
    "companies_micro": 1,
    "companies_small": 2,
    "companies_medium": 1,
    "companies_large": 1,
    "automotive_suppliers": 2,
}
# Companies with a participation by their county, given as German labels, kept as codes; every county
# is listed (a row only for counties with companies would tell that one took part), all read "<5".
COUNTIES_WITH_COMPANIES = ["erfurt", "gotha", "soemmerda", "weimar"]
