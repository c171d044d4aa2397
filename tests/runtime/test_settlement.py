"""Every delivery is settled, whatever it carries, and retries are counted by the consumer itself.

Against the real broker and database: hostile bodies (deep nesting, huge integers) and odd headers are
dead-lettered or handled without leaving anything unacknowledged; a message that always fails is tried
exactly `delivery_limit` times, counted in `x-qti-attempt`, also on a queue without `x-delivery-count`;
a poison message among micro-batched ones is dead-lettered while the others commit.
"""

from __future__ import annotations

import asyncio
import json
import struct
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aio_pika
import pamqp.encode
import pytest
from faststream.rabbit import RabbitQueue

from qti_contracts.envelope import RawEvent, make_event
from qti_contracts.topology import DEAD_LETTER_EXCHANGE, dead_letter_queue
from qti_runtime.batching import Batching, BatchItem, MicroBatcher
from qti_runtime.broker import QueueSpec, create_broker, publish_event_bytes
from qti_runtime.consumer import ATTEMPT_HEADER, Delivery, Subscription
from qti_runtime.service import ServiceRuntime
from qti_runtime.settings import Settings
from qti_runtime.unit_of_work import unit_of_work
from support import eventually, get_messages

SERVICE = "settle"
KEY = "settle.input"
QUEUE = "settle.input"
DLQ = dead_letter_queue(SERVICE)
LIMIT = 3

DEEP_ARRAY = b"[" * 100_000
DEEP_OBJECT = b'{"a":' * 50_000
HUGE_NUMBER = b"1" * 100_000


@dataclass(frozen=True)
class ClassicQueueSpec(QueueSpec):
    """A classic queue: RabbitMQ never sets `x-delivery-count` on its deliveries."""

    def rabbit_queue(self) -> RabbitQueue:
        arguments: Any = {
            "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE,
            "x-dead-letter-routing-key": dead_letter_queue(self.service),
        }
        return RabbitQueue(self.name, durable=True, arguments=arguments, routing_key=self.routing_keys[0])


class Recorder:
    """Records the deliveries it sees; events whose data says `fail` always raise."""

    def __init__(self) -> None:
        self.runtime: ServiceRuntime | None = None
        self.seen: list[tuple[str, dict[str, Any]]] = []
        self.batch_sizes: list[int] = []

    @property
    def rt(self) -> ServiceRuntime:
        assert self.runtime is not None
        return self.runtime

    async def handle(self, event: RawEvent, delivery: Delivery) -> None:
        self.seen.append((event.id, dict(delivery.headers)))
        if event.data.get("fail"):
            raise RuntimeError(f"handler bug for {event.id}")
        async with unit_of_work(self.rt.db) as uow:
            if await uow.claim(QUEUE, event.id):
                await uow.conn.execute("INSERT INTO effects (event_id) VALUES ($1)", event.id)

    async def handle_batch(self, items: Sequence[BatchItem]) -> None:
        self.batch_sizes.append(len(items))
        async with unit_of_work(self.rt.db) as uow:
            fresh = await uow.claim_many(QUEUE, [event.id for event, _ in items])
            if any(event.data.get("fail") for event, _ in items):
                raise RuntimeError("a message of this batch cannot be handled")
            await uow.conn.executemany(
                "INSERT INTO effects (event_id) VALUES ($1)", [(event_id,) for event_id in sorted(fresh)]
            )

    def attempts_of(self, event_id: str) -> list[dict[str, Any]]:
        return [headers for seen_id, headers in self.seen if seen_id == event_id]


async def runtime_for(
    settings: Settings, tmp_path: Path, spec: QueueSpec, *, batching: bool = False
) -> tuple[ServiceRuntime, Recorder]:
    migrations = tmp_path / "migrations"
    migrations.mkdir(exist_ok=True)
    (migrations / "0001_effects.sql").write_text("CREATE TABLE effects (event_id text NOT NULL);")
    recorder = Recorder()
    subscription = Subscription(
        spec,
        {KEY: recorder.handle},
        batching=Batching(recorder.handle_batch, max_size=20, max_wait_seconds=0.02) if batching else None,
    )
    runtime = ServiceRuntime(SERVICE, settings, migrations=migrations, subscriptions=[subscription])
    recorder.runtime = runtime
    # Declare the topology, then queue everything before consuming.
    await runtime.start()
    await runtime.stop()
    return runtime, recorder


