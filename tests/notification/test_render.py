"""Rendering of the German participant mails, the .ics attachment and the MIME message (no I/O)."""

from __future__ import annotations

import email
import email.policy
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from email.message import EmailMessage
from typing import Any

import pytest
from icalendar import Calendar
from jinja2 import TemplateRuntimeError, UndefinedError

from services.notification import render as render_module
from services.notification.calendar import build_ics, session_uid
from services.notification.mail import (
    MailAddress,
    OutgoingMail,
    build_message,
    build_outgoing,
    normalise_message_id,
)
from services.notification.render import (
    CASES,
    REJECTION_TEXTS,
    MailContext,
    MailContextError,
    NodeInfo,
    OfferingInfo,
    Recipient,
    SessionInfo,
    clean_line,
    display_name,
    format_eur,
    format_session_time,
    render_mail,
    truncate,
)

REJECTION_REASONS = (
    "invalid_request",
    "offering_not_found",
    "offering_not_open",
    "registration_closed",
    "duplicate_registration",
    "company_limit_reached",
    "waitlist_full",
    "consent_missing",
)

NODE = NodeInfo(
    name="QTI-Knoten Erfurt",
    address="Juri-Gagarin-Ring 1, 99084 Erfurt",
    host="Bildungswerk Thüringen",
    email="erfurt@qti.example",
    phone="0361 123456",
)
# 08:00 UTC in March = 09:00 CET; 07:00 UTC in July = 09:00 CEST.
S1 = SessionInfo(
    "s-1", datetime(2027, 3, 9, 8, 0, tzinfo=UTC), datetime(2027, 3, 9, 15, 0, tzinfo=UTC), "Raum 2"
)
S2 = SessionInfo(
    "s-2", datetime(2027, 7, 6, 7, 0, tzinfo=UTC), datetime(2027, 7, 6, 14, 30, tzinfo=UTC), "Online", 8
)
OFFERING = OfferingInfo(
    offering_id="o-1",
    title="Hochvolt-Sicherheit für Elektrofahrzeuge",
    kind="certificate_course",
    description="Grundlagen der Arbeit an HV-Systemen.",
    fee_eur=0,
    sessions=(S2, S1),
)
ANNA = Recipient("Anna", "Schmidt", "anna@example.de", "female")


def context(**overrides: object) -> MailContext:
    base = MailContext(
        recipient=ANNA,
        offering=OFFERING,
        node=NODE,
        registration_id="r-42",
        waitlist_position=3,
        rejection_reason="waitlist_full",
        cancellation_cause="participant",
    )
    return replace(base, **overrides)  # type: ignore[arg-type]


KEY_PHRASES = {
    "confirmation": ["Anmeldung", "bestätigen"],
    "waitlisted": ["Warteliste", "Platz 3"],
    "promoted": ["nachgerückt", "verbindlich bestätigt"],
    "rejected": ["nicht annehmen", "Warum?", "Wie geht es weiter?"],
    "cancelled": ["Stornierung"],
    "offering_changed": ["geändert", "neuen"],
    "offering_cancelled": ["abgesagt"],
    "reminder": ["erinnern", "beginnt"],
}


