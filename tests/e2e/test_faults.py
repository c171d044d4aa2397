"""Faults under load on the whole system (the setup of `test_system`): one fault per test, then recovery.

Load: three offerings of 15 seats and a waiting list of 8, 210 requests paced at 40 per second (three in
four over AMQP with `reply_to`, one in four through `POST /registrations`), so that there are
confirmations, waiting-list places and `waitlist_full` rejections; once an offering's waiting list has
started, three of its confirmed registrations are cancelled (two by HTTP, one by
`registration.cancellation_requested`), racing the remaining requests and promoting from the waiting list.

Faults, injected mid-load: SIGKILL of each service in turn (catalogue, one of the two registration
replicas, notification, reporting) and its restart; a broker restart (`rabbitmqctl stop_app`, three
seconds, `start_app`); every connection of the test database terminated, three times; the SMTP server
away for five seconds.

Afterwards the same holds as without a fault: every request answered by exactly one outcome (one event id,
and the reply to an AMQP request is that event), no offering over capacity, registration's, catalogue's
and the events' counts agree, every mail exactly once (by Message-ID) and nothing else, reporting's totals
are what happened, every dead-letter queue is empty and every process is up.

A frontend does what a careful one would: it retries a publish until the broker confirms it (same event
id) and an HTTP call after a connection error or a 5xx (same `request_id`). So a fault may legitimately
deliver the same outcome event (same id) twice; a second, different answer never. Where a fault does not
touch registration, the database or the broker, not even a repeated delivery is accepted.

Mails: notification never steps back. When it handles a registration's newer outcome (promotion,
cancellation) before an older one (a redelivery after a fault can reorder them), the older one's mail is
not sent (`services.notification.domain.on_registration_outcome`), so the "Warteliste" mail of a promoted
registration and the "Anmeldebestätigung" of a cancelled one are sent at most once, and if not, the test
checks that notification did handle that event. A mail sent twice with the same Message-ID is accepted only
where it cannot be avoided: a SIGKILL of notification after the SMTP server took a mail, before the `sent`
mark commits (the sender's documented window), and an SMTP server that goes away after storing a message,
before its "250" reached the sender (RFC 1047).
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import email.utils
import json
import signal
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aio_pika
import asyncpg
import httpx
import pytest
from e2e.system_kit import SERVICES, Observer, System, mail_kind, offering_body, queue_depth
from registration_kit import OUTCOME_KEYS, STAFF, request_data

from devtools.demo_data import node_id_for
from devtools.mail_sink import MailSink
from qti_contracts import make_event
from qti_runtime import links
from qti_runtime.settings import Settings
from support import Backends, broker_away, eventually

pytestmark = pytest.mark.slow

OFFERINGS = 3
CAPACITY = 15
WAITLIST = 8
REQUESTS = 210  # 70 per offering: 15 confirmed, 8 waiting, the rest (and refills) decided by the race
HTTP_EVERY = 4  # every fourth request through POST /registrations, the others over AMQP with reply_to
RATE = 40.0  # requests per second: the load lasts about five seconds
CANCELS = 3  # per offering, once its waiting list has started; the last one over AMQP
LEASE_SECONDS = 6
TIMEOUT = 90.0
QUIET_SECONDS = 3.0

# The queue each service consumes from (to see a restarted process consume again).
MAIN_QUEUE = {
    "catalogue": "catalogue.registrations",
    "registration": "registration.requests",
    "notification": "notification.events",
    "reporting": "reporting.events",
}

KIND_OF_OUTCOME = {
    "registration.confirmed": "Anmeldebestätigung",
    "registration.waitlisted": "Warteliste",
    "registration.rejected": "Ihre Anmeldung konnte nicht angenommen werden",
}
PROMOTED = "Nachgerückt"
CANCELLED = "Stornierung bestätigt"


@pytest.fixture
def system_env() -> dict[str, str]:
    """Short lease and back-off, so that rows of a killed sender and mails of an SMTP outage come soon."""
    return {
        "QTI_SEND_LEASE_SECONDS": str(LEASE_SECONDS),
        "QTI_RETRY_BASE_SECONDS": "0.5",
        "QTI_RETRY_MAX_SECONDS": "2",
        "QTI_SENDER_POLL_SECONDS": "0.5",
    }


# --------------------------------------------------------------------------------------------------
# The frontend: paced load with retries, cancellations, and the broker-side observer
# --------------------------------------------------------------------------------------------------


@dataclass
class Frontend:
    system: System
    client: httpx.AsyncClient
    observer: Observer = field(default_factory=Observer)
    offering_ids: list[str] = field(default_factory=list)
    amqp_ids: list[str] = field(default_factory=list)
    http_ids: list[str] = field(default_factory=list)
    email_of_request: dict[str, str] = field(default_factory=dict)
    cancelled: dict[str, str] = field(default_factory=dict)  # registration id → e-mail
    retries: Counter[str] = field(default_factory=Counter)

    async def open(self) -> None:
        # Durable queues: what is routed to them while the broker restarts or we reconnect is kept.
        self.connection = await aio_pika.connect_robust(self.system.amqp_url, reconnect_interval=0.5)
        self.channel = await self.connection.channel(publisher_confirms=True)
        self.exchange = await self.channel.get_exchange("qti.events")
        tag = uuid.uuid4().hex[:6]
        outcomes = await self.channel.declare_queue(f"e2e.outcomes.{tag}", durable=True)
        for key in OUTCOME_KEYS:
            await outcomes.bind(self.exchange, key)
        await outcomes.consume(self.observer.on_event)
        # Registration answers only frontends' reply queues (`frontend.reply.…`).
        self.replies = await self.channel.declare_queue(f"frontend.reply.e2e-{tag}", durable=True)
        await self.replies.consume(self.observer.on_reply)
        kpis = await self.channel.declare_queue(f"kpi-consumer.{tag}", durable=True)
        await kpis.bind("qti.reporting", routing_key="reporting.#")
        await kpis.consume(self.observer.on_kpi)

    async def close(self) -> None:
        await self.connection.close()

    async def publish(self, type_: str, data: dict[str, Any], *, reply: bool = False) -> str:
        """Publish until the broker confirms it; the event id stays the same (the idempotency key)."""
        event = make_event(type_, data, source="/tests/e2e-faults")
        body = event.model_dump_json().encode()
        loop = asyncio.get_running_loop()
        deadline, delay = loop.time() + TIMEOUT, 0.1
        while True:
            try:
                await self.exchange.publish(
                    aio_pika.Message(
                        body,
                        message_id=event.id,
                        correlation_id=f"corr-{event.id}",
                        reply_to=self.replies.name if reply else None,
                        content_type="application/cloudevents+json",
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    ),
                    routing_key=type_,
                    mandatory=True,
                    timeout=10,
                )
                return event.id
            except Exception:  # not confirmed: broker away, channel closed or timeout
                self.retries["publish"] += 1
                if loop.time() > deadline:
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)

    async def http(
        self, method: str, url: str, ok: set[int], json_body: Any = None, *, headers: Any = None
    ) -> httpx.Response:
        """An HTTP call, repeated after a connection error or a 5xx (callers make repeats harmless)."""
        loop = asyncio.get_running_loop()
        deadline, delay = loop.time() + TIMEOUT, 0.1
        while True:
            try:
                response = await self.client.request(method, url, json=json_body, headers=headers)
                if response.status_code in ok:
                    return response
                last = f"{response.status_code} {response.text[:300]}"
                assert response.status_code >= 500, f"{method} {url}: {last}"
            except httpx.TransportError as exc:
                last = repr(exc)
            self.retries["http"] += 1
            assert loop.time() < deadline, f"{method} {url} failed for {TIMEOUT}s: {last}"
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    async def request(self, n: int) -> None:
        data = request_data(self.offering_ids[n % OFFERINGS], n)
        address = data["participant"]["email"]
        if n % HTTP_EVERY == HTTP_EVERY - 1:
            # The client's own key makes retries after a fault safe; the server scopes it to this
            # submission and answers with the request id it stored (the same one on every retry).
            key = f"e2e-{uuid.uuid4().hex}"
            url = f"{self.system.urls['registration']}/registrations"
            response = await self.http("POST", url, {202}, {**data, "request_id": key})
            request_id = response.json()["request_id"]
            assert request_id != key and request_id.startswith("c-")
            self.email_of_request[request_id] = address
            self.http_ids.append(request_id)
        else:
            request_id = await self.publish("registration.requested", data, reply=True)
            self.email_of_request[request_id] = address
            self.amqp_ids.append(request_id)

    async def load(self) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        tasks = []
        for n in range(REQUESTS):
            tasks.append(asyncio.create_task(self.request(n)))
            await asyncio.sleep(max(0.0, started + (n + 1) / RATE - loop.time()))
        await asyncio.gather(*tasks)

    async def cancellations(self) -> None:
        """Once an offering's waiting list has started, cancel three of its confirmed registrations."""
        waiting = set(self.offering_ids)
        while waiting:
            firsts = [found[0] for found in self.observer.decisions().values()]
            for offering_id in sorted(waiting):
                mine = [e for e in firsts if e["data"].get("offering_id") == offering_id]
                confirmed = [e["data"] for e in mine if e["type"] == "registration.confirmed"]
                if len(confirmed) < CANCELS or not any(e["type"] == "registration.waitlisted" for e in mine):
                    continue
                waiting.discard(offering_id)
                chosen = confirmed[:CANCELS]
                for d in chosen:
                    self.cancelled[d["registration_id"]] = d["participant"]["email"]
                await asyncio.gather(
                    *(
                        self.cancel(d["registration_id"], d["request_id"], amqp=i == CANCELS - 1)
                        for i, d in enumerate(chosen)
                    )
                )
            await asyncio.sleep(0.1)

    async def cancel(self, registration_id: str, request_id: str, *, amqp: bool) -> None:
        """As the participant, with the personal token of their mails (derived from the request id)."""
        token = links.personal_token(Settings().link_secret, request_id)
        if amqp:
            await self.publish(
                "registration.cancellation_requested",
                {"registration_id": registration_id, "reason": "Terminkonflikt", "personal_token": token},
            )
            return
        url = f"{self.system.urls['registration']}/registrations/{registration_id}/cancel"
        # 409 "already cancelled": an earlier attempt went through before its connection broke.
        headers = {"X-Personal-Token": token}
        await self.http("POST", url, {200, 409}, {"reason": "Terminkonflikt"}, headers=headers)

    def request_ids(self) -> set[str]:
        return {*self.amqp_ids, *self.http_ids}

    def replied(self) -> set[str]:
        return {json.loads(m.body)["data"]["request_id"] for m in self.observer.replies}