@pytest.fixture
async def quorum(settings: Settings, tmp_path: Path) -> AsyncIterator[tuple[ServiceRuntime, Recorder]]:
    runtime, recorder = await runtime_for(settings, tmp_path, QueueSpec(SERVICE, "input", [KEY], LIMIT))
    yield runtime, recorder
    await runtime.stop()


def event_body(event_id: str, **data: Any) -> bytes:
    return make_event(KEY, data, source="/test", id_=event_id).model_dump_json().encode()


class NotUtf8(bytes):
    """A header value sent as a long string that is not UTF-8 (pamqp decodes it as bytes)."""


class Double(float):
    """A header value sent as a 64-bit double (pamqp sends floats as 32-bit ones)."""


def _encode_odd_values(value: Any) -> bytes:
    """What other AMQP clients may send, and pamqp will not: see `NotUtf8`, `Double`."""
    if isinstance(value, NotUtf8):
        return b"S" + struct.pack(">I", len(value)) + value
    if isinstance(value, Double):
        return b"d" + struct.pack(">d", value)
    return _ENCODE_TABLE_VALUE(value)


_ENCODE_TABLE_VALUE = pamqp.encode.encode_table_value


async def publish_all(settings: Settings, messages: Sequence[tuple[bytes, dict[str, Any] | None]]) -> None:
    broker = create_broker(settings, "test")
    await broker.connect()
    try:
        with pytest.MonkeyPatch.context() as patch:  # only while this test publishes
            patch.setattr(pamqp.encode, "encode_table_value", _encode_odd_values)
            for n, (body, headers) in enumerate(messages):
                await publish_event_bytes(broker, body, routing_key=KEY, message_id=f"m-{n}", headers=headers)
    finally:
        await broker.stop()


async def effect_ids(runtime: ServiceRuntime) -> list[str]:
    async with runtime.db.pool.acquire() as conn:
        return [r["event_id"] for r in await conn.fetch("SELECT event_id FROM effects ORDER BY event_id")]


async def queue_depth(amqp_url: str, name: str) -> int:
    """Messages ready in `name` (passive declare). With no consumer, unacknowledged ones count too."""
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(name, passive=True)
        count = queue.declaration_result.message_count
        assert count is not None
        return count
    finally:
        await connection.close()


async def wait_for_depth(amqp_url: str, name: str, expected: int) -> None:
    async def reached() -> bool:
        return await queue_depth(amqp_url, name) == expected

    await eventually(reached, timeout=60)


async def nothing_left_in_queue(runtime: ServiceRuntime, amqp_url: str) -> None:
    """Stop consuming: deliveries the consumer left unacknowledged would return to the queue."""
    await runtime.stop()
    assert await queue_depth(amqp_url, QUEUE) == 0


def huge_number_envelope() -> bytes:
    head = json.dumps({"specversion": "1.0", "id": "evt-huge", "source": "/t", "type": KEY})[:-1]
    return head.encode() + b', "data": {"n": ' + HUGE_NUMBER + b"}}"


