"""Waiting-list mails list offerings on the same topic with free seats at other nodes (real broker,
database and SMTP server)."""

from __future__ import annotations

from typing import Any

import pytest
from notification.test_service import (
    COMPANY,
    NODE,
    Harness,
    html_of,
    offering,
    one,
    outcome,
    participant,
    rejection,
    service,
    smtp,
    text_of,
    wait_for_mails,
)

from qti_runtime.alternatives import county_of
from services.notification.alternatives import alternative_infos
from support import eventually

__all__ = ["service", "smtp"]  # fixtures used below

SOEMMERDA_NODE = {
    **NODE,
    "node_id": "node-soemmerda",
    "name": "QTI-Knoten Sömmerda",
    "town": "Sömmerda",
    "county": "Sömmerda",
}
ROHR_NODE = {
    **NODE,
    "node_id": "node-rohr",
    "name": "QTI-Knoten Rohr",
    "town": "Rohr",
    "county": "Schmalkalden-Meiningen",
}
LATER = [
    {
        "session_id": "s-9",
        "starts_at": "2030-04-12T08:00:00Z",
        "ends_at": "2030-04-12T15:00:00Z",
        "location": "Raum <b>&</b>",
    }
]


def occupancy(version: int, confirmed: int, capacity: int = 12) -> dict[str, int]:
    return {"version": version, "confirmed": confirmed, "waitlisted": 0, "capacity": capacity}


async def setup_catalogue(harness: Harness) -> None:
    for node in (NODE, SOEMMERDA_NODE, ROHR_NODE):
        await harness.publish("catalogue.node.published", node)
    await harness.publish("catalogue.offering.published", offering())  # off-hv at Erfurt: full below
    await harness.publish(
        "catalogue.offering.published",
        offering(offering_id="off-rohr", node_id="node-rohr", title="Hochvolt in Rohr", sessions=LATER),
    )
    await harness.publish(
        "catalogue.offering.published",
        offering(
            offering_id="off-som",
            node_id="node-soemmerda",
            title="Hochvolt <Sömmerda> & mehr",
            sessions=LATER,
        ),
    )
    await harness.publish(
        "catalogue.offering.published",
        offering(offering_id="off-som-full", node_id="node-soemmerda", title="Ausgebucht", sessions=LATER),
    )
    await harness.publish(
        "catalogue.offering.published",
        offering(
            offering_id="off-other-topic",
            node_id="node-soemmerda",
            topic="wasserstoff",
            title="Anderes Thema",
            sessions=LATER,
        ),
    )

    async def replicated() -> bool:
        async with harness.runtime.db.pool.acquire() as conn:
            return (
                int(await conn.fetchval("SELECT count(*) FROM offerings")) == 5
                and int(await conn.fetchval("SELECT count(*) FROM nodes")) == 3
            )

    await eventually(replicated)


async def make_full(harness: Harness, offering_id: str, version: int) -> None:
    person = participant("Voll", "Besetzt", f"voll-{offering_id}@example.de")
    data = outcome(f"reg-{offering_id}", f"req-{offering_id}", person, offering_id=offering_id)
    await harness.publish("registration.confirmed", {**data, "occupancy": occupancy(version, 12)})


@pytest.mark.asyncio(loop_scope="session")
async def test_waitlist_mail_lists_alternatives_nearest_first(service: Harness) -> None:
    await setup_catalogue(service)
    await make_full(service, "off-hv", 12)
    await make_full(service, "off-som-full", 3)
    await wait_for_mails(service, 2)
    anna = participant("Anna", "Schmidt", "anna@example.de")
    waitlisted = outcome(
        "reg-anna", "req-anna", anna, position=1, occupancy={**occupancy(13, 12), "waitlisted": 1}
    )
    await service.publish(
        "registration.waitlisted", {**waitlisted, "company": {**COMPANY, "county": "soemmerda"}}
    )
    await wait_for_mails(service, 3)
    mail = one(service, "anna@example.de", "Warteliste")
    text = text_of(mail)
    assert "Freie Plätze in anderen Kursen zum selben Thema" in text
    som = text.index("Hochvolt <Sömmerda> & mehr")
    rohr = text.index("Hochvolt in Rohr")
    assert som < rohr  # Sömmerda is the company's district: nearest first
    assert "http://127.0.0.1:8000/angebote/off-som?quelle=alternative" in text
    assert "Ausgebucht" not in text and "Anderes Thema" not in text
    html = html_of(mail)
    assert "Hochvolt &lt;Sömmerda&gt; &amp; mehr" in html
    assert 'href="http://127.0.0.1:8000/angebote/off-rohr?quelle=alternative"' in html


@pytest.mark.asyncio(loop_scope="session")
async def test_waitlist_full_rejection_lists_alternatives(service: Harness) -> None:
    await setup_catalogue(service)
    await make_full(service, "off-hv", 12)
    await wait_for_mails(service, 1)
    ben = participant("Ben", "Meyer", "ben@example.de")
    await service.publish(
        "registration.rejected", rejection("req-ben", ben, "waitlist_full", "Die Warteliste ist voll.")
    )
    await wait_for_mails(service, 2)
    text = text_of(one(service, "ben@example.de", "Ihre Anmeldung"))
    assert "Freie Plätze in anderen Kursen zum selben Thema" in text
    assert "/angebote/off-som?quelle=alternative" in text and "/angebote/off-rohr?quelle=alternative" in text


def test_stored_parameters_are_read_defensively() -> None:
    good: dict[str, Any] = {
        "offering_id": "a/../b?x",
        "title": "T",
        "node": "N",
        "town": "Ort",
        "starts_at": "2030-01-01T08:00:00+00:00",
        "seats_left": 2,
    }
    infos = alternative_infos(
        [good, "junk", {"offering_id": 1}, [1], {**good, "starts_at": "nope"}], "http://p/"
    )
    assert len(infos) == 1
    assert infos[0].url == "http://p/angebote/a%2F..%2Fb%3Fx?quelle=alternative"
    assert alternative_infos(None, "http://p") == () and alternative_infos({"a": 1}, "http://p") == ()
    assert county_of("Sömmerda") is not None