async def create_offerings(frontend: Frontend) -> list[str]:
    urls, client = frontend.system.urls, frontend.client
    gotha = str(node_id_for("gotha"))

    async def nodes_loaded() -> bool:
        response = await client.get(f"{urls['catalogue']}/nodes")
        return response.status_code == 200 and gotha in response.text

    await eventually(nodes_loaded, timeout=30)
    ids = []
    for i in range(OFFERINGS):
        body = offering_body(CAPACITY, waitlist_limit=WAITLIST, title=f"Wasserstoff in der Logistik {i + 1}")
        created = await client.post(f"{urls['catalogue']}/offerings", json=body, headers=STAFF)
        assert created.status_code == 201, created.text
        offering_id = created.json()["offering_id"]
        published = await client.post(f"{urls['catalogue']}/offerings/{offering_id}/publish", headers=STAFF)
        assert published.status_code == 200, published.text
        ids.append(offering_id)
    return ids


# --------------------------------------------------------------------------------------------------
# Faults
# --------------------------------------------------------------------------------------------------


@dataclass
class FaultContext:
    system: System
    frontend: Frontend
    mail_sink: MailSink
    backends: Backends
    notes: dict[str, Any] = field(default_factory=dict)


def readyz_status(url: str) -> int:
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


async def consumers_of(ctx: FaultContext, queue: str) -> int:
    declared = await ctx.frontend.channel.declare_queue(queue, passive=True)
    return int(declared.declaration_result.consumer_count or 0)


