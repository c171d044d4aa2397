"""Coalesced acknowledgements: one `multiple` ack for what finished together, never covering a delivery
that is still being handled; and against the real broker, every message settled exactly once."""

from __future__ import annotations

import asyncio
import gc
import weakref
from typing import Any, cast

import aio_pika
import aiormq.abc

from qti_runtime import acks
from qti_runtime.acks import ChannelAcks


class FakeChannel:
    def __init__(self) -> None:
        self.sent: list[tuple[str, int, bool]] = []
        self.room = asyncio.Event()  # a nack waits for room on the connection (shared with publishes)
        self.room.set()

    async def basic_ack(self, delivery_tag: int, multiple: bool = False) -> None:
        self.sent.append(("ack", delivery_tag, multiple))

    async def basic_nack(self, delivery_tag: int, multiple: bool = False, requeue: bool = True) -> None:
        await self.room.wait()
        self.sent.append(("nack", delivery_tag, multiple))


def channel_acks() -> tuple[ChannelAcks, FakeChannel]:
    channel = FakeChannel()
    return ChannelAcks(cast(aiormq.abc.AbstractChannel, channel)), channel


async def test_acks_due_together_go_out_as_one_multiple_ack() -> None:
    tracker, channel = channel_acks()
    await asyncio.gather(*(tracker.ack(tag) for tag in [3, 1, 2, 5, 4]))
    assert channel.sent == [("ack", 5, True)]
    await asyncio.gather(*(tracker.ack(tag) for tag in [6, 7]))
    assert channel.sent[1:] == [("ack", 7, True)]


async def test_an_ack_above_a_running_delivery_is_sent_alone() -> None:
    tracker, channel = channel_acks()
    await asyncio.gather(*(tracker.ack(tag) for tag in [1, 3, 4]))  # 2 is still being handled
    assert channel.sent == [("ack", 1, True), ("ack", 3, False), ("ack", 4, False)]
    await asyncio.gather(*(tracker.ack(tag) for tag in [2, 5, 6]))
    # The floor passes 3 and 4 (already acked), so the multiple ack reaches 6 and covers only 2, 5, 6.
    assert channel.sent[3:] == [("ack", 6, True)]


async def test_a_nack_is_sent_at_once_and_later_acks_pass_over_it() -> None:
    tracker, channel = channel_acks()
    await tracker.nack(1, requeue=True)
    assert channel.sent == [("nack", 1, False)]
    await asyncio.gather(*(tracker.ack(tag) for tag in [2, 3]))
    assert channel.sent[1:] == [("ack", 3, True)]


async def test_a_multiple_ack_never_overtakes_a_nack_still_waiting_to_be_written() -> None:
    tracker, channel = channel_acks()
    channel.room.clear()
    nack = asyncio.create_task(tracker.nack(1, requeue=True))
    await asyncio.gather(*(tracker.ack(tag) for tag in [2, 3]))
    assert channel.sent == [("ack", 2, False), ("ack", 3, False)]  # not `ack 3 multiple`: it would ack 1
    channel.room.set()
    await nack
    await tracker.ack(4)
    assert channel.sent[2:] == [("nack", 1, False), ("ack", 4, True)]


async def test_a_tag_settled_before_is_not_sent_again() -> None:
    tracker, channel = channel_acks()
    await asyncio.gather(*(tracker.ack(tag) for tag in [1, 3]))
    await tracker.ack(1)
    await tracker.ack(3)
    await tracker.nack(3, requeue=True)
    assert channel.sent == [("ack", 1, True), ("ack", 3, False)]


async def test_a_delivery_never_settled_stops_coalescing_instead_of_piling_up_tags() -> None:
    channel = FakeChannel()
    tracker = ChannelAcks(cast(aiormq.abc.AbstractChannel, channel), max_tracked=5)
    for tag in range(2, 12):  # 1 hangs for ever
        await tracker.ack(tag)
    await tracker.nack(12, requeue=True)
    await tracker.ack(13)
    assert channel.sent == [("ack", tag, False) for tag in range(2, 12)] + [
        ("nack", 12, False),
        ("ack", 13, False),
    ]
    assert not tracker._settled and not tracker._due


def test_the_registry_does_not_keep_a_channel_alive() -> None:
    """After a reconnect the old channel and its bookkeeping must go (no growth per reconnect)."""
    channel = FakeChannel()
    gone = weakref.ref(channel)
    acks.of_channel(cast(aiormq.abc.AbstractChannel, channel))
    del channel
    gc.collect()
    assert gone() is None


async def test_every_message_is_settled_once_on_a_real_quorum_queue(amqp_url: str) -> None:
    """A slow message, a requeued one and the rest acknowledged as they finish: the broker accepts every
    ack (a wrong `multiple` or a double ack would close the channel and requeue the messages)."""
    total = 300
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=50)
        queue = await channel.declare_queue("acks.probe", durable=True, arguments={"x-queue-type": "quorum"})
        for number in range(total):
            await channel.default_exchange.publish(aio_pika.Message(str(number).encode()), "acks.probe")
        handled: list[int] = []
        acked: list[int] = []
        requeued = False
        done = asyncio.Event()
        slow_may_finish = asyncio.Event()

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            nonlocal requeued
            number = int(message.body)
            tracker = acks.of_channel(cast(Any, message).channel)
            assert message.delivery_tag is not None
            if number == 7 and not requeued:
                requeued = True
                await tracker.nack(message.delivery_tag, requeue=True)
                return
            if number == 3:  # finishes only after many later deliveries have been acknowledged
                await slow_may_finish.wait()
            handled.append(number)
            await tracker.ack(message.delivery_tag)
            acked.append(number)
            if len(acked) >= total // 2:
                slow_may_finish.set()
            if len(acked) == total:
                done.set()

        tag = await queue.consume(on_message)
        await asyncio.wait_for(done.wait(), timeout=20)
        await queue.cancel(tag)
        assert sorted(handled) == list(range(total))
        assert not channel.is_closed
    # Unsettled messages would be back in the queue now that the channel is closed.
    async with await aio_pika.connect(amqp_url) as connection:
        check = await connection.channel()
        queue = await check.declare_queue("acks.probe", passive=True)
        assert queue.declaration_result.message_count == 0
