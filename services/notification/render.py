"""Rendering of the German participant e-mails (subject, plain text and HTML) from typed contexts.

The module is pure: it takes small frozen dataclasses (not the wire models), formats dates, money and
names itself (no locale dependency) and renders the Jinja2 templates in ``templates/``.  Everything that
ends up in a header (subject, display names) is stripped of control characters, so header injection
is impossible, and every value is length-limited so that hostile or accidental 500-character names
cannot break the layout.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Final

from jinja2 import Environment, FileSystemLoader, StrictUndefined, TemplateRuntimeError, select_autoescape

from qti_runtime.german import BERLIN, MONTHS, WEEKDAYS

TEMPLATE_DIR: Final = Path(__file__).parent / "templates"

CASES: Final = frozenset(
    {
        "confirmation",
        "waitlisted",
        "promoted",
        "rejected",
        "cancelled",
        "offering_changed",
        "offering_cancelled",
        "reminder",
    }
)

# Length limits (in characters) for untrusted free text.
MAX_NAME_PART: Final = 60
MAX_DISPLAY_NAME: Final = 100
MAX_TITLE_BODY: Final = 300
MAX_TITLE_SUBJECT: Final = 120
MAX_SUBJECT: Final = 200
MAX_LINE: Final = 300
MAX_PARAGRAPH: Final = 4000


KIND_LABELS: Final = {
    "course": "Kurs",
    "certificate_course": "Zertifikatskurs",
    "workshop": "Workshop",
    "info_event": "Informationsveranstaltung",
    "consultation": "Beratung",
    "network_event": "Netzwerkveranstaltung",
}


@dataclass(frozen=True, slots=True)
class RejectionText:
    """What happened (``explanation``) and what the person can do now (``next_step``)."""

    explanation: str
    next_step: str


REJECTION_TEXTS: Final[dict[str, RejectionText]] = {
    "invalid_request": RejectionText(
        "Ihre Anmeldung war unvollständig oder enthielt Angaben, die wir nicht verarbeiten konnten.",
        "Bitte prüfen Sie Ihre Angaben – insbesondere Name und E-Mail-Adresse – und senden Sie die "
        "Anmeldung erneut ab.",
    ),
    "offering_not_found": RejectionText(
        "Das gewählte Angebot konnte nicht gefunden werden. Möglicherweise wurde es zurückgezogen "
        "oder Sie haben einen veralteten Link verwendet.",
        "Bitte wählen Sie das Angebot erneut aus unserem aktuellen Veranstaltungskatalog aus.",
    ),
    "offering_not_open": RejectionText(
        "Für dieses Angebot ist derzeit keine Anmeldung möglich, weil es noch nicht freigegeben, "
        "bereits abgeschlossen oder abgesagt ist.",
        "In unserem Veranstaltungskatalog finden Sie weitere Termine zu diesem und ähnlichen Themen.",
    ),
    "registration_closed": RejectionText(
        "Die Anmeldefrist für dieses Angebot ist bereits abgelaufen.",
        "Sprechen Sie uns gern an, ob eine kurzfristige Teilnahme noch möglich ist, oder wählen Sie "
        "einen späteren Termin aus unserem Veranstaltungskatalog.",
    ),
    "duplicate_registration": RejectionText(
        "Für diese E-Mail-Adresse liegt bereits eine Anmeldung zu diesem Angebot vor.",
        "Sie müssen nichts weiter tun: Ihre bestehende Anmeldung bleibt unverändert gültig.",
    ),
    "company_limit_reached": RejectionText(
        "Aus Ihrem Unternehmen sind bereits so viele Personen angemeldet, wie für dieses Angebot je "
        "Unternehmen vorgesehen sind. So können möglichst viele Unternehmen teilnehmen.",
        "Wenn eine andere Person aus Ihrem Unternehmen ihre Anmeldung zurückzieht, können Sie sich "
        "erneut anmelden. Gern nennen wir Ihnen auch weitere Termine.",
    ),
    "waitlist_full": RejectionText(
        "Das Angebot ist ausgebucht, und auch die Warteliste ist bereits voll.",
        "Bitte sprechen Sie uns an – wir informieren Sie gern über Wiederholungstermine. Weitere "
        "Angebote finden Sie in unserem Veranstaltungskatalog.",
    ),
    "consent_missing": RejectionText(
        "Ohne Ihre Einwilligung in die Datenschutzhinweise dürfen wir Ihre Anmeldung nicht bearbeiten.",
        "Bitte melden Sie sich erneut an und bestätigen Sie dabei die Datenschutzhinweise.",
    ),
}

_GENERIC_REJECTION: Final = RejectionText(
    "Ihre Anmeldung konnte leider nicht angenommen werden.",
    "Bitte wenden Sie sich an uns – wir helfen Ihnen gern weiter.",
)

CANCELLATION_CAUSES: Final = frozenset({"participant", "organiser", "offering_cancelled"})


class MailContextError(ValueError):
    """The context lacks a value that the requested case needs."""


# --------------------------------------------------------------------------------------------------
# Typed inputs
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Recipient:
    given_name: str
    family_name: str
    email: str
    gender: str = "unspecified"  # female | male | diverse | unspecified


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """A QTI-Knoten as shown in mails (name, postal address and how to reach it)."""

    name: str
    address: str
    host: str | None = None
    email: str | None = None
    phone: str | None = None


@dataclass(frozen=True, slots=True)
class SessionInfo:
    session_id: str
    starts_at: datetime
    ends_at: datetime
    location: str
    teaching_units: int | None = None


@dataclass(frozen=True, slots=True)
class OfferingInfo:
    offering_id: str
    title: str
    kind: str = "course"
    description: str = ""
    fee_eur: Decimal | int | float | str = 0
    sessions: tuple[SessionInfo, ...] = ()
    registration_deadline: datetime | None = None


@dataclass(frozen=True, slots=True)
class AlternativeInfo:
    """An offering on the same topic with free seats (waiting-list mails) and its portal link."""

    title: str
    node: str
    starts_at: datetime
    seats_left: int
    url: str


# The sentence before the personal link: after a cancellation there is nothing left to cancel.
PERSONAL_LINK_DEFAULT: Final = "Ihre Anmeldung ansehen oder absagen:"
PERSONAL_LINK_TEXT: Final = {
    "cancelled": "Ihre Anmeldung ansehen:",
    "offering_cancelled": "Ihre Anmeldung ansehen:",
}


@dataclass(frozen=True, slots=True)
class MailContext:
    """Everything a mail may show. Case-specific fields are checked by :func:`render_mail`."""

    recipient: Recipient
    offering: OfferingInfo | None = None
    node: NodeInfo | None = None
    registration_id: str | None = None
    waitlist_position: int | None = None  # waitlisted
    rejection_reason: str | None = None  # rejected: a RejectionReason value
    rejection_detail: str | None = None  # rejected: German detail from the registration service
    cancellation_cause: str | None = None  # cancelled: participant | organiser | offering_cancelled
    note: str | None = None  # free German text, e.g. the reason of an organiser cancellation
    previous_sessions: tuple[SessionInfo, ...] = ()  # offering_changed: the dates before the change
    cancel_url: str | None = None
    # The participant's personal page `{QTI_PORTAL_URL}/meine-anmeldung/{token}` (every registration mail).
    personal_link: str | None = None
    network_name: str = "QTI-Netzwerk Thüringen"
    network_email: str = "kontakt@qti-net.example"
    privacy_url: str | None = None
    has_calendar: bool = True  # whether an .ics file is attached (the text mentions it)
    # The first mail to an address says what is done with data the person may not have given us
    # themselves (a company coordinator registered them): DSGVO Art. 14.
    privacy_notice: bool = False
    alternatives: tuple[AlternativeInfo, ...] = ()


@dataclass(frozen=True, slots=True)
class RenderedMail:
    subject: str
    text: str
    html: str


# --------------------------------------------------------------------------------------------------
# Text hygiene
# --------------------------------------------------------------------------------------------------

_WS_RE: Final = re.compile(r"\s+")
# Characters that must never survive into a header or a single-line value.
_LINE_BREAKERS: Final = frozenset("\r\n\v\f\x1c\x1d\x1e\x85\u2028\u2029")


def _is_control(ch: str) -> bool:
    cat = unicodedata.category(ch)
    # Cc: C0/C1 controls (incl. CR, LF, TAB, NUL); Zl/Zp: Unicode line/paragraph separators;
    # Cs: lone surrogates (cannot be encoded); bidi overrides could disguise text in headers.
    return cat in {"Cc", "Zl", "Zp", "Cs"} or ch in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"


def truncate(value: str, limit: int) -> str:
    """Cut ``value`` to at most ``limit`` characters, preferably at a word boundary, ending in "…"."""
    if len(value) <= limit:
        return value
    cut = value[: max(limit - 1, 1)]
    space = cut.rfind(" ")
    if space >= limit * 2 // 3:
        cut = cut[:space]
    # Do not leave a dangling combining mark, joiner or variation selector (broken emoji/umlaut).
    while cut and (unicodedata.combining(cut[-1]) or cut[-1] in "\u200d\ufe0e\ufe0f"):
        cut = cut[:-1]
    return cut.rstrip(" ,;:-–") + "…"


def clean_line(value: object, limit: int = MAX_LINE) -> str:
    """One safe line: NFC, controls removed, whitespace collapsed, length-limited.

    Suitable for headers (subject, display names): no CR/LF can survive.
    """
    text = unicodedata.normalize("NFC", "" if value is None else str(value))
    # Fast path (nearly every value): a printable string has no line breaker, tab, control, separator
    # other than " " or bidi override (all are non-printable), so only whitespace is left to collapse.
    if not text.isprintable():
        text = "".join(" " if (ch in _LINE_BREAKERS or ch == "\t") else ch for ch in text)
        text = "".join(ch for ch in text if not _is_control(ch))
    text = _WS_RE.sub(" ", text).strip()
    return truncate(text, limit)


def clean_paragraph(value: object, limit: int = MAX_PARAGRAPH) -> str:
    """Multi-line free text: line breaks kept (normalised to LF), other controls removed."""
    text = unicodedata.normalize("NFC", "" if value is None else str(value))
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = [clean_line(line, limit) for line in text.split("\n")]
    joined = "\n".join(lines).strip("\n")
    joined = re.sub(r"\n{3,}", "\n\n", joined)
    return truncate(joined, limit)


def display_name(given_name: str, family_name: str) -> str:
    """A header-safe "Given Family" display name."""
    given = clean_line(given_name, MAX_NAME_PART)
    family = clean_line(family_name, MAX_NAME_PART)
    return clean_line(f"{given} {family}", MAX_DISPLAY_NAME)


def salutation(recipient: Recipient) -> str:
    """A polite German salutation; gender-neutral with the full name unless female/male is given."""
    given = clean_line(recipient.given_name, MAX_NAME_PART)
    family = clean_line(recipient.family_name, MAX_NAME_PART)
    if family and recipient.gender == "female":
        return f"Guten Tag Frau {family},"
    if family and recipient.gender == "male":
        return f"Guten Tag Herr {family},"
    full = f"{given} {family}".strip()
    return f"Guten Tag {full}," if full else "Guten Tag,"


# --------------------------------------------------------------------------------------------------
# German formatting (no locale dependency)
# --------------------------------------------------------------------------------------------------


def to_berlin(value: datetime) -> datetime:
    """Convert to Europe/Berlin; naive values are taken as UTC (as on the wire)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(BERLIN)