def assert_clean(*parts: str) -> None:
    for part in parts:
        assert "None" not in part
        for marker in ("{{", "}}", "{%", "%}", "{#"):
            assert marker not in part


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_case_renders_in_german(case: str) -> None:
    mail = render_mail(case, context())
    assert_clean(mail.subject, mail.text, mail.html)
    for phrase in KEY_PHRASES[case]:
        assert phrase in mail.text, phrase
    assert "Guten Tag Frau Schmidt," in mail.text
    assert "Hochvolt-Sicherheit für Elektrofahrzeuge" in mail.subject
    # Node, contact and privacy footer everywhere.
    for part in (mail.text, mail.html):
        assert "QTI-Knoten Erfurt" in part
        assert "erfurt@qti.example" in part
        assert "Datenschutzhinweis" in part
    if case != "rejected":
        for part in (mail.text, mail.html):
            assert "Juri-Gagarin-Ring 1, 99084 Erfurt" in part
            assert "Dienstag, 9. März 2027, 09:00–16:00 Uhr" in part
            assert "Dienstag, 6. Juli 2027, 09:00–16:30 Uhr" in part
            assert "kostenfrei" in part
            assert "Zertifikatskurs" in part
        # Sessions are listed in chronological order.
        assert mail.text.index("9. März 2027") < mail.text.index("6. Juli 2027")
    assert mail.html.lstrip().startswith("<!DOCTYPE html>")
    assert '<html lang="de">' in mail.html
    assert "\r" not in mail.subject and "\n" not in mail.subject


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_art_14_notice_says_who_what_why_how_long_and_the_rights(case: str) -> None:
    """The first mail to an address (someone else may have registered the person): DSGVO Art. 14."""
    assert "Art. 14" not in render_mail(case, context()).text
    mail = render_mail(case, context(privacy_notice=True))
    assert_clean(mail.text, mail.html)
    assert (
        '<h2 style="font-size:16px;margin:8px 0;">Informationen zum Datenschutz (Art. 14 DSGVO)</h2>'
        in mail.html
    )
    for part in (mail.text, mail.html):
        assert "Informationen zum Datenschutz (Art. 14 DSGVO)" in part
        for point in ("Verantwortlich:", "Welche Daten:", "Wozu:", "Wie lange:", "Ihre Rechte:"):
            assert point in part, point
        assert "Ansprechperson Ihres Unternehmens" in part and "kontakt@qti-net.example" in part
        assert "Landesbeauftragten für den Datenschutz" in part
    # The mail's own content is all still there, before the notice.
    assert mail.text.index(KEY_PHRASES[case][0]) < mail.text.index("Art. 14 DSGVO")


@pytest.mark.parametrize("reason", REJECTION_REASONS)
def test_each_rejection_reason_is_explained(reason: str) -> None:
    mail = render_mail("rejected", context(rejection_reason=reason))
    text = REJECTION_TEXTS[reason]
    assert text.explanation in mail.text
    assert text.next_step in mail.text
    assert_clean(mail.subject, mail.text, mail.html)


def test_rejection_explanations_are_distinct_and_complete() -> None:
    assert set(REJECTION_TEXTS) == set(REJECTION_REASONS)
    assert len({t.explanation for t in REJECTION_TEXTS.values()}) == len(REJECTION_REASONS)


def test_rejection_without_known_offering() -> None:
    mail = render_mail(
        "rejected",
        MailContext(
            recipient=ANNA,
            rejection_reason="offering_not_found",
            rejection_detail="Das Angebot „xyz“ existiert nicht.",
        ),
    )
    assert mail.subject == "Ihre Anmeldung konnte nicht angenommen werden"
    assert "Hinweis: Das Angebot „xyz“ existiert nicht." in mail.text
    assert "QTI-Netzwerk Thüringen" in mail.text  # fallback contact
    assert_clean(mail.subject, mail.text, mail.html)


def test_unknown_rejection_reason_gets_a_generic_text() -> None:
    mail = render_mail("rejected", context(rejection_reason="something_new"))
    assert "wenden Sie sich an uns" in mail.text


def test_registration_closed_mentions_deadline() -> None:
    offering = replace(OFFERING, registration_deadline=datetime(2027, 3, 1, 22, 59, tzinfo=UTC))
    mail = render_mail("rejected", context(rejection_reason="registration_closed", offering=offering))
    assert "Anmeldeschluss war: Montag, 1. März 2027, 23:59 Uhr" in mail.text


def test_cancellation_causes_are_distinguished() -> None:
    by_participant = render_mail("cancelled", context(cancellation_cause="participant"))
    by_organiser = render_mail("cancelled", context(cancellation_cause="organiser", note="Zu wenige Plätze"))
    by_offering = render_mail("cancelled", context(cancellation_cause="offering_cancelled"))
    assert by_participant.subject.startswith("Stornierung bestätigt")
    assert "wir bestätigen Ihnen hiermit die Stornierung" in by_participant.text
    assert by_organiser.subject.startswith("Ihre Anmeldung wurde storniert")
    assert "stornieren mussten" in by_organiser.text
    assert "Grund: Zu wenige Plätze" in by_organiser.text
    assert "abgesagt" in by_offering.text
    assert len({by_participant.text, by_organiser.text, by_offering.text}) == 3


