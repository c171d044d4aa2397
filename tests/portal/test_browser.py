"""The portal in real Chromium: find by filter, register, confirmation and mail, personal link, cancel,
waiting-list promotion, the coordinator flow, form errors, keyboard use; axe-core on each page."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, expect
from portal.browser_kit import (
    DESKTOP,
    PHONE,
    SMALL_PHONE,
    assert_accessible,
    browser_context,
    chromium,
    fill_registration,
)
from portal.portal_kit import PortalSystem

from support import eventually


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as started:
        yield started


async def find_by_filter(page: Page, portal: PortalSystem, title: str) -> None:
    """Start page → filter by free text and topic → the offering's page."""
    await page.goto(portal.url)
    await assert_accessible(page, "Startseite")
    await page.get_by_label("Suchbegriff").fill(title.rsplit(maxsplit=1)[-1])
    await page.get_by_label("Thema").select_option(label="Wasserstoff")
    await page.get_by_role("button", name="Angebote anzeigen").click()
    await expect(page.get_by_role("heading", name=re.compile("1 Angebot gefunden"))).to_be_visible()
    await page.get_by_role("link", name=title).click()
    await expect(page.get_by_role("heading", level=1, name=title)).to_be_visible()


async def register(page: Page, given: str, family: str, email: str) -> None:
    await fill_registration(page, given, family, email)
    await page.get_by_role("button", name=re.compile("anmelden")).click()


async def test_register_cancel_and_promote(browser: Browser, portal_system: PortalSystem) -> None:
    title = f"Wasserstoff Portaltest {uuid.uuid4().hex[:8]}"
    await portal_system.create_offering(1, title)
    async with browser_context(browser) as anna_browser, browser_context(browser) as bernd_browser:
        anna = await anna_browser.new_page()
        await find_by_filter(anna, portal_system, title)
        await assert_accessible(anna, "Angebotsseite")
        await register(anna, "Anna", "Schmidt", "anna.schmidt@example.de")
        await expect(anna.get_by_role("heading", name="Anmeldung bestätigt")).to_be_visible()
        await expect(anna.get_by_text("bestätigt", exact=True)).to_be_visible()
        await assert_accessible(anna, "Ergebnisseite (bestätigt)")

        bernd = await bernd_browser.new_page()
        await find_by_filter(bernd, portal_system, title)
        await expect(bernd.get_by_text("Warteliste", exact=True).first).to_be_visible()
        await register(bernd, "Bernd", "Ößtürk", "bernd@example.de")
        await expect(bernd.get_by_text("Warteliste auf Platz 1")).to_be_visible()
        await assert_accessible(bernd, "Ergebnisseite (Warteliste)")

        link = await portal_system.personal_link("anna.schmidt@example.de")
        assert link.startswith(portal_system.url)
        await anna.goto(link)
        await expect(anna.get_by_role("heading", name="Meine Anmeldung")).to_be_visible()
        await expect(anna.get_by_text("bestätigt", exact=True)).to_be_visible()
        await assert_accessible(anna, "Meine Anmeldung")
        await anna.get_by_role("link", name="Teilnahme absagen").click()
        await expect(anna.get_by_role("heading", name="Teilnahme wirklich absagen?")).to_be_visible()
        await assert_accessible(anna, "Absage bestätigen")
        await anna.get_by_role("button", name=re.compile("absagen")).click()
        await expect(anna.get_by_text("abgesagt", exact=True)).to_be_visible()

        bernd_link = await portal_system.personal_link("bernd@example.de")

        async def promoted() -> bool:
            await bernd.goto(bernd_link)
            return await bernd.get_by_text("bestätigt", exact=True).count() == 1

        await eventually(promoted, timeout=60, interval=1)
        await expect(bernd.get_by_text("Bernd Ößtürk")).to_be_visible()