def format_date(value: datetime) -> str:
    """``Dienstag, 9. März 2027``"""
    local = to_berlin(value)
    return f"{WEEKDAYS[local.weekday()]}, {local.day}. {MONTHS[local.month - 1]} {local.year}"


def format_time(value: datetime) -> str:
    """``09:00``"""
    return to_berlin(value).strftime("%H:%M")


def format_datetime(value: datetime) -> str:
    """``Dienstag, 9. März 2027, 09:00 Uhr``"""
    return f"{format_date(value)}, {format_time(value)} Uhr"


def format_short_date(value: datetime) -> str:
    """``09.03.2027``"""
    return to_berlin(value).strftime("%d.%m.%Y")


def format_session_time(starts_at: datetime, ends_at: datetime) -> str:
    """``Dienstag, 9. März 2027, 09:00–16:00 Uhr`` (or a range over two dates)."""
    start, end = to_berlin(starts_at), to_berlin(ends_at)
    if start.date() == end.date():
        return f"{format_date(start)}, {format_time(start)}–{format_time(end)} Uhr"
    return f"{format_datetime(start)} bis {format_datetime(end)}"


def format_eur(amount: Decimal | int | float | str | None) -> str:
    """``kostenfrei`` for 0, else ``1.250,00 €`` (with a no-break space before the sign)."""
    if amount is None:
        return "kostenfrei"
    try:
        value = Decimal(str(amount)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    except InvalidOperation as exc:
        raise MailContextError(f"invalid fee: {amount!r}") from exc
    if value == 0:
        return "kostenfrei"
    sign = "-" if value < 0 else ""
    whole, cents = f"{abs(value):.2f}".split(".")
    groups = f"{int(whole):,}".replace(",", ".")
    return f"{sign}{groups},{cents}\u00a0€"


def kind_label(kind: str) -> str:
    return KIND_LABELS.get(kind, "Veranstaltung")


def rejection_text(reason: str | None) -> RejectionText:
    return REJECTION_TEXTS.get(reason or "", _GENERIC_REJECTION)


# --------------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------------


def _refuse_none(value: object) -> object:
    # Called on every {{ expression }}: a None must be handled by the template, never printed.
    if value is None:
        raise TemplateRuntimeError("a template tried to print None")
    return value


def _make_environment() -> Environment:
    return Environment(
        loader=FileSystemLoader(TEMPLATE_DIR),
        autoescape=select_autoescape(
            enabled_extensions=("html.j2",), default_for_string=False, default=False
        ),
        undefined=StrictUndefined,
        finalize=_refuse_none,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        auto_reload=False,
    )


_ENV: Final = _make_environment()


def _session_view(session: SessionInfo) -> dict[str, Any]:
    units = session.teaching_units
    return {
        "when": format_session_time(session.starts_at, session.ends_at),
        "location": clean_line(session.location) or "wird noch bekannt gegeben",
        "units": f"{units} Unterrichtseinheiten" if units and units > 0 else "",
    }


def _sorted_sessions(sessions: tuple[SessionInfo, ...]) -> list[SessionInfo]:
    return sorted(sessions, key=lambda s: to_berlin(s.starts_at))


# Views of the same offering and node repeat for every mail: built once (immutable inputs, read-only
# results; a new catalogue revision is a new OfferingInfo, hence a new entry).
@functools.lru_cache(maxsize=512)
def _offering_view(offering: OfferingInfo) -> dict[str, Any]:
    sessions = _sorted_sessions(offering.sessions)
    return {
        "id": clean_line(offering.offering_id, 100),
        "title": clean_line(offering.title, MAX_TITLE_BODY) or "Veranstaltung",
        "kind": kind_label(offering.kind),
        "description": clean_paragraph(offering.description, 1500),
        "fee": format_eur(offering.fee_eur),
        "sessions": [_session_view(s) for s in sessions],
        "first_date": format_date(sessions[0].starts_at) if sessions else "",
        "first_when": format_session_time(sessions[0].starts_at, sessions[0].ends_at) if sessions else "",
        "first_location": (clean_line(sessions[0].location) or "") if sessions else "",
        "deadline": format_datetime(offering.registration_deadline) if offering.registration_deadline else "",
    }


@functools.lru_cache(maxsize=256)
def _node_view(node: NodeInfo) -> dict[str, Any]:
    return {
        "name": clean_line(node.name, 150),
        "host": clean_line(node.host, 150) if node.host else "",
        "address": clean_line(node.address, 300),
        "email": clean_line(node.email, 254) if node.email else "",
        "phone": clean_line(node.phone, 50) if node.phone else "",
    }


def _contact_view(ctx: MailContext) -> dict[str, str]:
    if ctx.node is not None and (ctx.node.email or ctx.node.phone):
        return {
            "name": clean_line(ctx.node.name, 150),
            "email": clean_line(ctx.node.email, 254) if ctx.node.email else "",
            "phone": clean_line(ctx.node.phone, 50) if ctx.node.phone else "",
        }
    return {
        "name": clean_line(ctx.network_name, 150),
        "email": clean_line(ctx.network_email, 254),
        "phone": "",
    }


def _alternative_view(alternative: AlternativeInfo) -> dict[str, str]:
    seats = alternative.seats_left
    return {
        "title": clean_line(alternative.title, MAX_TITLE_BODY) or "Veranstaltung",
        "node": clean_line(alternative.node, 150),
        "date": format_date(alternative.starts_at),
        "seats": "1 freier Platz" if seats == 1 else f"{seats} freie Plätze",
        "url": clean_line(alternative.url, 500),
    }


def _require(condition: bool, case: str, what: str) -> None:
    if not condition:
        raise MailContextError(f"case {case!r} needs {what}")


def _validate(case: str, ctx: MailContext) -> None:
    if case not in CASES:
        raise MailContextError(f"unknown mail case {case!r}")
    if case != "rejected":
        _require(ctx.offering is not None, case, "an offering")
        _require(ctx.node is not None, case, "a node")
        assert ctx.offering is not None
        _require(bool(ctx.offering.sessions), case, "at least one session")
    if case == "waitlisted":
        _require(ctx.waitlist_position is not None and ctx.waitlist_position >= 1, case, "a position >= 1")
    if case == "rejected":
        _require(bool(ctx.rejection_reason), case, "a rejection reason")
    if case == "cancelled":
        _require(ctx.cancellation_cause in CANCELLATION_CAUSES, case, "a valid cancellation cause")


def _subject(case: str, ctx: MailContext, offering: dict[str, Any] | None) -> str:
    title = clean_line(ctx.offering.title, MAX_TITLE_SUBJECT) if ctx.offering else ""
    quoted = f"„{title}“" if title else ""
    match case:
        case "confirmation":
            subject = f"Anmeldebestätigung: {quoted}"
        case "waitlisted":
            subject = f"Warteliste (Platz {ctx.waitlist_position}): {quoted}"
        case "promoted":
            subject = f"Nachgerückt – Ihr Platz ist bestätigt: {quoted}"
        case "rejected":
            base = "Ihre Anmeldung konnte nicht angenommen werden"
            subject = f"{base}: {quoted}" if quoted else base
        case "cancelled":
            if ctx.cancellation_cause == "participant":
                subject = f"Stornierung bestätigt: {quoted}"
            elif ctx.cancellation_cause == "organiser":
                subject = f"Ihre Anmeldung wurde storniert: {quoted}"
            else:
                subject = f"Abgesagt – Ihre Anmeldung entfällt: {quoted}"
        case "offering_changed":
            subject = f"Geänderte Termine oder Orte: {quoted}"
        case "offering_cancelled":
            subject = f"Abgesagt: {quoted}"
        case _:  # reminder
            first = offering["first_date"] if offering else ""
            subject = f"Erinnerung: {quoted} beginnt am {first}"
    return clean_line(subject, MAX_SUBJECT)


def _post_process_text(text: str) -> str:
    # Trailing blanks go, except in the conventional signature delimiter "-- ".
    lines = [line if line == "-- " else line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    joined = "\n".join(lines)
    joined = re.sub(r"\n{3,}", "\n\n", joined).strip("\n")
    return joined + "\n"


def build_template_context(case: str, ctx: MailContext) -> dict[str, Any]:
    """The plain, pre-formatted values the templates see (exposed for tests and previews)."""
    _validate(case, ctx)
    offering = _offering_view(ctx.offering) if ctx.offering else None
    reason = rejection_text(ctx.rejection_reason)
    subject = _subject(case, ctx, offering)
    return {
        "case": case,
        "subject": subject,
        "salutation": salutation(ctx.recipient),
        "recipient_name": display_name(ctx.recipient.given_name, ctx.recipient.family_name),
        "offering": offering,
        "node": _node_view(ctx.node) if ctx.node else None,
        "contact": _contact_view(ctx),
        "registration_id": clean_line(ctx.registration_id, 100) if ctx.registration_id else "",
        "position": ctx.waitlist_position or 0,
        "reason_code": ctx.rejection_reason or "",
        "reason_explanation": reason.explanation,
        "reason_next_step": reason.next_step,
        "rejection_detail": clean_paragraph(ctx.rejection_detail, 1000) if ctx.rejection_detail else "",
        "cause": ctx.cancellation_cause or "",
        "note": clean_paragraph(ctx.note, 2000) if ctx.note else "",
        "previous_sessions": [_session_view(s) for s in _sorted_sessions(ctx.previous_sessions)],
        "cancel_url": clean_line(ctx.cancel_url, 500) if ctx.cancel_url else "",
        "personal_link": clean_line(ctx.personal_link, 500)
        if ctx.personal_link and case != "rejected"
        else "",
        "link_text": PERSONAL_LINK_TEXT.get(case, PERSONAL_LINK_DEFAULT),
        "network_name": clean_line(ctx.network_name, 150),
        "network_email": clean_line(ctx.network_email, 254),
        "privacy_url": clean_line(ctx.privacy_url, 500) if ctx.privacy_url else "",
        "has_calendar": ctx.has_calendar,
        "privacy_notice": ctx.privacy_notice,
        "alternatives": [_alternative_view(a) for a in ctx.alternatives[:3]],
    }


def render_mail(case: str, context: MailContext) -> RenderedMail:
    """Render the German mail for ``case`` (one of :data:`CASES`).

    Raises :class:`MailContextError` when the context lacks what the case needs and
    ``jinja2`` errors when a template uses a value that does not exist.
    """
    values = build_template_context(case, context)
    text = _post_process_text(_ENV.get_template(f"{case}.txt.j2").render(values))
    html = _ENV.get_template(f"{case}.html.j2").render(values).strip() + "\n"
    subject: str = values["subject"]
    if "\r" in subject or "\n" in subject:  # pragma: no cover - clean_line makes this impossible
        raise TemplateRuntimeError("line break in subject")
    return RenderedMail(subject=subject, text=text, html=html)