def test_offering_changed_lists_previous_dates() -> None:
    mail = render_mail(
        "offering_changed", context(previous_sessions=(S1,), offering=replace(OFFERING, sessions=(S2,)))
    )
    assert "Bisherige Planung (nicht mehr gültig)" in mail.text
    assert "<s>Dienstag, 9. März 2027, 09:00–16:00 Uhr" in mail.html


def test_fee_and_units() -> None:
    mail = render_mail("confirmation", context(offering=replace(OFFERING, fee_eur=Decimal("1250.5"))))
    assert "Teilnahmeentgelt: 1.250,50\u00a0€" in mail.text
    assert "8 Unterrichtseinheiten" in mail.text


def test_missing_case_data_fails_loudly() -> None:
    with pytest.raises(MailContextError):
        render_mail("waitlisted", context(waitlist_position=None))
    with pytest.raises(MailContextError):
        render_mail("confirmation", context(offering=None))
    with pytest.raises(MailContextError):
        render_mail("cancelled", context(cancellation_cause="bogus"))
    with pytest.raises(MailContextError):
        render_mail("nonexistent", context())


def test_templates_are_strict_and_refuse_none() -> None:
    env = render_module._ENV
    with pytest.raises(UndefinedError):
        env.from_string("{{ missing }}").render()
    with pytest.raises(TemplateRuntimeError):
        env.from_string("{{ value }}").render(value=None)


def test_html_is_autoescaped() -> None:
    evil = Recipient('<script>alert("x")</script>', "O'Brien & <b>Söhne</b>", "x@example.de")
    offering = replace(OFFERING, title="<img src=x onerror=alert(1)> Kurs")
    mail = render_mail("confirmation", context(recipient=evil, offering=offering))
    assert "<script>" not in mail.html
    assert "<img" not in mail.html
    assert "&lt;script&gt;" in mail.html
    assert "O&#39;Brien &amp; &lt;b&gt;Söhne&lt;/b&gt;" in mail.html
    assert "<script>" in mail.text  # plain text is not HTML: shown literally


# -------------------------------------------------------------------------- odd names / injection

ODD_NAMES = [
    ("Jürgen", "Müller-Lüdenscheidt"),
    ('Anna "Nanni"', "O'Neill"),
    ("Zoë 🚗⚡", "Weiß 👩‍🔧"),
    ("A" * 500, "B" * 500),
    ("Evil\r\nBcc: x@y", "Name\nSubject: hacked"),
    ("\u2028Line\u2029Sep\x85", "\x00Null\x1b[31m"),
]


@pytest.mark.parametrize(("given", "family"), ODD_NAMES)
@pytest.mark.parametrize("case", ["confirmation", "rejected", "waitlisted"])
def test_odd_names_render_safely(given: str, family: str, case: str) -> None:
    recipient = Recipient(given, family, "odd@example.de", "unspecified")
    offering = replace(OFFERING, title=f"{given} – {family}")
    mail = render_mail(case, context(recipient=recipient, offering=offering))
    assert_clean(mail.subject, mail.text, mail.html)
    assert "\r" not in mail.subject and "\n" not in mail.subject
    assert len(mail.subject) <= 200
    for line in mail.text.splitlines():
        assert not line.startswith("Bcc:")
        assert not line.startswith("Subject:")
    for ch in "\x00\x1b\x85\u2028\u2029\r":
        assert ch not in mail.text
    assert len(display_name(given, family)) <= 100


def test_long_names_are_truncated_with_ellipsis() -> None:
    name = display_name("A" * 500, "B" * 500)
    assert name.endswith("…")
    assert len(name) <= 100
    assert truncate("Wort " * 100, 30).endswith("…")
    assert len(truncate("Wort " * 100, 30)) <= 30
    # Never cut an emoji ZWJ sequence in a way that leaves a dangling joiner.
    assert not truncate("x" * 8 + "👩\u200d🔧" * 5, 11).rstrip("…").endswith("\u200d")


def test_umlauts_and_emoji_survive() -> None:
    recipient = Recipient("Zoë 🚗", "Weiß", "zoe@example.de", "diverse")
    mail = render_mail("confirmation", context(recipient=recipient))
    assert "Guten Tag Zoë 🚗 Weiß," in mail.text
    assert "Zoë 🚗 Weiß" in mail.html


