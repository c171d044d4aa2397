"""Playwright on Debian's Chromium (never a browser download) and axe-core from axe-playwright-python."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from axe_playwright_python.async_playwright import Axe
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

CHROMIUM = "/usr/bin/chromium"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
SMALL_PHONE = {"width": 360, "height": 740}
_axe = Axe()


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield browser
        finally:
            await browser.close()


@asynccontextmanager
async def browser_context(
    browser: Browser, viewport: dict[str, int] = DESKTOP, *, javascript: bool = True
) -> AsyncIterator[BrowserContext]:
    context = await browser.new_context(viewport=viewport, locale="de-DE", java_script_enabled=javascript)
    try:
        yield context
    finally:
        await context.close()


async def serious_violations(page: Page) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on the page as it is now (WCAG 2.1 A/AA rules and
    best practices)."""
    results = await _axe.run(page)
    violations: list[dict[str, Any]] = results.response["violations"]
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]][:5]}
        for v in violations
        if v["impact"] in ("serious", "critical")
    ]


async def assert_accessible(page: Page, what: str) -> None:
    found = await serious_violations(page)
    assert not found, f"axe: serious/critical violations on {what} ({page.url}): {found}"


def offering_link(title: str) -> re.Pattern[str]:
    return re.compile(re.escape(title))


async def fill_registration(page: Page, given: str, family: str, email: str, *, consent: bool = True) -> None:
    """Fills the single registration form by its visible labels (INTERFACE.md)."""
    await page.get_by_label("Vorname").fill(given)
    await page.get_by_label("Nachname").fill(family)
    await page.get_by_label("E-Mail", exact=False).fill(email)
    await page.get_by_label("Unternehmen", exact=True).fill("Muster Zulieferer GmbH")
    await page.get_by_label("Postleitzahl", exact=False).fill("99610")
    await page.get_by_label("Landkreis", exact=False).select_option(label="Sömmerda")
    if consent:
        await page.get_by_role("checkbox", name=re.compile("Datenschutz")).check()