def sigkill(service: str) -> Callable[[FaultContext], Awaitable[None]]:
    async def fault(ctx: FaultContext) -> None:
        process = ctx.system.replicas(service)[0]
        queue = MAIN_QUEUE[service]
        consumers = await consumers_of(ctx, queue)
        await asyncio.to_thread(process.kill)
        assert process.process is not None and process.process.returncode == -signal.SIGKILL
        await asyncio.sleep(1.0)  # the load goes on without it
        process.start()
        await process.wait_ready(timeout=60)

        # Consuming again (for registration, `wait_ready` may have been answered by the other replica).
        async def consuming() -> bool:
            return await consumers_of(ctx, queue) >= consumers

        await eventually(consuming, timeout=30)

    return fault


def _broker_outage(rabbitmqctl: list[str] | None, urls: list[str]) -> tuple[list[int], dict[str, float]]:
    """About three seconds without a broker; the services' readiness asked meanwhile (all at once: an
    answer may take a second). Runs in a thread, so that the broker is started again even if the test is
    cancelled meanwhile. Returns the readiness answers and how long stopping and starting took."""
    began = time.monotonic()
    with broker_away(rabbitmqctl) as start_again, ThreadPoolExecutor(len(urls)) as pool:
        stopped = time.monotonic()
        time.sleep(1.0)
        statuses = list(pool.map(readyz_status, urls))
        time.sleep(max(0.0, stopped + 3.0 - time.monotonic()))
        starting = time.monotonic()
        start_again()
    timing = {
        "stop_app": stopped - began,
        "away": starting - stopped,
        "start_app": time.monotonic() - starting,
    }
    return statuses, {k: round(v, 1) for k, v in timing.items()}


