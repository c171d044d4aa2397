"""deploy/rabbitmq/definitions.json imported into the real broker: every user is least-privilege.

Each service, logged in as its own user, declares its topology over the pre-loaded one the way it does in
production (shared exchanges only checked) and publishes its own events; every forbidden action is tried
and refused by the broker (ACCESS_REFUSED): publishing another service's routing key, deleting or
declaring a shared exchange, writing to `amq.default` unless it is registration, reaching another
service's queue through qti.dead-letter, binding to events it does not consume. The `frontend` user may
send the two commands and read its own reply queues only; the read-only kpi-consumer sees only
qti.reporting, and a full KPI consumer queue drops its oldest message instead of refusing reporting's
publish (which would wedge reporting's outbox).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import aio_pika
import aio_pika.abc
import aio_pika.exceptions
import aiormq.exceptions
import pytest
from definitions_kit import KPI_TEST_MAX_LENGTH, ROOT, Imported

from qti_contracts.topology import SERVICES
from qti_runtime.broker import create_broker, declare_service_topology
from qti_runtime.settings import Settings

Action = Callable[[aio_pika.abc.AbstractChannel], Awaitable[Any]]
# One event each service publishes (its outbox rows' routing keys).
OWN_EVENT = {
    "catalogue": "catalogue.offering.published",
    "registration": "registration.confirmed",
    "notification": "notification.sent",
    "reporting": "reporting.kpi.updated",
}


def _generator() -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "rabbitmq_definitions", ROOT / "scripts" / "rabbitmq_definitions.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def _refused(url: str, action: Action, what: str) -> None:
    """`action` on a fresh confirming channel is refused by the broker with ACCESS_REFUSED (403)."""
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        with pytest.raises(aiormq.exceptions.ChannelAccessRefused):
            await action(channel)
            await channel.get_exchange("qti.events", ensure=True)  # a round trip: surfaces a late refusal
            pytest.fail(f"not refused: {what}")


def _publish(exchange: str, routing_key: str, **properties: Any) -> Action:
    async def action(channel: aio_pika.abc.AbstractChannel) -> None:
        target = (
            channel.default_exchange if exchange == "" else await channel.get_exchange(exchange, ensure=False)
        )
        await target.publish(aio_pika.Message(b"{}", **properties), routing_key=routing_key)

    return action


def _delete_exchange(name: str) -> Action:
    async def action(channel: aio_pika.abc.AbstractChannel) -> None:
        await channel.exchange_delete(name)

    return action


def _declare_exchange(name: str) -> Action:
    async def action(channel: aio_pika.abc.AbstractChannel) -> None:
        await channel.declare_exchange(
            name, aio_pika.ExchangeType.TOPIC, durable=True, arguments={"alternate-exchange": "qti.unrouted"}
        )

    return action


def _bind(queue: str, exchange: str, key: str) -> Action:
    async def action(channel: aio_pika.abc.AbstractChannel) -> None:
        declared = await channel.declare_queue(queue, durable=True, auto_delete=True)
        await declared.bind(exchange, routing_key=key)

    return action


def _consume(queue: str) -> Action:
    async def action(channel: aio_pika.abc.AbstractChannel) -> None:
        declared = await channel.get_queue(queue, ensure=False)
        await declared.get(fail=False)

    return action


async def _next(queue: aio_pika.abc.AbstractQueue) -> aio_pika.abc.AbstractIncomingMessage:
    for _ in range(100):
        message = await queue.get(fail=False, no_ack=True)
        if message is not None:
            return message
        await asyncio.sleep(0.1)
    raise AssertionError(f"nothing arrived in {queue.name}")


async def _services_declare_and_publish(imported: Imported, settings: Settings) -> None:
    queues = _generator().service_queues()
    for service in SERVICES:
        service_settings = settings.model_copy(update={"amqp_url": imported[service]})
        broker = create_broker(service_settings, service)
        await broker.connect()
        try:
            # Equal arguments: no PRECONDITION_FAILED; shared exchanges only checked: no ACCESS_REFUSED.
            mine = [q for q in queues if q.service == service]
            await declare_service_topology(broker, service, mine, shared_exist=True)
            await broker.publish(b"{}", exchange="qti.events", routing_key=OWN_EVENT[service], mandatory=True)
            await broker.publish(
                b"{}", exchange="qti.dead-letter", routing_key=f"{service}.dead-letter", mandatory=True
            )
        finally:
            await broker.stop()


async def _services_are_fenced(imported: Imported) -> None:
    for service in SERVICES:
        url = imported[service]
        other = next(s for s in SERVICES if s != service)
        await _refused(url, _publish("qti.events", OWN_EVENT[other]), f"{service} publishes {other}'s event")
        await _refused(url, _publish("qti.events", "registration.requested.x"), f"{service}: foreign key")
        for shared in ("qti.events", "qti.reporting", "qti.dead-letter", "qti.unrouted"):
            await _refused(url, _delete_exchange(shared), f"{service} deletes {shared}")
        await _refused(url, _declare_exchange("qti.events"), f"{service} declares qti.events")
        await _refused(
            url, _publish("qti.reporting", "reporting.kpi.updated"), f"{service} writes qti.reporting"
        )
        await _refused(
            url, _publish("qti.dead-letter", f"{other}.dead-letter"), f"{service} into {other}'s dead letters"
        )
        await _refused(url, _consume(f"{other}.dead-letter"), f"{service} reads {other}'s dead letters")
        if service != "registration":
            await _refused(url, _publish("", "registration.requests"), f"{service} writes amq.default")
    # Reads are fenced by binding keys too: catalogue may not bind its own queue to commands with
    # personal data it does not consume, nor notification read registration's command queue.
    await _refused(
        imported["catalogue"],
        _bind("catalogue.sneaky", "qti.events", "registration.requested"),
        "catalogue binds",
    )
    await _refused(imported["notification"], _consume("registration.requests"), "notification reads requests")


async def _frontend(imported: Imported, amqp_url: str) -> None:
    url = imported["frontend"]
    await _refused(url, _publish("qti.events", "registration.confirmed"), "frontend publishes an outcome")
    await _refused(url, _publish("", "registration.requests"), "frontend writes amq.default")
    await _refused(url, _consume("registration.requests"), "frontend reads registration.requests")
    await _refused(url, _consume("notification.events"), "frontend reads notification.events")
    await _refused(
        url, _bind("frontend.reply.tap", "qti.events", "registration.#"), "frontend binds to events"
    )
    await _refused(url, _bind("registration.fake", "qti.events", "x"), "frontend declares a service queue")
    await _refused(url, _delete_exchange("qti.events"), "frontend deletes qti.events")

    frontend = await aio_pika.connect(url)
    registration = await aio_pika.connect(imported["registration"])
    async with frontend, registration:
        channel = await frontend.channel(publisher_confirms=True)
        events = await channel.get_exchange("qti.events", ensure=False)
        # Its own reply queue, and direct reply-to (no permission needed to consume it).
        replies = await channel.declare_queue("frontend.reply.portal-1", exclusive=True)
        direct: asyncio.Queue[aio_pika.abc.AbstractIncomingMessage] = asyncio.Queue()
        reply_queue = await channel.get_queue("amq.rabbitmq.reply-to", ensure=False)
        await reply_queue.consume(direct.put, no_ack=True)
        for reply_to in (replies.name, "amq.rabbitmq.reply-to"):
            await events.publish(
                aio_pika.Message(b"{}", reply_to=reply_to, correlation_id=reply_to),
                routing_key="registration.requested",
                mandatory=True,
            )
        await events.publish(aio_pika.Message(b"{}"), routing_key="registration.cancellation_requested")

        # Registration reads the commands and answers through the default exchange.
        answering = await registration.channel(publisher_confirms=True)
        requests = await answering.get_queue("registration.requests", ensure=False)
        received = [await _next(requests) for _ in range(3)]
        assert [m.routing_key for m in received] == [
            "registration.requested",
            "registration.requested",
            "registration.cancellation_requested",
        ]
        for message in received[:2]:
            assert message.reply_to is not None
            await answering.default_exchange.publish(
                aio_pika.Message(b"{}", correlation_id=message.correlation_id),
                routing_key=message.reply_to,
                mandatory=True,
            )
        assert (await _next(replies)).correlation_id == "frontend.reply.portal-1"
        assert (await asyncio.wait_for(direct.get(), 10)).correlation_id == "amq.rabbitmq.reply-to"


async def _kpi_consumer(imported: Imported, amqp_url: str) -> None:
    connection = await aio_pika.connect(imported["kpi-consumer"])
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue("kpi-consumer.dashboard", durable=True)
        await queue.bind("qti.reporting", routing_key="reporting.#")
        await _refused(
            imported["kpi-consumer"],
            _bind("kpi-consumer.sneaky", "qti.events", "registration.#"),
            "kpi binds",
        )
        await _refused(
            imported["kpi-consumer"], _publish("qti.reporting", "reporting.kpi.updated"), "kpi writes"
        )

        admin = await aio_pika.connect(imported["qti-admin"])
        async with admin:
            publisher = await admin.channel(publisher_confirms=True)
            events = await publisher.get_exchange("qti.events")
            await events.publish(aio_pika.Message(b'{"pii": 1}'), routing_key="registration.confirmed")
        # Reporting publishes more figures than the queue holds: every publish is confirmed (a nack
        # would raise DeliveryError and park reporting's outbox), the oldest are dropped.
        reporting = await aio_pika.connect(imported["reporting"])
        async with reporting:
            publisher = await reporting.channel(publisher_confirms=True)
            events = await publisher.get_exchange("qti.events", ensure=False)
            for number in range(KPI_TEST_MAX_LENGTH * 2):
                await events.publish(
                    aio_pika.Message(str(number).encode(), delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                    routing_key="reporting.kpi.updated",
                    mandatory=True,
                )
        received = []
        while (message := await queue.get(fail=False, no_ack=True)) is not None:
            received.append((message.routing_key, message.body.decode()))
        assert received == [
            ("reporting.kpi.updated", str(n)) for n in range(KPI_TEST_MAX_LENGTH, KPI_TEST_MAX_LENGTH * 2)
        ]


async def test_definitions_work_on_the_real_broker(
    imported: Imported, settings: Settings, amqp_url: str
) -> None:
    # One import for all checks: creating and removing broker users is slow.
    await _services_declare_and_publish(imported, settings)
    await _services_are_fenced(imported)
    await _frontend(imported, amqp_url)
    await _kpi_consumer(imported, amqp_url)
