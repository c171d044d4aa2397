"""The staff console over HTTP against the running system: sign-in, lockout, sessions, roles (403 for
another node's offerings), manual promotion, the sign-in sheet PDF, the audit log and bad input."""

from __future__ import annotations

import email
import email.policy
import hashlib
import html
import io
import json
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from portal.console_kit import (
    ConsoleClient,
    add_staff,
    console_client,
    later,
    open_node,
    qti_staff,
    register_directly,
)
from portal.portal_kit import PortalSystem
from pypdf import PdfReader
from redis.asyncio import Redis

from devtools.demo_data import node_id_for
from support import eventually

GENERIC = "E-Mail-Adresse oder Passwort stimmen nicht"


@asynccontextmanager
async def redis_client() -> AsyncIterator[Redis]:
    """The Redis the portal under test uses (its default URL; keys carry the test's own prefix)."""
    redis = Redis.from_url("redis://127.0.0.1:6379/0")
    try:
        yield redis
    finally:
        await redis.aclose()


@pytest.fixture(scope="module")
async def node_staff(portal_system: PortalSystem) -> tuple[str, str]:
    """A node opened for these tests and its staff account: (node id, e-mail)."""
    node_id = await open_node(portal_system, f"Teststadt-{uuid.uuid4().hex[:6]}")
    email = f"knoten-{uuid.uuid4().hex[:6]}@qti.example"
    await add_staff(portal_system, email, node_id)
    return node_id, email


@pytest.fixture(scope="module")
async def node_browser(portal_system: PortalSystem, node_staff: tuple[str, str]) -> ConsoleClient:
    """The node staff signed in once (each sign-in counts against the per-address rate limit)."""
    browser = console_client(portal_system)
    assert (await browser.sign_in(node_staff[1])).status_code == 303
    return browser


def offering_form(node_id: str, title: str, **overrides: str) -> dict[str, str]:
    day = later(30, 9).date().isoformat()
    form = {
        "titel": title, "beschreibung": "Grundlagen für Beschäftigte.", "format": "workshop",
        "thema": "wasserstoff", "knoten": node_id, "kapazitaet": "1", "warteliste": "5", "gebuehr": "0",
        "zeilen": "3", "termin_0_datum": day, "termin_0_beginn": "09:00", "termin_0_ende": "12:00",
        "termin_0_ort": "Schulungsraum 1",
    }  # fmt: skip
    return {**form, **overrides}


async def test_sign_in_lockout_and_sign_out(portal_system: PortalSystem) -> None:
    email = f"sperre-{uuid.uuid4().hex[:6]}@qti.example"
    await add_staff(portal_system, email, None)
    browser = console_client(portal_system)
    assert (await browser.page("/verwaltung")).headers["location"].startswith("/verwaltung/anmelden")
    unknown = await browser.sign_in("niemand@qti.example")
    wrong = await browser.sign_in(email, "falsches-passwort-123")
    assert unknown.status_code == wrong.status_code == 422
    assert GENERIC in unknown.text and GENERIC in wrong.text
    for _ in range(4):  # five failures in all lock the account
        assert (await browser.sign_in(email, "falsches-passwort-123")).status_code == 422
    locked = await browser.sign_in(email)
    assert locked.status_code == 422 and GENERIC in locked.text  # the right password, but locked
    assert "locked" in await qti_staff(portal_system, "list")

    await qti_staff(portal_system, "reset-password", email, "--password-stdin")  # clears the lock
    signed = await browser.sign_in(email)
    assert signed.status_code == 303 and signed.headers["location"] == "/verwaltung"
    cookie = next(h for h in signed.headers.get_list("set-cookie") if h.startswith("qti-staff="))
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    session_id = cookie.split(";")[0].split("=", 1)[1]
    assert len(session_id) >= 43  # 256 random bits
    async with redis_client() as redis:
        [key] = await redis.keys(f"*:staff-session:{hashlib.sha256(session_id.encode()).hexdigest()}")
        assert session_id not in (await redis.get(key)).decode()  # only its hash is the key
    assert (await browser.page("/verwaltung")).status_code == 200
    assert (await browser.post("/verwaltung/abmelden", csrf=False)).status_code == 403  # CSRF
    out = await browser.post("/verwaltung/abmelden")
    assert out.status_code == 303
    assert (await browser.page("/verwaltung")).status_code == 303
    browser.http.cookies.set("qti-staff", session_id)  # the old id is worth nothing after sign-out
    assert (await browser.page("/verwaltung")).status_code == 303


