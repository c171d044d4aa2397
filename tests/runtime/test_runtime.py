"""The shared runtime against the real broker and database: outbox, inbox, dead-lettering, migrations."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import asyncpg
import pytest
from aio_pika.exceptions import DeliveryError
from faststream.rabbit import RabbitBroker

from qti_contracts.envelope import RawEvent, make_event
from qti_runtime.broker import QueueSpec, create_broker, publish_event_bytes
from qti_runtime.consumer import DeadLetter, Delivery, Subscription
from qti_runtime.db import Database
from qti_runtime.migrations import RUNTIME_MIGRATIONS, migrate
from qti_runtime.outbox import OutboxRow
from qti_runtime.service import ServiceRuntime
from qti_runtime.settings import Settings
from qti_runtime.unit_of_work import unit_of_work
from support import eventually, get_messages

SERVICE = "probe"


class Recorder:
    """A handler with an effect in the database, so exactly-once can be checked where it matters."""

    def __init__(self, runtime: ServiceRuntime) -> None:
        self.runtime = runtime
        self.poison_ids: set[str] = set()
        self.calls = 0

    async def handle(self, event: RawEvent, delivery: Delivery) -> None:
        self.calls += 1
        if event.id in self.poison_ids:
            raise RuntimeError("handler bug for this message")
        if event.data.get("reject"):
            raise DeadLetter("payload says reject", kind="invalid_data")
        async with unit_of_work(self.runtime.db) as uow:
            if not await uow.claim("probe.input", event.id):
                return
            await uow.conn.execute("INSERT INTO effects (event_id) VALUES ($1)", event.id)
            uow.emit(make_event("probe.done", {"of": event.id}, source="/probe", correlationid=event.id))


async def make_runtime(settings: Settings, tmp_path: Any) -> tuple[ServiceRuntime, Recorder]:
    migrations = tmp_path / "migrations"
    migrations.mkdir(exist_ok=True)
    (migrations / "0001_effects.sql").write_text("CREATE TABLE effects (event_id text NOT NULL);")
    holder: dict[str, Recorder] = {}

    async def handle(event: RawEvent, delivery: Delivery) -> None:
        await holder["r"].handle(event, delivery)

    runtime = ServiceRuntime(
        SERVICE,
        settings,
        migrations=migrations,
        subscriptions=[
            Subscription(
                QueueSpec(SERVICE, "input", ["probe.input"], delivery_limit=3), {"probe.input": handle}
            )
        ],
        extra_queues=[QueueSpec(SERVICE, "done-watch", ["probe.done"])],
    )
    holder["r"] = Recorder(runtime)
    return runtime, holder["r"]


@pytest.fixture
async def runtime(settings: Settings, tmp_path: Any) -> AsyncIterator[tuple[ServiceRuntime, Recorder]]:
    rt, recorder = await make_runtime(settings, tmp_path)
    await rt.start()
    yield rt, recorder
    await rt.stop()


async def publish(broker: RabbitBroker, body: bytes, key: str = "probe.input", message_id: str = "m") -> None:
    await publish_event_bytes(broker, body, routing_key=key, message_id=message_id)


def event_body(event_id: str, **data: Any) -> bytes:
    return make_event("probe.input", data, source="/test", id_=event_id).model_dump_json().encode()


async def effects(db: Database) -> list[str]:
    async with db.pool.acquire() as conn:
        return [r["event_id"] for r in await conn.fetch("SELECT event_id FROM effects ORDER BY event_id")]


async def test_handled_once_and_outbox_publishes(
    runtime: tuple[ServiceRuntime, Recorder], amqp_url: str
) -> None:
    rt, _ = runtime
    for _ in range(3):  # the same id three times: one effect, one outgoing event
        await publish(rt.broker, event_body("evt-1", n=1))
    await eventually(lambda: effects(rt.db))
    done = await get_messages(amqp_url, "probe.done-watch", expect=1)
    assert [json.loads(m.body)["data"] for m in done] == [{"of": "evt-1"}]
    await asyncio.sleep(0.5)
    assert await effects(rt.db) == ["evt-1"]
    assert await get_messages(amqp_url, "probe.done-watch", expect=1, timeout=0.5) == []


async def test_relay_crash_between_publish_and_mark_is_absorbed_by_inbox(
    settings: Settings, tmp_path: Any, amqp_url: str
) -> None:
    """The relay publishes, then dies before deleting the rows; the next relay publishes them again."""
    producer, _ = await make_runtime(settings, tmp_path)
    await producer.start()
    assert producer.relay is not None
    await producer.relay.stop()

    async def crash(rows: list[OutboxRow]) -> None:
        raise ConnectionError("simulated crash after the broker confirmed")

    producer.relay.after_publish = crash
    async with unit_of_work(producer.db) as uow:
        uow.emit(make_event("probe.input", {"n": 7}, source="/test", id_="evt-crash"))
    with pytest.raises(ConnectionError):
        await producer.relay.publish_batch()  # published, but the rows stay (transaction rolled back)
    producer.relay.after_publish = None
    assert await producer.relay.publish_batch() == 1  # published a second time
    await eventually(lambda: effects(producer.db))
    await asyncio.sleep(0.5)
    assert await effects(producer.db) == ["evt-crash"]  # the consumer's inbox absorbed the duplicate
    async with producer.db.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM outbox WHERE event_id = 'evt-crash'") == 0
    await producer.stop()


async def test_poison_message_dead_lettered_after_delivery_limit(
    runtime: tuple[ServiceRuntime, Recorder], amqp_url: str
) -> None:
    rt, recorder = runtime
    recorder.poison_ids.add("evt-poison")
    await publish(rt.broker, event_body("evt-poison"))
    await publish(rt.broker, event_body("evt-fine"))
    dead = await get_messages(amqp_url, "probe.dead-letter", expect=1, timeout=15)
    assert len(dead) == 1
    headers = dead[0].headers
    assert headers["x-qti-error-kind"] == "delivery_limit"
    assert "handler bug for this message" in str(headers["x-qti-error"])
    assert headers["x-qti-original-queue"] == "probe.input"
    assert recorder.calls >= 3
    await eventually(lambda: effects(rt.db))
    assert await effects(rt.db) == ["evt-fine"]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"{not json", "body is not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (json.dumps({"specversion": "1.0", "source": "/x", "data": {}}).encode(), "id"),
    ],
)
async def test_unparseable_envelope_dead_lettered_and_consumer_keeps_going(
    runtime: tuple[ServiceRuntime, Recorder], amqp_url: str, body: bytes, fragment: str
) -> None:
    rt, _ = runtime
    await publish(rt.broker, body)
    await publish(rt.broker, event_body("evt-after"))
    dead = await get_messages(amqp_url, "probe.dead-letter", expect=1)
    assert len(dead) == 1 and dead[0].body == body
    assert fragment in str(dead[0].headers["x-qti-error"])
    await eventually(lambda: effects(rt.db))
    assert await effects(rt.db) == ["evt-after"]


async def test_handler_dead_letter_carries_reason(
    runtime: tuple[ServiceRuntime, Recorder], amqp_url: str
) -> None:
    rt, recorder = runtime
    await publish(rt.broker, event_body("evt-bad", reject=True))
    dead = await get_messages(amqp_url, "probe.dead-letter", expect=1)
    assert dead[0].headers["x-qti-error"] == "payload says reject"
    assert dead[0].headers["x-qti-error-kind"] == "invalid_data"
    assert recorder.calls == 1  # parked at once, not retried


async def test_unroutable_publish_raises(settings: Settings) -> None:
    broker = create_broker(settings, "probe")
    await broker.connect()
    try:
        with pytest.raises(DeliveryError):
            await publish_event_bytes(broker, b"{}", exchange="", routing_key="no-such-queue", message_id="x")
    finally:
        await broker.stop()


async def test_event_without_subscriber_is_kept_in_unrouted(
    runtime: tuple[ServiceRuntime, Recorder], amqp_url: str
) -> None:
    rt, _ = runtime
    await publish(rt.broker, event_body("evt-orphan"), key="nobody.listens")
    kept = await get_messages(amqp_url, "qti.unrouted", expect=1)
    assert json.loads(kept[0].body)["id"] == "evt-orphan"


async def test_messages_are_persistent_with_cloudevents_properties(
    runtime: tuple[ServiceRuntime, Recorder], amqp_url: str
) -> None:
    rt, _ = runtime
    await publish(rt.broker, event_body("evt-props"))
    [message] = await get_messages(amqp_url, "probe.done-watch", expect=1)
    assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert message.content_type == "application/cloudevents+json"
    envelope = json.loads(message.body)
    assert message.message_id == envelope["id"]
    assert message.correlation_id == envelope["correlationid"] == "evt-props"


async def test_migrations_are_safe_when_replicas_start_together(database_url: str, tmp_path: Any) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "0001_t.sql").write_text("CREATE TABLE t (id int);")
    conns = [await asyncpg.connect(database_url) for _ in range(5)]
    try:
        results = await asyncio.gather(*(migrate(c, "race", folder) for c in conns))
        runtime_versions = sorted(f"runtime:{path.stem}" for path in RUNTIME_MIGRATIONS.glob("*.sql"))
        assert "runtime:0001_outbox_inbox" in runtime_versions
        assert sorted(len(r) for r in results) == [0, 0, 0, 0, 1 + len(runtime_versions)]
        versions = await conns[0].fetch("SELECT version FROM race.schema_migrations ORDER BY version")
        assert [r["version"] for r in versions] == ["race:0001_t", *runtime_versions]
    finally:
        for c in conns:
            await c.close()


async def test_readiness_reports_components(runtime: tuple[ServiceRuntime, Recorder]) -> None:
    rt, _ = runtime
    assert await rt.readiness() == {"database": True, "broker": True, "consumers": True, "outbox_relay": True}
    await rt.db.close()
    assert (await rt.readiness())["database"] is False
    await rt.db.connect()
