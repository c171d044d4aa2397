"""The certificate mail (with its PDF) and the feedback invitation: rendering, pure apart from WeasyPrint.

The PDF is rendered by WeasyPrint from `templates/certificate_pdf.html.j2` as a tagged PDF (PDF/UA-1).
Its fonts are DejaVu Sans from Debian's `fonts-dejavu-core` (installed by `make pdf-libs`), named by file
path in `@font-face`, so the PDF looks the same on every machine that ran the project's set-up, whatever
other fonts it has. The document's dates are the certificate's issue time, so a re-send renders the same
certificate again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Final

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from weasyprint import HTML

from qti_contracts import KIND_LABELS
from services.notification.mail import MailAddress, OutgoingMail, build_outgoing
from services.notification.render import (
    TEMPLATE_DIR,
    MailContext,
    NodeInfo,
    Recipient,
    RenderedMail,
    _contact_view,
    _node_view,
    _post_process_text,
    clean_line,
    display_name,
    format_date,
    format_session_time,
    salutation,
)

FONT_DIR: Final = Path("/usr/share/fonts/truetype/dejavu")
FONT_REGULAR: Final = FONT_DIR / "DejaVuSans.ttf"
FONT_BOLD: Final = FONT_DIR / "DejaVuSans-Bold.ttf"
# The contract's German labels (the portal shows the same), e.g. `Zertifikatslehrgang`.
_KINDS: Final = {kind.value: label for kind, label in KIND_LABELS.items()}
PDF_FILENAME: Final = "Teilnahmebescheinigung.pdf"
EXTRA_TEMPLATES: Final = frozenset({"certificate", "feedback_invitation"})

_PDF_ENV: Final = Environment(
    loader=FileSystemLoader(TEMPLATE_DIR),
    autoescape=select_autoescape(enabled_extensions=("html.j2",), default=True),
    undefined=StrictUndefined,
    auto_reload=False,
)


class FontsMissing(RuntimeError):
    """DejaVu Sans is not installed (run `make pdf-libs`)."""


@dataclass(frozen=True, slots=True)
class MailParts:
    recipient: Recipient
    node: NodeInfo | None
    network_name: str
    network_email: str
    privacy_notice: bool


def _pdf_date(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


def render_pdf(snapshot: dict[str, Any], name: str, verify_url: str) -> bytes:
    """The certificate as PDF/UA-1; the same inputs give the same bytes."""
    if not (FONT_REGULAR.is_file() and FONT_BOLD.is_file()):
        raise FontsMissing(f"{FONT_REGULAR} fehlt: `make pdf-libs` installiert fonts-dejavu-core")
    issued_at = datetime.fromisoformat(snapshot["issued_at"])
    sessions = [
        {
            "when": format_session_time(
                datetime.fromisoformat(s["starts_at"]), datetime.fromisoformat(s["ends_at"])
            ),
            "units": int(s.get("teaching_units") or 0),
        }
        for s in snapshot["sessions"]
    ]
    html = _PDF_ENV.get_template("certificate_pdf.html.j2").render(
        cert={
            key: clean_line(value, 300) if isinstance(value, str) else value
            for key, value in snapshot.items()
        },
        name=clean_line(name, 120) or "Teilnehmerin/Teilnehmer",
        kind=_KINDS.get(str(snapshot.get("kind", "")), "Veranstaltung"),
        sessions=sessions,
        issued_on=format_date(issued_at),
        verify_url=verify_url,
        font_regular=FONT_REGULAR.as_uri(),
        font_bold=FONT_BOLD.as_uri(),
    )
    document = HTML(string=html, base_url=str(TEMPLATE_DIR)).render()
    document.metadata.created = _pdf_date(issued_at)
    document.metadata.modified = _pdf_date(issued_at)
    pdf: bytes = document.write_pdf(pdf_variant="pdf/ua-1")
    return pdf


def _layout_values(template: str, subject: str, parts: MailParts) -> dict[str, Any]:
    """The values the shared mail layout needs (no offering block, no personal link)."""
    ctx = MailContext(
        recipient=parts.recipient,
        node=parts.node,
        network_name=parts.network_name,
        network_email=parts.network_email,
    )
    return {
        "case": template,
        "subject": subject,
        "salutation": salutation(parts.recipient),
        "offering": None,
        "node": _node_view(parts.node) if parts.node else None,
        "contact": _contact_view(ctx),
        "registration_id": "",
        "personal_link": "",
        "link_text": "",
        "network_name": clean_line(parts.network_name, 150),
        "network_email": clean_line(parts.network_email, 254),
        "privacy_url": "",
        "privacy_notice": parts.privacy_notice,
    }


def _render(template: str, subject: str, parts: MailParts, extra: dict[str, Any]) -> RenderedMail:
    from services.notification.render import _ENV  # the mail templates' environment

    values = {**_layout_values(template, subject, parts), **extra}
    text = _post_process_text(_ENV.get_template(f"{template}.txt.j2").render(values))
    html = _ENV.get_template(f"{template}.html.j2").render(values).strip() + "\n"
    return RenderedMail(subject=subject, text=text, html=html)


def certificate_mail(
    snapshot: dict[str, Any], parts: MailParts, verify_url: str, *, resent: bool
) -> tuple[RenderedMail, bytes]:
    """Subject, text, HTML and the PDF of a certificate mail."""
    title = clean_line(snapshot["title"], 120)
    mail = _render(
        "certificate",
        clean_line(f"Ihre Teilnahmebescheinigung: „{title}“", 200),
        parts,
        {
            "cert": {"title": clean_line(snapshot["title"], 300), "code": snapshot["code"]},
            "verify_url": verify_url,
            "resent": resent,
        },
    )
    name = display_name(parts.recipient.given_name, parts.recipient.family_name)
    return mail, render_pdf(snapshot, name, verify_url)


def feedback_mail(title: str, parts: MailParts, feedback_link: str) -> RenderedMail:
    short = clean_line(title, 120)
    return _render(
        "feedback_invitation",
        clean_line(f"Ihre Meinung zu „{short}“", 200),
        parts,
        {"title": clean_line(title, 300), "feedback_link": feedback_link},
    )


def with_pdf(
    rendered: RenderedMail, sender: MailAddress, recipient: MailAddress, message_id: str, pdf: bytes | None
) -> OutgoingMail | EmailMessage:
    """The message (the sender's one mail path), with the certificate attached when given."""
    return build_outgoing(
        rendered=rendered,
        sender=sender,
        recipient=recipient,
        message_id=message_id,
        pdf=(PDF_FILENAME, pdf) if pdf is not None else None,
    )
