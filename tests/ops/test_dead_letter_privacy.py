"""Dead letters are bounded and forgettable (issue item 9), against the real broker and database.

- `<service>.dead-letter` and `qti.unrouted` have a TTL and a length bound; a queue left by an earlier
  run with other arguments is used as it is, with a warning, instead of failing with PRECONDITION_FAILED;
- `qti forget-person` removes the person's messages from every dead-letter queue and `qti.unrouted` and
  keeps the others with their headers and properties;
- `qti dead-letters replay` does not bring a forgotten person back.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator

import aio_pika
import asyncpg
import pytest
import structlog

from qti_contracts.envelope import CONTENT_TYPE
from qti_contracts.topology import DEAD_LETTER_EXCHANGE, EVENTS_EXCHANGE
from qti_host import ops as host_ops
from qti_runtime import ops
from qti_runtime.broker import (
    QueueBounds,
    QueueSpec,
    create_broker,
    dead_letter_rabbit_queue,
    declare_service_topology,
    publish_event_bytes,
)
from qti_runtime.migrations import migrate
from qti_runtime.settings import Settings
from support import get_messages, run_qti

SERVICE = "probe"
DLQ = f"{SERVICE}.dead-letter"
KEY = "probe.something_happened"
EMAIL = "Joerg.Mueller@Example.org"
REGISTRATION_ID = "reg-7f3a9c"


async def declare(settings: Settings, bounds: QueueBounds | None = None) -> None:
    broker = create_broker(settings, SERVICE)
    await broker.connect()
    try:
        await declare_service_topology(
            broker,
            SERVICE,
            [QueueSpec(SERVICE, "events", [KEY])],
            **({"dead_letter_bounds": bounds} if bounds else {}),
        )
    finally:
        await broker.stop()


@pytest.fixture
async def channel(settings: Settings) -> AsyncIterator[aio_pika.abc.AbstractChannel]:
    await declare(settings)
    connection = await aio_pika.connect(settings.amqp_url)
    async with connection:
        yield await connection.channel()


def body(data: dict[str, object], message_id: str) -> bytes:
    document = {"specversion": "1.0", "id": message_id, "type": KEY, "source": "/t", "data": data}
    return json.dumps(document).encode()


async def dead_letter(
    channel: aio_pika.abc.AbstractChannel, data: dict[str, object], *, routing_key: str = DLQ
) -> str:
    message_id = str(uuid.uuid4())
    exchange = (
        await channel.get_exchange(DEAD_LETTER_EXCHANGE) if routing_key == DLQ else channel.default_exchange
    )
    await exchange.publish(
        aio_pika.Message(
            body(data, message_id),
            message_id=message_id,
            correlation_id=f"corr-{message_id}",
            content_type=CONTENT_TYPE,
            app_id="probe",
            type="probe-type",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            headers={
                "x-qti-error": "boom",
                "x-qti-original-routing-key": KEY,
                "x-qti-original-queue": f"{SERVICE}.events",
            },
        ),
        routing_key=routing_key,
    )
    return message_id


async def depth(channel: aio_pika.abc.AbstractChannel, queue: str) -> int:
    declared = await channel.declare_queue(queue, passive=True)
    return declared.declaration_result.message_count or 0


async def test_dead_letter_queue_is_bounded(settings: Settings) -> None:
    await declare(settings, QueueBounds(ttl_days=14, max_messages=2))
    connection = await aio_pika.connect(settings.amqp_url)
    async with connection:
        channel = await connection.channel()
        ids = [await dead_letter(channel, {"n": n}) for n in range(3)]
        messages = await get_messages(settings.amqp_url, DLQ, expect=3, timeout=2)
    # Full: the oldest was dropped, the newest kept.
    assert [m.message_id for m in messages] == ids[1:]
    # The defaults are the documented ones.
    assert dead_letter_rabbit_queue(SERVICE).arguments == {
        "x-queue-type": "quorum",
        "x-max-length": 100_000,
        "x-overflow": "drop-head",
        "x-message-ttl": 14 * 24 * 3600 * 1000,
    }


async def test_a_queue_from_an_earlier_run_with_other_arguments_is_kept_with_a_warning(
    settings: Settings,
) -> None:
    # What a broker of an earlier `make run` holds: the dead-letter queue without bounds.
    connection = await aio_pika.connect(settings.amqp_url)
    async with connection:
        channel = await connection.channel()
        await channel.declare_queue(DLQ, durable=True, arguments={"x-queue-type": "quorum"})

    broker = create_broker(settings, SERVICE)
    await broker.connect()
    try:
        with structlog.testing.capture_logs() as logs:
            await declare_service_topology(broker, SERVICE, [QueueSpec(SERVICE, "events", [KEY])])
        [warning] = [entry for entry in logs if entry["event"] == "broker.queue_bounds_not_applied"]
        assert warning["queue"] == DLQ
        assert "set_policy" in warning["hint"] and "delete_queue" in warning["hint"]
        # The broker's channel is intact: the metrics sampler's lookup and publishing still work.
        dlq = await broker.declare_queue(dead_letter_rabbit_queue(SERVICE))
        assert (await dlq.declare()).message_count == 0
        await publish_event_bytes(broker, body({}, "m-1"), routing_key=KEY, message_id="m-1")
        [delivered] = await get_messages(settings.amqp_url, f"{SERVICE}.events", expect=1)
        assert delivered.message_id == "m-1"
    finally:
        await broker.stop()


async def test_forget_person_removes_their_dead_letters_and_keeps_the_others(
    settings: Settings, channel: aio_pika.abc.AbstractChannel
) -> None:
    about_address = await dead_letter(channel, {"email": EMAIL.lower(), "name": "Jörg"})
    about_id = await dead_letter(channel, {"registration_id": REGISTRATION_ID})
    other = await dead_letter(channel, {"email": "lukas@example.org"})
    unrouted_about = await dead_letter(
        channel, {"note": f"mail to <{EMAIL.upper()}>"}, routing_key="qti.unrouted"
    )
    unrouted_other = await dead_letter(channel, {"n": 1}, routing_key="qti.unrouted")

    conn = await asyncpg.connect(settings.database_url)
    try:  # registration's table the ids are read from (before registration forgets the address)
        await conn.execute(
            "CREATE SCHEMA registration;"
            " CREATE TABLE registration.registrations (registration_id text PRIMARY KEY,"
            " email text NOT NULL);"
        )
        await conn.execute(
            "INSERT INTO registration.registrations VALUES ($1, $2)", REGISTRATION_ID, EMAIL.lower()
        )
    finally:
        await conn.close()

    keys = await host_ops.person_keys(settings.database_url, f"  {EMAIL} ")
    assert keys.registration_ids == (REGISTRATION_ID,)
    # The real services' queues and a probe service's one (the default list names the four services).
    queues = [*ops.parking_queues(), DLQ]
    removed = await ops.forget_in_queues(settings.amqp_url, keys, queues)
    assert removed[DLQ] == 2
    assert removed["qti.unrouted"] == 1
    assert removed["catalogue.dead-letter"] is None  # never declared in this vhost

    kept = await get_messages(settings.amqp_url, DLQ, expect=1, timeout=2)
    assert [m.message_id for m in kept] == [other]
    [message] = kept
    assert message.correlation_id == f"corr-{other}"
    assert message.content_type == CONTENT_TYPE
    assert message.app_id == "probe" and message.type == "probe-type"
    assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert dict(message.headers or {})["x-qti-original-routing-key"] == KEY
    assert json.loads(message.body)["data"] == {"email": "lukas@example.org"}
    unrouted = await get_messages(settings.amqp_url, "qti.unrouted", expect=1, timeout=2)
    assert [m.message_id for m in unrouted] == [unrouted_other]
    assert {about_address, about_id, unrouted_about}.isdisjoint({other, unrouted_other})


async def test_replay_skips_a_forgotten_person(
    settings: Settings, channel: aio_pika.abc.AbstractChannel
) -> None:
    conn = await asyncpg.connect(settings.database_url)
    try:
        await migrate(conn, SERVICE, None)
    finally:
        await conn.close()
    # Forgotten first; the dead letter about them arrives later (e.g. it was in flight).
    secret = Settings().link_secret.get_secret_value()  # what the `qti` subprocess uses
    await ops.record_forgotten(settings.database_url, ops.PersonKeys(EMAIL), secret, services=[SERVICE])
    conn = await asyncpg.connect(settings.database_url)
    try:
        stored = await conn.fetchval("SELECT string_agg(digest, ',') FROM probe.forgotten_persons")
    finally:
        await conn.close()
    assert "@" not in stored and "joerg" not in stored.lower()  # keyed hashes only

    about = await dead_letter(channel, {"participant": {"email": EMAIL.upper()}})
    other = await dead_letter(channel, {"participant": {"email": "lukas@example.org"}})
    verify = await channel.declare_queue("probe.verify", durable=True)
    await verify.bind(EVENTS_EXCHANGE, routing_key=KEY)

    code, output = await run_qti(settings.database_url, settings.amqp_url, "dead-letters", "replay", SERVICE)
    assert code == 0, output
    assert f"deleted {about}" in output
    assert f"replayed {other}" in output
    assert "1 replayed, 0 kept, 1 deleted" in output
    replayed = await get_messages(settings.amqp_url, "probe.verify", expect=2, timeout=2)
    assert [m.message_id for m in replayed] == [other]
    assert await depth(channel, DLQ) == 0
