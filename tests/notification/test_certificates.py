"""Certificates and feedback invitations end to end: real RabbitMQ, Postgres and an SMTP server.

`registration.completed` (eligible) → one certificate, mailed once with its PDF (text extracted and
checked); the public check shows the course, dates and node only; staff re-send and revoke; the feedback
invitation carries the derived one-time link; `catalogue.node.updated` reaches notification's replica.
"""

from __future__ import annotations

import io
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

import httpx
import pypdf
import pytest
from notification.test_service import (
    NODE,
    SmtpServer,
    catalogue,
    html_of,
    notification_settings,
    outcome,
    participant,
    smtp,
    text_of,
)

from qti_contracts import make_event
from qti_runtime import links
from qti_runtime.broker import create_broker, publish_event_bytes
from qti_runtime.definition import Built
from qti_runtime.settings import Settings
from services.notification.app import DEFINITION, routers
from services.notification.certificates import new_code, normalise_code
from services.notification.handlers import NotificationHandlers
from services.notification.settings import NotificationSettings
from support import eventually

__all__ = ["smtp"]  # fixture

STAFF = {"Authorization": "Bearer dev-staff-token", "X-Staff-Actor": "Petra Verwaltung"}
CODE = re.compile(r"Prüfcode der Bescheinigung: ([A-Z2-7]{4}(?:-[A-Z2-7]{4}){3})")


@dataclass
class Service:
    built: Built[NotificationSettings, NotificationHandlers]
    smtp: SmtpServer
    client: httpx.AsyncClient
    broker: Any

    async def publish(self, type_: str, data: dict[str, Any], event_id: str | None = None) -> str:
        event = make_event(type_, data, source="/tests", id_=event_id, correlationid="corr-test")
        await publish_event_bytes(
            self.broker, event.model_dump_json().encode(), routing_key=type_, message_id=event.id
        )
        return event.id

    async def fetchval(self, sql: str, *args: Any) -> Any:
        async with self.built.runtime.db.pool.acquire() as conn:
            return await conn.fetchval(sql, *args)

    @property
    def runtime(self) -> Any:  # what `catalogue()` of test_service uses
        return self.built.runtime


@pytest.fixture
async def service(settings: Settings, smtp: SmtpServer) -> AsyncIterator[Service]:
    values = notification_settings(settings, smtp, certificate_lookups_per_minute=40)
    built = DEFINITION.build(values)
    await built.runtime.start()
    broker = create_broker(values, "test")
    await broker.connect()
    app = built.runtime.create_app(routers(built.service, values), title="t")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        yield Service(built, smtp, client, broker)
    await broker.stop()
    await built.runtime.stop()


def completed(registration_id: str, *, eligible: bool = True) -> dict[str, Any]:
    return {
        "registration_id": registration_id,
        "offering_id": "off-hv",
        "attended_units": 18 if eligible else 9,
        "total_units": 18,
        "attendance_ratio": 1.0 if eligible else 0.5,
        "completed": eligible,
        "certificate_eligible": eligible,
    }


def mails(service: Service, address: str, subject_start: str) -> list[EmailMessage]:
    return [m for m in service.smtp.to(address) if str(m["Subject"]).startswith(subject_start)]


def pdf_text(message: EmailMessage) -> str:
    [attachment] = [p for p in message.walk() if p.get_content_type() == "application/pdf"]
    assert attachment.get_filename() == "Teilnahmebescheinigung.pdf"
    payload = attachment.get_payload(decode=True)
    assert isinstance(payload, bytes) and payload.startswith(b"%PDF-")
    reader = pypdf.PdfReader(io.BytesIO(payload))
    fonts = {
        str(font.get_object()["/BaseFont"]).split("+")[-1]
        for page in reader.pages
        for font in page["/Resources"]["/Font"].values()
    }
    assert fonts <= {"QTI-Sans", "QTI-Sans-Bold"}, fonts  # DejaVu by path, never a system fallback
    return "\n".join(page.extract_text() for page in reader.pages)


async def handled(service: Service, event_ids: list[str]) -> None:
    async def done() -> bool:
        count = await service.fetchval(
            "SELECT count(*) FROM inbox WHERE event_id = ANY($1::text[])", event_ids
        )
        return bool(count == len(event_ids))

    await eventually(done)


async def confirmed(service: Service, registration_id: str, given: str, email: str) -> None:
    person = participant(given, "Schmidt", email, "female")
    await service.publish(
        "registration.confirmed", outcome(registration_id, f"req-{registration_id}", person)
    )
    await eventually(lambda: mails(service, email, "Anmeldebestätigung"))