def test_clean_line_removes_every_line_break() -> None:
    assert clean_line("Evil\r\nBcc: x@y") == "Evil Bcc: x@y"
    assert clean_line("a\u2028b\u2029c\x85d\x0be\x0cf") == "a b c d e f"
    assert clean_line(None) == ""


def test_message_headers_cannot_be_injected() -> None:
    recipient = Recipient("Evil\r\nBcc: x@y", "Doe\nX-Injected: 1", "evil@example.de")
    offering = replace(OFFERING, title="Kurs\r\nBcc: victim@example.com")
    mail = render_mail("confirmation", context(recipient=recipient, offering=offering))
    msg = build_message(
        rendered=mail,
        sender=MailAddress("noreply@qti.example", "QTI-Knoten Erfurt\r\nBcc: a@b"),
        recipient=MailAddress(recipient.email, display_name(recipient.given_name, recipient.family_name)),
        message_id="<evt-1.r-42@qti-net>",
    )
    raw = msg.as_bytes()
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["Bcc"] is None
    assert parsed["X-Injected"] is None
    assert b"\nBcc:" not in raw
    assert parsed["To"].addresses[0].addr_spec == "evil@example.de"
    assert "\n" not in str(parsed["Subject"])


# ------------------------------------------------------------------------------------ formatting


def test_german_date_formatting() -> None:
    assert format_session_time(S1.starts_at, S1.ends_at) == "Dienstag, 9. März 2027, 09:00–16:00 Uhr"
    overnight = format_session_time(
        datetime(2027, 12, 31, 17, tzinfo=UTC), datetime(2028, 1, 1, 9, tzinfo=UTC)
    )
    assert overnight == "Freitag, 31. Dezember 2027, 18:00 Uhr bis Samstag, 1. Januar 2028, 10:00 Uhr"


@pytest.mark.parametrize(
    ("amount", "expected"),
    [
        (0, "kostenfrei"),
        (Decimal("0.00"), "kostenfrei"),
        (None, "kostenfrei"),
        (49, "49,00\u00a0€"),
        (1234567.891, "1.234.567,89\u00a0€"),
        ("99.5", "99,50\u00a0€"),
    ],
)
def test_format_eur(amount: Decimal | int | float | str | None, expected: str) -> None:
    assert format_eur(amount) == expected


# ------------------------------------------------------------------------------------------ .ics


def parse_ics(data: bytes) -> Calendar:
    return Calendar.from_ical(data)


def test_ics_request() -> None:
    data = build_ics(
        offering_id="o-1",
        title=OFFERING.title,
        sessions=OFFERING.sessions,
        sequence=2,
        organizer_email="erfurt@qti.example",
        organizer_name='QTI-Knoten "Erfurt"',
        description=OFFERING.description,
        node_name=NODE.name,
        node_address=NODE.address,
        attendee_email="anna@example.de",
        attendee_name="Anna Schmidt",
    )
    cal = parse_ics(data)
    assert str(cal["METHOD"]) == "REQUEST"
    events = cal.walk("VEVENT")
    assert len(events) == 2
    timezones = cal.walk("VTIMEZONE")
    assert [str(tz["TZID"]) for tz in timezones] == ["Europe/Berlin"]
    uids = [str(e["UID"]) for e in events]
    assert uids == [session_uid("s-1"), session_uid("s-2")] == ["s-1@qti-net", "s-2@qti-net"]
    first = events[0]
    assert first["DTSTART"].params["TZID"] == "Europe/Berlin"
    assert first["DTEND"].params["TZID"] == "Europe/Berlin"
    assert first.decoded("DTSTART") == S1.starts_at
    assert first.decoded("DTSTART").replace(tzinfo=None) == datetime(2027, 3, 9, 9, 0)
    assert events[1].decoded("DTSTART").replace(tzinfo=None) == datetime(2027, 7, 6, 9, 0)  # summer time
    assert first.decoded("SEQUENCE") == 2
    assert str(first["STATUS"]) == "CONFIRMED"
    assert "Hochvolt-Sicherheit" in str(first["SUMMARY"])
    assert str(first["LOCATION"]) == "Raum 2"
    assert "QTI-Knoten Erfurt" in str(first["DESCRIPTION"])
    assert str(first["ORGANIZER"]) == "mailto:erfurt@qti.example"