@pytest.mark.parametrize(("column", "seconds"), [("seen", 31 * 60), ("created", 8 * 3600 + 60)])
async def test_sessions_end_after_idle_and_absolute_timeouts(
    portal_system: PortalSystem, column: str, seconds: int
) -> None:
    email = f"zeit-{uuid.uuid4().hex[:6]}@qti.example"
    await add_staff(portal_system, email, None)
    browser = console_client(portal_system)
    assert (await browser.sign_in(email)).status_code == 303
    assert (await browser.page("/verwaltung")).status_code == 200
    session_id = browser.http.cookies["qti-staff"]
    async with redis_client() as redis:
        [key] = await redis.keys(f"*:staff-session:{hashlib.sha256(session_id.encode()).hexdigest()}")
        stored = json.loads(await redis.get(key))
        stored[column] -= seconds  # as if that long ago
        await redis.set(key, json.dumps(stored))
    expired = await browser.page("/verwaltung/protokoll")
    assert expired.status_code == 303
    assert expired.headers["location"] == "/verwaltung/anmelden?weiter=/verwaltung/protokoll"


async def test_node_staff_cannot_touch_another_nodes_offerings(
    portal_system: PortalSystem, node_staff: tuple[str, str]
) -> None:
    node_id, email = node_staff
    other = await portal_system.create_offering(2, f"Fremdes Angebot {uuid.uuid4().hex[:6]}")
    browser = console_client(portal_system)
    assert (await browser.sign_in(email)).status_code == 303
    overview = await browser.page("/verwaltung")
    assert overview.status_code == 200 and "Fremdes Angebot" not in overview.text
    base = f"/verwaltung/angebote/{other}"
    offering = await browser.page(base)
    assert offering.status_code == 403 and "anderen QTI-Knoten" in offering.text
    session_id = re.search(r"termine/([0-9a-f-]{36})/", (await browser.page(base)).text)
    assert session_id is None  # nothing of it is shown
    for path in ("/bearbeiten", "/termine/x/anwesenheit", "/termine/x/unterschriften.pdf"):
        assert (await browser.page(base + path)).status_code == 403, path
    assert (await browser.page(f"/verwaltung/angebote/neu?vorlage={other}")).status_code == 403
    for path in ("/veroeffentlichen", "/abschliessen", "/absagen", "/bearbeiten",
                 "/termine/x/anwesenheit", "/anmeldungen/r1/nachruecken"):  # fmt: skip
        answer = await browser.post(base + path, {"grund": "Test", "titel": "Übernommen"})
        assert answer.status_code == 403, path
    foreign = await browser.post("/verwaltung/angebote/neu", offering_form(str(node_id_for("gotha")), "X"))
    assert foreign.status_code == 422 and "für den Ihr Konto Angebote anlegen darf" in foreign.text
    assert (await browser.page("/verwaltung/protokoll")).status_code == 403  # the lead's page
    lead = f"leitung-{uuid.uuid4().hex[:6]}@qti.example"
    await add_staff(portal_system, lead, None)
    lead_browser = console_client(portal_system)
    assert (await lead_browser.sign_in(lead)).status_code == 303
    assert (await lead_browser.page(base)).status_code == 200
    assert node_id  # the node staff's own node is a real, new one


async def test_promotion_sheet_and_audit(portal_system: PortalSystem, node_staff: tuple[str, str]) -> None:
    node_id, email = node_staff
    browser = console_client(portal_system)
    assert (await browser.sign_in(email)).status_code == 303
    title = f"Nachrücken {uuid.uuid4().hex[:6]}"
    created = await browser.post("/verwaltung/angebote/neu", offering_form(node_id, title))
    assert created.status_code == 303, created.text
    base = created.headers["location"].split("?")[0]
    offering_id = base.rsplit("/", 1)[-1]
    assert (await browser.post(f"{base}/veroeffentlichen")).status_code == 303
    first = await register_directly(portal_system, offering_id, "Jürgen", "Öztürk")
    second = await register_directly(portal_system, offering_id, "Zoë", "Łukasiewicz")
    refused = await browser.post(f"{base}/anmeldungen/{second}/nachruecken")
    assert refused.status_code == 409 and "kein Platz frei" in refused.text
    promoted = await browser.post(f"{base}/anmeldungen/{second}/nachruecken", {"ueber_kapazitaet": "ja"})
    assert promoted.status_code == 303
    page = (await browser.page(base)).text
    assert "(von Hand nachgerückt)" in page and "Bestätigte Anmeldungen (2)" in page

    session_id = re.search(r"termine/([0-9a-f-]{36})/unterschriften\.pdf", page)
    assert session_id is not None
    sheet = await browser.page(f"{base}/termine/{session_id.group(1)}/unterschriften.pdf")
    assert sheet.status_code == 200 and sheet.headers["content-type"] == "application/pdf"
    text = "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(sheet.content)).pages)
    expected_texts = ("Unterschriftenliste", title, "Jürgen Öztürk", "Zoë Łukasiewicz",
                      "Öztürk Zulieferteile GmbH", "Schulungsraum 1", "4 (zu 45 Minuten)")  # fmt: skip
    for expected in expected_texts:
        assert expected in text, expected
    assert first != second

    past = await browser.post(
        "/verwaltung/angebote/neu", offering_form(node_id, "Alt", termin_0_datum="2020-01-06")
    )
    assert past.status_code == 303  # a draft may be anything; publishing it may not
    refused_publish = await browser.post(past.headers["location"].split("?")[0] + "/veroeffentlichen")
    assert refused_publish.status_code == 409 and "Vergangenheit" in refused_publish.text

    lead = f"leitung-{uuid.uuid4().hex[:6]}@qti.example"
    await add_staff(portal_system, lead, None)
    lead_browser = console_client(portal_system)
    await lead_browser.sign_in(lead)
    log = (await lead_browser.page("/verwaltung/protokoll")).text
    for action in ("Angebot angelegt", "Angebot veröffentlicht", "Von der Warteliste nachgerückt"):
        assert action in log
    assert email in log and second in log and "Öztürk" not in log  # ids, never names


