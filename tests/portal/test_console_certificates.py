"""Certificates and feedback in the staff console over HTTP against the running system: a completed
participant's certificate is listed on the offering page, re-sent (a second mail in the sink) and revoked
with a reason (the public check says so); both actions are in the lead's audit log; another node's staff
get 403; a missing reason, a forged code and a missing CSRF token are refused in German. The scores (fewer
than five answers: suppressed) and the anonymous comment are shown, escaped, to the node's staff only."""

from __future__ import annotations

import html
import re
import uuid
from typing import Any

import pytest
from portal.console_kit import (
    ConsoleClient,
    add_staff,
    console_client,
    later,
    open_node,
    register_directly,
)
from portal.portal_kit import PortalSystem
from portal.test_followup import FEEDBACK_LINK, mail_to, plain

from support import eventually

LISTED = re.compile(r"Prüfcode <code>([A-Z2-7]{4}(?:-[A-Z2-7]{4}){3})</code>")
HOSTILE = '<script>alert("x")</script> =HYPERLINK("http://böse.example") – Grüße 😀'


async def signed_in(portal: PortalSystem, node_id: str | None) -> tuple[ConsoleClient, str]:
    email = f"{'knoten' if node_id else 'leitung'}-{uuid.uuid4().hex[:6]}@qti.example"
    await add_staff(portal, email, node_id)
    browser = console_client(portal)
    assert (await browser.sign_in(email)).status_code == 303
    return browser, email


async def other_node(portal: PortalSystem) -> str:
    return str(await open_node(portal, f"Fremd-{uuid.uuid4().hex[:6]}"))


async def completed_course(portal: PortalSystem, browser: ConsoleClient, node_id: str, address: str) -> str:
    """A certificate course of the node, published, one participant present at its only session."""
    form = {
        "titel": f"Zertifikat {uuid.uuid4().hex[:6]}", "beschreibung": "Hochvolt für Beschäftigte.",
        "format": "certificate_course", "thema": "wasserstoff", "knoten": node_id, "kapazitaet": "5",
        "warteliste": "0", "gebuehr": "0", "zeilen": "1", "termin_0_datum": later(30, 9).date().isoformat(),
        "termin_0_beginn": "09:00", "termin_0_ende": "12:00", "termin_0_ort": "Werkhalle",
    }  # fmt: skip
    created = await browser.post("/verwaltung/angebote/neu", form)
    assert created.status_code == 303, created.text
    base = created.headers["location"].split("?")[0]
    assert (await browser.post(f"{base}/veroeffentlichen")).status_code == 303
    registration_id = await register_directly(portal, base.rsplit("/", 1)[-1], "Ümit", "Çelik", address)
    session = re.search(r"termine/([0-9a-f-]{36})/anwesenheit", (await browser.page(base)).text)
    assert session is not None
    attendance = f"{base}/termine/{session.group(1)}/anwesenheit"
    assert (await browser.post(attendance, {f"anwesend_{registration_id}": "ja"})).status_code == 303
    return str(base)


async def certificate_mails(portal: PortalSystem, recipient: str) -> list[dict[str, Any]]:
    return [
        m
        for m in await portal.mails()
        if recipient in str(m["to"]) and m["subject"].startswith("Ihre Teilnahmebescheinigung")
    ]


@pytest.fixture(scope="module")
async def course(portal_system: PortalSystem) -> dict[str, Any]:
    """A node with its staff, a completed certificate course of it and the certificate's code."""
    node_id = await open_node(portal_system, f"Zertstadt-{uuid.uuid4().hex[:6]}")
    browser, email = await signed_in(portal_system, node_id)
    address = f"umit.{uuid.uuid4().hex[:6]}@example.de"
    base = await completed_course(portal_system, browser, node_id, address)

    async def listed() -> str | None:
        found = LISTED.search((await browser.page(base)).text)
        return found.group(1) if found else None

    code = await eventually(listed, timeout=90, interval=0.5)
    assert await eventually(lambda: certificate_mails(portal_system, address), timeout=90)
    return {"browser": browser, "email": email, "base": base, "code": code, "address": address}