async def test_certificate_is_issued_once_mailed_with_pdf_and_checked_publicly(service: Service) -> None:
    await catalogue(service)
    await confirmed(service, "reg-1", "Anna", "anna@example.de")
    await confirmed(service, "reg-2", "Berta", "berta@example.de")
    ids = [
        await service.publish("registration.completed", completed("reg-1")),
        await service.publish("registration.completed", completed("reg-1")),  # a corrected record
        await service.publish("registration.completed", completed("reg-2", eligible=False)),
    ]
    await handled(service, ids)
    await eventually(lambda: mails(service, "anna@example.de", "Ihre Teilnahmebescheinigung"))
    assert await service.fetchval("SELECT count(*) FROM certificates") == 1
    assert await service.fetchval("SELECT count(*) FROM deliveries WHERE template = 'certificate'") == 1

    [mail] = mails(service, "anna@example.de", "Ihre Teilnahmebescheinigung")
    assert str(mail["Subject"]) == "Ihre Teilnahmebescheinigung: „Hochvolt-Sicherheit für Elektrofahrzeuge“"
    [code] = CODE.findall(text_of(mail))
    verify = f"http://127.0.0.1:8000/bescheinigung/{code}"
    assert verify in text_of(mail) and f'href="{verify}"' in html_of(mail)
    text = pdf_text(mail)
    for expected in (
        "Teilnahmebescheinigung",
        "Anna Schmidt",
        "Hochvolt-Sicherheit für Elektrofahrzeuge",
        "(Zertifikatslehrgang)",
        "Dienstag, 12. März 2030, 09:00–16:00 Uhr",
        "Dienstag, 2. Juli 2030, 09:00–16:30 Uhr",
        "Teilgenommen an 18 von 18 Unterrichtseinheiten zu je 45 Minuten.",
        "QTI-Knoten Erfurt, Juri-Gagarin-Ring 1, 99084 Erfurt",
        "Ausgestellt von Bildungswerk Thüringen",
        f"Prüfcode: {code}",
        verify,
    ):
        assert expected in text, expected
    assert mails(service, "berta@example.de", "Ihre Teilnahmebescheinigung") == []

    # the public check: the course, dates and node, nothing about the person
    for typed in (code, code.lower().replace("-", ""), f" {code.replace('-', ' ')} "):
        answer = await service.client.get(f"/certificates/{typed}")
        assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body == {
        "code": code,
        "status": "valid",
        "title": "Hochvolt-Sicherheit für Elektrofahrzeuge",
        "kind": "certificate_course",
        "first_day": "2030-03-12",
        "last_day": "2030-07-02",
        "total_units": 18,
        "node_name": "QTI-Knoten Erfurt",
        "issuer": "Bildungswerk Thüringen",
        "issued_on": body["issued_on"],
        "revoked_on": None,
    }
    for personal in ("Anna", "Schmidt", "anna@", "reg-1", "18 von"):
        assert personal not in answer.text


@pytest.mark.parametrize(
    "typed", ["AAAA-AAAA-AAAA-AAAA", "x" * 5000, "ÄÖÜ-€€€€", "0000-1111-8888-9999", "%00", "' OR 1=1 --"]
)
async def test_unknown_or_malformed_codes_get_the_same_german_404(service: Service, typed: str) -> None:
    answer = await service.client.get(f"/certificates/{typed}")
    assert answer.status_code == 404
    assert answer.json()["detail"] == "Eine Bescheinigung mit diesem Prüfcode ist nicht bekannt."


def test_codes_are_80_bit_base32_groups_and_normalise() -> None:
    codes = {new_code() for _ in range(2000)}
    assert len(codes) == 2000
    assert all(re.fullmatch(r"[A-Z2-7]{4}(-[A-Z2-7]{4}){3}", c) for c in codes)
    code = codes.pop()
    assert normalise_code(code.lower().replace("-", " ")) == code
    assert normalise_code(code + "A") is None and normalise_code("O0O0-1111-IIII-LLLL") is None