async def broker_restart(ctx: FaultContext) -> None:
    urls = list(ctx.system.urls.values())
    statuses, ctx.notes["broker_seconds"] = await asyncio.to_thread(
        _broker_outage, ctx.backends.rabbitmqctl, urls
    )
    assert 503 in statuses, f"readiness while the broker was away: {statuses}"
    ctx.notes["readyz_while_away"] = dict(Counter(statuses))
    began = time.monotonic()

    async def all_ready() -> bool:
        statuses = await asyncio.gather(*(asyncio.to_thread(readyz_status, url) for url in urls))
        return all(status == 200 for status in statuses)

    await eventually(all_ready, timeout=60, interval=0.5)
    ctx.notes["ready_again_after"] = round(time.monotonic() - began, 1)


async def database_kills(ctx: FaultContext) -> None:
    database = urlsplit(ctx.system.database_url).path.lstrip("/")
    admin = await asyncpg.connect(ctx.system.database_url)
    killed = []
    try:
        for _ in range(3):
            killed.append(
                await admin.fetchval(
                    "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = $1 AND pid <> pg_backend_pid()) AS t",
                    database,
                )
            )
            await asyncio.sleep(1.0)
    finally:
        await admin.close()
    assert all(n > 0 for n in killed), killed
    ctx.notes["connections_terminated"] = killed


async def smtp_outage(ctx: FaultContext) -> None:
    await asyncio.to_thread(ctx.mail_sink.stop)
    await asyncio.sleep(5.0)
    await asyncio.to_thread(ctx.mail_sink.start)  # same folder, same ports


FAULTS: dict[str, Callable[[FaultContext], Awaitable[None]]] = {
    "sigkill-catalogue": sigkill("catalogue"),
    "sigkill-registration": sigkill("registration"),
    "sigkill-notification": sigkill("notification"),
    "sigkill-reporting": sigkill("reporting"),
    "broker-restart": broker_restart,
    "database-kills": database_kills,
    "smtp-outage": smtp_outage,
}
# Faults after which the same outcome event (same id) may legitimately arrive twice: registration or its
# outbox relay was interrupted between doing and acknowledging, or our own connection to the broker was.
REPEATS_OUTCOMES = {"sigkill-registration", "broker-restart", "database-kills"}
# Faults that may send a mail twice with the same Message-ID (see the module's docstring).
MAIL_FAULTS = {"sigkill-notification", "smtp-outage"}


# --------------------------------------------------------------------------------------------------
# What happened, as the events tell it
# --------------------------------------------------------------------------------------------------


@dataclass
class Story:
    first: dict[str, dict[str, Any]]  # request id → its outcome event
    promotions: dict[str, dict[str, Any]]  # registration id → its `confirmed` from the waiting list
    cancellations: Counter[str]  # registration id → distinct `registration.cancelled` events
    kinds: Counter[str]  # confirmed / waitlisted / rejection reason, of the first outcomes
    status: dict[str, str]  # registration id → its status now

    @classmethod
    def of(cls, observer: Observer) -> Story:
        events = {e["id"]: e for e in observer.events}  # a repeated delivery counts once
        first = {request_id: found[0] for request_id, found in observer.decisions().items()}
        promotions = {
            e["data"]["registration_id"]: e
            for e in events.values()
            if e["type"] == "registration.confirmed" and e["data"]["from_waitlist"]
        }
        cancellations = Counter(
            e["data"]["registration_id"] for e in events.values() if e["type"] == "registration.cancelled"
        )
        kinds = Counter(
            e["type"] if e["type"] != "registration.rejected" else e["data"]["reason"] for e in first.values()
        )
        status = {
            e["data"]["registration_id"]: e["type"].removeprefix("registration.")
            for e in first.values()
            if e["type"] != "registration.rejected"
        }
        for registration_id in promotions:
            assert status.get(registration_id) == "waitlisted", f"promoted, never waiting: {registration_id}"
            status[registration_id] = "confirmed"
        for registration_id in cancellations:
            status[registration_id] = "cancelled"
        for e in events.values():
            occupancy = e["data"].get("occupancy")
            assert occupancy is None or occupancy["confirmed"] <= CAPACITY, f"overbooked: {e}"
        return cls(first, promotions, cancellations, kinds, status)


