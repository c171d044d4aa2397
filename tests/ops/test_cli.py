"""Operator commands against a real vhost: `qti dead-letters show/replay` and `qti outbox`."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator

import aio_pika
import pytest

from qti_contracts.envelope import CONTENT_TYPE
from qti_contracts.topology import DEAD_LETTER_EXCHANGE, EVENTS_EXCHANGE
from qti_runtime import ops
from qti_runtime.broker import QueueSpec, create_broker, declare_service_topology
from qti_runtime.settings import Settings
from support import get_messages, run_qti

SERVICE = "probe"
ROUTING_KEY = "probe.something_happened"
VERIFY_QUEUE = "probe.verify"


@pytest.fixture
async def probe_topology(settings: Settings) -> AsyncIterator[aio_pika.abc.AbstractChannel]:
    """The runtime's own topology for a `probe` service, plus a queue that sees what is replayed."""
    broker = create_broker(settings, SERVICE)
    await broker.connect()
    try:
        await declare_service_topology(broker, SERVICE, [QueueSpec(SERVICE, "events", [ROUTING_KEY])])
    finally:
        await broker.stop()
    connection = await aio_pika.connect(settings.amqp_url)
    async with connection:
        channel = await connection.channel()
        verify = await channel.declare_queue(VERIFY_QUEUE, durable=True)
        await verify.bind(EVENTS_EXCHANGE, routing_key=ROUTING_KEY)
        yield channel