def test_ics_update_and_cancel_keep_uids() -> None:
    common = {
        "offering_id": "o-1",
        "title": OFFERING.title,
        "sessions": OFFERING.sessions,
        "organizer_email": "erfurt@qti.example",
    }
    v1 = parse_ics(build_ics(sequence=1, **common))  # type: ignore[arg-type]
    v2 = parse_ics(build_ics(sequence=2, **common))  # type: ignore[arg-type]
    cancel = parse_ics(build_ics(sequence=3, method="CANCEL", **common))  # type: ignore[arg-type]
    uids = [[str(e["UID"]) for e in c.walk("VEVENT")] for c in (v1, v2, cancel)]
    assert uids[0] == uids[1] == uids[2]
    assert [c.walk("VEVENT")[0].decoded("SEQUENCE") for c in (v1, v2, cancel)] == [1, 2, 3]
    assert str(cancel["METHOD"]) == "CANCEL"
    assert {str(e["STATUS"]) for e in cancel.walk("VEVENT")} == {"CANCELLED"}


def test_ics_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        build_ics(offering_id="o", title="t", sessions=[], sequence=0, organizer_email="a@b.de")
    with pytest.raises(ValueError):
        build_ics(offering_id="o", title="t", sessions=[S1], sequence=-1, organizer_email="a@b.de")


# -------------------------------------------------------------------------------------- message


