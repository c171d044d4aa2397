"""The portal over plain HTTP (no browser): pages, CSRF, idempotent submits, hostile input, tokens."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from portal.portal_kit import PortalSystem

from support import eventually

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
KEY = re.compile(r'name="anfrage_schluessel" value="([^"]+)"')


async def first_offering(client: httpx.AsyncClient) -> str:
    page = (await client.get("/")).text
    match = re.search(r'href="/angebote/([0-9a-f-]{36})"', page)
    assert match, "no offering on the start page"
    return match.group(1)


def person(n: int, **changes: str) -> dict[str, str]:
    return {
        "vorname": "Jörg",
        "nachname": f"Müller-{n}",
        "email": f"joerg.mueller{n}@example.de",
        "unternehmen": "Muster Zulieferer GmbH",
        "postleitzahl": "99610",
        "landkreis": "soemmerda",
        "datenschutz": "ja",
        **changes,
    }


async def form_of(client: httpx.AsyncClient, path: str) -> dict[str, str]:
    page = (await client.get(path)).text
    csrf, key = CSRF.search(page), KEY.search(page)
    assert csrf and key
    return {"csrf_token": csrf.group(1), "anfrage_schluessel": key.group(1)}


@pytest.fixture
async def client(portal_system: PortalSystem) -> Any:
    async with httpx.AsyncClient(base_url=portal_system.url, timeout=30) as c:
        yield c


async def test_pages_are_german_and_safe(client: httpx.AsyncClient) -> None:
    start = await client.get("/")
    assert start.status_code == 200
    assert '<html lang="de">' in start.text
    csp = start.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert start.headers["referrer-policy"] == "no-referrer"
    offering_id = await first_offering(client)
    page = await client.get(f"/angebote/{offering_id}")
    assert '"@type": "Course"' in page.text and "hasCourseInstance" in page.text
    assert "openstreetmap.org" in page.text
    ics = await client.get(f"/angebote/{offering_id}/kalender.ics")
    assert ics.headers["content-type"].startswith("text/calendar") and b"BEGIN:VEVENT" in ics.content
    for path in ("/barrierefreiheit", "/datenschutz", "/impressum"):
        assert (await client.get(path)).status_code == 200
    missing = await client.get("/gibt-es-nicht")
    assert missing.status_code == 404 and "Seite nicht gefunden" in missing.text


async def test_double_submit_is_one_registration(
    client: httpx.AsyncClient, portal_system: PortalSystem
) -> None:
    offering_id = await first_offering(client)
    form = {**await form_of(client, f"/angebote/{offering_id}"), **person(1)}
    answers = [await client.post(f"/angebote/{offering_id}/anmelden", data=form) for _ in range(3)]
    assert {a.status_code for a in answers} == {303}
    assert len({a.headers["location"] for a in answers}) == 1
    outcome = await client.get(answers[0].headers["location"])
    assert "bestätigt" in outcome.text
    # This browser submitted it: it gets the personal link.
    assert "/meine-anmeldung/" in outcome.text, portal_system.log_text()[-3000:]

    async def mails_to_person() -> list[dict[str, Any]]:
        return [m for m in await portal_system.mails() if "joerg.mueller1@example.de" in m["to"]]

    await eventually(mails_to_person, timeout=60)
    # Another browser (no session cookie) sees the decision but never the personal link.
    async with httpx.AsyncClient(base_url=portal_system.url, timeout=30) as stranger:
        seen = await stranger.get(answers[0].headers["location"])
        assert "bestätigt" in seen.text and "/meine-anmeldung/" not in seen.text
    assert len(await mails_to_person()) == 1