async def test_edit_copy_and_cancel_with_reason(
    portal_system: PortalSystem, node_browser: ConsoleClient, node_staff: tuple[str, str]
) -> None:
    node_id = node_staff[0]
    created = await node_browser.post("/verwaltung/angebote/neu", offering_form(node_id, "Erster Titel"))
    base = created.headers["location"].split("?")[0]
    form_page = await node_browser.page(f"{base}/bearbeiten")
    etag = re.search(r'name="etag" value="([^"]+)"', form_page.text)
    session_id = re.search(r'name="termin_0_id" value="([0-9a-f-]{36})"', form_page.text)
    assert etag and session_id
    edit = {**offering_form(node_id, "Zweiter Titel", kapazitaet="3"), "etag": html.unescape(etag.group(1)),
            "termin_0_id": session_id.group(1)}  # fmt: skip
    assert (await node_browser.post(f"{base}/bearbeiten", edit)).status_code == 303
    page = (await node_browser.page(base)).text
    assert "Zweiter Titel" in page and "0 / 3" in page and session_id.group(1) in page  # the session kept
    stale = await node_browser.post(f"{base}/bearbeiten", {**edit, "titel": "Dritter Titel"})  # old ETag
    assert stale.status_code == 409 and "inzwischen geändert" in stale.text

    copy = await node_browser.page(f"/verwaltung/angebote/neu?vorlage={base.rsplit('/', 1)[-1]}")
    assert copy.status_code == 200 and 'value="Zweiter Titel"' in copy.text
    assert 'name="termin_0_ort" type="text" value="Schulungsraum 1"' in copy.text
    assert 'id="termin_0_datum" name="termin_0_datum" type="date" value=""' in copy.text  # new dates

    assert (await node_browser.post(f"{base}/veroeffentlichen")).status_code == 303
    person = await register_directly(portal_system, base.rsplit("/", 1)[-1], "Carla", "Abgesagt")
    no_reason = await node_browser.post(f"{base}/absagen", {"grund": "  "})
    assert no_reason.status_code == 422 and "Grund für die Absage" in no_reason.text
    reason = "Die Referentin ist erkrankt; ein neuer Termin folgt."
    assert (await node_browser.post(f"{base}/absagen", {"grund": reason})).status_code == 303
    assert "abgesagt (Die Referentin ist erkrankt" in (await node_browser.page(base)).text

    async def cancellation_mail() -> str | None:
        for mail in await portal_system.mails():
            if "carla." not in str(mail["to"]):
                continue
            raw = await portal_system.mail_text(mail["name"])
            body = email.message_from_string(raw, policy=email.policy.default).get_body(("plain",))
            text = body.get_content() if body is not None else ""
            if "Die Referentin ist erkrankt" in text:
                return str(text)
        return None

    assert await eventually(cancellation_mail, timeout=60)
    assert person


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"titel": ""}, "titel", "Bitte ausfüllen."),
        ({"titel": "x" * 5000}, "titel", "höchstens 200 Zeichen"),
        ({"titel": "Zeile\u0000Null"}, "titel", "ohne Steuerzeichen"),
        ({"kapazitaet": "-1"}, "kapazitaet", "von 1 bis 1000"),
        ({"kapazitaet": "1e9"}, "kapazitaet", "von 1 bis 1000"),
        ({"gebuehr": "=HYPERLINK(1)"}, "gebuehr", "Betrag in Euro"),
        ({"termin_0_datum": "2027-02-30"}, "termin_0_datum", "Bitte ein Datum angeben."),
        ({"termin_0_ende": "08:00"}, "termin_0_ende", "nach dem Beginn"),
        ({"format": "<script>alert(1)</script>"}, "format", "Bitte ein Format auswählen."),
        ({"termin_0_ort": "Raum\nZwei"}, "termin_0_ort", "einzeilig"),
    ],
)
async def test_bad_offering_input_gets_german_errors_next_to_the_fields(
    node_browser: ConsoleClient,
    node_staff: tuple[str, str],
    overrides: dict[str, str],
    field: str,
    message: str,
) -> None:
    node_id = node_staff[0]
    form = offering_form(node_id, "Ein Titel", **overrides)
    answer = await node_browser.post("/verwaltung/angebote/neu", form)
    assert answer.status_code == 422
    assert f'id="fehler-{field}"' in answer.text and message in answer.text
    assert f'href="#{field}"' in answer.text  # the error summary links to the field
    assert "<script>alert(1)</script>" not in answer.text
