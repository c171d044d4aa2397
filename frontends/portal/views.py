"""What the pages show, computed from the catalogue's JSON: German dates, seat states, the calendar file,
the schema.org JSON-LD and the map link. Pure functions, so the templates stay free of logic."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from urllib.parse import quote_plus

from icalendar import Calendar, Event

from qti_runtime.german import BERLIN, MONTHS, WEEKDAYS, berlin_vtimezone

KIND_MODE = {"consultation": "onsite", "info_event": "onsite"}


def moment(value: str) -> datetime:
    return datetime.fromisoformat(value).astimezone(BERLIN)


def german_date(value: str) -> str:
    """`Dienstag, 12. Januar 2027`"""
    at = moment(value)
    return f"{WEEKDAYS[at.weekday()]}, {at.day}. {MONTHS[at.month - 1]} {at.year}"


def german_time(value: str) -> str:
    return moment(value).strftime("%H:%M")


def session_line(session: dict[str, Any]) -> str:
    """`Dienstag, 12. Januar 2027, 09:00 bis 16:00 Uhr`"""
    return (
        f"{german_date(session['starts_at'])}, {german_time(session['starts_at'])} bis "
        f"{german_time(session['ends_at'])} Uhr"
    )


def seat_state(offering: dict[str, Any]) -> str:
    """`5 freie Plätze`, `Warteliste`, `ausgebucht` or `Anmeldung geschlossen`."""
    if not offering.get("registration_open"):
        return "Anmeldung geschlossen"
    seats = int(offering.get("seats_left") or 0)
    if seats > 0:
        return "1 freier Platz" if seats == 1 else f"{seats} freie Plätze"
    limit = offering.get("waitlist_limit")
    if limit is None or int(offering.get("waitlisted") or 0) < int(limit):
        return "Warteliste"
    return "ausgebucht"


def fee_text(offering: dict[str, Any]) -> str:
    fee = float(offering.get("fee_eur") or 0)
    return "kostenfrei" if fee == 0 else f"{fee:.2f} €".replace(".", ",")


def map_link(address: str) -> str:
    """A plain link to OpenStreetMap's search: nothing is loaded from there unless the person follows it."""
    return f"https://www.openstreetmap.org/search?query={quote_plus(address)}"


def json_ld(offering: dict[str, Any], node: dict[str, Any] | None, portal_url: str) -> str:
    """schema.org `Course` with one `CourseInstance` per session, safe inside a `<script>` element."""
    place = {"@type": "Place", "name": offering["node"]["name"]}
    if node and node.get("address"):
        place["address"] = node["address"]
    data = {
        "@context": "https://schema.org",
        "@type": "Course",
        "name": offering["title"],
        "description": offering["description"],
        "url": f"{portal_url.rstrip('/')}/angebote/{offering['offering_id']}",
        "provider": {"@type": "Organization", "name": (node or {}).get("host") or offering["node"]["name"]},
        "inLanguage": "de",
        "isAccessibleForFree": float(offering.get("fee_eur") or 0) == 0,
        "hasCourseInstance": [
            {
                "@type": "CourseInstance",
                "courseMode": KIND_MODE.get(offering["kind"], "onsite"),
                "startDate": s["starts_at"],
                "endDate": s["ends_at"],
                "location": {**place, "name": s.get("location") or place["name"]},
                "offers": {
                    "@type": "Offer",
                    "price": float(offering.get("fee_eur") or 0),
                    "priceCurrency": "EUR",
                },
            }
            for s in offering["sessions"]
        ],
    }
    text = json.dumps(data, ensure_ascii=False)
    # `</script>` or `<!--` in a title must not end the element early.
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def calendar_file(offering: dict[str, Any], portal_url: str) -> bytes:
    """One VEVENT per session, in Europe/Berlin, linking back to the offering's page."""
    calendar = Calendar()
    calendar.add("prodid", "-//QTI-Netzwerk Thüringen//Portal//DE")
    calendar.add("version", "2.0")
    calendar.add("method", "PUBLISH")
    calendar.add_component(berlin_vtimezone())
    url = f"{portal_url.rstrip('/')}/angebote/{offering['offering_id']}"
    for session in offering["sessions"]:
        event = Event()
        event.add("uid", f"{session['session_id']}@qti-portal")
        event.add("summary", offering["title"])
        event.add("dtstart", moment(session["starts_at"]))
        event.add("dtend", moment(session["ends_at"]))
        event.add("dtstamp", datetime.now(BERLIN))
        event.add("location", session.get("location") or offering["node"]["name"])
        event.add("description", f"{offering['kind_label']} · {offering['node']['name']}\n{url}")
        event.add("url", url)
        calendar.add_component(event)
    ical: bytes = calendar.to_ical()
    return ical


STATUS_TEXT = {
    "confirmed": "bestätigt",
    "waitlisted": "auf der Warteliste",
    "cancelled": "abgesagt",
    "rejected": "abgelehnt",
    "pending": "in Bearbeitung",
    "completed": "abgeschlossen",
}

NEXT_STEP = {
    "offering_not_found": "Bitte wählen Sie ein anderes Angebot auf der Startseite.",
    "offering_not_open": "Bitte wählen Sie ein anderes Angebot auf der Startseite.",
    "registration_closed": "Die Anmeldefrist ist vorbei. Bitte wählen Sie einen anderen Termin oder "
    "fragen Sie beim QTI-Knoten nach.",
    "duplicate_registration": "Sie sind für dieses Angebot bereits angemeldet. Den Link zu Ihrer "
    "Anmeldung finden Sie in Ihrer ersten E-Mail.",
    "company_limit_reached": "Aus Ihrem Unternehmen sind schon so viele Personen angemeldet, wie "
    "das Angebot zulässt. Bitte sprechen Sie mit dem QTI-Knoten.",
    "waitlist_full": "Die Warteliste ist voll. Bitte wählen Sie einen anderen Termin.",
    "consent_missing": "Bitte melden Sie sich erneut an und bestätigen Sie die Datenschutzhinweise.",
    "invalid_request": "Bitte prüfen Sie Ihre Angaben und melden Sie sich erneut an.",
}