async def check_answers(frontend: Frontend, fault: str) -> dict[str, int]:
    """One outcome per request; the reply to an AMQP request is that outcome; HTTP status shows it."""
    observer, request_ids = frontend.observer, frontend.request_ids()
    amqp_ids, http_ids = set(frontend.amqp_ids), set(frontend.http_ids)
    decisions = observer.decisions()
    assert set(decisions) == request_ids
    twice = {r: ids for r, found in decisions.items() if len(ids := {e["id"] for e in found}) != 1}
    assert not twice, f"answered differently more than once: {list(twice.items())[:3]}"
    replies: dict[str, set[str]] = defaultdict(set)
    for message in observer.replies:
        outcome = json.loads(message.body)
        request_id = outcome["data"]["request_id"]
        assert message.correlation_id == f"corr-{request_id}", message.correlation_id
        replies[request_id].add(outcome["id"])
    assert set(replies) == amqp_ids
    wrong = {r: ids for r, ids in replies.items() if ids != {decisions[r][0]["id"]}}
    assert not wrong, f"replies that are not the outcome: {list(wrong.items())[:3]}"
    for request_id in http_ids:
        url = f"{frontend.system.urls['registration']}/registrations/requests/{request_id}"
        status = (await frontend.http("GET", url, {200})).json()
        assert status["registration_id"] == decisions[request_id][0]["data"].get("registration_id"), status
    repeated = {  # deliveries of an event (outcome, promotion, cancellation) or a reply seen before
        "events": len(observer.events) - len({e["id"] for e in observer.events}),
        "replies": len(observer.replies) - len(amqp_ids),
    }
    if fault not in REPEATS_OUTCOMES:
        assert repeated == {"events": 0, "replies": 0}, repeated
    return repeated


async def check_registrations(frontend: Frontend, story: Story) -> dict[str, Counter[str]]:
    """Registration's own records tell the events' story; no offering over capacity. Live counts."""
    assert set(story.kinds) == {"registration.confirmed", "registration.waitlisted", "waitlist_full"}
    assert story.cancellations == Counter(list(frontend.cancelled)), story.cancellations
    live: dict[str, Counter[str]] = {}
    rows_seen = 0
    for offering_id in frontend.offering_ids:
        url = f"{frontend.system.urls['registration']}/offerings/{offering_id}/registrations"
        rows = (await frontend.http("GET", url, {200}, headers=STAFF)).json()
        rows_seen += len(rows)
        live[offering_id] = Counter(r["status"] for r in rows)
        assert live[offering_id]["confirmed"] <= CAPACITY, f"overbooked: {live[offering_id]}"
        assert live[offering_id]["waitlisted"] <= WAITLIST, live[offering_id]
        for r in rows:
            assert story.status.get(r["registration_id"]) == r["status"], r
            assert r["from_waitlist"] == (r["registration_id"] in story.promotions), r
    assert rows_seen == len(story.status)
    return live


async def catalogue_converges(frontend: Frontend, live: dict[str, Counter[str]]) -> None:
    async def converged() -> bool:
        for offering_id, counts in live.items():
            response = await frontend.client.get(
                f"{frontend.system.urls['catalogue']}/offerings/{offering_id}"
            )
            item = response.json() if response.status_code == 200 else {}
            expected = (CAPACITY - counts["confirmed"], counts["confirmed"], counts["waitlisted"])
            if (item.get("seats_left"), item.get("confirmed"), item.get("waitlisted")) != expected:
                return False
        return True

    await eventually(converged, timeout=TIMEOUT)


# --------------------------------------------------------------------------------------------------
# Mails as the SMTP server received them
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mail:
    to: str
    kind: str
    message_id: str


