"""The staff console in real Chromium: sign-in, an offering created and published at a newly opened
node, attendance ticked on a tablet-sized page (two of three sessions for one person, three of three for
another), only the second completing and getting a certificate; axe-core on every console page."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser, Page, expect
from portal.browser_kit import assert_accessible, browser_context, chromium
from portal.console_kit import PASSWORD, add_staff, later, open_node, register_directly
from portal.portal_kit import PortalSystem

from support import eventually

TABLET = {"width": 800, "height": 1180}


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as started:
        yield started


async def sign_in(page: Page, portal: PortalSystem, email: str) -> None:
    await page.goto(f"{portal.url}/verwaltung")
    await expect(page.get_by_role("heading", name="Anmelden zur Verwaltung")).to_be_visible()
    await assert_accessible(page, "Anmeldung Verwaltung")
    await page.get_by_label("E-Mail-Adresse").fill(email)
    await page.get_by_label("Passwort").fill("falsch-falsch-falsch")
    await page.get_by_role("button", name="Anmelden").click()
    await expect(page.get_by_text("Bitte prüfen Sie Ihre Angaben")).to_be_visible()
    await assert_accessible(page, "Anmeldung mit Fehler")
    await page.get_by_label("Passwort").fill(PASSWORD)
    await page.get_by_role("button", name="Anmelden").click()
    await expect(page.get_by_role("heading", name="Angebote verwalten")).to_be_visible()
    await assert_accessible(page, "Übersicht Verwaltung")


async def fill_session(page: Page, number: int, day: str, start: str, end: str) -> None:
    group = page.get_by_role("group", name=f"Termin {number}", exact=True)
    await group.get_by_label("Datum").fill(day)
    await group.get_by_label("Beginn").fill(start)
    await group.get_by_label("Ende").fill(end)
    await group.get_by_label("Ort").fill("Werkhalle 2, Hauptstraße 1")


async def create_and_publish(page: Page, title: str, node_name: str) -> None:
    await page.get_by_role("link", name="Neues Angebot anlegen").click()
    await page.get_by_role("button", name="Als Entwurf anlegen").click()  # empty: errors first
    await expect(page.get_by_role("heading", name="Bitte prüfen Sie Ihre Angaben")).to_be_visible()
    await assert_accessible(page, "Angebotsformular mit Fehlern")
    await page.get_by_label("Titel", exact=True).fill(title)
    await page.get_by_label("Beschreibung").fill("Drei Vormittage Praxis mit Wasserstoff-Flurförderzeugen.")
    await page.get_by_label("Format").select_option(label="Zertifikatslehrgang")
    await page.get_by_label("Thema").select_option(label="Wasserstoff")
    await page.get_by_label("QTI-Knoten").select_option(label=node_name)
    await page.get_by_label("Plätze", exact=True).fill("10")
    for number, days in ((1, 20), (2, 21), (3, 22)):
        await fill_session(page, number, later(days, 9).date().isoformat(), "09:00", "12:00")
    await page.get_by_role("button", name="Als Entwurf anlegen").click()
    await expect(page.get_by_text("Das Angebot ist als Entwurf angelegt.")).to_be_visible()
    await page.get_by_role("button", name="Veröffentlichen").click()
    await expect(page.get_by_text("Das Angebot ist veröffentlicht.")).to_be_visible()
    await assert_accessible(page, "Angebot in der Verwaltung")


async def tick(page: Page, session: int, present: dict[str, bool]) -> None:
    await page.get_by_role("link", name=f"Anwesenheit erfassen (Termin {session})").click()
    await expect(page.get_by_role("heading", name=f"Anwesenheit: Termin {session}")).to_be_visible()
    for name, here in present.items():
        box = page.get_by_role("checkbox", name=re.compile(name))
        await (box.check() if here else box.uncheck())
    if session == 1:
        await assert_accessible(page, "Anwesenheit (Tablet)")
    await page.get_by_role("button", name="Anwesenheit speichern").click()
    await expect(page.get_by_text("Die Anwesenheit ist gespeichert.")).to_be_visible()


async def certificate_section(page: Page) -> None:
    """Bruno's certificate on the offering page; a revocation without a reason is refused next to the
    field (axe on the page with its certificate and feedback sections)."""

    async def listed() -> bool:
        await page.reload()
        return await page.get_by_role("heading", name="Teilnahmebescheinigungen (1)").is_visible()

    assert await eventually(listed, timeout=90, interval=1)
    await expect(page.get_by_role("heading", name="Rückmeldungen")).to_be_visible()
    await page.get_by_role("button", name=re.compile("^Widerrufen")).click()
    await expect(page.get_by_text("Bitte geben Sie einen Grund für den Widerruf an.").first).to_be_visible()
    await assert_accessible(page, "Angebot mit Bescheinigung (Fehler)")


async def test_new_node_offering_attendance_and_completion(
    browser: Browser, portal_system: PortalSystem
) -> None:
    town = f"Neustadt-{uuid.uuid4().hex[:6]}"
    node_id = await open_node(portal_system, town)
    email = f"team-{uuid.uuid4().hex[:6]}@qti.example"
    await add_staff(portal_system, email, node_id)
    title = f"Wasserstoff kompakt {uuid.uuid4().hex[:6]}"
    async with browser_context(browser, TABLET) as context:
        page = await context.new_page()
        await sign_in(page, portal_system, email)
        await create_and_publish(page, title, f"QTI-Knoten {town}")
        offering_id = page.url.split("/verwaltung/angebote/")[1].split("?")[0]
        await register_directly(portal_system, offering_id, "Agnes", "Zweimal")
        await register_directly(portal_system, offering_id, "Bruno", "Dreimal")
        await page.reload()
        await expect(page.get_by_role("heading", name="Bestätigte Anmeldungen (2)")).to_be_visible()

        await tick(page, 1, {"Agnes": True, "Bruno": True})
        await tick(page, 2, {"Agnes": True, "Bruno": True})
        await tick(page, 3, {"Agnes": False, "Bruno": True})
        confirmed = page.locator("#bestaetigt")
        agnes = confirmed.get_by_role("row", name=re.compile("Agnes Zweimal"))
        bruno = confirmed.get_by_role("row", name=re.compile("Bruno Dreimal"))
        await expect(agnes).to_contain_text("nicht abgeschlossen (67 %, Schwelle 80 % nicht erreicht)")
        await expect(bruno).to_contain_text("abgeschlossen (100 %, Schwelle 80 % erreicht)")
        await expect(bruno).not_to_contain_text("nicht")
        await assert_accessible(page, "Angebot mit Teilnahmestand")
        await certificate_section(page)

        await page.get_by_role("button", name="Abmelden").click()
        await expect(page.get_by_text("Sie sind abgemeldet.")).to_be_visible()
        await page.goto(f"{portal_system.url}/verwaltung/angebote/{offering_id}")
        await expect(page.get_by_role("heading", name="Anmelden zur Verwaltung")).to_be_visible()

    lead = f"leitung-{uuid.uuid4().hex[:6]}@qti.example"
    await add_staff(portal_system, lead, None)
    async with browser_context(browser) as context:
        page = await context.new_page()
        await sign_in(page, portal_system, lead)
        await page.get_by_role("link", name="Protokoll").click()
        await expect(page.get_by_role("heading", name="Protokoll der Verwaltung")).to_be_visible()
        log = page.get_by_role("table", name="Protokoll")
        await expect(log.get_by_role("row").filter(has_text="Anwesenheit erfasst")).to_have_count(3)
        await expect(log.get_by_role("row").filter(has_text="Angebot veröffentlicht").first).to_contain_text(
            email
        )
        await assert_accessible(page, "Protokoll")
