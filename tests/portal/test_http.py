"""The portal over plain HTTP (no browser): pages, CSRF, idempotent submits, hostile input, tokens."""

from __future__ import annotations

import re
import uuid
from typing import Any

import aio_pika
import aio_pika.abc
import aiormq.exceptions
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


async def test_broker_user_reaches_only_the_two_commands(portal_system: PortalSystem) -> None:
    """The portal runs as the `frontend` user of definitions.json: service queues and events are closed."""
    for action in (consume_registration_queue, declare_service_queue, publish_an_outcome):
        connection = await aio_pika.connect(portal_system.frontend_amqp_url)
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            with pytest.raises(aiormq.exceptions.ChannelAccessRefused):
                await action(channel)
                await channel.get_exchange("qti.events", ensure=True)  # a round trip: a late refusal


async def consume_registration_queue(channel: aio_pika.abc.AbstractChannel) -> None:
    queue = await channel.get_queue("registration.requests", ensure=False)
    await queue.get(fail=False)


async def declare_service_queue(channel: aio_pika.abc.AbstractChannel) -> None:
    await channel.declare_queue("registration.portal-spy", auto_delete=True)


async def publish_an_outcome(channel: aio_pika.abc.AbstractChannel) -> None:
    await publish(channel, "registration.confirmed")


async def publish(channel: aio_pika.abc.AbstractChannel, routing_key: str) -> None:
    exchange = await channel.get_exchange("qti.events", ensure=False)
    await exchange.publish(aio_pika.Message(b"{}"), routing_key=routing_key)


async def test_posts_need_the_csrf_token_of_the_same_browser(
    client: httpx.AsyncClient, portal_system: PortalSystem
) -> None:
    offering_id = await first_offering(client)
    without = await client.post(f"/angebote/{offering_id}/anmelden", data=person(2))
    assert without.status_code == 403 and "Formular abgelaufen" in without.text
    form = {**await form_of(client, f"/angebote/{offering_id}"), **person(2)}
    async with httpx.AsyncClient(base_url=portal_system.url, timeout=30) as other_browser:
        forged = await other_browser.post(f"/angebote/{offering_id}/anmelden", data=form)
    assert forged.status_code == 403


async def test_hostile_input_gets_german_errors_never_a_500(client: httpx.AsyncClient) -> None:
    offering_id = await first_offering(client)
    path = f"/angebote/{offering_id}/anmelden"
    cases = {
        "vorname": ("x" * 5000, "höchstens 100 Zeichen"),
        "nachname": ("Müller\x00\nDrop", "Steuerzeichen"),
        "email": ("anna@@example", "gültige E-Mail-Adresse"),
        "postleitzahl": ("9961O", "fünf Ziffern"),
        "landkreis": ("Hintertupfingen", "Landkreis"),
    }
    for field, (value, message) in cases.items():
        form = {**await form_of(client, f"/angebote/{offering_id}"), **person(3, **{field: value})}
        answer = await client.post(path, data=form)
        assert answer.status_code == 422, field
        assert message in answer.text and f'id="fehler-{field}"' in answer.text
    huge = await client.post(path, content=b"a=" + b"x" * 200_000, headers={"content-type": "text/plain"})
    assert huge.status_code == 413
    assert "too large" not in huge.text.lower() or "zu groß" in huge.text.lower()
    for bad in ("/angebote/..%2F..%2Fetc", "/angebote/%00", "/anmeldung/%3Cscript%3E", "/?node=x&von=kaputt"):
        assert (await client.get(bad)).status_code in (200, 404)


async def test_script_and_formula_are_shown_as_text(
    client: httpx.AsyncClient, portal_system: PortalSystem
) -> None:
    offering_id = await first_offering(client)
    form = {
        **await form_of(client, f"/angebote/{offering_id}"),
        **person(
            4, vorname="<script>alert(1)</script>", nachname='=HYPERLINK("http://x")', email="zoe@example.de"
        ),
        "unternehmen": "Łódź & Søn 株式会社",
    }
    answer = await client.post(f"/angebote/{offering_id}/anmelden", data=form)
    assert answer.status_code == 303
    link = await portal_system.personal_link("zoe@example.de")
    mine = await client.get(link)
    assert mine.status_code == 200
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in mine.text and "<script>alert" not in mine.text
    assert "=HYPERLINK(&#34;http://x&#34;)" in mine.text