class Mailbox:
    """The sink's folder, every file parsed once."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.files: dict[str, Mail] = {}

    def mails(self) -> list[Mail]:
        for path in self.folder.glob("*.eml"):
            if path.name not in self.files:
                message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
                self.files[path.name] = Mail(
                    to=email.utils.parseaddr(str(message["To"]))[1],
                    kind=mail_kind(str(message["Subject"])),
                    message_id=str(message["Message-ID"]),
                )
        return list(self.files.values())

    def distinct(self) -> dict[str, Mail]:
        return {m.message_id: m for m in self.mails()}


@dataclass
class MailPlan:
    required: set[tuple[str, str]]  # (address, kind)
    # Not sent if notification handled a newer outcome of the registration first: (address, kind) → event id
    optional: dict[tuple[str, str], str]

    @classmethod
    def of(cls, frontend: Frontend, story: Story) -> MailPlan:
        required: set[tuple[str, str]] = set()
        optional: dict[tuple[str, str], str] = {}
        for request_id, e in story.first.items():
            mail = (frontend.email_of_request[request_id], KIND_OF_OUTCOME[e["type"]])
            registration_id = e["data"].get("registration_id")
            if registration_id in story.promotions or registration_id in story.cancellations:
                optional[mail] = e["id"]
            else:
                required.add(mail)
        required |= {(e["data"]["participant"]["email"], PROMOTED) for e in story.promotions.values()}
        required |= {(address, CANCELLED) for address in frontend.cancelled.values()}
        return cls(required, optional)


async def deliveries(frontend: Frontend) -> list[dict[str, Any]]:
    """Notification's delivery log of the offerings, reminders (due in weeks) left out."""
    found: list[dict[str, Any]] = []
    for offering_id in frontend.offering_ids:
        url = f"{frontend.system.urls['notification']}/notifications"
        params: dict[str, str | int] = {"offering_id": offering_id, "limit": 500}
        response = await frontend.client.get(url, params=params, headers=STAFF)
        found += response.json() if response.status_code == 200 else []
    return [d for d in found if d["template"] != "reminder"]


async def check_mails(frontend: Frontend, story: Story, mailbox: Mailbox, fault: str) -> dict[str, Any]:
    """Every mail once (by Message-ID), nothing else; the delivery log agrees. Returns figures."""
    system, plan = frontend.system, MailPlan.of(frontend, story)

    async def done() -> bool:
        received = {(m.to, m.kind) for m in mailbox.distinct().values()}
        if not plan.required <= received:
            return False
        log = await deliveries(frontend)
        return len(log) == len(mailbox.distinct()) and all(d["status"] == "sent" for d in log)

    try:
        await eventually(done, timeout=TIMEOUT, interval=0.5)
    except AssertionError:
        log = await deliveries(frontend)
        missing = plan.required - {(m.to, m.kind) for m in mailbox.distinct().values()}
        addresses = {to for to, _ in missing}
        triggers = [
            e for e in {e["id"]: e for e in frontend.observer.events}.values() if address_of(e) in addresses
        ]
        raise AssertionError(
            f"missing mails {sorted(missing)}; {len(log)} deliveries logged, not sent: "
            f"{[d for d in log if d['status'] != 'sent'][:5]}\n"
            f"{await notification_trace(system, triggers)}\n{logs(system)}"
        ) from None
    await asyncio.sleep(QUIET_SECONDS)  # a late copy would show up now

    mails = mailbox.mails()
    copies: dict[str, list[Mail]] = defaultdict(list)
    for mail in mails:
        copies[mail.message_id].append(mail)
    assert all(len(set(same)) == 1 for same in copies.values())  # a copy is the same mail
    received = Counter((same[0].to, same[0].kind) for same in copies.values())
    twice = {mail: n for mail, n in received.items() if n > 1}
    assert not twice, f"the same mail under different Message-IDs: {twice}"
    assert plan.required <= set(received), sorted(plan.required - set(received))
    unexpected = set(received) - plan.required - set(plan.optional)
    assert not unexpected, f"unexpected mails: {sorted(unexpected)}"
    # An older outcome's mail not sent: notification must have handled that event (as a stale one).
    skipped = {plan.optional[mail] for mail in set(plan.optional) - set(received)}
    handled = await handled_by_notification(system, skipped)
    assert handled == skipped, f"outcomes notification never handled: {skipped - handled}\n{logs(system)}"

    log = await deliveries(frontend)
    assert {d["message_id"] for d in log} == set(copies)
    doubled = {message_id for message_id, same in copies.items() if len(same) > 1}
    entries = [d for d in log if d["message_id"] in doubled]
    files = sorted(name for name, m in mailbox.files.items() if m.message_id in doubled)
    if fault not in MAIL_FAULTS:
        assert not doubled, f"mails sent twice: {files} {entries}\n{logs(system)}"
    # A copy only from a delivery that was tried again after the fault cut its first try short.
    assert all(d["attempts"] > 1 for d in entries), f"{files} {entries}"
    attempts = Counter(d["attempts"] for d in log)
    if fault == "smtp-outage":
        assert max(attempts) > 1, f"no mail was retried: {attempts}"
    return {
        "sent": len(copies),
        "copies": len(mails) - len(copies),
        "stale_not_mailed": len(skipped),
        "attempts": dict(attempts),
    }


