"""Every mail about a registration carries the participant's personal link, and the link works.

Registration and notification run together (real broker, database and SMTP server): the token in the
confirmation mail's link is the one registration accepts, although it travelled in no event.
"""

from __future__ import annotations

import dataclasses
import re

import pytest
from notification.test_render import context as render_base
from notification.test_service import (
    NODE,
    Harness,
    html_of,
    one,
    service,
    smtp,
    text_of,
    wait_for_mails,
)
from registration_kit import Harness as Registration
from registration_kit import harness, offering_data, request_data

from qti_runtime import links
from services.notification.render import CASES, MailContext, render_mail

__all__ = ["harness", "service", "smtp"]  # fixtures

LINK = re.compile(r"(http://127\.0\.0\.1:8000/meine-anmeldung/([A-Za-z0-9_-]{43}))")


async def test_confirmation_mail_link_opens_the_registration(harness: Registration, service: Harness) -> None:
    await service.publish("catalogue.node.published", {**NODE, "node_id": "qti-soemmerda"})
    offering = offering_data(capacity=1, waitlist_limit=1)
    await harness.publish_offering(offering)
    await harness.wait_offering(offering["offering_id"])
    oid = offering["offering_id"]
    first = await harness.client.post("/registrations", json=request_data(oid, 1))
    second = await harness.client.post("/registrations", json=request_data(oid, 2))
    assert first.status_code == second.status_code == 202
    await wait_for_mails(service, 2)

    confirmation = one(service, "anna.1@example.de", "Anmeldebestätigung")
    text, html = text_of(confirmation), html_of(confirmation)
    [(link, token)] = LINK.findall(text)
    assert f"Ihre Anmeldung ansehen oder absagen: {link}" in text
    assert f'href="{link}"' in html
    assert token == first.json()["personal_token"]
    assert link == links.personal_link(service.settings.portal_url, token)
    opened = await harness.client.get("/registrations/by-token", headers={"X-Personal-Token": token})
    assert opened.status_code == 200 and opened.json()["participant"]["email"] == "anna.1@example.de"

    waitlisted = one(service, "anna.2@example.de", "Warteliste")
    [(_, waiting_token)] = LINK.findall(text_of(waitlisted))
    assert waiting_token == second.json()["personal_token"] and waiting_token != token

    # cancelling through the link: the cancellation mail links to the page, the promotion mail too
    cancelled = await harness.client.post(
        "/registrations/by-token/cancel", headers={"X-Personal-Token": token}
    )
    assert cancelled.status_code == 200
    await wait_for_mails(service, 4)
    cancellation = [m for m in service.smtp.to("anna.1@example.de") if m is not confirmation]
    assert len(cancellation) == 1
    assert f"Ihre Anmeldung ansehen: {link}" in text_of(cancellation[0])
    promoted = [m for m in service.smtp.to("anna.2@example.de") if m is not waitlisted]
    assert (
        len(promoted) == 1 and waiting_token in text_of(promoted[0]) and waiting_token in html_of(promoted[0])
    )


@pytest.mark.parametrize("case", sorted(CASES - {"rejected"}))
def test_every_registration_mail_shows_the_personal_link(case: str) -> None:
    link = "https://portal.example/meine-anmeldung/" + "A" * 43
    ctx = dataclasses.replace(render_base(), personal_link=link)
    mail = render_mail(case, ctx)
    sentence = (
        "Ihre Anmeldung ansehen:"
        if case in {"cancelled", "offering_cancelled"}
        else "Ihre Anmeldung ansehen oder absagen:"
    )
    assert f"{sentence} {link}" in mail.text
    assert f'<a href="{link}">{link}</a>' in mail.html


def test_a_rejection_has_no_personal_link() -> None:
    ctx: MailContext = dataclasses.replace(
        render_base(), personal_link="https://portal.example/meine-anmeldung/x"
    )
    mail = render_mail("rejected", ctx)
    assert "meine-anmeldung" not in mail.text + mail.html
