"""iCalendar feed of a node: one VEVENT per session of its published (and cancelled) offerings.

UIDs are stable per session and SEQUENCE is the offering's revision, so subscribed calendars update
entries in place; sessions of a cancelled offering stay in the feed with STATUS:CANCELLED.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from datetime import UTC
from typing import Final

from icalendar import Calendar, Event

from qti_contracts.events import KIND_LABELS, OfferingStatus
from qti_runtime.german import BERLIN, TZID, berlin_vtimezone
from services.catalogue.domain import Node
from services.catalogue.store import StoredOffering

PRODID: Final = "-//QTI-Netzwerk Thüringen//qti-net catalogue//DE"


def _line(text: str, limit: int = 300) -> str:
    cleaned = "".join(" " if unicodedata.category(c) == "Cc" else c for c in text)
    return " ".join(cleaned.split())[:limit]


def node_calendar(node: Node, offerings: Sequence[StoredOffering]) -> bytes:
    cal = Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("method", "PUBLISH")
    cal.add("x-wr-calname", _line(f"{node.name} – Termine"))
    cal.add("x-wr-timezone", TZID)
    cal.add_component(berlin_vtimezone())
    for item in offerings:
        offering = item.offering
        cancelled = offering.status is OfferingStatus.CANCELLED
        total = len(offering.sessions)
        base = _line(offering.title, 200)
        for index, session in enumerate(offering.sessions, start=1):
            event = Event()
            event.add("uid", f"{offering.offering_id}-{session.session_id}@qti-net")
            event.add("dtstamp", item.updated_at.astimezone(UTC))
            event.add("sequence", offering.revision)
            event.add("dtstart", session.starts_at.astimezone(BERLIN))
            event.add("dtend", session.ends_at.astimezone(BERLIN))
            summary = base if total == 1 else f"{base} (Termin {index} von {total})"
            event.add("summary", f"Abgesagt: {summary}" if cancelled else summary)
            event.add("location", _line(session.location))
            event.add("categories", [KIND_LABELS[offering.kind]])
            event.add("description", offering.description[:2000])
            event.add("status", "CANCELLED" if cancelled else "CONFIRMED")
            event.add("x-qti-offering-id", str(offering.offering_id))
            cal.add_component(event)
    ical: bytes = cal.to_ical()
    return ical