async def test_hostile_bodies_and_odd_headers_never_jam_the_queue(
    quorum: tuple[ServiceRuntime, Recorder], settings: Settings, amqp_url: str
) -> None:
    runtime, _ = quorum
    hostile: list[tuple[bytes, dict[str, Any] | None]] = []
    for _ in range(100):  # together far more than the prefetch window (100)
        hostile += [(DEEP_ARRAY, None), (HUGE_NUMBER, None), (huge_number_envelope(), None)]
    odd_bodies = [DEEP_OBJECT, b"null", b'"text"', b"[1, 2]", b"42", b"\xff\xfe{", b"", event_body("x")[:-1]]
    hostile += [(body, None) for body in odd_bodies]
    hostile += [
        (make_event("settle.unknown", {}, source="/t", id_="evt-unknown").model_dump_json().encode(), None),
        (DEEP_ARRAY, {"x-delivery-count": "abc"}),
        (HUGE_NUMBER, {"x-delivery-count": {"a": 1}, ATTEMPT_HEADER: [1, 2]}),
    ]
    # Values the client library decodes but cannot encode again: a publish of the same headers fails.
    not_reencodable = {"x-odd": NotUtf8(b"\xff\xfe"), "x-big": Double(1e300), "x-delivery-count": Double(2.5)}
    hostile += [(DEEP_ARRAY, not_reencodable), (event_body("evt-fails", fail=True), not_reencodable)]
    odd_headers: list[dict[str, Any]] = [
        {"x-delivery-count": "abc"},
        {"x-delivery-count": {"a": 1}},
        {"x-delivery-count": "9" * 5000},
        {"x-delivery-count": Double(1e300)},
        {ATTEMPT_HEADER: [1, 2]},
        {ATTEMPT_HEADER: -7},
        {ATTEMPT_HEADER: NotUtf8(b"\xff")},
        {"traceparent": NotUtf8(b"\xff\xfe")},
        {"traceparent": {"a": 1}},
        not_reencodable,
    ]
    good = [(event_body(f"evt-odd-{n}"), headers) for n, headers in enumerate(odd_headers)]
    valid = (event_body("evt-valid"), None)
    await publish_all(settings, [*hostile, *good, valid])

    await runtime.start()
    expected = sorted(["evt-valid", *(f"evt-odd-{n}" for n in range(len(odd_headers)))])

    async def all_handled() -> bool:
        return await effect_ids(runtime) == expected

    await eventually(all_handled, timeout=60)
    await wait_for_depth(amqp_url, DLQ, len(hostile))
    assert await effect_ids(runtime) == expected  # each exactly once
    await nothing_left_in_queue(runtime, amqp_url)

    dead = await get_messages(amqp_url, DLQ, expect=len(hostile), timeout=30)
    assert sorted(m.body for m in dead) == sorted(body for body, _ in hostile)
    assert all(str(m.headers.get("x-qti-error", "")) for m in dead)
    assert {m.headers["x-qti-original-queue"] for m in dead} == {QUEUE}
    reasons = {m.body: str(m.headers["x-qti-error"]) for m in dead}
    assert "RecursionError" in reasons[DEEP_ARRAY]
    assert "ValueError" in reasons[HUGE_NUMBER]
    assert "ValueError" in reasons[huge_number_envelope()]
    assert "no handler" in next(r for body, r in reasons.items() if b"evt-unknown" in body)


@pytest.mark.parametrize("queue_kind", ["quorum", "classic"])
async def test_failing_message_tried_exactly_delivery_limit_times_counted_by_own_header(
    settings: Settings, tmp_path: Path, amqp_url: str, queue_kind: str
) -> None:
    spec_type = ClassicQueueSpec if queue_kind == "classic" else QueueSpec
    runtime, recorder = await runtime_for(settings, tmp_path, spec_type(SERVICE, "input", [KEY], LIMIT))
    try:
        messages = [(event_body("evt-poison", fail=True), None), (event_body("evt-ok"), None)]
        await publish_all(settings, messages)
        await runtime.start()
        [dead] = await get_messages(amqp_url, DLQ, expect=1, timeout=30)
        await eventually(lambda: effect_ids(runtime))
        assert await effect_ids(runtime) == ["evt-ok"]
        await nothing_left_in_queue(runtime, amqp_url)
    finally:
        await runtime.stop()

    attempts = recorder.attempts_of("evt-poison")
    assert [headers.get(ATTEMPT_HEADER) for headers in attempts] == [None, 1, 2]
    # The count never came from the broker: the copies are new messages, without `x-delivery-count`.
    assert all("x-delivery-count" not in headers for headers in attempts)
    assert dead.headers["x-qti-error-kind"] == "delivery_limit"
    assert "failed 3 times" in str(dead.headers["x-qti-error"])
    assert "handler bug for evt-poison" in str(dead.headers["x-qti-error"])
    assert dead.headers[ATTEMPT_HEADER] == 2
    assert json.loads(dead.body)["id"] == "evt-poison"
    assert dead.message_id == "m-0"  # the original's properties travel with the copies
    assert dead.delivery_mode == aio_pika.DeliveryMode.PERSISTENT