async def test_coordinator_registers_three_employees(browser: Browser, portal_system: PortalSystem) -> None:
    title = f"Wasserstoff Gruppentest {uuid.uuid4().hex[:8]}"
    offering_id = await portal_system.create_offering(10, title)
    async with browser_context(browser) as context:
        page = await context.new_page()
        await page.goto(f"{portal_system.url}/angebote/{offering_id}")
        await page.get_by_role("link", name="Mehrere Beschäftigte anmelden").click()
        await assert_accessible(page, "Mehrere Beschäftigte anmelden")
        await page.get_by_role("button", name="Weitere Person hinzufügen").click()  # works without JS
        await expect(page.get_by_role("group", name="Person 4")).to_be_visible()
        for index, name in enumerate(("Clara", "Dirk", "Emine")):
            row = page.get_by_role("group", name=f"Person {index + 1}")
            await row.get_by_label("Vorname").fill(name)
            await row.get_by_label("Nachname").fill("Beispiel")
            await row.get_by_label("E-Mail", exact=False).fill(f"{name.lower()}@zulieferer.example")
        await page.get_by_label("Unternehmen", exact=True).fill("Thüringer Kolben AG")
        await page.get_by_label("Postleitzahl", exact=False).fill("99085")
        await page.get_by_label("Landkreis", exact=False).select_option(label="Erfurt (kreisfreie Stadt)")
        await page.get_by_role("checkbox", name=re.compile("Datenschutz")).check()
        await page.get_by_role("button", name=re.compile("verbindlich anmelden")).click()
        await expect(page.get_by_role("heading", name="Ergebnis der Anmeldungen")).to_be_visible()
        await expect(page.get_by_role("cell", name="bestätigt")).to_have_count(3)
        await assert_accessible(page, "Ergebnis der Anmeldungen")
    for name in ("clara", "dirk", "emine"):
        assert "/meine-anmeldung/" in await portal_system.personal_link(f"{name}@zulieferer.example")


async def test_form_errors_are_next_to_the_fields(
    browser: Browser, portal_system: PortalSystem, artefacts: Path
) -> None:
    offering_id = await portal_system.create_offering(5, f"Wasserstoff Fehlertest {uuid.uuid4().hex[:8]}")
    for viewport in (DESKTOP, PHONE):
        async with browser_context(browser, viewport) as context:
            page = await context.new_page()
            await page.goto(f"{portal_system.url}/angebote/{offering_id}")
            await page.get_by_label("Vorname").fill("Anna")
            await page.get_by_label("E-Mail", exact=False).fill("keine-adresse")
            await page.get_by_role("button", name=re.compile("anmelden")).click()
            summary = page.get_by_role("alert")
            await expect(summary.get_by_role("heading", name="Bitte prüfen Sie Ihre Angaben")).to_be_visible()
            await expect(summary.get_by_role("link", name=re.compile("Nachname"))).to_be_visible()
            await expect(page.get_by_label("Nachname")).to_have_attribute("aria-invalid", "true")
            assert await page.get_by_label("Vorname").input_value() == "Anna"  # kept
            error = await page.get_by_label("E-Mail", exact=False).get_attribute("aria-describedby")
            assert error and "fehler-email" in error
            await expect(page.locator("#fehler-email")).to_contain_text("gültige E-Mail-Adresse")
            assert (await page.title()).startswith("Fehler:")
            await assert_accessible(page, f"Formularfehler bei {viewport['width']} px")
        await summary_link_moves_focus(browser, portal_system, offering_id)


async def summary_link_moves_focus(browser: Browser, portal_system: PortalSystem, offering_id: str) -> None:
    async with browser_context(browser, javascript=False) as context:
        page = await context.new_page()
        await page.goto(f"{portal_system.url}/angebote/{offering_id}")
        await page.get_by_role("button", name=re.compile("anmelden")).click()
        await page.get_by_role("alert").get_by_role("link", name=re.compile("Vorname")).click()
        await expect(page.get_by_label("Vorname")).to_be_focused()


async def test_keyboard_skip_link_and_focus_order(browser: Browser, portal_system: PortalSystem) -> None:
    async with browser_context(browser) as context:
        page = await context.new_page()
        await page.goto(portal_system.url)
        await page.keyboard.press("Tab")
        await expect(page.get_by_role("link", name="Zum Inhalt springen")).to_be_focused()
        await page.keyboard.press("Enter")
        await page.keyboard.press("Tab")
        # After the skip link, the first stop in the content is the filter form's search field.
        await expect(page.get_by_label("Suchbegriff")).to_be_focused()


