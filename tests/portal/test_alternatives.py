"""End to end through the portal (all services as processes, real broker, database and mail sink):
a full offering's waiting-list mail lists an alternative at another node; registrations through that
link carry `quelle=alternative` and reporting counts them. Also: the offering page's JSON-LD holds every
session, the node's calendar feed is reachable through the portal."""

from __future__ import annotations

import email
import email.policy
import html
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from portal.browser_kit import assert_accessible, browser_context, chromium
from portal.portal_kit import STAFF, PortalSystem
from portal.test_http import form_of, person

from devtools.demo_data import node_id_for
from support import eventually

JSON_LD = re.compile(r'<script type="application/ld\+json">(.*?)</script>', re.S)
HEADING = "Freie Plätze in anderen Kursen zum selben Thema"
ATTRIBUTED = 5  # at least MIN_GROUP_SIZE, so that reporting may show the figure


@pytest.fixture
async def client(portal_system: PortalSystem) -> Any:
    async with httpx.AsyncClient(base_url=portal_system.url, timeout=30) as c:
        yield c


def body(node: str, title: str, capacity: int, start: datetime, sessions: int = 1) -> dict[str, Any]:
    return {
        "node_id": str(node_id_for(node)),
        "kind": "course",
        "topic": "unternehmensnachfolge",
        "title": title,
        "description": "Nachfolge im Zulieferbetrieb: Ablauf, Finanzierung, Fördermittel.",
        "sessions": [
            {
                "starts_at": (start + timedelta(days=7 * i)).isoformat(),
                "ends_at": (start + timedelta(days=7 * i, hours=5)).isoformat(),
                "location": f"Seminarraum {i + 1} <b>&</b>",
            }
            for i in range(sessions)
        ],
        "capacity": capacity,
        "registration_deadline": (start - timedelta(days=1)).isoformat(),
        "fee_eur": 0,
        "max_per_company": None,
        "waitlist_limit": 10,
    }


async def publish(portal_system: PortalSystem, offering: dict[str, Any]) -> str:
    async with httpx.AsyncClient(base_url=portal_system.system.urls["catalogue"], headers=STAFF) as staff:
        created = await staff.post("/offerings", json=offering)
        assert created.status_code == 201, created.text
        offering_id = str(created.json()["offering_id"])
        assert (await staff.post(f"/offerings/{offering_id}/publish")).status_code == 200
    return offering_id


async def register(client: httpx.AsyncClient, path: str, n: int, **changes: str) -> httpx.Response:
    page = (await client.get(path)).text
    form = {**await form_of(client, path), **person(n, **changes)}
    if 'name="quelle" value="alternative"' in page:
        form["quelle"] = "alternative"
    offering_id = path.split("/")[2].split("?", maxsplit=1)[0]
    answer = await client.post(f"/angebote/{offering_id}/anmelden", data=form)
    assert answer.status_code == 303, answer.text[:500]
    return answer


async def mail_body(portal_system: PortalSystem, recipient: str, subject_start: str) -> str:
    async def found() -> dict[str, Any] | None:
        mails = [
            m
            for m in await portal_system.mails()
            if recipient in m["to"] and m["subject"].startswith(subject_start)
        ]
        return mails[-1] if mails else None

    mail = await eventually(found, timeout=60)
    raw = await portal_system.mail_text(mail["name"])
    message = email.message_from_string(raw, policy=email.policy.default)
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


async def test_full_offering_alternative_mail_registration_and_attribution(
    client: httpx.AsyncClient, portal_system: PortalSystem
) -> None:
    soon = datetime.now(UTC).replace(microsecond=0) + timedelta(days=3)
    full_id = await publish(
        portal_system, body("gotha", "Nachfolge planen (Gotha)", 1, soon + timedelta(days=20))
    )
    alt_id = await publish(portal_system, body("soemmerda", "Nachfolge planen (Sömmerda)", 30, soon))
    # One seat: the first registration takes it, the second lands on the waiting list.
    first = await register(client, f"/angebote/{full_id}", 100)
    assert "bestätigt" in (await client.get(first.headers["location"])).text
    waiting = await register(client, f"/angebote/{full_id}", 101, email="warte@example.de")
    assert waiting.headers["location"].endswith("?landkreis=soemmerda")
    outcome = (await client.get(waiting.headers["location"])).text
    assert "Warteliste" in outcome and HEADING in outcome
    assert f'href="/angebote/{alt_id}?quelle=alternative"' in outcome
    # The full offering's page shows the alternative as well.
    full_page = (await client.get(f"/angebote/{full_id}")).text
    assert HEADING in full_page and f"/angebote/{alt_id}?quelle=alternative" in full_page

    text = await mail_body(portal_system, "warte@example.de", "Warteliste")
    assert HEADING in text and "Nachfolge planen (Sömmerda)" in text
    link = f"{portal_system.url}/angebote/{alt_id}?quelle=alternative"
    assert link in text
    # Registrations through the mail's link carry the source; reporting counts them (no personal data).
    path = link.removeprefix(portal_system.url)
    assert 'name="quelle" value="alternative"' in (await client.get(path)).text
    for n in range(ATTRIBUTED):
        answer = await register(client, path, 200 + n)
        assert "bestätigt" in (await client.get(answer.headers["location"])).text

    await assert_attributed(portal_system)