async def test_retry_falls_back_to_requeue_when_the_copy_cannot_be_published(
    quorum: tuple[ServiceRuntime, Recorder], settings: Settings, amqp_url: str
) -> None:
    """Without the retry binding the copy is returned: the message is given back, not lost, and the
    broker's `x-delivery-count` (RabbitMQ 3.x counts the nack) still ends its retries."""
    runtime, recorder = quorum
    await runtime.start()
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        queue = await channel.get_queue(QUEUE, ensure=True)
        await queue.unbind(DEAD_LETTER_EXCHANGE, routing_key=QUEUE)
    finally:
        await connection.close()
    await publish_all(settings, [(event_body("evt-poison", fail=True), None)])

    [dead] = await get_messages(amqp_url, DLQ, expect=1, timeout=30)
    await nothing_left_in_queue(runtime, amqp_url)
    attempts = recorder.attempts_of("evt-poison")
    assert [headers.get("x-delivery-count") for headers in attempts] == [None, 1, 2]
    assert all(ATTEMPT_HEADER not in headers for headers in attempts)
    assert dead.headers["x-qti-error-kind"] == "delivery_limit"


async def test_poison_message_among_batched_ones_is_dead_lettered_and_the_others_commit(
    settings: Settings, tmp_path: Path, amqp_url: str
) -> None:
    spec = QueueSpec(SERVICE, "input", [KEY], LIMIT)
    runtime, recorder = await runtime_for(settings, tmp_path, spec, batching=True)
    try:
        good = [(event_body(f"evt-{n:03d}"), None) for n in range(60)]
        hostile = [(DEEP_ARRAY, None), (huge_number_envelope(), None), (b"[]", {"x-delivery-count": "abc"})]
        poison = (event_body("evt-poison", fail=True), None)
        await publish_all(settings, [*good[:20], poison, *hostile, *good[20:]])
        await runtime.start()
        expected = sorted(f"evt-{n:03d}" for n in range(60))

        async def all_committed() -> bool:
            return await effect_ids(runtime) == expected

        await eventually(all_committed, timeout=60)
        await wait_for_depth(amqp_url, DLQ, len(hostile) + 1)
        assert await effect_ids(runtime) == expected  # each exactly once
        await nothing_left_in_queue(runtime, amqp_url)
    finally:
        await runtime.stop()

    assert max(recorder.batch_sizes) > 1, recorder.batch_sizes
    dead = await get_messages(amqp_url, DLQ, expect=len(hostile) + 1, timeout=30)
    kinds = sorted(str(m.headers["x-qti-error-kind"]) for m in dead)
    assert kinds == ["delivery_limit", "invalid_envelope", "invalid_json", "invalid_json"]
    [poisoned] = [m for m in dead if m.headers["x-qti-error-kind"] == "delivery_limit"]
    assert json.loads(poisoned.body)["id"] == "evt-poison"
    assert [h.get(ATTEMPT_HEADER) for h in recorder.attempts_of("evt-poison")] == [None, 1, 2]


async def test_a_batch_ended_by_cancellation_releases_its_messages() -> None:
    """A batch task that ends other than by an exception still answers every waiting message."""

    async def cancelled(items: Sequence[BatchItem]) -> None:
        raise asyncio.CancelledError

    batcher = MicroBatcher(Batching(cancelled, max_size=3, max_wait_seconds=0.001))
    waiting = [batcher.submit(_event(n), _delivery()) for n in range(5)]
    # A guard against hanging for ever, not a timing assertion: the results come at once.
    results = await asyncio.wait_for(asyncio.gather(*waiting), timeout=30)
    assert results == [False] * 5  # each goes the one-message way


def _event(n: int) -> RawEvent:
    return RawEvent(id=f"evt-{n}", source="/test", type=KEY, data={})


def _delivery() -> Delivery:
    return Delivery(
        queue=QUEUE,
        routing_key=KEY,
        message_id=None,
        correlation_id=None,
        reply_to=None,
        headers={},
        delivery_count=0,
    )
