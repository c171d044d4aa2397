"""Micro-batched consumption against the real broker and database: one transaction per batch, each
message acknowledged after its batch commits, and a failing batch falling back to one message at a time;
and the batcher's own scheduling (one batch at a time, the next one formed while it runs)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from qti_contracts.envelope import RawEvent, make_event
from qti_runtime.batching import Batching, BatchItem, MicroBatcher
from qti_runtime.broker import QueueSpec, create_broker, publish_event_bytes
from qti_runtime.consumer import DeadLetter, Delivery, Subscription
from qti_runtime.service import ServiceRuntime
from qti_runtime.settings import Settings
from qti_runtime.unit_of_work import unit_of_work
from support import eventually, get_messages

SERVICE = "batchprobe"
CONSUMER = "batchprobe.input"


class BatchRecorder:
    def __init__(self) -> None:
        self.runtime: ServiceRuntime | None = None
        self.batch_sizes: list[int] = []
        self.single_calls: list[str] = []

    @property
    def rt(self) -> ServiceRuntime:
        assert self.runtime is not None
        return self.runtime

    async def handle_batch(self, items: Sequence[tuple[RawEvent, Delivery]]) -> None:
        self.batch_sizes.append(len(items))
        async with unit_of_work(self.rt.db) as uow:
            fresh = await uow.claim_many(CONSUMER, [event.id for event, _ in items])
            if any(event.data.get("reject") for event, _ in items):
                raise ValueError("a message of this batch is invalid")
            await uow.conn.executemany(
                "INSERT INTO effects (event_id) VALUES ($1)", [(event_id,) for event_id in sorted(fresh)]
            )

    async def handle(self, event: RawEvent, delivery: Delivery) -> None:
        self.single_calls.append(event.id)
        if event.data.get("reject"):
            raise DeadLetter("payload says reject", kind="invalid_data")
        async with unit_of_work(self.rt.db) as uow:
            if await uow.claim(CONSUMER, event.id):
                await uow.conn.execute("INSERT INTO effects (event_id) VALUES ($1)", event.id)


@pytest.fixture
async def batching_runtime(
    settings: Settings, tmp_path: Path
) -> AsyncIterator[tuple[ServiceRuntime, BatchRecorder]]:
    migrations = tmp_path / "migrations"
    migrations.mkdir()
    (migrations / "0001_effects.sql").write_text("CREATE TABLE effects (event_id text NOT NULL);")
    recorder = BatchRecorder()
    spec = QueueSpec(SERVICE, "input", ["batchprobe.input"], delivery_limit=3)
    subscription = Subscription(
        spec,
        {"batchprobe.input": recorder.handle},
        batching=Batching(recorder.handle_batch, max_size=20, max_wait_seconds=0.02),
    )
    runtime = ServiceRuntime(SERVICE, settings, migrations=migrations, subscriptions=[subscription])
    recorder.runtime = runtime
    # Declare the topology, then queue everything before consuming, so that batches fill up.
    await runtime.start()
    await runtime.stop()
    yield runtime, recorder
    await runtime.stop()


async def publish_all(settings: Settings, bodies: list[tuple[str, bytes]]) -> None:
    broker = create_broker(settings, "test")
    await broker.connect()
    try:
        for event_id, body in bodies:
            await publish_event_bytes(broker, body, routing_key="batchprobe.input", message_id=event_id)
    finally:
        await broker.stop()


def body(event_id: str, **data: object) -> tuple[str, bytes]:
    event = make_event("batchprobe.input", data, source="/test", id_=event_id)
    return event_id, event.model_dump_json().encode()


async def effect_ids(runtime: ServiceRuntime) -> list[str]:
    async with runtime.db.pool.acquire() as conn:
        return [r["event_id"] for r in await conn.fetch("SELECT event_id FROM effects ORDER BY event_id")]


async def wait_for_effects(runtime: ServiceRuntime, expected: list[str]) -> None:
    async def complete() -> bool:
        return await effect_ids(runtime) == expected

    await eventually(complete, timeout=15)


async def test_batches_take_effect_once_per_event(
    batching_runtime: tuple[ServiceRuntime, BatchRecorder], settings: Settings
) -> None:
    runtime, recorder = batching_runtime
    events = [body(f"evt-{i:03d}") for i in range(60)]
    await publish_all(settings, events + events[:10])  # ten redeliveries, some in the same batch
    await runtime.start()
    expected = sorted(event_id for event_id, _ in events)
    await wait_for_effects(runtime, expected)
    assert max(recorder.batch_sizes) > 1, recorder.batch_sizes
    assert recorder.single_calls == []  # nothing needed the fallback


async def test_failing_batch_falls_back_to_one_message_at_a_time(
    batching_runtime: tuple[ServiceRuntime, BatchRecorder], settings: Settings, amqp_url: str
) -> None:
    runtime, recorder = batching_runtime
    good = [body(f"evt-{i:03d}") for i in range(30)]
    await publish_all(settings, [*good[:15], body("evt-bad", reject=True), *good[15:]])
    await runtime.start()
    dead = await get_messages(amqp_url, "batchprobe.dead-letter", expect=1, timeout=15)
    assert [m.headers["x-qti-error"] for m in dead] == ["payload says reject"]
    expected = sorted(event_id for event_id, _ in good)
    await wait_for_effects(runtime, expected)  # the rolled-back batch's good events took effect once
    assert "evt-bad" in recorder.single_calls


async def test_batches_wait_for_the_running_one_and_grow_with_the_load() -> None:
    """While a batch runs, arriving messages queue up and become the next batch (at most `max_size`)."""
    running = 0
    most_running = 0
    sizes: list[int] = []
    release = asyncio.Event()

    async def handler(items: Sequence[BatchItem]) -> None:
        nonlocal running, most_running
        running += 1
        most_running = max(most_running, running)
        sizes.append(len(items))
        await release.wait()
        running -= 1

    batcher = MicroBatcher(Batching(handler, max_size=4, max_wait_seconds=0.001))
    first = asyncio.ensure_future(batcher.submit(_event(0), _delivery()))
    await asyncio.sleep(0.01)  # the first batch (one message) is running and waits for `release`
    later = [asyncio.ensure_future(batcher.submit(_event(n), _delivery())) for n in range(1, 7)]
    await asyncio.sleep(0.01)
    assert sizes == [1]  # nothing else started while the first batch runs
    release.set()
    assert all(await asyncio.gather(first, *later))
    assert sizes == [1, 4, 2]
    assert most_running == 1


def _event(n: int) -> RawEvent:
    return RawEvent(id=f"evt-{n}", source="/test", type="probe.batched", data={})


def _delivery() -> Delivery:
    return Delivery(
        queue="probe.batched",
        routing_key="probe.batched",
        message_id=None,
        correlation_id=None,
        reply_to=None,
        headers={},
        delivery_count=0,
    )
