"""The German mails of offer alerts and interest: confirmation (double opt-in), alert, weekly digest,
interest fulfilled; pure rendering from a delivery row and the catalogue replicas.

Every mail sent because of a confirmed subscription carries a one-click unsubscribe (RFC 8058):
`List-Unsubscribe: <{QTI_PORTAL_URL}/angebotsalarm/abmelden/{token}>` and
`List-Unsubscribe-Post: List-Unsubscribe=One-Click`, and the same link visibly in the text.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import asyncpg
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from qti_contracts import COUNTY_LABELS, TOPIC_LABELS, County, Topic
from services.notification import alerts
from services.notification.render import (
    TEMPLATE_DIR,
    RenderedMail,
    clean_line,
    format_datetime,
    format_eur,
    kind_label,
)
from services.notification.settings import NotificationSettings
from services.notification.store import DeliveryRow, OfferingRow

_ENV: Final = Environment(
    loader=FileSystemLoader(TEMPLATE_DIR / "alerts"),
    autoescape=select_autoescape(enabled_extensions=("html.j2",), default=False),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)
_TOPICS: Final = frozenset(t.value for t in Topic)
_COUNTIES: Final = frozenset(c.value for c in County)
ONE_CLICK: Final = ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")


class OfferingMissing(Exception):
    """An offering of the mail is not (yet) in the replica."""


@dataclass(frozen=True, slots=True)
class AlertMail:
    rendered: RenderedMail
    headers: tuple[tuple[str, str], ...]


def offering_ids(row: DeliveryRow) -> list[str]:
    """The offerings a row's mail shows (a digest lists several)."""
    if row.template == alerts.DIGEST_TEMPLATE:
        return [str(i) for i in row.params.get("offering_ids") or []]
    return [row.offering_id] if row.offering_id else []


def summary(params: Mapping[str, Any]) -> str:
    """What the subscription asks for, in German, e.g. „Wasserstoff“ in Sömmerda, Erfurt."""
    topics = [TOPIC_LABELS[Topic(t)] for t in params.get("topics") or [] if t in _TOPICS]
    counties = [COUNTY_LABELS[County(c)] for c in params.get("counties") or [] if c in _COUNTIES]
    what = ", ".join(f"„{t}“" for t in topics) or "alle Themen"
    where = f" in {', '.join(counties)}" if counties else ""
    if params.get("nodes"):
        where += " oder an ausgewählten QTI-Knoten" if where else " an ausgewählten QTI-Knoten"
    return clean_line(what + where, 600)


def _offering_view(
    row: OfferingRow, nodes: Mapping[str, asyncpg.Record], portal_url: str, source: str
) -> dict[str, str] | None:
    state = row.state
    if state is None or row.cancelled:
        return None
    node = nodes.get(state.node_id)
    first = state.sessions[0]
    return {
        "title": clean_line(state.title, 300),
        "kind": kind_label(state.kind.value),
        "topic": TOPIC_LABELS[state.topic],
        "node": clean_line(f"{node['name']}, {node['town']}" if node is not None else "QTI-Netzwerk", 200),
        "first_when": format_datetime(first.starts_at),
        "fee": format_eur(state.fee_eur),
        # `quelle` lets reporting count registrations that came from this mail (docs/alternatives.md).
        "url": f"{portal_url.rstrip('/')}/angebote/{state.offering_id}?quelle={source}",
    }


def _subject(case: str, params: Mapping[str, Any], views: list[dict[str, str]]) -> str:
    if case == alerts.CONFIRM_TEMPLATE:
        if params.get("kind") == "interest":
            return "Bitte bestätigen Sie Ihre Interessensmeldung"
        return "Bitte bestätigen Sie Ihren Angebotsalarm"
    if case == alerts.DIGEST_TEMPLATE:
        return f"Angebotsalarm: {len(views)} neue passende Angebote"
    title = views[0]["title"] if views else ""
    prefix = "Ihr gemeldetes Interesse" if case == alerts.INTEREST_TEMPLATE else "Angebotsalarm"
    return clean_line(f"{prefix}: „{clean_line(title, 120)}“", 200)


def render(
    row: DeliveryRow,
    offerings: Mapping[str, OfferingRow],
    nodes: Mapping[str, asyncpg.Record],
    settings: NotificationSettings,
) -> AlertMail | None:
    """The mail of `row`, or None when nothing is left to tell (every offering cancelled meanwhile)."""
    params = row.params
    subscription_id = str(params.get("subscription_id") or "")
    views: list[dict[str, str]] = []
    source = "interesse" if params.get("kind") == "interest" else "angebotsalarm"
    for offering_id in offering_ids(row):
        offering = offerings.get(offering_id)
        if offering is None:
            raise OfferingMissing(offering_id)
        view = _offering_view(offering, nodes, settings.portal_url, source)
        if view is not None:
            views.append(view)
    if row.template != alerts.CONFIRM_TEMPLATE and not views:
        return None
    values: dict[str, Any] = {
        "case": row.template,
        "kind": str(params.get("kind") or "alert"),
        "summary": summary(params),
        "offerings": views,
        "network_name": settings.mail_from_name,
        "network_email": settings.network_email,
        "expiry_hours": round(settings.alert_confirm_hours),
        "confirm_link": "",
        "unsubscribe_link": "",
    }
    headers: tuple[tuple[str, str], ...] = ()
    if row.template == alerts.CONFIRM_TEMPLATE:
        token = alerts.token(settings.link_secret, "confirm", subscription_id)
        values["confirm_link"] = alerts.confirm_link(settings.portal_url, token)
    else:
        token = alerts.token(settings.link_secret, "unsubscribe", subscription_id)
        link = alerts.unsubscribe_link(settings.portal_url, token)
        values["unsubscribe_link"] = link
        headers = (("List-Unsubscribe", f"<{link}>"), ONE_CLICK)
    subject = _subject(row.template, params, views)
    values["subject"] = subject
    text = _ENV.get_template("mail.txt.j2").render(values)
    html = _ENV.get_template("mail.html.j2").render(values)
    return AlertMail(RenderedMail(subject=subject, text=text, html=html), headers)
