"""Helpers for the catalogue tests: a running service with an HTTP client, and broker utilities."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import aio_pika
import httpx
from fastapi import FastAPI

from devtools.demo import load_catalogue
from devtools.demo_data import demo_nodes, node_id_for
from qti_contracts.envelope import make_event
from qti_runtime.broker import publish_event_bytes
from qti_runtime.service import ServiceRuntime
from qti_runtime.settings import Settings
from services.catalogue.app import create_app
from support import Isolation

STAFF = {"Authorization": "Bearer dev-staff-token"}
PROBLEM = "application/problem+json"
GOTHA = node_id_for("gotha")


@dataclass
class Service:
    runtime: ServiceRuntime
    client: httpx.AsyncClient
    settings: Settings
    app: FastAPI | None = None

    async def publish_raw(self, type_: str, data: dict[str, Any], *, id_: str | None = None) -> str:
        event = make_event(type_, data, source="/registration", subject=data.get("offering_id"), id_=id_)
        await publish_event_bytes(
            self.runtime.broker, event.model_dump_json().encode(), routing_key=type_, message_id=event.id
        )
        return event.id

    async def outbox_size(self) -> int:
        async with self.runtime.db.pool.acquire() as conn:
            return int(await conn.fetchval("SELECT count(*) FROM outbox"))

    async def outbox_empty(self) -> bool:
        return await self.outbox_size() == 0


@asynccontextmanager
async def running_service(settings: Settings, *, nodes: bool = True) -> AsyncIterator[Service]:
    app = create_app(settings)
    runtime: ServiceRuntime = app.state.runtime
    await runtime.start()
    try:
        if nodes:
            await load_catalogue(runtime.db, demo_nodes(), [], emit=False)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://catalogue.test") as client:
            yield Service(runtime, client, settings, app)
    finally:
        await runtime.stop()


@asynccontextmanager
async def isolated_service(isolation: Isolation, *, nodes: bool = True) -> AsyncIterator[Service]:
    """A service with its own database and vhost, for a module of tests that share it."""
    database_url = await isolation.create_database()
    amqp_url = await isolation.create_vhost()
    settings = Settings(
        database_url=database_url,
        amqp_url=amqp_url,
        shutdown_grace_seconds=3,
        outbox_poll_seconds=0.2,
        transient_retry_seconds=1,
        log_json=False,
        log_level="WARNING",
    )
    try:
        async with running_service(settings, nodes=nodes) as service:
            yield service
    finally:
        await isolation.drop_database(database_url)
        await isolation.delete_vhost(amqp_url)


@asynccontextmanager
async def watch_queue(amqp_url: str, *routing_keys: str) -> AsyncIterator[aio_pika.abc.AbstractQueue]:
    """A temporary queue bound to qti.events (the exchange must exist: start the runtime first)."""
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        exchange = await channel.get_exchange("qti.events", ensure=True)
        queue = await channel.declare_queue(f"test.watch.{uuid4().hex[:8]}", durable=False)
        for key in routing_keys:
            await queue.bind(exchange, routing_key=key)
        yield queue
    finally:
        await connection.close()


async def drain(queue: aio_pika.abc.AbstractQueue, *, settle: float = 0.5) -> list[dict[str, Any]]:
    """Everything in the queue, waiting until nothing new arrived for `settle` seconds."""
    import asyncio

    received: list[dict[str, Any]] = []
    quiet_since = asyncio.get_running_loop().time()
    while asyncio.get_running_loop().time() - quiet_since < settle:
        message = await queue.get(fail=False, no_ack=True)
        if message is None:
            await asyncio.sleep(0.05)
            continue
        body = json.loads(message.body)
        body["_message_id"] = message.message_id
        received.append(body)
        quiet_since = asyncio.get_running_loop().time()
    return received


def future(days: int, hour: int = 9) -> datetime:
    base = datetime.now(UTC).replace(hour=hour, minute=0, second=0, microsecond=0)
    return base + timedelta(days=days)


def offering_body(**overrides: Any) -> dict[str, Any]:
    start = future(30)
    body: dict[str, Any] = {
        "node_id": str(GOTHA),
        "kind": "workshop",
        "topic": "wasserstoff",
        "title": "Wasserstoff in der Logistik",
        "description": "Ein Praxisworkshop zu Wasserstoff-Flurförderzeugen.",
        "sessions": [
            {
                "starts_at": start.isoformat(),
                "ends_at": (start + timedelta(hours=6)).isoformat(),
                "location": "QTI-Knoten Gotha, Gleichenstraße 48",
            }
        ],
        "capacity": 12,
        "registration_deadline": (start - timedelta(days=3)).isoformat(),
        "fee_eur": 0,
        "max_per_company": 2,
        "waitlist_limit": 4,
    }
    body.update(overrides)
    return body


def participant() -> dict[str, Any]:
    return {
        "participant": {"given_name": "Anna", "family_name": "Schmidt", "email": "anna@example.de"},
        "company": {"name": "Muster Zulieferer GmbH", "postal_code": "99610"},
    }
