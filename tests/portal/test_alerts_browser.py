"""Angebotsalarm and Interesse melden in real Chromium against the whole system (real broker, database,
mail sink): the form (labels of INTERFACE.md, German errors, axe), the confirmation mail and its link, one
alert per matching published offering, the RFC 8058 one-click unsubscribe POST (no cookie, no CSRF token)
that ends the subscription at once."""

from __future__ import annotations

import email
import email.policy
import re
import uuid
from collections.abc import AsyncIterator
from email.message import EmailMessage
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, Page, expect
from portal.browser_kit import assert_accessible, browser_context, chromium
from portal.portal_kit import PortalSystem

from support import eventually


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as started:
        yield started


async def mail_to(portal: PortalSystem, address: str, count: int) -> list[EmailMessage]:
    """The mails to `address` once there are `count` of them (oldest first)."""

    async def found() -> list[dict[str, Any]] | None:
        mails = [m for m in await portal.mails() if address in m["to"]]
        return mails if len(mails) >= count else None

    listing = await eventually(found, timeout=60)
    parsed = []
    for item in sorted(listing, key=lambda m: m["name"]):
        message = email.message_from_string(await portal.mail_text(item["name"]), policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        parsed.append(message)
    return parsed


def text_of(message: EmailMessage) -> str:
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    return str(body.get_content())


async def sign_up(page: Page, portal: PortalSystem, address: str) -> None:
    await page.goto(f"{portal.url}/angebotsalarm")
    await page.get_by_label("E-Mail", exact=False).fill(address)
    await page.get_by_role("checkbox", name="Wasserstoff", exact=True).check()
    await page.get_by_role("checkbox", name=re.compile("Ich willige ein")).check()
    await page.get_by_role("button", name=re.compile("abonnieren")).click()
    await expect(page.get_by_role("heading", level=1, name=re.compile("bestätigen"))).to_be_visible()


async def confirm(page: Page, portal: PortalSystem, address: str) -> None:
    [mail] = await mail_to(portal, address, 1)
    match = re.search(r"https?://\S+/angebotsalarm/bestaetigen/[A-Za-z0-9_-]+", text_of(mail))
    assert match, text_of(mail)
    await page.goto(match.group(0))  # opening the link confirms nothing yet (mail scanners open links)
    await page.get_by_role("button", name="Jetzt bestätigen").click()
    await expect(page.get_by_role("heading", level=1, name=re.compile("bestätigt"))).to_be_visible()


async def test_alert_form_confirm_alert_and_one_click_unsubscribe(
    browser: Browser, portal_system: PortalSystem
) -> None:
    portal = portal_system
    anna, bert = f"anna-{uuid.uuid4().hex[:6]}@example.de", f"bert-{uuid.uuid4().hex[:6]}@example.de"
    async with browser_context(browser) as context:
        page = await context.new_page()
        await page.goto(f"{portal.url}/angebotsalarm")
        await assert_accessible(page, "Angebotsalarm")
        await page.get_by_role("button", name=re.compile("abonnieren")).click()
        await expect(page.get_by_role("heading", name="Bitte prüfen Sie Ihre Angaben")).to_be_visible()
        await expect(page.get_by_text("Bitte wählen Sie mindestens ein Thema aus.").first).to_be_visible()
        await assert_accessible(page, "Angebotsalarm mit Fehlern")
        await sign_up(page, portal, anna)
        await assert_accessible(page, "Angebotsalarm: bitte bestätigen")
        await sign_up(page, portal, bert)
        await confirm(page, portal, anna)
        await assert_accessible(page, "Angebotsalarm bestätigt")
        await confirm(page, portal, bert)

    await portal.create_offering(10, f"Wasserstoff Alarmtest {uuid.uuid4().hex[:6]}")
    confirmation, alert = await mail_to(portal, anna, 2)
    assert "/angebotsalarm/" in text_of(confirmation)
    assert alert["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    url = str(alert["List-Unsubscribe"]).strip("<>")
    assert url.startswith(f"{portal.url}/angebotsalarm/abmelden/") and url in text_of(alert)

    # What a mail client does (RFC 8058): a POST with that body, no cookie, no CSRF token.
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.post(
            url,
            content=b"List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
    assert response.status_code == 200 and "abgemeldet" in response.text

    second = f"Wasserstoff Alarmtest 2 {uuid.uuid4().hex[:6]}"
    await portal.create_offering(10, second)
    bert_mails = await mail_to(portal, bert, 3)  # bert is still subscribed: his alert is the sign that
    assert second in str(bert_mails[2]["Subject"])  # the second offering was matched ...
    assert len(await mail_to(portal, anna, 2)) == 2  # ... and anna, unsubscribed, got nothing


async def test_interest_form_prefilled_from_an_empty_search(
    browser: Browser, portal_system: PortalSystem
) -> None:
    portal = portal_system
    async with browser_context(browser) as context:
        page = await context.new_page()
        await page.goto(f"{portal.url}/?topic=unternehmensnachfolge&q=Zeppelinbau")
        await expect(page.get_by_role("heading", name="0 Angebote gefunden")).to_be_visible()
        await page.get_by_role("link", name="Interesse melden").first.click()
        await expect(page.get_by_role("heading", level=1, name="Interesse melden")).to_be_visible()
        await expect(page.get_by_label("Thema")).to_have_value("unternehmensnachfolge")
        await assert_accessible(page, "Interesse melden")
        await page.get_by_label("E-Mail", exact=False).fill("<script>@example")
        await page.get_by_role("button", name="Interesse melden").click()
        await expect(page.get_by_text("gültige E-Mail-Adresse").first).to_be_visible()
        await assert_accessible(page, "Interesse melden mit Fehlern")
        await page.get_by_label("E-Mail", exact=False).fill("carla@example.de")
        await page.get_by_label("Landkreis").select_option(label="Sonneberg")
        await page.get_by_role("checkbox", name=re.compile("Ich willige ein")).check()
        await page.get_by_role("button", name="Interesse melden").click()
        await expect(page.get_by_role("heading", level=1, name=re.compile("bestätigen"))).to_be_visible()
    [mail] = await mail_to(portal, "carla@example.de", 1)
    assert str(mail["Subject"]) == "Bitte bestätigen Sie Ihre Interessensmeldung"
    assert "Unternehmensnachfolge" in text_of(mail) and "Sonneberg" in text_of(mail)


async def test_mail_links_refuse_forged_tokens_in_german(portal_system: PortalSystem) -> None:
    async with httpx.AsyncClient(base_url=portal_system.url, timeout=30) as client:
        for path in ("/angebotsalarm/abmelden/kurz", "/angebotsalarm/bestaetigen/%3Cscript%3E"):
            assert (await client.get(path)).status_code == 404
        forged = await client.post(
            "/angebotsalarm/abmelden/" + "A" * 43, content=b"List-Unsubscribe=One-Click"
        )
        assert forged.status_code == 404 and "ungültig oder abgelaufen" in forged.text
        # Confirming needs the form's CSRF token (it is no one-click URL).
        assert (await client.post("/angebotsalarm/bestaetigen/" + "A" * 43)).status_code == 403
