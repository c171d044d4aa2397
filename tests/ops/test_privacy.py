"""`qti forget-person <email>`: every service forgets a person, reporting keeps only aggregates.

Against the real broker and Postgres:

* the whole system as processes (catalogue, registration, notification, reporting, a mail sink), the purge
  through the real command line: nothing about the person is left in any column of any service schema,
  the seat went to the waiting list, the figures are what the cancellation implies and a rebuild equals
  them, a second run changes nothing;
* registration alone: a deferred request is answered, a place in an offering that has begun is kept
  (anonymised), a repeated request is still answered idempotently;
* reporting alone: the scripted history's figures stay identical, per grouping, and after a rebuild.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aio_pika
import asyncpg
import httpx
import pytest
from e2e.system_kit import System, offering_body, start_system
from registration_kit import STAFF, Harness, offering_data, registration_settings, request_data
from reporting.history import scripted_history

from devtools.demo_data import node_id_for
from devtools.mail_sink import MailSink, list_mails
from qti_contracts import RawEvent
from qti_contracts.topology import SERVICES
from qti_runtime.consumer import Delivery
from qti_runtime.db import Database
from qti_runtime.migrations import migrate
from qti_runtime.service import ServiceRuntime
from qti_runtime.settings import Settings
from services.notification.domain import pseudonym as recipient_pseudonym
from services.notification.settings import NotificationSettings
from services.registration import privacy as registration_privacy
from services.registration.app import MIGRATIONS as REGISTRATION_MIGRATIONS
from services.registration.app import create_app as create_registration_app
from services.reporting import privacy as reporting_privacy
from services.reporting import store as reporting_store
from services.reporting.app import ReportingSettings, build_runtime
from services.reporting.domain import GROUPINGS, Filters, compute, person_ref
from services.reporting.handlers import ReportingHandlers
from services.reporting.rebuild import rebuild
from support import eventually, free_port, run_qti

EMAIL = "Jörg.Müller@Example.de"
EMAIL_OTHER_CASE = "JÖRG.MÜLLER@example.de"
# Searched for (lower-cased) in every text column; JSON may also carry the \u escapes of ö and ü.
NEEDLES = ("jörg", "müller", "jörg.müller@example.de", "j\\u00f6rg", "m\\u00fcller")
TIMEOUT = 30.0
REMINDER_STATUS = (
    "SELECT status FROM notification.deliveries WHERE template = 'reminder' AND registration_id = $1"
)
DELIVERY = Delivery("reporting.events", "", None, None, None, {}, 1)


def person(given: str, family: str, email: str) -> dict[str, Any]:
    return {"given_name": given, "family_name": family, "email": email, "gender": "male", "age_band": "30_54"}


def company(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "postal_code": "99867",
        "county": "Gotha",
        "size_class": "small",
        "automotive_supplier": True,
    }


def joerg_request(offering_id: str, email: str = EMAIL) -> dict[str, Any]:
    return {
        "offering_id": offering_id,
        "participant": person("Jörg", "Müller", email),
        "company": company("Thüringer Achsenbau GmbH"),
        "privacy_consent": True,
    }


def lukas_request(offering_id: str) -> dict[str, Any]:
    return {
        "offering_id": offering_id,
        "participant": person("Lukas", "Weber", "lukas.weber@example.de"),
        "company": company("Weber Zulieferteile GmbH"),
        "privacy_consent": True,
    }


async def personal_hits(conn: asyncpg.Connection, needles: Sequence[str]) -> list[tuple[str, str, str]]:
    """(schema.table, column, value) for every value of every text-like column of every service schema
    that contains one of `needles` (compared lower-cased)."""
    columns = await conn.fetch(
        "SELECT table_schema, table_name, column_name, data_type FROM information_schema.columns"
        " WHERE table_schema = ANY($1::text[])"
        " AND data_type IN ('text', 'character varying', 'jsonb', 'json', 'bytea', 'ARRAY')",
        list(SERVICES),
    )
    assert len(columns) > 50, "the schemas are not all there"
    patterns = [f"%{needle.lower()}%" for needle in needles]
    hits: list[tuple[str, str, str]] = []
    for column in columns:
        table = f'"{column["table_schema"]}"."{column["table_name"]}"'
        name = column["column_name"]
        text = f"convert_from(\"{name}\", 'UTF8')" if column["data_type"] == "bytea" else f'"{name}"::text'
        for row in await conn.fetch(
            f"SELECT {text} AS value FROM {table} WHERE lower({text}) LIKE ANY($1::text[])", patterns
        ):
            hits.append((table, name, row["value"][:300]))
    return hits


def removed_counts(output: str) -> dict[str, int]:
    found = dict(re.findall(r"^(\w+)\s+(\d+) record\(s\) removed$", output, flags=re.MULTILINE))
    return {service: int(count) for service, count in found.items()}


async def figures(conn: asyncpg.Connection) -> dict[str | None, Any]:
    """Every indicator, unsuppressed, in total and per grouping."""
    await conn.execute("SET search_path TO reporting, public")
    facts = await reporting_store.load_facts(conn)
    result: dict[str | None, Any] = {None: compute(facts, Filters(), None).total}
    for grouping in GROUPINGS:
        result[grouping] = compute(facts, Filters(), grouping).groups
    return result


async def projection_rows(conn: asyncpg.Connection) -> dict[str, list[asyncpg.Record]]:
    return {
        table: list(await conn.fetch(f"SELECT * FROM reporting.{table} ORDER BY 1, 2"))
        for table in ("registrations", "requests", "notifications")
    }


# --------------------------------------------------------------------------------------------------
# The whole system, purged through the command line
# --------------------------------------------------------------------------------------------------


@pytest.fixture
def mail_sink(tmp_path: Path) -> Iterator[MailSink]:
    sink = MailSink(tmp_path / "mail", smtp_port=free_port(), http_port=free_port())
    with sink:
        yield sink


@pytest.fixture
async def system(database_url: str, amqp_url: str, mail_sink: MailSink) -> AsyncIterator[System]:
    # Small pools: this test shares Postgres' connections with whatever else runs on the machine.
    small_pools = {"QTI_DB_POOL_MIN": "1", "QTI_DB_POOL_MAX": "4"}
    async with start_system(database_url, amqp_url, mail_sink, small_pools) as started:
        yield started


@dataclass
class Watcher:
    """Registration events as any consumer on `qti.events` sees them."""

    events: list[dict[str, Any]] = field(default_factory=list)

    async def on_message(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        async with message.process():
            self.events.append(json.loads(message.body))

    def find(self, type_: str, **data: Any) -> list[dict[str, Any]]:
        return [
            e
            for e in self.events
            if e["type"] == type_ and all(e["data"].get(k) == v for k, v in data.items())
        ]


async def test_forget_person_through_the_cli_on_a_running_system(  # noqa: PLR0915 (one story)
    system: System, mail_sink: MailSink
) -> None:
    urls = system.urls
    conn = await asyncpg.connect(system.database_url)
    connection = await aio_pika.connect_robust(system.amqp_url)
    watcher = Watcher()
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            channel = await connection.channel()
            watch = await channel.declare_queue(f"test.privacy.{uuid.uuid4().hex[:6]}", exclusive=True)
            for key in ("registration.confirmed", "registration.cancelled", "registration.rejected"):
                await watch.bind("qti.events", key)
            await watch.consume(watcher.on_message)

            async def nodes_loaded() -> bool:
                response = await client.get(f"{urls['catalogue']}/nodes")
                return response.status_code == 200 and str(node_id_for("gotha")) in response.text

            await eventually(nodes_loaded, timeout=TIMEOUT)
            created = await client.post(
                f"{urls['catalogue']}/offerings", json=offering_body(1, waitlist_limit=5), headers=STAFF
            )
            assert created.status_code == 201, created.text
            offering_id = created.json()["offering_id"]
            published = await client.post(
                f"{urls['catalogue']}/offerings/{offering_id}/publish", headers=STAFF
            )
            assert published.status_code == 200, published.text

            async def register(data: dict[str, Any], expected: str) -> dict[str, Any]:
                response = await client.post(f"{urls['registration']}/registrations", json=data)
                assert response.status_code == 202, response.text
                url = f"{urls['registration']}{response.json()['status_url']}"

                async def decided() -> dict[str, Any] | None:
                    status: dict[str, Any] = (await client.get(url)).json()
                    return status if status["status"] != "pending" else None

                status = await eventually(decided, timeout=TIMEOUT)
                assert status["status"] == expected, status
                return status

            # Jörg gets the one seat, Lukas waits, Jörg's second request (address in capitals) is refused.
            joerg = await register(joerg_request(offering_id), "confirmed")
            lukas = await register(lukas_request(offering_id), "waitlisted")
            await register(joerg_request(offering_id, EMAIL_OTHER_CASE), "rejected")
            joerg_reg, lukas_reg = joerg["registration_id"], lukas["registration_id"]

            # Mails: confirmation and rejection to Jörg, waiting list to Lukas; Jörg's reminder is due later.
            await eventually(lambda: len(list_mails(mail_sink.folder)) >= 3, timeout=TIMEOUT)

            async def settled() -> bool:
                row = await conn.fetchrow(
                    "SELECT (SELECT count(*) FROM notification.deliveries WHERE status = 'sent') AS sent,"
                    " (SELECT count(*) FROM reporting.notifications WHERE sent) AS reported,"
                    " (SELECT count(*) FROM reporting.requests WHERE outcome IS NOT NULL) AS decided,"
                    " (SELECT count(*) FROM registration.outbox) + (SELECT count(*) FROM notification.outbox)"
                    "   AS outbox"
                )
                assert row is not None
                return bool(row["sent"] == row["reported"] == row["decided"] == 3 and row["outbox"] == 0)

            await eventually(settled, timeout=TIMEOUT)
            reminder = await conn.fetchrow(
                REMINDER_STATUS,
                joerg_reg,
            )
            assert reminder is not None and reminder["status"] == "pending"
            before = await figures(conn)
            assert before[None].values["participants"] == 1

            # The search finds the person everywhere before the purge (so it can be trusted afterwards).
            old_person_ref = person_ref(ReportingSettings().pseudonym_key.get_secret_value().encode(), EMAIL)
            old_recipient_ref = recipient_pseudonym(
                EMAIL, NotificationSettings().pseudonym_key.get_secret_value()
            )
            everything = (*NEEDLES, old_person_ref, old_recipient_ref)
            found = {table.split(".")[0].strip('"') for table, _, _ in await personal_hits(conn, everything)}
            assert found == {"registration", "notification", "reporting"}, found

            code, output = await run_qti(
                system.database_url, system.amqp_url, "forget-person", EMAIL, "--yes"
            )
            assert code == 0, output
            counts = removed_counts(output)
            assert set(counts) == set(SERVICES), output
            assert counts["catalogue"] == 0
            # The registration, its stored outcome, and the stored rejection naming him as its recipient.
            assert counts["registration"] == 3
            # recipient + confirmation, rejection, reminder (+ the cancellation mail if it came first)
            assert counts["notification"] in (4, 5), output
            assert counts["reporting"] == 2  # projection row + logged confirmation

            # The seat is freed through the normal cancellation and goes to Lukas, with the usual events.
            await eventually(
                lambda: watcher.find("registration.confirmed", registration_id=lukas_reg, from_waitlist=True),
                timeout=TIMEOUT,
            )
            [cancelled] = watcher.find("registration.cancelled", registration_id=joerg_reg)
            assert cancelled["data"]["cause"] == "participant"
            assert cancelled["data"]["was_confirmed"] is True

            def promoted_mail() -> bool:
                return any(
                    "lukas.weber" in m.recipient and m.subject.startswith("Nachgerückt")
                    for m in list_mails(mail_sink.folder)
                )

            await eventually(promoted_mail, timeout=TIMEOUT)

            async def seats_converged() -> bool:
                item = (await client.get(f"{urls['catalogue']}/offerings/{offering_id}")).json()
                return bool((item["confirmed"], item["waitlisted"]) == (1, 0))

            await eventually(seats_converged, timeout=TIMEOUT)
            view = (
                await client.get(f"{urls['registration']}/registrations/{joerg_reg}", headers=STAFF)
            ).json()
            assert view["status"] == "cancelled" and view["cancel_cause"] == "participant"
            assert view["participant"]["given_name"] == "[gelöscht]"
            assert view["company"]["name"] == "Thüringer Achsenbau GmbH"  # company data is kept

            async def all_settled() -> bool:
                row = await conn.fetchrow(
                    "SELECT (SELECT count(*) FROM notification.deliveries WHERE status = 'sent') AS sent,"
                    " (SELECT count(*) FROM reporting.notifications WHERE sent) AS reported,"
                    " (SELECT count(*) FROM reporting.registrations WHERE cancelled) AS cancelled,"
                    " (SELECT count(*) FROM reporting.registrations WHERE confirmed) AS confirmed,"
                    " (SELECT count(*) FROM registration.outbox) + (SELECT count(*) FROM notification.outbox)"
                    "   + (SELECT count(*) FROM notification.deliveries WHERE status = 'sending') AS busy"
                )
                assert row is not None
                return bool(
                    row["sent"] == row["reported"]
                    and (row["cancelled"], row["confirmed"], row["busy"]) == (1, 2, 0)
                )

            await eventually(all_settled, timeout=TIMEOUT)

            # (1) Nothing identifies Jörg any more: no name, no address, no pseudonym derived from it.
            assert await personal_hits(conn, everything) == []
            forgotten = await conn.fetch(
                "SELECT status, last_error, email FROM notification.deliveries"
                " WHERE registration_id = $1 OR email = 'forgotten@invalid'",
                joerg_reg,
            )
            assert {r["email"] for r in forgotten} == {"forgotten@invalid"}
            assert {r["status"] for r in forgotten} <= {"sent", "skipped"}
            reminder = await conn.fetchrow(
                REMINDER_STATUS,
                joerg_reg,
            )
            assert reminder is not None and reminder["status"] == "skipped"  # never sent to Jörg

            # (3) Reporting: what the cancellation and the promotion imply, nothing else changed.
            after = await figures(conn)
            total_before, total_after = before[None].values, after[None].values
            assert total_after["confirmed"] == total_before["confirmed"] + 1  # Lukas moved up
            assert total_after["cancelled"] == total_before["cancelled"] + 1
            assert total_after["unmet_demand"] == total_before["unmet_demand"] - 1
            unchanged = set(total_before) - {
                "confirmed",
                "cancelled",
                "unmet_demand",
                "notifications_sent",
                "notifications_failed",
                "notification_delivery_rate",
            }
            assert {k: total_after[k] for k in unchanged} == {k: total_before[k] for k in unchanged}
            assert (total_after["participants"], total_after["requested"], total_after["rejected"]) == (
                1,
                3,
                1,
            )
            refs = await conn.fetch(
                "SELECT registration_id, person_ref FROM reporting.registrations ORDER BY registration_id"
            )
            assert len({r["person_ref"] for r in refs}) == 2  # still two distinct persons
            new_ref = next(r["person_ref"] for r in refs if r["registration_id"] == joerg_reg)
            assert re.fullmatch(r"p-[0-9a-f]{32}", new_ref) and new_ref != old_person_ref
            logged = await conn.fetch(
                "SELECT data -> 'person' ->> 'person_ref' AS ref FROM reporting.event_log"
                " WHERE type = 'registration.confirmed' AND data ->> 'registration_id' = $1",
                joerg_reg,
            )
            assert [r["ref"] for r in logged] == [new_ref]

            # A rebuild from the raw log gives the same projections and figures.
            live_rows = await projection_rows(conn)
            code, output = await run_qti(system.database_url, system.amqp_url, "reporting", "rebuild")
            assert code == 0, output
            assert await projection_rows(conn) == live_rows
            assert await figures(conn) == after

            # (4) A second run finds nothing.
            code, output = await run_qti(
                system.database_url, system.amqp_url, "forget-person", EMAIL, "--yes"
            )
            assert code == 0, output
            assert removed_counts(output) == dict.fromkeys(SERVICES, 0), output
            assert await personal_hits(conn, everything) == []
    finally:
        await connection.close()
        await conn.close()
    for process in system.processes:
        assert process.process is not None and process.process.poll() is None, process.log_text()[-3000:]


# --------------------------------------------------------------------------------------------------
# Registration alone: deferred requests, places that are history, repeated requests
# --------------------------------------------------------------------------------------------------


@pytest.fixture
async def patient_harness(settings: Settings) -> AsyncIterator[Harness]:
    """A registration runtime that waits long for unknown offerings (so a request stays deferred)."""
    config = registration_settings(settings, offering_wait_seconds=120.0)
    app = create_registration_app(config)
    runtime: ServiceRuntime = app.state.runtime
    await runtime.start()
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://registration")
    h = Harness(config, runtime, client)
    await h.start()
    try:
        yield h
    finally:
        await h.stop()
        await client.aclose()
        await runtime.stop()


async def test_registration_forgets_deferred_begun_and_repeated_requests(  # noqa: PLR0915 (one story)
    patient_harness: Harness,
) -> None:
    h = patient_harness
    upcoming = offering_data(capacity=2, waitlist_limit=2)
    begun = offering_data(capacity=2)
    for data in (upcoming, begun):
        await h.publish_offering(data)
        await h.wait_offering(data["offering_id"])
    first = await h.publish("registration.requested", joerg_request(upcoming["offering_id"]))
    await h.publish("registration.requested", joerg_request(begun["offering_id"]))
    await h.publish("registration.requested", request_data(upcoming["offering_id"], 1))
    assert len(await h.events(3)) == 3
    # The second offering has begun meanwhile (first session yesterday): Jörg's place there is history.
    past = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
    sessions = [
        {
            **session,
            "starts_at": (past + timedelta(days=i)).isoformat(),
            "ends_at": (past + timedelta(days=i, hours=6)).isoformat(),
        }
        for i, session in enumerate(begun["sessions"])
    ]
    deadline = (past - timedelta(days=2)).isoformat()
    changed_offering = {**begun, "sessions": sessions, "registration_deadline": deadline, "revision": 2}
    await h.publish_offering(changed_offering, "catalogue.offering.updated")

    async def offering_updated() -> bool:
        async with h.runtime.db.pool.acquire() as conn:
            revision = await conn.fetchval(
                "SELECT revision FROM offerings WHERE offering_id = $1", begun["offering_id"]
            )
        return bool(revision == 2)

    await eventually(offering_updated)
    # A request of Jörg for an offering registration has not heard of yet: deferred, envelope kept.
    deferred = await h.publish("registration.requested", joerg_request("off-noch-unbekannt"))

    async def is_deferred() -> bool:
        async with h.runtime.db.pool.acquire() as conn:
            status = await conn.fetchval("SELECT status FROM requests WHERE request_id = $1", deferred)
        return bool(status == "deferred")

    await eventually(is_deferred)

    changed = await registration_privacy.forget_person(h.runtime.db, f"  {EMAIL_OTHER_CASE} ")
    assert changed == 5  # 2 registrations, 2 stored outcomes, 1 deferred request
    events = await h.events(2)
    by_type = {e["type"]: e["data"] for e in events}
    assert set(by_type) == {"registration.cancelled", "registration.rejected"}, events
    assert by_type["registration.cancelled"]["offering_id"] == upcoming["offering_id"]
    assert by_type["registration.cancelled"]["cause"] == "participant"
    assert by_type["registration.rejected"]["request_id"] == deferred
    assert by_type["registration.rejected"]["reason"] == "consent_missing"

    async with h.runtime.db.pool.acquire() as conn:
        rows = {
            r["offering_id"]: r
            for r in await conn.fetch(
                "SELECT * FROM registrations WHERE email LIKE 'forgotten+%@invalid' ORDER BY offering_id"
            )
        }
        assert rows[upcoming["offering_id"]]["status"] == "cancelled"
        assert rows[begun["offering_id"]]["status"] == "confirmed"  # kept as a fact, anonymised
        for row in rows.values():
            assert row["email"] == f"forgotten+{row['registration_id']}@invalid"
            assert json.loads(row["participant"])["family_name"] == "[gelöscht]"
        seats = await conn.fetchrow(
            "SELECT confirmed, waitlisted FROM offerings WHERE offering_id = $1", upcoming["offering_id"]
        )
        assert tuple(seats) == (1, 0)  # Anna keeps her seat, Jörg's is free
        leftovers = await conn.fetch(
            "SELECT request_id, status FROM requests WHERE lower(outcome::text) LIKE '%müller%'"
            " OR lower(envelope::text) LIKE '%müller%'"
        )
        assert leftovers == []
        status = await conn.fetchrow("SELECT status, envelope FROM requests WHERE request_id = $1", deferred)
        assert (status["status"], status["envelope"]) == ("decided", None)

    # Jörg's frontend repeats its first request (same id): answered again from the anonymised outcome.
    replies = await h.reply_queue()  # registration answers only frontends' reply queues
    await h.publish(
        "registration.requested", joerg_request(upcoming["offering_id"]), id_=first, reply_to=replies.name
    )

    async def reply() -> aio_pika.abc.AbstractIncomingMessage | None:
        return await replies.get(fail=False, no_ack=True)

    answer = json.loads((await eventually(reply)).body)
    assert answer["type"] == "registration.confirmed"
    assert answer["data"]["participant"]["given_name"] == "[gelöscht]"
    assert "müller" not in json.dumps(answer, ensure_ascii=False).lower()
    assert await h.events(0, timeout=1) == []  # no second decision

    assert await registration_privacy.forget_person(h.runtime.db, EMAIL) == 0


async def test_registration_waits_for_unpublished_events_about_the_person(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An event naming the person still in the outbox (no relay running): the purge refuses, changes
    nothing, and says why; once the event is gone it runs."""
    db = Database(database_url, "registration", min_size=1, max_size=2)
    await db.connect()
    try:
        async with db.pool.acquire() as conn:
            await migrate(conn, "registration", REGISTRATION_MIGRATIONS)
            await conn.execute(
                "INSERT INTO offerings (offering_id, status, kind, capacity, registration_deadline)"
                " VALUES ('off-1', 'completed', 'course', 5, now())"
            )
            await conn.execute(
                "INSERT INTO registrations (registration_id, request_id, offering_id, status, email,"
                " company_key, participant, company) VALUES ('reg-1', 'req-1', 'off-1', 'confirmed', $1,"
                " 'k', $2::jsonb, '{}'::jsonb)",
                EMAIL.lower(),
                json.dumps(person("Jörg", "Müller", EMAIL)),
            )
            body = json.dumps({"data": {"participant": person("Jörg", "Müller", EMAIL)}}, ensure_ascii=False)
            await conn.execute(
                "INSERT INTO outbox (event_id, exchange, routing_key, body)"
                " VALUES ('ev-1', 'qti.events', 'registration.confirmed', $1)",
                body.encode(),
            )
        monkeypatch.setattr(registration_privacy, "OUTBOX_WAIT_SECONDS", 0.5)
        with pytest.raises(registration_privacy.PurgeBlocked, match="1 event"):
            await registration_privacy.forget_person(db, EMAIL_OTHER_CASE)
        async with db.pool.acquire() as conn:
            assert await conn.fetchval("SELECT email FROM registrations") == EMAIL.lower()
            await conn.execute("DELETE FROM outbox")  # what the relay does once the broker confirmed
        # A completed offering: the confirmed place is history, anonymised but not cancelled.
        assert await registration_privacy.forget_person(db, EMAIL_OTHER_CASE) == 1
        async with db.pool.acquire() as conn:
            row = await conn.fetchrow("SELECT status, email FROM registrations")
            assert (row["status"], row["email"]) == ("confirmed", "forgotten+reg-1@invalid")
            assert await conn.fetchval("SELECT count(*) FROM outbox") == 0  # no cancellation event
    finally:
        await db.close()


