"""The whole system as real processes: catalogue, two registration replicas on one port, notification and
reporting against one fresh database and vhost, with a real SMTP server (the mail sink) in the test.

Driven as a frontend (AMQP `registration.requested` with `reply_to`, and `POST /registrations`), as staff
(create and publish an offering of 6 seats, cancel the 6 confirmed registrations) and as a reporting
consumer (own queue on `qti.reporting`). 11 requests → 6 confirmed + 5 waitlisted; 6 cancellations → 5
promoted, 1 seat left. Every figure that reporting checks is ≥ 5, so none is suppressed.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter, defaultdict
from typing import Any

import aio_pika
import httpx
import pytest
from e2e.system_kit import SERVICES, Observer, System, offering_body, queue_depth
from registration_kit import OUTCOME_KEYS, STAFF, request_data

from devtools.demo_data import node_id_for
from qti_contracts import make_event
from support import eventually

pytestmark = pytest.mark.slow

CAPACITY = 6
AMQP_REQUESTS = 6
HTTP_REQUESTS = 5
TIMEOUT = 30.0


async def test_whole_system_answers_once_mails_once_and_reports_what_happened(  # noqa: PLR0915 (one story)
    system: System,
) -> None:
    urls = system.urls
    observer = Observer()
    connection = await aio_pika.connect_robust(system.amqp_url)
    async with connection, httpx.AsyncClient(timeout=10) as client:
        channel = await connection.channel(publisher_confirms=True)
        events_exchange = await channel.get_exchange("qti.events")
        outcomes = await channel.declare_queue(f"e2e.outcomes.{uuid.uuid4().hex[:6]}", exclusive=True)
        for key in OUTCOME_KEYS:
            await outcomes.bind(events_exchange, key)
        await outcomes.consume(observer.on_event)
        # Registration answers only frontends' reply queues (`frontend.reply.…` or direct reply-to).
        replies = await channel.declare_queue(f"frontend.reply.e2e-{uuid.uuid4().hex[:6]}", exclusive=True)
        await replies.consume(observer.on_reply)
        kpi_queue = await channel.declare_queue(f"kpi-consumer.{uuid.uuid4().hex[:6]}", exclusive=True)
        await kpi_queue.bind("qti.reporting", routing_key="reporting.#")
        await kpi_queue.consume(observer.on_kpi)

        # Staff: the demo nodes are loaded once catalogue is ready (devtools.demo); create and publish
        # a small offering.
        gotha = str(node_id_for("gotha"))

        async def nodes_loaded() -> bool:
            response = await client.get(f"{urls['catalogue']}/nodes")
            return response.status_code == 200 and gotha in response.text

        await eventually(nodes_loaded, timeout=TIMEOUT)
        created = await client.post(
            f"{urls['catalogue']}/offerings", json=offering_body(CAPACITY), headers=STAFF
        )
        assert created.status_code == 201, created.text
        offering_id = created.json()["offering_id"]
        published = await client.post(f"{urls['catalogue']}/offerings/{offering_id}/publish", headers=STAFF)
        assert published.status_code == 200, published.text

        # Frontends: 6 requests through the broker with reply_to, 5 through HTTP, all at once.
        async def via_amqp(n: int) -> str:
            event = make_event("registration.requested", request_data(offering_id, n), source="/tests/e2e")
            await events_exchange.publish(
                aio_pika.Message(
                    event.model_dump_json().encode(),
                    message_id=event.id,
                    correlation_id=f"corr-{event.id}",
                    reply_to=replies.name,
                    content_type="application/cloudevents+json",
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                ),
                routing_key="registration.requested",
                mandatory=True,
                timeout=10,
            )
            return event.id

        tokens: dict[str, str] = {}  # request id -> personal token, as the submitting frontend gets it

        async def via_http(n: int) -> str:
            response = await client.post(
                f"{urls['registration']}/registrations", json=request_data(offering_id, n)
            )
            assert response.status_code == 202, response.text
            tokens[response.json()["request_id"]] = response.json()["personal_token"]
            return str(response.json()["request_id"])

        amqp_ids = await asyncio.gather(*(via_amqp(n) for n in range(AMQP_REQUESTS)))
        http_ids = await asyncio.gather(
            *(via_http(n) for n in range(AMQP_REQUESTS, AMQP_REQUESTS + HTTP_REQUESTS))
        )
        request_ids = {*amqp_ids, *http_ids}
        assert len(request_ids) == AMQP_REQUESTS + HTTP_REQUESTS

        await eventually(lambda: request_ids <= observer.decisions().keys(), timeout=TIMEOUT)
        await eventually(lambda: len(observer.replies) >= AMQP_REQUESTS, timeout=TIMEOUT)

        # Every request answered exactly once: one outcome event each, one reply each for the AMQP ones.
        decisions = observer.decisions()
        assert set(decisions) == request_ids
        assert all(len(found) == 1 for found in decisions.values()), decisions
        by_status = Counter(found[0]["type"] for found in decisions.values())
        assert by_status == {"registration.confirmed": CAPACITY, "registration.waitlisted": HTTP_REQUESTS}
        reply_ids = Counter(json.loads(m.body)["data"]["request_id"] for m in observer.replies)
        assert reply_ids == Counter(amqp_ids), reply_ids
        for message in observer.replies:
            outcome = json.loads(message.body)
            assert message.correlation_id == f"corr-{outcome['data']['request_id']}"
            assert outcome["id"] == decisions[outcome["data"]["request_id"]][0]["id"]
            tokens[outcome["data"]["request_id"]] = outcome["data"]["personal_token"]
        for request_id in http_ids:
            status = (await client.get(f"{urls['registration']}/registrations/requests/{request_id}")).json()
            assert status["registration_id"] == decisions[request_id][0]["data"]["registration_id"], status
            assert "participant" not in status and "outcome_event" not in status
        token_of = {
            found[0]["data"]["registration_id"]: tokens[request_id] for request_id, found in decisions.items()
        }

        confirmed = {
            e["data"]["registration_id"]: e["data"]["participant"]["email"]
            for e in (found[0] for found in decisions.values())
            if e["type"] == "registration.confirmed"
        }
        waitlisted = {
            e["data"]["registration_id"]: e["data"]["participant"]["email"]
            for e in (found[0] for found in decisions.values())
            if e["type"] == "registration.waitlisted"
        }

        # Every confirmed participant cancels with their personal token: 5 are promoted from the waitlist,
        # one seat stays free.
        for registration_id in confirmed:
            response = await client.post(
                f"{urls['registration']}/registrations/{registration_id}/cancel",
                json={"reason": "Terminkonflikt"},
                headers={"X-Personal-Token": token_of[registration_id]},
            )
            assert response.status_code == 200, response.text

        def promotions() -> list[dict[str, Any]]:
            return observer.of_type("registration.confirmed", from_waitlist=True)

        await eventually(
            lambda: (
                len(observer.of_type("registration.cancelled")) >= CAPACITY
                and len(promotions()) >= len(waitlisted)
            ),
            timeout=TIMEOUT,
        )
        assert Counter(e["data"]["registration_id"] for e in observer.of_type("registration.cancelled")) == (
            Counter(list(confirmed))
        )
        assert Counter(e["data"]["registration_id"] for e in promotions()) == Counter(list(waitlisted))

        # Mails: each participant exactly one of each kind that applies to them, nothing else.
        expected_mails = {
            **{
                email: Counter({"Anmeldebestätigung": 1, "Stornierung bestätigt": 1})
                for email in confirmed.values()
            },
            **{email: Counter({"Warteliste": 1, "Nachgerückt": 1}) for email in waitlisted.values()},
        }
        total_mails = sum(sum(kinds.values()) for kinds in expected_mails.values())

        async def mails() -> list[dict[str, Any]]:
            listing: list[dict[str, Any]] = (await client.get(f"{system.sink_url}/api/mails")).json()
            return listing if len(listing) >= total_mails else []

        try:
            listing = await eventually(mails, timeout=TIMEOUT)
        except AssertionError:
            log = await client.get(
                f"{urls['notification']}/notifications", params={"offering_id": offering_id}, headers=STAFF
            )
            unsent = [d for d in log.json() if d["status"] != "sent"]
            raise AssertionError(f"mails missing; deliveries not sent: {unsent}") from None
        received: dict[str, Counter[str]] = defaultdict(Counter)
        for mail in listing:
            recipient = next((e for e in expected_mails if e in mail["to"]), mail["to"])
            received[recipient][mail["subject"].split(":")[0].split(" (")[0].split(" –")[0]] += 1
        assert dict(received) == expected_mails, listing

        # Catalogue's seat count converges to registration's truth.
        truth = (
            await client.get(f"{urls['registration']}/offerings/{offering_id}/registrations", headers=STAFF)
        ).json()
        live = Counter(r["status"] for r in truth)
        assert live["confirmed"] == CAPACITY - 1, truth

        async def seats_converged() -> dict[str, Any] | None:
            item = (await client.get(f"{urls['catalogue']}/offerings/{offering_id}")).json()
            done = (item["seats_left"], item["confirmed"], item["waitlisted"]) == (1, CAPACITY - 1, 0)
            return item if done else None

        await eventually(seats_converged, timeout=TIMEOUT)

        # Reporting: the totals are what happened, under the one suppression rule
        # (docs/reporting-suppression.md): no rejection reads "<5" (zero too), and the counts from which
        # that "<5" could be recomputed (requested = confirmed + waitlisted + rejected, ...) are withheld.
        shown_totals: dict[str, int | str] = {
            "requested": AMQP_REQUESTS + HTTP_REQUESTS,
            "confirmed": CAPACITY + HTTP_REQUESTS,  # every registration that ever held a seat
            "waitlisted": "gesperrt",  # really HTTP_REQUESTS
            "rejected": "<5",  # really 0
            "cancelled": "gesperrt",  # really CAPACITY
            "participants": "gesperrt",  # really HTTP_REQUESTS
            "notifications_sent": total_mails,
        }

        async def kpis_match() -> dict[str, Any] | None:
            total: dict[str, Any] = (await client.get(f"{urls['reporting']}/kpis")).json()["total"]
            return total if all(total.get(k) == v for k, v in shown_totals.items()) else None

        try:
            await eventually(kpis_match, timeout=TIMEOUT)
        except AssertionError:
            shown = (await client.get(f"{urls['reporting']}/kpis")).json()["total"]
            raise AssertionError({k: (shown.get(k), v) for k, v in shown_totals.items()}) from None

        # The read-only consumer gets a KPI event carrying those totals, withheld ones marked suppressed.
        def kpi_event_matches() -> bool:
            if not observer.kpis:
                return False
            figures = {f.indicator: f for f in observer.kpis[-1].figures if f.dimension is None}
            return all(
                k in figures
                and (
                    figures[k].suppressed
                    if isinstance(v, str)
                    else not figures[k].suppressed and figures[k].value == v
                )
                for k, v in shown_totals.items()
            )

        try:
            # Reporting computes the protected report before it publishes, then waits a multiple of that
            # time before the next KPI event (services/reporting/handlers.py), hence the longer wait.
            await eventually(kpi_event_matches, timeout=3 * TIMEOUT)
        except AssertionError:
            newest = observer.kpis[-1].figures if observer.kpis else []
            raise AssertionError([f for f in newest if f.dimension is None]) from None
        assert observer.kpi_keys == {"reporting.kpi.updated"}

        # Nothing was dead-lettered anywhere.
        depths = {name: await queue_depth(channel, f"{name}.dead-letter") for name in SERVICES}
        assert depths == dict.fromkeys(SERVICES, 0), depths

        # No late duplicate mail turned up meanwhile.
        assert len((await client.get(f"{system.sink_url}/api/mails")).json()) == total_mails

    for process in system.processes:
        assert process.process is not None and process.process.poll() is None, process.log_text()[-3000:]
