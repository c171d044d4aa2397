"""The published courses as an open-Qcat 1.1 catalogue (`GET /exports/openqcat.xml`), the format in which
the Federal Employment Agency's course search KURSNET imports providers' offers. The structure, what maps
from our offerings and what is left out is in docs/openqcat.md; docs/openqcat.xsd checks it.

Only courses qualify (KURSNET's admission rules exclude information events, single talks and fairs), and
only those of at least four teaching units. Each offering becomes two SERVICE entries: the offer
(`EDUCATION type="true"`) and its dated run (`type="false"`, `COURSE_ID` = the offer), whose sessions are
MODULE_COURSE entries with place and dates.

Text from staff may hold anything: characters XML 1.0 cannot carry are dropped, lengths are cut to the
format's limits, and the serializer escapes the rest (`<`, `&`).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Final
from xml.etree.ElementTree import Element, SubElement, tostring

import asyncpg

from qti_contracts.events import KIND_LABELS, TOPIC_LABELS, OfferingKind
from qti_runtime.german import BERLIN
from services.catalogue import store
from services.catalogue.domain import Node, OfferingSession, total_teaching_units

COURSE_KINDS: Final = (OfferingKind.COURSE, OfferingKind.CERTIFICATE_COURSE, OfferingKind.WORKSHOP)
MIN_TEACHING_UNITS: Final = 4
SUPPLIER_NAME: Final = "QTI-Netzwerk Thüringen"
# The provider number KURSNET assigns on registration; until then our own identifier (docs/openqcat.md).
SUPPLIER_ID: Final = "qti-net"
TITLE_MAX: Final = 255
DESCRIPTION_MAX: Final = 30_000
LINE_MAX: Final = 200
# Characters outside XML 1.0's Char production (C0 controls but tab/LF/CR, lone surrogates, U+FFFE/F).
_NOT_XML: Final = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

_EXPORT_SQL: Final = (
    f"SELECT {store._OFFERING_COLUMNS}{store._EXTRA_COLUMNS} FROM offerings o{store._EXTRA_JOINS}"
    " WHERE o.status = 'published' AND o.kind = ANY($1::text[]) AND o.last_ends_at >= $2"
    " ORDER BY o.first_starts_at, o.offering_id"
)


def xml_text(value: str, limit: int) -> str:
    """Text XML can carry: NFC, no characters outside XML 1.0, at most `limit` characters."""
    text = _NOT_XML.sub("", unicodedata.normalize("NFC", value))
    return text[:limit].strip()


def xml_line(value: str, limit: int = LINE_MAX) -> str:
    """One line: additionally no line breaks or tabs, whitespace collapsed."""
    return " ".join(xml_text(value, limit * 2).split())[:limit]


def _when(moment: datetime) -> str:
    return moment.astimezone(BERLIN).isoformat(timespec="seconds")


def _add(parent: Element, tag: str, text: str | None = None, **attributes: str) -> Element:
    element = SubElement(parent, tag, attributes)
    if text is not None:
        element.text = text
    return element


def _header(root: Element, now: datetime) -> None:
    header = _add(root, "HEADER")
    catalog = _add(header, "CATALOG")
    _add(catalog, "LANGUAGE", "deu")
    _add(catalog, "CATALOG_ID", "qti-net-kurse")
    _add(catalog, "CATALOG_VERSION", now.astimezone(BERLIN).strftime("%Y%m%d%H%M%S"))
    _add(catalog, "CATALOG_NAME", "Lehrgänge und Workshops der QTI-Knoten")
    _add(catalog, "GENERATION_DATE", _when(now))
    _add(catalog, "CURRENCY", "EUR")
    supplier = _add(header, "SUPPLIER")
    _add(supplier, "SUPPLIER_ID", SUPPLIER_ID, type="supplier_specific")
    _add(supplier, "SUPPLIER_NAME", SUPPLIER_NAME)


def _location(parent: Element, session: OfferingSession, node: Node) -> None:
    location = _add(parent, "LOCATION")
    _add(location, "NAME", xml_line(session.location) or xml_line(node.name))
    _add(location, "CITY", xml_line(node.town, 100))
    _add(location, "COUNTRY", "DE")


def _offer(catalog: Element, item: store.StoredOffering, node: Node) -> str:
    offering = item.offering
    product_id = str(offering.offering_id)
    service = _add(catalog, "SERVICE", mode="new")
    _add(service, "PRODUCT_ID", product_id)
    details = _add(service, "SERVICE_DETAILS")
    _add(details, "TITLE", xml_line(offering.title, TITLE_MAX) or "Lehrgang")
    _add(details, "DESCRIPTION_LONG", xml_text(offering.description, DESCRIPTION_MAX))
    _add(details, "KEYWORD", TOPIC_LABELS[offering.topic])
    _add(details, "KEYWORD", KIND_LABELS[offering.kind])
    _service_date(details, offering.sessions)
    education = _add(_add(details, "SERVICE_MODULE"), "EDUCATION", type="true")
    course = _add(education, "MODULE_COURSE")
    _add(course, "MAX_PARTICIPANTS", str(offering.capacity))
    _location(course, offering.sessions[0], node)
    _add(course, "TEACHING_UNITS", str(total_teaching_units(offering.sessions)))
    _price(service, offering.fee_eur)
    return product_id


def _service_date(details: Element, sessions: Sequence[OfferingSession]) -> None:
    dates = _add(details, "SERVICE_DATE")
    _add(dates, "START_DATE", _when(min(s.starts_at for s in sessions)))
    _add(dates, "END_DATE", _when(max(s.ends_at for s in sessions)))


def _price(service: Element, fee: Decimal) -> None:
    price = _add(_add(service, "SERVICE_PRICE_DETAILS"), "SERVICE_PRICE")
    _add(price, "PRICE_AMOUNT", f"{fee:.2f}")
    _add(price, "PRICE_CURRENCY", "EUR")


def _run(catalog: Element, item: store.StoredOffering, node: Node, offer_id: str) -> None:
    """The dated run of the offer: one MODULE_COURSE per session, in order."""
    offering = item.offering
    service = _add(catalog, "SERVICE", mode="new")
    _add(service, "PRODUCT_ID", f"{offer_id}-termine")
    details = _add(service, "SERVICE_DETAILS")
    _add(details, "TITLE", xml_line(offering.title, TITLE_MAX) or "Lehrgang")
    _service_date(details, offering.sessions)
    education = _add(_add(details, "SERVICE_MODULE"), "EDUCATION", type="false")
    _add(education, "COURSE_ID", offer_id)
    for order, session in enumerate(offering.sessions, start=1):
        course = _add(education, "MODULE_COURSE")
        _location(course, session, node)
        duration = _add(course, "DURATION")
        _add(duration, "START_DATE", _when(session.starts_at))
        _add(duration, "END_DATE", _when(session.ends_at))
        _add(course, "MODULE_ORDER", str(order))


def qualifies(item: store.StoredOffering) -> bool:
    offering = item.offering
    return offering.kind in COURSE_KINDS and total_teaching_units(offering.sessions) >= MIN_TEACHING_UNITS


def openqcat_document(offerings: Sequence[store.StoredOffering], now: datetime) -> bytes:
    """The catalogue as UTF-8 XML with declaration."""
    root = Element("OPENQCAT", {"version": "1.1"})
    _header(root, now)
    catalog = _add(root, "NEW_CATALOG", FULLCATALOG="true")
    for item in offerings:
        if item.node is None or not qualifies(item):
            continue
        offer_id = _offer(catalog, item, item.node)
        _run(catalog, item, item.node, offer_id)
    body: bytes = tostring(root, encoding="utf-8", xml_declaration=True)
    return body


async def exported_offerings(conn: asyncpg.Connection, now: datetime) -> list[store.StoredOffering]:
    """Published courses that have not ended yet, in start order, with node and sessions."""
    records = await conn.fetch(_EXPORT_SQL, [kind.value for kind in COURSE_KINDS], now)
    sessions = await store._sessions_of(conn, [record["offering_id"] for record in records])
    return [store._stored(r, sessions[r["offering_id"]], with_extras=True) for r in records]
