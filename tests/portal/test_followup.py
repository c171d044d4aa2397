"""After the course, in real Chromium against the whole system: attendance recorded by staff → the
certificate mail in the sink (its PDF's text checked) → `/bescheinigung/{code}` → staff revoke → the
page says so; the feedback link from the mail → questionnaire (errors, then an answer) → thanks → the
spent link is refused. axe-core on every page."""

from __future__ import annotations

import email
import email.policy
import io
import re
import uuid
from collections.abc import AsyncIterator
from email.message import EmailMessage
from typing import Any

import httpx
import pypdf
import pytest
from e2e.system_kit import offering_body
from playwright.async_api import Browser, expect
from portal.browser_kit import PHONE, assert_accessible, browser_context, chromium
from portal.portal_kit import STAFF, PortalSystem

from support import eventually

CODE = re.compile(r"Prüfcode der Bescheinigung: ([A-Z2-7]{4}(?:-[A-Z2-7]{4}){3})")
FEEDBACK_LINK = re.compile(r"https?://[^\s\"<>]+/rueckmeldung/[A-Za-z0-9_-]{43}")


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as started:
        yield started


async def completed_participant(portal: PortalSystem, title: str, email_: str) -> str:
    """A certificate course, one confirmed participant who attended every session; returns the offering."""
    urls = portal.system.urls
    async with httpx.AsyncClient(headers=STAFF, timeout=30) as client:
        body = {**offering_body(5, title=title), "kind": "certificate_course"}
        offering_id = (await client.post(f"{urls['catalogue']}/offerings", json=body)).json()["offering_id"]
        assert (await client.post(f"{urls['catalogue']}/offerings/{offering_id}/publish")).status_code == 200
        offering = (await client.get(f"{urls['catalogue']}/offerings/{offering_id}")).json()
        request = {
            "offering_id": offering_id,
            "participant": {"given_name": "Clara", "family_name": "Übel-Nowak", "email": email_},
            "company": {"name": "Muster Zulieferer GmbH", "postal_code": "99867", "county": "Gotha"},
            "privacy_consent": True,
        }

        sent = await client.post(f"{urls['registration']}/registrations", json=request)
        assert sent.status_code == 202, sent.text
        status_url = f"{urls['registration']}{sent.json()['status_url']}"

        async def registered() -> str | None:
            status = (await client.get(status_url)).json()
            return str(status["registration_id"]) if status.get("status") == "confirmed" else None

        registration_id = await eventually(registered, timeout=60, interval=0.5)
        for session in offering["sessions"]:
            url = (
                f"{urls['registration']}/offerings/{offering_id}/sessions/{session['session_id']}/attendance"
            )
            records = {"records": [{"registration_id": registration_id, "attended": True}]}
            assert (await client.put(url, json=records)).status_code == 200
    return str(offering_id)


