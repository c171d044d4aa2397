"""The outbox never blocks on one row (issue item 2), against the real broker and database.

Rows are inserted into the outbox directly, past the contracts' checks: one whose correlation id no AMQP
short string can hold, one for a queue that refuses every publish (`x-max-length` 0, `reject-publish`),
one for an exchange that does not exist (the broker closes the channel under the whole batch), and
ordinary rows behind them. The ordinary rows go out, the others are parked with their error and shown by
`qti outbox`, the metrics count them, and `--retry-parked` gives one back once its cause is gone.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from functools import partial

import aio_pika
import pytest
import structlog
from faststream.rabbit import RabbitBroker
from prometheus_client import REGISTRY

from qti_contracts.topology import EVENTS_EXCHANGE
from qti_runtime import ops
from qti_runtime.broker import create_broker, declare_shared_topology, publish_outbox_row
from qti_runtime.db import Database
from qti_runtime.migrations import migrate
from qti_runtime.outbox import OutboxRelay
from qti_runtime.settings import Settings
from support import eventually, get_messages, run_qti

SERVICE = "probe"
OK_KEY = "probe.fine"
FULL_KEY = "probe.refused"
LONG_CORRELATION_ID = "ü" * 300  # 300 characters, 600 bytes of UTF-8


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[Database]:
    database = Database(settings.database_url, SERVICE, min_size=1, max_size=4)
    await database.connect()
    async with database.pool.acquire() as conn:
        await migrate(conn, SERVICE, None)
    yield database
    await database.close()


@pytest.fixture
async def broker(settings: Settings) -> AsyncIterator[RabbitBroker]:
    rabbit = create_broker(settings, SERVICE)
    await rabbit.connect()
    await declare_shared_topology(rabbit)
    connection = await aio_pika.connect(settings.amqp_url)
    async with connection:
        channel = await connection.channel()
        fine = await channel.declare_queue(OK_KEY, durable=True)
        await fine.bind(EVENTS_EXCHANGE, routing_key=OK_KEY)
        full = await channel.declare_queue(
            FULL_KEY, durable=True, arguments={"x-max-length": 0, "x-overflow": "reject-publish"}
        )
        await full.bind(EVENTS_EXCHANGE, routing_key=FULL_KEY)
    yield rabbit
    await rabbit.stop()


async def insert(db: Database, routing_key: str, *, correlation_id: str = "corr", exchange: str = "") -> str:
    event_id = str(uuid.uuid4())
    body = json.dumps({"id": event_id, "type": routing_key, "correlationid": correlation_id}).encode()
    async with db.pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO outbox (event_id, exchange, routing_key, body, correlation_id)"
            " VALUES ($1, $2, $3, $4, $5)",
            event_id,
            exchange or EVENTS_EXCHANGE,
            routing_key,
            body,
            correlation_id,
        )
    return event_id


def sample(name: str) -> float:
    return REGISTRY.get_sample_value(name, {"service": SERVICE}) or 0.0


async def parked(db: Database) -> dict[str, str]:
    async with db.pool.acquire() as conn:
        rows = await conn.fetch("SELECT event_id, last_error FROM outbox WHERE parked_at IS NOT NULL")
    return {row["event_id"]: row["last_error"] for row in rows}


async def test_refused_rows_are_parked_and_the_rows_behind_them_flow(
    settings: Settings, db: Database, broker: RabbitBroker
) -> None:
    parked_before = sample("qti_outbox_parked_total")
    too_long = await insert(db, OK_KEY, correlation_id=LONG_CORRELATION_ID)
    refused = await insert(db, FULL_KEY)
    no_exchange = await insert(db, OK_KEY, exchange="qti.no-such-exchange")
    normal = [await insert(db, OK_KEY) for _ in range(6)]

    relay = OutboxRelay(
        db.pool,
        SERVICE,
        partial(publish_outbox_row, broker, app_id=SERVICE),
        poll_seconds=0.1,
        park_after=3,
    )
    with structlog.testing.capture_logs() as logs:
        await relay.start()
        try:
            received = await get_messages(settings.amqp_url, OK_KEY, expect=len(normal), timeout=30)
            # Refused three times with back-off (1 s, 2 s), then parked.
            found = await eventually(
                lambda: _all_parked(db, {too_long, refused, no_exchange}), timeout=60, interval=0.3
            )
        finally:
            await relay.stop()

    # The ordinary rows went out although the bad ones came first (at least once: the channel closed
    # under some of them), and the outbox holds nothing but the parked rows.
    assert {m.message_id for m in received} >= set(normal)
    assert set(found) == {too_long, refused, no_exchange}
    assert "correlation_id (600 bytes)" in found[too_long]
    assert "255 bytes" in found[too_long]
    assert "Nack" in found[refused]
    assert "no-such-exchange" in found[no_exchange]
    async with db.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM outbox WHERE parked_at IS NULL") == 0
        # The encoder's refusal can never succeed: parked at the first try.
        assert await conn.fetchval("SELECT refusals FROM outbox WHERE event_id = $1", too_long) == 1
        assert await conn.fetchval("SELECT refusals FROM outbox WHERE event_id = $1", refused) == 3

    # Log line, metrics.
    parked_logs = [entry for entry in logs if entry["event"] == "outbox.parked"]
    assert {entry["event_id"] for entry in parked_logs} == {too_long, refused, no_exchange}
    assert sample("qti_outbox_parked_total") - parked_before == 3
    assert await relay.backlog() == (0, 0.0)
    assert sample("qti_outbox_parked_rows") == 3

    # `qti outbox` lists them with their errors (and the ops function behind it).
    [status] = await ops.outbox_status(settings.database_url, [SERVICE])
    assert status.backlog == 0 and status.parked == 3
    assert {row.event_id for row in status.parked_rows} == {too_long, refused, no_exchange}
    code, output = await run_qti(settings.database_url, settings.amqp_url, "outbox", SERVICE)
    assert code == 0, output
    assert "backlog=0" in output and "parked=3" in output
    assert f"event={refused}" in output and "Nack" in output
    assert "--retry-parked" in output

    # Once the cause is gone (the full queue removed), the parked row goes out after a retry.
    connection = await aio_pika.connect(settings.amqp_url)
    async with connection:
        channel = await connection.channel()
        await channel.queue_delete(FULL_KEY)
    refused_id = next(row.id for row in status.parked_rows if row.event_id == refused)
    code, output = await run_qti(
        settings.database_url, settings.amqp_url, "outbox", SERVICE, "--retry-parked", "--id", str(refused_id)
    )
    assert code == 0, output
    assert "1 parked row(s) given back" in output
    assert await relay.publish_batch() == 1
    assert set(await parked(db)) == {too_long, no_exchange}
    # Nothing bound to it now: the alternate exchange keeps it in qti.unrouted.
    [kept] = await get_messages(settings.amqp_url, "qti.unrouted", expect=1)
    assert kept.message_id == refused


async def test_an_outage_never_parks_a_row(settings: Settings, db: Database, broker: RabbitBroker) -> None:
    """Without a broker every publish fails; rows are postponed, never parked, and go out afterwards."""
    event_id = await insert(db, OK_KEY)

    async def broker_away(_row: object) -> None:
        raise aio_pika.exceptions.AMQPConnectionError("connection refused")

    away = OutboxRelay(db.pool, SERVICE, broker_away, park_after=1)
    for _ in range(3):
        assert await away.publish_batch() == 0
        async with db.pool.acquire() as conn:
            await conn.execute("UPDATE outbox SET available_at = now()")
    assert await parked(db) == {}
    relay = OutboxRelay(db.pool, SERVICE, partial(publish_outbox_row, broker, app_id=SERVICE), park_after=1)
    assert await relay.publish_batch() == 1
    [message] = await get_messages(settings.amqp_url, OK_KEY, expect=1)
    assert message.message_id == event_id


async def _all_parked(db: Database, wanted: set[str]) -> dict[str, str] | None:
    found = await parked(db)
    return found if set(found) >= wanted else None