async def test_staff_resend_revoke_and_list(service: Service) -> None:
    await catalogue(service)
    await confirmed(service, "reg-1", "Anna", "anna@example.de")
    await service.publish("registration.completed", completed("reg-1"))
    await eventually(lambda: mails(service, "anna@example.de", "Ihre Teilnahmebescheinigung"))
    code = await service.fetchval("SELECT code FROM certificates")

    assert (await service.client.post(f"/certificates/{code}/resend")).status_code == 401
    no_actor = await service.client.post(
        f"/certificates/{code}/resend", headers={"Authorization": STAFF["Authorization"]}
    )
    assert no_actor.status_code == 422 and "X-Staff-Actor" in no_actor.json()["detail"]
    resent = await service.client.post(f"/certificates/{code}/resend", headers=STAFF)
    assert resent.status_code == 202 and resent.json()["code"] == code
    await eventually(lambda: len(mails(service, "anna@example.de", "Ihre Teilnahmebescheinigung")) == 2)
    again = mails(service, "anna@example.de", "Ihre Teilnahmebescheinigung")[1]
    assert "erneut" in text_of(again) and code in pdf_text(again)

    listed = await service.client.get("/offerings/off-hv/certificates", headers=STAFF)
    assert [c["code"] for c in listed.json()] == [code] and listed.json()[0]["registration_id"] == "reg-1"
    assert (await service.client.get("/offerings/off-hv/certificates")).status_code == 401

    bad = await service.client.post(f"/certificates/{code}/revoke", headers=STAFF, json={"reason": "a\x00b"})
    assert bad.status_code == 422
    revoked = await service.client.post(
        f"/certificates/{code}/revoke", headers=STAFF, json={"reason": "Anwesenheit falsch erfasst"}
    )
    assert revoked.status_code == 200 and revoked.json()["revoked_reason"] == "Anwesenheit falsch erfasst"
    public = (await service.client.get(f"/certificates/{code}")).json()
    assert public["status"] == "revoked" and public["revoked_on"] is not None
    refused = await service.client.post(f"/certificates/{code}/resend", headers=STAFF)
    assert refused.status_code == 409 and "widerrufen" in refused.json()["detail"]
    actions = await service.fetchval(
        "SELECT string_agg(action || ':' || actor, ',' ORDER BY id) FROM certificate_actions"
    )
    assert actions == "resend:Petra Verwaltung,revoke:Petra Verwaltung"
    unknown = await service.client.post(
        "/certificates/AAAA-AAAA-AAAA-AAAA/revoke", headers=STAFF, json={"reason": "x"}
    )
    assert unknown.status_code == 404


async def test_public_check_is_rate_limited(service: Service) -> None:
    statuses = [
        (await service.client.get("/certificates/AAAA-AAAA-AAAA-AAAA")).status_code for _ in range(41)
    ]
    assert statuses[:40] == [404] * 40
    assert statuses[40] == 429


async def test_feedback_invitation_carries_the_derived_one_time_link(service: Service) -> None:
    await catalogue(service)
    await confirmed(service, "reg-1", "Anna", "anna@example.de")
    invitation = {"registration_id": "reg-1", "offering_id": "off-hv"}
    ids = [await service.publish("registration.feedback.invited", invitation) for _ in range(2)]
    await handled(service, ids)  # a repeated invitation is one mail
    await eventually(lambda: mails(service, "anna@example.de", "Ihre Meinung zu"))
    assert (
        await service.fetchval("SELECT count(*) FROM deliveries WHERE template = 'feedback_invitation'") == 1
    )
    [mail] = mails(service, "anna@example.de", "Ihre Meinung zu")
    token = links.feedback_token(service.built.settings.link_secret, "reg-1")
    link = f"http://127.0.0.1:8000/rueckmeldung/{token}"
    assert link in text_of(mail) and f'href="{link}"' in html_of(mail)
    assert token != links.personal_token(service.built.settings.link_secret, "req-reg-1")
    assert "anonym" in text_of(mail)


async def test_node_updates_reach_the_replica_newest_revision_wins(service: Service) -> None:
    await service.publish("catalogue.node.published", {**NODE, "revision": 1})
    renamed = {
        **NODE,
        "name": "QTI-Knoten Erfurt-Nord",
        "address": "Neue Str. 5, 99086 Erfurt",
        "revision": 3,
    }
    await service.publish("catalogue.node.updated", renamed)
    await eventually(lambda: service.fetchval("SELECT name = 'QTI-Knoten Erfurt-Nord' FROM nodes"))
    await service.publish("catalogue.node.updated", {**NODE, "name": "Veraltet", "revision": 2})
    await service.publish("catalogue.node.updated", {**renamed, "host": "Neuer Träger", "revision": 4})
    await eventually(lambda: service.fetchval("SELECT host = 'Neuer Träger' FROM nodes"))
    assert await service.fetchval("SELECT name FROM nodes") == "QTI-Knoten Erfurt-Nord"