async def mail_to(portal: PortalSystem, recipient: str, subject_start: str) -> EmailMessage:
    async def found() -> dict[str, Any] | None:
        mails = [
            m for m in await portal.mails() if recipient in m["to"] and m["subject"].startswith(subject_start)
        ]
        return mails[-1] if mails else None

    listed = await eventually(found, timeout=90)
    message = email.message_from_string(await portal.mail_text(listed["name"]), policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def plain(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


def pdf_text(message: EmailMessage) -> str:
    [part] = [p for p in message.walk() if p.get_content_type() == "application/pdf"]
    payload = part.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return "\n".join(page.extract_text() for page in pypdf.PdfReader(io.BytesIO(payload)).pages)


async def test_certificate_and_feedback_after_the_course(
    browser: Browser, portal_system: PortalSystem
) -> None:
    title = f"Hochvolt Zertifikat {uuid.uuid4().hex[:8]}"
    address = f"clara.{uuid.uuid4().hex[:6]}@example.de"
    await completed_participant(portal_system, title, address)

    certificate = await mail_to(portal_system, address, "Ihre Teilnahmebescheinigung")
    [code] = CODE.findall(plain(certificate))
    text = pdf_text(certificate)
    for expected in ("Teilnahmebescheinigung", "Clara Übel-Nowak", title, "(Zertifikatslehrgang)",
                     f"Prüfcode: {code}", f"{portal_system.url}/bescheinigung/{code}"):  # fmt: skip
        assert expected in text, expected

    await check_certificate_pages(browser, portal_system, code, title, address)
    invitation = await mail_to(portal_system, address, "Ihre Meinung zu")
    [link] = FEEDBACK_LINK.findall(plain(invitation))
    assert link.startswith(portal_system.url)
    await answer_once(browser, link, title)


async def check_certificate_pages(
    browser: Browser, portal_system: PortalSystem, code: str, title: str, address: str
) -> None:
    async with browser_context(browser) as context:
        page = await context.new_page()
        await page.goto(f"{portal_system.url}/bescheinigung/{code}")
        await expect(page.get_by_text("Diese Bescheinigung ist gültig.")).to_be_visible()
        await expect(page.get_by_text(title, exact=False)).to_be_visible()
        assert "Clara" not in await page.content() and address not in await page.content()
        await assert_accessible(page, "Bescheinigung gültig")

        # typed in by hand, lower case with blanks: the form finds it
        await page.goto(f"{portal_system.url}/bescheinigung")
        await assert_accessible(page, "Bescheinigung prüfen")
        await page.get_by_label("Prüfcode").fill("zu kurz")
        await page.get_by_role("button", name="Bescheinigung prüfen").click()
        await expect(page.get_by_text("Bitte geben Sie den Prüfcode so ein").first).to_be_visible()
        await assert_accessible(page, "Bescheinigung prüfen (Fehler)")
        await page.get_by_label("Prüfcode").fill(code.lower().replace("-", " "))
        await page.get_by_role("button", name="Bescheinigung prüfen").click()
        await expect(page.get_by_text("Diese Bescheinigung ist gültig.")).to_be_visible()

        await page.goto(f"{portal_system.url}/bescheinigung/AAAA-AAAA-AAAA-AAAA")
        await expect(page.get_by_text("Diese Bescheinigung ist nicht bekannt.")).to_be_visible()
        await assert_accessible(page, "Bescheinigung nicht bekannt")

        async with httpx.AsyncClient(base_url=portal_system.system.urls["notification"], timeout=30) as staff:
            revoked = await staff.post(f"/certificates/{code}/revoke", json={"reason": "Test"},
                                       headers={**STAFF, "X-Staff-Actor": "Portaltest"})  # fmt: skip
            assert revoked.status_code == 200
        await page.goto(f"{portal_system.url}/bescheinigung/{code}")
        await expect(page.get_by_text("Diese Bescheinigung ist widerrufen")).to_be_visible()
        await assert_accessible(page, "Bescheinigung widerrufen")


async def answer_once(browser: Browser, link: str, title: str) -> None:
    async with browser_context(browser, PHONE, javascript=False) as context:  # plain HTML works alone
        page = await context.new_page()
        await page.goto(link)
        await expect(page.get_by_role("heading", level=1, name=re.compile(re.escape(title)))).to_be_visible()
        await page.get_by_role("button", name="Rückmeldung absenden").click()
        await expect(page.get_by_text("Bitte prüfen Sie Ihre Angaben")).to_be_visible()
    async with browser_context(browser, PHONE) as context:  # axe needs JavaScript
        page = await context.new_page()
        await page.goto(link)
        await assert_accessible(page, "Fragebogen")
        await page.get_by_role("group", name=re.compile("insgesamt")).get_by_label("4 – gut").check()
        await page.get_by_role("button", name="Rückmeldung absenden").click()
        await expect(page.get_by_text("Bitte prüfen Sie Ihre Angaben")).to_be_visible()
        await expect(page.get_by_text("Nutzen für Ihre Arbeit").first).to_be_visible()
        await assert_accessible(page, "Fragebogen (Fehler)")
        assert await page.get_by_label("4 – gut").is_checked()  # kept
        await page.get_by_role("group", name=re.compile("nützlich")).get_by_label("5 – sehr nützlich").check()
        await page.get_by_role("group", name=re.compile("weiterempfehlen")).get_by_label("Ja").check()
        await page.get_by_label(re.compile("mitteilen")).fill("Sehr praxisnah – gern mehr Übungen.")
        await page.get_by_role("button", name="Rückmeldung absenden").click()
        await expect(page.get_by_role("heading", name="Vielen Dank für Ihre Rückmeldung")).to_be_visible()
        await assert_accessible(page, "Dank")

        response = await page.goto(link)
        assert response is not None and response.status == 410
        gone = page.get_by_text("Dieser Link wurde bereits verwendet oder ist ungültig.")
        await expect(gone).to_be_visible()
        await assert_accessible(page, "Link verbraucht")
