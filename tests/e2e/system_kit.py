"""The whole system as real processes, shared by the end-to-end tests (`test_system`, `test_faults`).

`start_system` starts catalogue, two registration replicas on one port, notification and reporting against
one database and vhost, with notification sending to the given mail sink. `Observer` is the broker-side
view of a frontend and a read-only reporting consumer. The fixtures (`mail_sink`, `system_env`, `system`)
are in `conftest.py`.
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aio_pika

from devtools.demo import run as load_demo
from devtools.demo_data import node_id_for
from devtools.mail_sink import MailSink
from qti_contracts import KpiUpdated
from qti_runtime.settings import Settings
from support import ServiceProcess, free_port

SERVICES = ("catalogue", "registration", "notification", "reporting")
REGISTRATION_REPLICAS = 2


@dataclass
class System:
    urls: dict[str, str]
    sink_url: str
    amqp_url: str
    processes: list[ServiceProcess]
    database_url: str = ""

    def replicas(self, service: str) -> list[ServiceProcess]:
        return [p for p in self.processes if p.service == service]


def base_env(database_url: str, amqp_url: str, mail_sink: MailSink) -> dict[str, str]:
    return {
        "QTI_DATABASE_URL": database_url,
        "QTI_AMQP_URL": amqp_url,
        "QTI_SMTP_HOST": mail_sink.smtp_host,
        "QTI_SMTP_PORT": str(mail_sink.smtp_port),
        "QTI_OUTBOX_POLL_SECONDS": "0.2",
        "QTI_TRANSIENT_RETRY_SECONDS": "1",
        "QTI_SHUTDOWN_GRACE_SECONDS": "3",
        "QTI_KPI_DEBOUNCE_SECONDS": "1",
        "QTI_LOG_JSON": "false",
        # The load tests send every HTTP request from this one address: far more than a person would.
        "QTI_REGISTRATION_RATE_PER_CLIENT": "100000",
    }


@asynccontextmanager
async def start_system(
    database_url: str, amqp_url: str, mail_sink: MailSink, extra_env: dict[str, str] | None = None
) -> AsyncIterator[System]:
    env = {**base_env(database_url, amqp_url, mail_sink), **(extra_env or {})}
    ports = {name: free_port() for name in SERVICES}
    processes = [
        ServiceProcess("catalogue", env, ports["catalogue"]),
        *(ServiceProcess("registration", env, ports["registration"]) for _ in range(REGISTRATION_REPLICAS)),
        ServiceProcess("notification", env, ports["notification"]),
        ServiceProcess("reporting", env, ports["reporting"]),
    ]
    try:
        # Catalogue last, then the demo data (as `qti run` loads it): its events (nodes, offerings) are
        # published once, and an event published before notification's and reporting's queues are bound is
        # never routed to them (the node would be missing for every mail). So the consumers' queues first.
        consumers, catalogue = processes[1:], processes[0]
        for process in consumers:
            process.start()
        await asyncio.gather(*(p.wait_ready(timeout=60) for p in consumers))
        catalogue.start()
        await catalogue.wait_ready(timeout=60)
        await load_demo(Settings(database_url=database_url))
        yield System(
            urls={name: f"http://127.0.0.1:{port}" for name, port in ports.items()},
            sink_url=mail_sink.http_url.rstrip("/"),
            amqp_url=amqp_url,
            processes=processes,
            database_url=database_url,
        )
    finally:
        await asyncio.gather(*(asyncio.to_thread(p.terminate, 10) for p in processes))


@dataclass
class Observer:
    """Broker-side view: every outcome event, every reply, every KPI event (all acknowledged on receipt)."""

    events: list[dict[str, Any]] = field(default_factory=list)
    replies: list[aio_pika.abc.AbstractIncomingMessage] = field(default_factory=list)
    kpis: list[KpiUpdated] = field(default_factory=list)
    kpi_keys: set[str] = field(default_factory=set)

    async def on_event(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        async with message.process():
            self.events.append(json.loads(message.body))

    async def on_reply(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        async with message.process():
            self.replies.append(message)

    async def on_kpi(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        async with message.process():
            self.kpi_keys.add(message.routing_key or "")
            self.kpis.append(KpiUpdated.model_validate(json.loads(message.body)["data"]))

    def decisions(self) -> dict[str, list[dict[str, Any]]]:
        """First outcomes (not promotions) per request id, every delivery counted."""
        by_request: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for e in self.events:
            decision = e["type"] in (
                "registration.confirmed",
                "registration.waitlisted",
                "registration.rejected",
            )
            if decision and not e["data"].get("from_waitlist"):
                by_request[e["data"]["request_id"]].append(e)
        return by_request

    def of_type(self, type_: str, **data: Any) -> list[dict[str, Any]]:
        return [
            e
            for e in self.events
            if e["type"] == type_ and all(e["data"].get(k) == v for k, v in data.items())
        ]


def offering_body(
    capacity: int, *, waitlist_limit: int = 10, title: str = "Wasserstoff in der Logistik (E2E)"
) -> dict[str, Any]:
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=30)
    return {
        "node_id": str(node_id_for("gotha")),
        "kind": "workshop",
        "topic": "wasserstoff",
        "title": title,
        "description": "Ein Praxisworkshop zu Wasserstoff-Flurförderzeugen.",
        "sessions": [
            {
                "starts_at": start.isoformat(),
                "ends_at": (start + timedelta(hours=6)).isoformat(),
                "location": "QTI-Knoten Gotha, Gleichenstraße 48",
            }
        ],
        "capacity": capacity,
        "registration_deadline": (start - timedelta(days=3)).isoformat(),
        "fee_eur": 0,
        "max_per_company": None,
        "waitlist_limit": waitlist_limit,
    }


async def queue_depth(channel: aio_pika.abc.AbstractChannel, name: str) -> int:
    queue = await channel.declare_queue(name, passive=True)
    return int(queue.declaration_result.message_count or 0)


def mail_kind(subject: str) -> str:
    """`Anmeldebestätigung`, `Warteliste`, `Nachgerückt`, `Stornierung bestätigt`, … (the subject's head)."""
    return subject.split(":", 1)[0].split(" (", 1)[0].split(" –", 1)[0]