async def test_every_page_type_is_accessible_at_two_widths(
    browser: Browser, portal_system: PortalSystem, artefacts: Path
) -> None:
    offering_id = await portal_system.create_offering(5, f"Wasserstoff Axe {uuid.uuid4().hex[:8]}")
    paths = [
        "/",
        "/?topic=wasserstoff&q=Axe",
        f"/angebote/{offering_id}",
        f"/angebote/{offering_id}/mehrere",
        "/barrierefreiheit",
        "/datenschutz",
        "/impressum",
        "/knoten",
        f"/knoten/{await portal_system.node_of(offering_id)}",
        "/meine-anmeldung/" + "A" * 43,
        "/gibt-es-nicht",
        "/anmeldung/unbekannt",
    ]
    for viewport in (DESKTOP, PHONE):
        async with browser_context(browser, viewport) as context:
            page = await context.new_page()
            for path in paths:
                await page.goto(portal_system.url + path)
                await assert_accessible(page, f"{path} bei {viewport['width']} px")
                width = await page.evaluate("document.documentElement.scrollWidth")
                assert width <= viewport["width"], f"{path} scrolls sideways at {viewport['width']} px"
    async with browser_context(browser, SMALL_PHONE) as context:
        page = await context.new_page()
        for name, path in (("start", "/"), ("angebot", f"/angebote/{offering_id}")):
            await page.goto(portal_system.url + path)
            await page.screenshot(path=str(artefacts / f"portal-{name}-360px.png"), full_page=True)
            assert await page.evaluate("document.documentElement.scrollWidth") <= SMALL_PHONE["width"]
    assert (artefacts / "portal-start-360px.png").stat().st_size > 0


async def test_registration_pages_at_phone_width_and_without_javascript(
    browser: Browser, portal_system: PortalSystem
) -> None:
    """Register, "Meine Anmeldung", the cancel step and the coordinator outcome at 390 px with JavaScript
    off; then axe (which needs JavaScript to run) on each page visited, at 390 px."""
    title = f"Wasserstoff Ohne-JS {uuid.uuid4().hex[:8]}"
    offering_id = await portal_system.create_offering(5, title)
    visited: list[str] = []
    async with browser_context(browser, PHONE, javascript=False) as context:
        page = await context.new_page()
        await page.goto(f"{portal_system.url}/angebote/{offering_id}")
        await register(page, "Zoë", "Łukasiewicz", "zoe.phone@example.de")
        await expect(page.get_by_role("heading", name="Anmeldung bestätigt")).to_be_visible()
        visited.append(page.url)
        await page.get_by_role("link", name="Meine Anmeldung ansehen oder absagen").click()
        await expect(page.get_by_text("Zoë Łukasiewicz")).to_be_visible()
        visited.append(page.url)
        await page.get_by_role("link", name="Teilnahme absagen").click()
        visited.append(page.url)
        await page.get_by_role("link", name="Nein, angemeldet bleiben").click()
        await expect(page.get_by_text("bestätigt", exact=True)).to_be_visible()
        await page.goto(f"{portal_system.url}/angebote/{offering_id}/mehrere")
        person = page.get_by_role("group", name="Person 1")
        await person.get_by_label("Vorname").fill("Yusuf")
        await person.get_by_label("Nachname").fill("Demir")
        await person.get_by_label("E-Mail", exact=False).fill("yusuf.phone@example.de")
        await page.get_by_label("Unternehmen", exact=True).fill("Kolben KG")
        await page.get_by_label("Postleitzahl", exact=False).fill("98529")
        await page.get_by_label("Landkreis", exact=False).select_option(label="Suhl (kreisfreie Stadt)")
        await page.get_by_role("checkbox", name=re.compile("Datenschutz")).check()
        await page.get_by_role("button", name=re.compile("verbindlich anmelden")).click()
        await expect(page.get_by_role("cell", name="bestätigt")).to_have_count(1)
        visited.append(page.url)
    async with browser_context(browser, PHONE) as context:
        page = await context.new_page()
        for url in visited:
            await page.goto(url)
            await assert_accessible(page, f"{url} bei 390 px")