async def test_unknown_forged_or_foreign_tokens_get_a_german_404(
    client: httpx.AsyncClient, portal_system: PortalSystem
) -> None:
    offering_id = await first_offering(client)
    form = {**await form_of(client, f"/angebote/{offering_id}"), **person(5, email="token@example.de")}
    assert (await client.post(f"/angebote/{offering_id}/anmelden", data=form)).status_code == 303
    link = await portal_system.personal_link("token@example.de")
    token = link.rsplit("/", 1)[-1]
    forged = token[:-1] + ("A" if token[-1] != "A" else "B")
    for bad in (forged, "A" * 43, "kurz", "x" * 300, "%3Cscript%3E"):
        for suffix in ("", "/kalender.ics", "/absagen"):
            page = await client.get(f"/meine-anmeldung/{bad}{suffix}")
            assert page.status_code == 404, (bad, suffix)
            assert "Anmeldung nicht gefunden" in page.text and "token@example.de" not in page.text
        csrf = (await form_of(client, f"/angebote/{offering_id}"))["csrf_token"]
        cancel = await client.post(f"/meine-anmeldung/{bad}/absagen", data={"csrf_token": csrf})
        assert cancel.status_code == 404
    assert (await client.get(f"/meine-anmeldung/{token}")).status_code == 200  # still registered
    assert (await client.get("/anmeldung/portal-unbekannt")).status_code == 404


async def test_rate_limit_per_email_address(client: httpx.AsyncClient) -> None:
    offering_id = await first_offering(client)
    statuses = []
    for _ in range(12):
        form = {**await form_of(client, f"/angebote/{offering_id}"), **person(6, email="viel@example.de")}
        form.pop("datenschutz")  # never registered: only the limit is tested
        statuses.append(await client.post(f"/angebote/{offering_id}/anmelden", data=form))
    assert [s.status_code for s in statuses[:10]] == [422] * 10
    assert statuses[10].status_code == 429 and int(statuses[10].headers["retry-after"]) > 0
    assert "Zu viele Anfragen" in statuses[10].text


async def test_start_page_filters_by_node_county_kind_and_period(
    client: httpx.AsyncClient, portal_system: PortalSystem
) -> None:
    async with httpx.AsyncClient(base_url=portal_system.system.urls["catalogue"]) as catalogue:
        nodes = (await catalogue.get("/nodes")).json()["items"]
    assert len(nodes) == 5
    for node in nodes:
        for params in ({"node": node["node_id"]}, {"county": node["county"]}):
            page = await client.get("/", params=params)
            places = re.findall(r"<dt>Ort</dt><dd>([^<]+)</dd>", page.text)
            assert places, params
            assert all(p.endswith(node["town"]) for p in places), (params, places)
    workshops = await client.get("/", params={"kind": "workshop"})
    kinds = re.findall(r"<dt>Format</dt><dd>([^<·]+)", workshops.text)
    assert kinds and {k.strip() for k in kinds} == {"Workshop"}
    nothing = await client.get("/", params={"von": "2099-01-01"})
    assert "0 Angebote gefunden" in nothing.text
    ignored = await client.get("/", params={"county": "<script>", "topic": "kaputt", "von": "gestern"})
    assert ignored.status_code == 200 and "&lt;script&gt;" not in ignored.text


async def test_nodes_are_listed_with_their_offerings(
    client: httpx.AsyncClient, portal_system: PortalSystem
) -> None:
    title = f"Knotenseite {uuid.uuid4().hex[:8]}"
    offering_id = await portal_system.create_offering(5, title)
    async with httpx.AsyncClient(base_url=portal_system.system.urls["catalogue"], timeout=30) as catalogue:
        offering = (await catalogue.get(f"/offerings/{offering_id}")).json()
        nodes = (await catalogue.get("/nodes")).json()["items"]
    listing = await client.get("/knoten")
    assert listing.status_code == 200 and "Die QTI-Knoten in Thüringen" in listing.text
    for node in nodes:
        assert f'href="/knoten/{node["node_id"]}"' in listing.text and node["host"] in listing.text
        assert f'href="/knoten/{node["node_id"]}/kalender.ics"' in listing.text
    page = await client.get(f"/knoten/{offering['node_id']}")
    assert page.status_code == 200 and title in page.text and f"/angebote/{offering_id}" in page.text
    offering_page = await client.get(f"/angebote/{offering_id}")
    assert f'href="/knoten/{offering["node_id"]}"' in offering_page.text
    for unknown in ("00000000-0000-0000-0000-000000000000", "<script>", "x" * 300, "%C3%BC"):
        missing = await client.get(f"/knoten/{unknown}")
        assert missing.status_code == 404 and "Knoten nicht gefunden" in missing.text