async def test_resend_and_revoke_a_certificate(portal_system: PortalSystem, course: dict[str, Any]) -> None:
    browser: ConsoleClient = course["browser"]
    base, code, address = course["base"], course["code"], course["address"]
    page = (await browser.page(base)).text
    assert "Teilnahmebescheinigungen (1)" in page and "Ümit Çelik" in page and "gültig" in page

    stranger, _ = await signed_in(
        portal_system, await open_node(portal_system, f"Fremd-{uuid.uuid4().hex[:6]}")
    )
    for action in ("erneut-senden", "widerrufen"):
        refused = await stranger.post(f"{base}/bescheinigungen/{code}/{action}", {"grund": "fremd"})
        assert refused.status_code == 403 and "anderen QTI-Knoten" in refused.text, action
    assert (await browser.post(f"{base}/bescheinigungen/{code}/erneut-senden", csrf=False)).status_code == 403

    for forged in ("AAAA-AAAA-AAAA-AAAA", "<script>", "x" * 300):
        answer = await browser.post(f"{base}/bescheinigungen/{forged}/erneut-senden")
        assert answer.status_code == 404 and "gehört nicht zu diesem Angebot" in answer.text, forged
        assert "<script>" not in answer.text.split("<main", 1)[-1]

    assert (await browser.post(f"{base}/bescheinigungen/{code}/erneut-senden")).status_code == 303

    async def second_mail() -> bool:
        return len(await certificate_mails(portal_system, address)) >= 2

    assert await eventually(second_mail, timeout=90)

    for reason, message in (("   ", "Bitte geben Sie einen Grund"), ("a\u0000b", "ohne Steuerzeichen"),
                            ("x" * 501, "höchstens 500 Zeichen")):  # fmt: skip
        no_reason = await browser.post(f"{base}/bescheinigungen/{code}/widerrufen", {"grund": reason})
        assert no_reason.status_code == 422 and message in no_reason.text
        assert f'id="fehler-grund-{code}"' in no_reason.text
        assert f'aria-describedby="fehler-grund-{code}"' in no_reason.text

    reason = "Teilnahme nachträglich korrigiert <b>fett</b>"
    assert (
        await browser.post(f"{base}/bescheinigungen/{code}/widerrufen", {"grund": reason})
    ).status_code == 303
    page = (await browser.page(base)).text
    assert "widerrufen am" in page and html.escape(reason, quote=False) in page and "<b>fett</b>" not in page
    public = await browser.http.get(f"/bescheinigung/{code}")
    assert public.status_code == 200 and "Diese Bescheinigung ist widerrufen" in public.text

    again = await browser.post(f"{base}/bescheinigungen/{code}/erneut-senden")
    assert again.status_code == 409 and "ist widerrufen und kann nicht erneut versandt werden" in again.text
    assert f'id="fehler-code-{code}"' in again.text

    lead, _ = await signed_in(portal_system, None)
    log = (await lead.page("/verwaltung/protokoll")).text
    for action in ("Teilnahmebescheinigung erneut gesendet", "Teilnahmebescheinigung widerrufen"):
        assert action in log
    assert code in log and course["email"] in log and "Çelik" not in log and address not in log


async def test_feedback_scores_and_comments_for_the_nodes_staff(
    portal_system: PortalSystem, course: dict[str, Any]
) -> None:
    browser: ConsoleClient = course["browser"]
    base = course["base"]
    invitation = await mail_to(portal_system, course["address"], "Ihre Meinung zu")
    [link] = FEEDBACK_LINK.findall(plain(invitation))
    participant = console_client(portal_system)
    path = link.removeprefix(portal_system.url)
    assert (await participant.page(path)).status_code == 200
    answer = {"rating": "4", "usefulness": "5", "would_recommend": "ja", "comment": HOSTILE}
    assert (await participant.post(path, answer)).status_code == 303

    async def commented() -> str | None:
        text = (await browser.page(base)).text
        return text if "Kommentare (1)" in text else None

    page = await eventually(commented, timeout=90, interval=0.5)
    assert HOSTILE in html.unescape(page) and "&lt;script&gt;alert(" in page
    assert '<script>alert("x")' not in page
    assert "weniger als 5 Antworten" in page  # one answer: no mean is shown

    stranger, _ = await signed_in(
        portal_system, await open_node(portal_system, f"Fremd-{uuid.uuid4().hex[:6]}")
    )
    refused = await stranger.page(base)
    assert refused.status_code == 403 and "Grüße" not in refused.text
    lead, _ = await signed_in(portal_system, None)
    assert "Kommentare (1)" in (await lead.page(base)).text