async def check_reporting(
    frontend: Frontend, story: Story, live: dict[str, Counter[str]], mails_sent: int
) -> None:
    """Reporting's totals are what happened (every figure ≥ 5, so none is suppressed), also in its event.

    Every rejection here is `waitlist_full`, so the other reasons are 0 and read "<5"; showing the
    `waitlist_full` count beside the total would give them away, so reporting withholds it (secondary
    suppression, docs/reporting-suppression.md) and the test checks exactly that.
    """
    confirmed = {
        e["data"]["registration_id"] for e in story.first.values() if e["type"] == "registration.confirmed"
    }
    expected = {
        "requested": REQUESTS,
        "confirmed": len(confirmed | set(story.promotions)),  # every registration that ever held a seat
        "waitlisted": story.kinds["registration.waitlisted"],
        "rejected": story.kinds["waitlist_full"],
        "cancelled": len(story.cancellations),
        "participants": sum(counts["confirmed"] for counts in live.values()),
        "notifications_sent": mails_sent,
    }
    assert min(expected.values()) >= 5, expected
    url = f"{frontend.system.urls['reporting']}/kpis"

    async def totals_match() -> dict[str, Any] | None:
        response = await frontend.client.get(url)
        total: dict[str, Any] = response.json()["total"] if response.status_code == 200 else {}
        matches = all(total.get(k) == v for k, v in expected.items())
        return total if matches and total.get("rejected_waitlist_full") == "gesperrt" else None

    try:
        total = await eventually(totals_match, timeout=TIMEOUT)
    except AssertionError:
        shown = (await frontend.client.get(url)).json()["total"]
        withheld = {"rejected_waitlist_full": (shown.get("rejected_waitlist_full"), "gesperrt")}
        raise AssertionError({**{k: (shown.get(k), v) for k, v in expected.items()}, **withheld}) from None

    def newest_kpi_figures() -> dict[str, Any]:
        """The totals of the newest KPI event (a redelivered older one may arrive after it)."""
        kpis = frontend.observer.kpis
        newest = max(kpis, key=lambda k: k.generated_at) if kpis else None
        return {f.indicator: f for f in newest.figures if f.dimension is None} if newest else {}

    def kpi_event_matches() -> bool:
        figures = newest_kpi_figures()
        return all(
            k in figures and not figures[k].suppressed and figures[k].value == total[k] for k in expected
        )

    try:
        await eventually(kpi_event_matches, timeout=TIMEOUT)
    except AssertionError:
        figures = newest_kpi_figures()
        shown = {k: figures[k].value if k in figures else None for k in expected}
        raise AssertionError(
            f"{len(frontend.observer.kpis)} KPI events, the newest {shown}, /kpis {total}; "
            f"reporting's state: {await reporting_trace(frontend.system)}\n{logs(frontend.system)}"
        ) from None
    assert frontend.observer.kpi_keys == {"reporting.kpi.updated"}


# --------------------------------------------------------------------------------------------------
# The test
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", list(FAULTS))
async def test_fault_during_load_loses_nothing_and_duplicates_nothing(
    fault: str, system: System, mail_sink: MailSink, test_backends: Backends
) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        frontend = Frontend(system, client)
        await frontend.open()
        try:
            frontend.offering_ids = await create_offerings(frontend)
            ctx = FaultContext(system, frontend, mail_sink, test_backends)
            mailbox = Mailbox(mail_sink.folder)
            observer = frontend.observer

            # Load and cancellations; mid-load (a third of the requests sent, some decided, and mailed
            # where mails are hit) the fault.
            load = asyncio.create_task(frontend.load())
            cancels = asyncio.create_task(frontend.cancellations())
            mailed = 10 if fault in MAIL_FAULTS else 0
            await eventually(
                lambda: (
                    len(frontend.request_ids()) >= REQUESTS // 3
                    and len(observer.decisions()) >= 20
                    and len(mailbox.mails()) >= mailed
                ),
                timeout=30,
            )
            assert not load.done(), "the load was over before the fault"
            started = time.monotonic()
            await FAULTS[fault](ctx)
            ctx.notes["fault_seconds"] = round(time.monotonic() - started, 1)
            await asyncio.wait_for(asyncio.gather(load, cancels), timeout=TIMEOUT)
            request_ids, amqp_ids = frontend.request_ids(), set(frontend.amqp_ids)
            assert len(request_ids) == REQUESTS

            # Every request decided, every AMQP request answered on its reply queue, every cancellation done.
            def all_heard() -> bool:
                cancelled = {e["data"]["registration_id"] for e in observer.of_type("registration.cancelled")}
                return (
                    request_ids <= observer.decisions().keys()
                    and amqp_ids <= frontend.replied()
                    and set(frontend.cancelled) <= cancelled
                )

            try:
                await eventually(all_heard, timeout=TIMEOUT, interval=0.2)
            except AssertionError:
                undecided = request_ids - observer.decisions().keys()
                unreplied = amqp_ids - frontend.replied()
                raise AssertionError(
                    f"{len(undecided)} requests undecided, {len(unreplied)} without reply:"
                    f" {sorted(undecided)[:5]}\n{logs(system)}"
                ) from None

            ctx.notes["all_answered_after"] = round(time.monotonic() - started, 1)
            repeated = await check_answers(frontend, fault)
            story = Story.of(observer)
            live = await check_registrations(frontend, story)
            await catalogue_converges(frontend, live)
            events_before, replies_before = len(observer.events), len(observer.replies)
            mails = await check_mails(frontend, story, mailbox, fault)  # waits a quiet period
            # Nothing came late meanwhile: no repeated outcome, no second reply.
            assert (len(observer.events), len(observer.replies)) == (events_before, replies_before)
            await check_reporting(frontend, story, live, mails["sent"])

            # Nothing was dead-lettered anywhere, and every process is still up.
            depths = {name: await queue_depth(frontend.channel, f"{name}.dead-letter") for name in SERVICES}
            assert depths == dict.fromkeys(SERVICES, 0), f"{depths}\n{logs(system)}"
            for process in system.processes:
                assert process.process is not None and process.process.poll() is None, process.log_text()[
                    -3000:
                ]
            print(
                f"\n{fault}: {dict(story.kinds)}, promoted {len(story.promotions)}, "
                f"cancelled {len(story.cancellations)}, mails {mails}, repeated deliveries {repeated}, "
                f"frontend retries {dict(frontend.retries)}, {ctx.notes}"
            )
        finally:
            await frontend.close()