# --------------------------------------------------------------------------------------------------
# Reporting alone: identical aggregates
# --------------------------------------------------------------------------------------------------


@pytest.fixture
async def reporting_runtime(settings: Settings) -> AsyncIterator[tuple[ServiceRuntime, ReportingSettings]]:
    config = ReportingSettings(**{**settings.model_dump(), "pseudonym_key": "test-pseudonym-key"})
    runtime = build_runtime(config)
    await runtime.start()
    try:
        yield runtime, config
    finally:
        await runtime.stop()


async def test_reporting_keeps_identical_aggregates(
    reporting_runtime: tuple[ServiceRuntime, ReportingSettings],
) -> None:
    runtime, config = reporting_runtime
    db: Database = runtime.db
    _published, distinct = scripted_history()
    handlers = ReportingHandlers(db, config)
    for event in distinct:  # the consumer's own path: scrub, log, project
        await handlers.handle(RawEvent.model_validate(json.loads(event.model_dump_json())), DELIVERY)
    async with db.pool.acquire() as conn:
        # Annegret (p1) took part twice: in A, and in B with her address in capitals.
        key = config.pseudonym_key.get_secret_value().encode()
        old = person_ref(key, "annegret.quastenberg@example.de")
        assert await conn.fetchval("SELECT count(*) FROM registrations WHERE person_ref = $1", old) == 2
        before = await figures(conn)
        assert before[None].values["participants"] == 12

    changed = await reporting_privacy.forget_person(db, " Annegret.Quastenberg@EXAMPLE.de", config)
    assert changed == 4  # two projection rows, two logged confirmations

    async with db.pool.acquire() as conn:
        assert await figures(conn) == before
        refs = await conn.fetch(
            "SELECT DISTINCT person_ref FROM registrations WHERE registration_id IN ('reg-p1-A', 'reg-p1-B')"
        )
        assert len(refs) == 1 and refs[0]["person_ref"] != old  # one person, no longer linkable
        assert (
            await conn.fetchval("SELECT count(*) FROM event_log WHERE strpos(data::text, $1) > 0", old) == 0
        )
        live = await projection_rows(conn)
    assert await rebuild(db) == len(distinct)
    async with db.pool.acquire() as conn:
        assert await projection_rows(conn) == live
        assert await figures(conn) == before
    assert await reporting_privacy.forget_person(db, "annegret.quastenberg@example.de", config) == 0