async def _dead_letter(channel: aio_pika.abc.AbstractChannel, message_id: str, error: str) -> None:
    body = json.dumps(
        {
            "specversion": "1.0",
            "id": message_id,
            "source": "/tests",
            "type": ROUTING_KEY,
            "time": "2024-10-01T08:00:00Z",
            "correlationid": "corr-1",
            "data": {},
        }
    ).encode()
    exchange = await channel.get_exchange(DEAD_LETTER_EXCHANGE)
    await exchange.publish(
        aio_pika.Message(
            body,
            message_id=message_id,
            correlation_id="corr-1",
            content_type=CONTENT_TYPE,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            headers={
                "x-qti-error": error,
                "x-qti-error-kind": "delivery_limit",
                "x-qti-original-queue": f"{SERVICE}.events",
                "x-qti-original-routing-key": ROUTING_KEY,
                "x-qti-dead-lettered-at": "2024-10-01T08:00:01+00:00",
                "x-qti-delivery-count": 4,
                "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            },
        ),
        routing_key=f"{SERVICE}.dead-letter",
    )


async def _depth(channel: aio_pika.abc.AbstractChannel, queue: str) -> int:
    declared = await channel.declare_queue(queue, passive=True)
    return declared.declaration_result.message_count or 0


async def test_show_lists_dead_letters_and_leaves_them(
    settings: Settings, probe_topology: aio_pika.abc.AbstractChannel
) -> None:
    message_id = str(uuid.uuid4())
    await _dead_letter(probe_topology, message_id, "ValueError('seat count negative')")

    code, output = await run_qti(settings.database_url, settings.amqp_url, "dead-letters", "show", SERVICE)
    assert code == 0, output
    assert "probe.dead-letter: 1 message(s)" in output
    assert message_id in output
    assert "ValueError('seat count negative')" in output
    assert f"routing_key={ROUTING_KEY}" in output

    code, output = await run_qti(
        settings.database_url, settings.amqp_url, "dead-letters", "show", SERVICE, "--json"
    )
    assert code == 0, output
    document = json.loads(output)
    assert document["total"] == 1
    [shown] = document["messages"]
    assert shown["message_id"] == message_id
    assert shown["error_kind"] == "delivery_limit"
    assert shown["headers"]["x-qti-original-queue"] == "probe.events"

    # Peeking gives every message back.
    await asyncio.sleep(0.2)
    assert await _depth(probe_topology, "probe.dead-letter") == 1


async def test_replay_republishes_with_original_key_and_clean_headers(
    settings: Settings, probe_topology: aio_pika.abc.AbstractChannel
) -> None:
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    await _dead_letter(probe_topology, first, "boom 1")
    await _dead_letter(probe_topology, second, "boom 2")

    code, output = await run_qti(
        settings.database_url, settings.amqp_url, "dead-letters", "replay", SERVICE, "--id", first
    )
    assert code == 0, output
    assert f"replayed {first}" in output
    assert "1 replayed, 0 kept" in output

    [replayed] = await get_messages(settings.amqp_url, VERIFY_QUEUE, expect=1)
    assert replayed.message_id == first
    assert replayed.routing_key == ROUTING_KEY
    assert replayed.exchange == EVENTS_EXCHANGE
    assert replayed.correlation_id == "corr-1"
    assert replayed.content_type == CONTENT_TYPE
    headers = dict(replayed.headers or {})
    assert not any(key.startswith("x-qti-error") for key in headers)
    assert "x-qti-original-routing-key" not in headers
    assert headers["x-qti-replays"] == 1
    assert headers["traceparent"].startswith("00-0af7")  # other headers survive
    assert json.loads(replayed.body)["id"] == first
    # The service's own queue got it too (it is bound to the same key).
    assert await _depth(probe_topology, "probe.events") == 1

    await asyncio.sleep(0.2)
    assert await _depth(probe_topology, "probe.dead-letter") == 1
    listing = await ops.show_dead_letters(settings.amqp_url, SERVICE)
    assert [m.message_id for m in listing.messages] == [second]

    code, output = await run_qti(settings.database_url, settings.amqp_url, "dead-letters", "replay", SERVICE)
    assert code == 0, output
    assert "1 replayed, 0 kept" in output
    [again] = await get_messages(settings.amqp_url, VERIFY_QUEUE, expect=1)
    assert again.message_id == second
    await asyncio.sleep(0.2)
    assert await _depth(probe_topology, "probe.dead-letter") == 0


async def test_replay_to_original_queue_only(
    settings: Settings, probe_topology: aio_pika.abc.AbstractChannel
) -> None:
    message_id = str(uuid.uuid4())
    await _dead_letter(probe_topology, message_id, "boom")
    result = await ops.replay_dead_letters(settings.amqp_url, SERVICE, to_original_queue=True)
    assert [m.message_id for m in result.replayed] == [message_id]
    assert await get_messages(settings.amqp_url, VERIFY_QUEUE, expect=1, timeout=1.0) == []
    [delivered] = await get_messages(settings.amqp_url, "probe.events", expect=1)
    assert delivered.message_id == message_id


async def test_missing_dead_letter_queue_is_a_clear_error(settings: Settings) -> None:
    code, output = await run_qti(
        settings.database_url, settings.amqp_url, "dead-letters", "show", "nosuchservice"
    )
    assert code == 1
    assert "nosuchservice.dead-letter" in output and "does not exist" in output
    assert "Traceback" not in output


async def test_outbox_reports_backlog(settings: Settings) -> None:
    import asyncpg

    conn = await asyncpg.connect(settings.database_url)
    try:
        await conn.execute(
            "CREATE SCHEMA registration;"
            " CREATE TABLE registration.outbox (id bigserial PRIMARY KEY, created_at timestamptz NOT NULL,"
            " attempts integer NOT NULL DEFAULT 0, last_error text);"
            " INSERT INTO registration.outbox (created_at, attempts, last_error) VALUES"
            " (now() - interval '90 seconds', 2, 'broker away'), (now(), 0, NULL)"
        )
    finally:
        await conn.close()
    code, output = await run_qti(settings.database_url, settings.amqp_url, "outbox")
    assert code == 0, output
    assert "catalogue     no outbox table" in output
    line = next(line for line in output.splitlines() if line.startswith("registration"))
    assert "backlog=2" in line and "failing=1" in line and "last_error=broker away" in line
    oldest = float(line.split("oldest=")[1].split("s")[0])
    assert 85 <= oldest < 200


def test_replay_headers_strip_bookkeeping() -> None:
    headers = {
        "x-qti-error": "e",
        "x-qti-error-kind": "k",
        "x-qti-original-routing-key": "a.b",
        "x-death": [{"queue": "q"}],
        "x-delivery-count": 3,
        "x-qti-replays": 2,
        "traceparent": "t",
    }
    assert ops.replay_headers(headers) == {"traceparent": "t", "x-qti-replays": 3}


def test_routing_key_from_broker_death_header() -> None:
    headers = {"x-death": [{"queue": "registration.requests", "routing-keys": ["registration.requested"]}]}
    assert ops.original_routing_key(headers) == "registration.requested"