# --------------------------------------------------------------------------------------------------
# Diagnostics for failure messages
# --------------------------------------------------------------------------------------------------


def address_of(event: dict[str, Any]) -> str | None:
    participant = event["data"].get("participant")
    return participant["email"] if participant else None


async def handled_by_notification(system: System, event_ids: set[str]) -> set[str]:
    """The ids among `event_ids` in notification's inbox (white-box: the test reads its schema)."""
    conn = await asyncpg.connect(system.database_url)
    try:
        rows = await conn.fetch(
            "SELECT event_id FROM notification.inbox WHERE event_id = ANY($1::text[])", list(event_ids)
        )
    finally:
        await conn.close()
    return {row["event_id"] for row in rows}


async def notification_trace(system: System, events: list[dict[str, Any]]) -> str:
    """What notification recorded about `events` (its inbox, recipient and delivery rows)."""
    conn = await asyncpg.connect(system.database_url)
    lines = []
    try:
        for e in events:
            registration_id = e["data"].get("registration_id")
            inbox = await conn.fetch("SELECT * FROM notification.inbox WHERE event_id = $1", e["id"])
            recipient = await conn.fetch(
                "SELECT registration_id, status, email, request_id, updated_at FROM notification.recipients"
                " WHERE registration_id = $1",
                registration_id,
            )
            rows = await conn.fetch(
                "SELECT notification_id, template, trigger_event_id, status, attempts, created_at"
                " FROM notification.deliveries WHERE registration_id = $1",
                registration_id,
            )
            lines.append(
                f"event {e['type']} {e['id']} registration {registration_id}:"
                f" inbox {[dict(r) for r in inbox]}, recipient {[dict(r) for r in recipient]},"
                f" deliveries {[dict(r) for r in rows]}"
            )
    finally:
        await conn.close()
    return "\n".join(lines)


async def reporting_trace(system: System) -> dict[str, Any]:
    """Reporting's KPI bookkeeping: the log position of the last KPI event against the log."""
    conn = await asyncpg.connect(system.database_url)
    try:
        row = await conn.fetchrow(
            "SELECT k.emitted_count, k.emitted_at, (SELECT count(*) FROM reporting.event_log) AS logged,"
            " (SELECT count(*) FROM reporting.event_log) AS logged FROM reporting.kpi_state k"
        )
    finally:
        await conn.close()
    return dict(row) if row else {}


def logs(system: System) -> str:
    """Every process's log, written to a temporary folder; the ends of them for a failure message."""
    folder = Path(tempfile.mkdtemp(prefix="qti-e2e-logs-"))
    parts = []
    for i, p in enumerate(system.processes):
        text = p.log_text()
        (folder / f"{i}-{p.service}.log").write_text(text)
        parts.append(f"--- {p.service} (pid {p.process.pid if p.process else '-'}):\n{text[-1500:]}")
    return f"logs in {folder}\n" + "\n".join(parts)