async def assert_attributed(portal_system: PortalSystem) -> None:
    """Reporting stores the source with each registration and publishes the count under the one
    suppression rule: the figure reads the stored count, or "gesperrt" when showing it would let a reader
    recompute a small count (here: every alternative registration is at one node, the other nodes' zeros
    are "<5"), never a wrong number and never "<5" for five."""

    async def stored() -> bool:
        connection = await asyncpg.connect(portal_system.system.database_url)
        try:
            count = await connection.fetchval(
                "SELECT count(*) FROM reporting.registrations WHERE source = 'alternative'"
            )
        finally:
            await connection.close()
        return bool(count == ATTRIBUTED)

    await eventually(stored, timeout=120, interval=1)
    async with httpx.AsyncClient(base_url=portal_system.system.urls["reporting"], timeout=180) as reporting:
        total = (await reporting.get("/kpis")).json()["total"]
        assert total["registrations_source_alternative"] in (ATTRIBUTED, "gesperrt")
        assert total["registrations_source_angebotsalarm"] in ("<5", "gesperrt")  # none: below five
        dashboard = (await reporting.get("/dashboard")).text
        assert "Anmeldungen über Alternativen" in dashboard
        csv = (await reporting.get("/exports/kpis.csv")).content.decode("utf-8-sig")
        assert "Anmeldungen über Angebotsalarm" in csv.splitlines()[0]


async def test_json_ld_holds_every_session_and_the_node_calendar_is_linked(
    client: httpx.AsyncClient, portal_system: PortalSystem
) -> None:
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=40)
    offering_id = await publish(
        portal_system, body("rohr", "Nachfolge </script> & Co.", 12, start, sessions=3)
    )
    page = (await client.get(f"/angebote/{offering_id}")).text
    scripts = JSON_LD.findall(page)
    assert len(scripts) == 1 and "</script>" not in scripts[0]
    data = json.loads(scripts[0])
    assert data["@type"] == "Course" and data["name"] == "Nachfolge </script> & Co."
    async with httpx.AsyncClient(base_url=portal_system.system.urls["catalogue"]) as catalogue:
        offering = (await catalogue.get(f"/offerings/{offering_id}")).json()
    instances = data["hasCourseInstance"]
    assert len(instances) == len(offering["sessions"]) == 3
    for instance, session in zip(instances, offering["sessions"], strict=True):
        assert instance["@type"] == "CourseInstance"
        assert datetime.fromisoformat(instance["startDate"]) == datetime.fromisoformat(session["starts_at"])
        assert datetime.fromisoformat(instance["endDate"]) == datetime.fromisoformat(session["ends_at"])
        assert instance["location"]["name"] == session["location"]
        assert instance["location"]["address"]
    feed_link = f"/knoten/{offering['node_id']}/kalender.ics"
    assert f'href="{feed_link}"' in page
    feed = await client.get(feed_link)
    assert feed.headers["content-type"].startswith("text/calendar")
    assert html.unescape("Nachfolge") in feed.text and feed.text.count("BEGIN:VEVENT") >= 3
    for bad in ("00000000-0000-0000-0000-000000000000", "..%2F..%2Fetc", "x" * 300):
        missing = await client.get(f"/knoten/{bad}/kalender.ics")
        assert missing.status_code == 404 and "nicht" in missing.text


async def test_quelle_values_are_closed(client: httpx.AsyncClient, portal_system: PortalSystem) -> None:
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=50)
    offering_id = await publish(portal_system, body("eisenach", "Nachfolge kompakt", 12, start))
    for hostile in ('"><script>alert(1)</script>', "alternativ", "ANGEBOTSALARM", "x" * 5000):
        page = await client.get(f"/angebote/{offering_id}", params={"quelle": hostile})
        assert page.status_code == 200 and 'name="quelle"' not in page.text
        assert "<script>alert(1)" not in page.text
    page = await client.get(f"/angebote/{offering_id}", params={"quelle": "angebotsalarm"})
    assert 'name="quelle" value="angebotsalarm"' in page.text
    assert f'href="/angebote/{offering_id}/mehrere?quelle=angebotsalarm"' in page.text
    group = await client.get(f"/angebote/{offering_id}/mehrere", params={"quelle": "angebotsalarm"})
    assert 'name="quelle" value="angebotsalarm"' in group.text
    odd = await client.get(f"/angebote/{offering_id}/mehrere", params={"quelle": "<b>"})
    assert 'name="quelle"' not in odd.text


async def test_pages_with_alternatives_are_accessible(
    client: httpx.AsyncClient, portal_system: PortalSystem
) -> None:
    soon = datetime.now(UTC).replace(microsecond=0) + timedelta(days=5)
    full_id = await publish(portal_system, body("eisenach", "Nachfolge voll (Eisenach)", 1, soon))
    await publish(portal_system, body("weberstedt", "Nachfolge frei (Weberstedt)", 9, soon))
    await register(client, f"/angebote/{full_id}", 300)
    waiting = await register(client, f"/angebote/{full_id}", 301)
    async with chromium() as browser, browser_context(browser) as context:
        page = await context.new_page()
        for path, what in ((f"/angebote/{full_id}", "Angebotsseite (ausgebucht)"),
                           (waiting.headers["location"], "Ergebnisseite (Warteliste)")):  # fmt: skip
            await page.goto(portal_system.url + path)
            await page.get_by_role("heading", name=HEADING).wait_for()
            await assert_accessible(page, what)