def test_build_message_structure() -> None:
    mail = render_mail("confirmation", context())
    ics = build_ics(
        offering_id="o-1",
        title=OFFERING.title,
        sessions=OFFERING.sessions,
        sequence=0,
        organizer_email="erfurt@qti.example",
    )
    msg = build_message(
        rendered=mail,
        sender=MailAddress("noreply@qti.example", "QTI-Knoten Erfurt"),
        recipient=MailAddress("anna@example.de", 'Jürgen "Jo" Müller'),
        reply_to=MailAddress("erfurt@qti.example"),
        message_id="evt-1.r-42@qti-net",
        ics=ics,
        date=datetime(2027, 1, 1, 12, tzinfo=UTC),
    )
    assert msg["Message-ID"] == "<evt-1.r-42@qti-net>"
    parsed = email.message_from_bytes(msg.as_bytes(), policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    assert parsed.get_content_type() == "multipart/mixed"
    assert str(parsed["Subject"]) == mail.subject
    assert parsed["To"].addresses[0].display_name == 'Jürgen "Jo" Müller'
    assert parsed["Message-ID"] == "<evt-1.r-42@qti-net>"
    # The raw header is RFC 2047-encoded ASCII.
    raw_headers = msg.as_bytes().split(b"\n\n", 1)[0]
    assert raw_headers.isascii()
    types = [p.get_content_type() for p in parsed.walk()]
    assert types == ["multipart/mixed", "multipart/alternative", "text/plain", "text/html", "text/calendar"]
    calendar_part = next(p for p in parsed.walk() if p.get_content_type() == "text/calendar")
    assert calendar_part.get_param("method") == "REQUEST"
    assert calendar_part.get_filename() == "termine.ics"
    assert calendar_part.get_payload(decode=True) == ics
    body = parsed.get_body(preferencelist=("plain",))
    assert body is not None and "Guten Tag Frau Schmidt," in body.get_content()


@pytest.mark.parametrize("bad", ["", "no-at-sign", "a@b", "x@y.de\r\nBcc: z@w.de", "a b@c.de", "<a@b.de>"])
def test_invalid_recipient_is_permanent(bad: str) -> None:
    from services.notification.mail import PermanentMailError

    with pytest.raises(PermanentMailError):
        build_message(
            rendered=render_mail("confirmation", context()),
            sender=MailAddress("noreply@qti.example"),
            recipient=MailAddress(bad),
            message_id="<m@qti-net>",
        )


@pytest.mark.parametrize("bad", ["", "a b@c", "<x@y>\r\nBcc: z", "no-domain"])
def test_invalid_message_id_rejected(bad: str) -> None:
    with pytest.raises(ValueError):
        normalise_message_id(bad)


# ------------------------------------------------------------------------- fast serialisation


@pytest.mark.parametrize(
    ("given", "family"),
    [
        ("Anna", "Schmidt"),
        ('Jürgen "Jo"', "Müller"),
        ("Zoë 🚗", "Weiß" * 30),
        ("Evil\r\nBcc: x@y", "Doe\nX-Injected: 1"),
        ("a,b", "c;d\\e"),
        ("=?utf-8?q?x?=", "Ünal"),
    ],
)
@pytest.mark.parametrize("with_ics", [True, False])
def test_build_outgoing_matches_build_message(given: str, family: str, with_ics: bool) -> None:
    recipient = Recipient(given, family, "anna@example.de")
    offering = replace(OFFERING, title="Kurs\r\nBcc: victim@example.com " + "Ä" * 150)
    mail = render_mail("confirmation", context(recipient=recipient, offering=offering))
    ics = build_ics(
        offering_id="o-1",
        title=OFFERING.title,
        sessions=OFFERING.sessions,
        sequence=0,
        organizer_email="e@x.de",
    )
    kwargs: dict[str, Any] = {
        "rendered": mail,
        "sender": MailAddress("noreply@qti.example", "QTI-Netzwerk Thüringen"),
        "recipient": MailAddress("anna@example.de", display_name(given, family)),
        "message_id": "evt-1.r-42@qti-net",
        "ics": ics if with_ics else None,
        "ics_method": "CANCEL",
        "date": datetime(2027, 1, 1, 12, tzinfo=UTC),
    }
    reference = email.message_from_bytes(build_message(**kwargs).as_bytes(), policy=email.policy.default)
    outgoing = build_outgoing(**kwargs)
    assert isinstance(outgoing, OutgoingMail)
    assert (outgoing.sender, outgoing.recipient) == ("noreply@qti.example", "anna@example.de")
    assert outgoing.data.isascii() and b"\r" not in outgoing.data
    assert b"\nBcc:" not in outgoing.data and b"\nX-Injected:" not in outgoing.data
    assert all(len(line) <= 998 for line in outgoing.data.split(b"\n"))
    parsed = email.message_from_bytes(outgoing.data, policy=email.policy.default)
    assert parsed["Bcc"] is None and parsed["X-Injected"] is None
    for name in ("From", "Subject", "Date", "Message-ID", "Auto-Submitted", "MIME-Version"):
        assert parsed.get_all(name) == [str(reference[name])], name
    (to,) = parsed["To"].addresses
    assert to.addr_spec == "anna@example.de"
    # Literal text, never decoded as an encoded-word (the EmailMessage path decodes "=?utf-8?q?x?=").
    # (Python's parser keeps the folding space between two encoded-words of a phrase; so does the
    # reference path, hence the comparison without spaces.)
    assert to.display_name.replace(" ", "") == clean_line(display_name(given, family), 100).replace(" ", "")
    if "=?" not in given:
        assert parsed["To"].addresses == reference["To"].addresses
    assert parsed["Content-Language"] == "de"
    assert [p.get_content_type() for p in parsed.walk()] == [p.get_content_type() for p in reference.walk()]
    for ours, theirs in zip(parsed.walk(), reference.walk(), strict=True):
        assert not ours.defects
        if not ours.is_multipart():
            assert ours.get_content() == theirs.get_content()
            assert ours.get_params() == theirs.get_params()
            assert ours.get_filename() == theirs.get_filename()


def test_build_outgoing_non_ascii_address_falls_back_to_email_message() -> None:
    message = build_outgoing(
        rendered=render_mail("confirmation", context()),
        sender=MailAddress("noreply@qti.example"),
        recipient=MailAddress("jörg@example.de", "Jörg"),
        message_id="<m@qti-net>",
    )
    assert isinstance(message, EmailMessage)


@pytest.mark.parametrize("bad", ["", "a@b", "x@y.de\r\nBcc: z@w.de", "<a@b.de>"])
def test_build_outgoing_rejects_what_build_message_rejects(bad: str) -> None:
    from services.notification.mail import PermanentMailError

    with pytest.raises(PermanentMailError):
        build_outgoing(
            rendered=render_mail("confirmation", context()),
            sender=MailAddress("noreply@qti.example"),
            recipient=MailAddress(bad),
            message_id="<m@qti-net>",
        )
    with pytest.raises(ValueError):
        build_outgoing(
            rendered=render_mail("confirmation", context()),
            sender=MailAddress("noreply@qti.example"),
            recipient=MailAddress("a@b.de"),
            message_id="<x@y>\r\nBcc: z",
        )
