"""iCalendar (.ics) attachments for participant mails: one VEVENT per session, Europe/Berlin times.

UIDs are stable per session (``<session_id>@qti-net``), so a later mail with a higher ``SEQUENCE``
updates the entries already in the participant's calendar, and ``method="CANCEL"`` removes them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Final, Literal

from icalendar import Calendar, Event, vCalAddress, vText

from qti_runtime.german import berlin_vtimezone
from services.notification.render import SessionInfo, clean_line, clean_paragraph, to_berlin

UID_DOMAIN: Final = "qti-net"
PRODID: Final = "-//QTI-Netzwerk Thüringen//qti-net notification//DE"

Method = Literal["REQUEST", "CANCEL"]


def session_uid(session_id: str) -> str:
    """The stable UID of a session's calendar entry."""
    return f"{clean_line(session_id, 200).replace(' ', '_')}@{UID_DOMAIN}"


def _address(email: str, name: str | None, **params: str) -> vCalAddress:
    address = vCalAddress(f"mailto:{clean_line(email, 254).replace(' ', '')}")
    if name:
        # Parameter values may not contain double quotes; the rest is quoted by icalendar.
        address.params["cn"] = vText(clean_line(name, 100).replace('"', "'"))
    for key, value in params.items():
        address.params[key] = vText(value)
    return address


def _vevent(
    session: SessionInfo,
    dtstamp: datetime,
    sequence: int,
    method: Method,
    organizer: vCalAddress,
    attendee: vCalAddress | None,
) -> Event:
    """One session's VEVENT without its texts (summary, location, description)."""
    event = Event()
    event.add("uid", session_uid(session.session_id))
    event.add("dtstamp", dtstamp)
    event.add("sequence", sequence)
    event.add("dtstart", to_berlin(session.starts_at))
    event.add("dtend", to_berlin(session.ends_at))
    event.add("organizer", organizer)
    if attendee is not None:
        event.add("attendee", attendee)
    event.add("status", "CANCELLED" if method == "CANCEL" else "CONFIRMED")
    event.add("transp", "OPAQUE")
    return event


def _description(description: str, node_name: str | None, node_address: str | None) -> str:
    text_parts = [clean_paragraph(description, 2000)]
    if node_name or node_address:
        text_parts.append(
            "Veranstalter: " + ", ".join(clean_line(p, 300) for p in (node_name, node_address) if p)
        )
    return "\n\n".join(p for p in text_parts if p)


def _calendar(method: Method) -> Calendar:
    cal = Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("method", method)
    cal.add_component(berlin_vtimezone())
    return cal


def build_ics(
    *,
    offering_id: str,
    title: str,
    sessions: Sequence[SessionInfo],
    sequence: int,
    organizer_email: str,
    organizer_name: str | None = None,
    description: str = "",
    node_name: str | None = None,
    node_address: str | None = None,
    method: Method = "REQUEST",
    attendee_email: str | None = None,
    attendee_name: str | None = None,
    stamp: datetime | None = None,
) -> bytes:
    """Serialise the sessions of one offering as an iCalendar object.

    ``sequence`` must grow with every change of the offering (e.g. the catalogue revision).
    ``method="CANCEL"`` marks every VEVENT ``STATUS:CANCELLED``. ``stamp`` (DTSTAMP) defaults to now.
    """
    if method not in ("REQUEST", "CANCEL"):
        raise ValueError(f"unsupported iTIP method {method!r}")
    if sequence < 0:
        raise ValueError("sequence must not be negative")
    if not sessions:
        raise ValueError("an .ics needs at least one session")

    dtstamp = (stamp or datetime.now(UTC)).astimezone(UTC)
    summary_base = clean_line(title, 200) or "Veranstaltung"
    body = _description(description, node_name, node_address)
    cal = _calendar(method)

    ordered = sorted(sessions, key=lambda s: to_berlin(s.starts_at))
    organizer = _address(organizer_email, organizer_name)
    attendee = (
        _address(attendee_email, attendee_name, role="REQ-PARTICIPANT", rsvp="FALSE")
        if attendee_email
        else None
    )
    for index, session in enumerate(ordered, start=1):
        event = _vevent(session, dtstamp, sequence, method, organizer, attendee)
        event.add(
            "summary",
            summary_base if len(ordered) == 1 else f"{summary_base} (Termin {index} von {len(ordered)})",
        )
        location = clean_line(session.location, 300) or clean_line(node_address or "", 300)
        if location:
            event.add("location", location)
        if body:
            event.add("description", body)
        event.add("x-qti-offering-id", clean_line(offering_id, 100))
        cal.add_component(event)
    ical: bytes = cal.to_ical()
    return ical
