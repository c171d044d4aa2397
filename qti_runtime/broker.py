"""The RabbitMQ side of every service: broker factory, topology, and publishing with confirms.

FastStream 0.7 publishes non-persistent, unconfirmed-on-return and without a prefetch limit unless told;
everything here is explicit about those choices.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aio_pika import DeliveryMode
from faststream.rabbit import (
    Channel,
    ExchangeType,
    QueueType,
    RabbitBroker,
    RabbitExchange,
    RabbitQueue,
)
from pamqp.commands import Basic

from qti_contracts.envelope import CONTENT_TYPE
from qti_contracts.topology import (
    DEAD_LETTER_EXCHANGE,
    EVENTS_EXCHANGE,
    REPORTING_EXCHANGE,
    dead_letter_queue,
    queue_name,
)
from qti_runtime.outbox import OutboxRow
from qti_runtime.settings import Settings

UNROUTED = "qti.unrouted"
PUBLISH_TIMEOUT_SECONDS = 10.0

# Alternate exchange: an event no queue is bound for (yet) is kept, bounded, instead of being
# returned; a publish that still cannot be routed (e.g. a missing reply queue) raises.
EVENTS = RabbitExchange(
    EVENTS_EXCHANGE, type=ExchangeType.TOPIC, durable=True, arguments={"alternate-exchange": UNROUTED}
)
REPORTING = RabbitExchange(
    REPORTING_EXCHANGE, type=ExchangeType.TOPIC, durable=True, arguments={"alternate-exchange": UNROUTED}
)
DEAD_LETTERS = RabbitExchange(DEAD_LETTER_EXCHANGE, type=ExchangeType.DIRECT, durable=True)
UNROUTED_EXCHANGE = RabbitExchange(UNROUTED, type=ExchangeType.FANOUT, durable=True)
UNROUTED_QUEUE = RabbitQueue(
    UNROUTED,
    durable=True,
    arguments={"x-max-length": 10_000, "x-overflow": "drop-head", "x-message-ttl": 7 * 24 * 3600 * 1000},
)


def create_broker(settings: Settings, service: str, *, prefetch: int | None = None) -> RabbitBroker:
    return RabbitBroker(
        settings.amqp_url,
        default_channel=Channel(
            prefetch_count=prefetch or settings.prefetch,
            publisher_confirms=True,
            on_return_raises=True,
        ),
        app_id=service,
        graceful_timeout=settings.shutdown_grace_seconds,
        reconnect_interval=2.0,
        fail_fast=True,
        description=f"qti-net {service} service",
        # FastStream logs every message; at hundreds per second that belongs at DEBUG, not INFO.
        log_level=logging.DEBUG,
        # Handlers take the raw message and parse the envelope themselves. Without this, FastDepends
        # resolves the message argument in a worker thread, one thread hop per message.
        apply_types=False,
    )


@dataclass(frozen=True)
class QueueSpec:
    """A durable service queue bound to `qti.events` with the given routing keys."""

    service: str
    purpose: str
    routing_keys: Sequence[str]
    delivery_limit: int = 5
    extra_arguments: Mapping[str, Any] = field(default_factory=dict)
    exchange: RabbitExchange = EVENTS

    @property
    def name(self) -> str:
        return queue_name(self.service, self.purpose)

    def rabbit_queue(self) -> RabbitQueue:
        arguments: Any = {
            "x-delivery-limit": self.delivery_limit,
            "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE,
            "x-dead-letter-routing-key": dead_letter_queue(self.service),
            **self.extra_arguments,
        }
        return RabbitQueue(
            self.name,
            queue_type=QueueType.QUORUM,
            durable=True,
            arguments=arguments,
            routing_key=self.routing_keys[0] if self.routing_keys else "",
        )


def dead_letter_rabbit_queue(service: str) -> RabbitQueue:
    return RabbitQueue(dead_letter_queue(service), queue_type=QueueType.QUORUM, durable=True)


async def declare_shared_topology(broker: RabbitBroker) -> None:
    """Exchanges every service relies on; identical arguments everywhere, so replicas can race."""
    unrouted = await broker.declare_exchange(UNROUTED_EXCHANGE)
    unrouted_queue = await broker.declare_queue(UNROUTED_QUEUE)
    await unrouted_queue.bind(unrouted, routing_key="")
    events = await broker.declare_exchange(EVENTS)
    reporting = await broker.declare_exchange(REPORTING)
    await reporting.bind(events, routing_key="reporting.#")
    await broker.declare_exchange(DEAD_LETTERS)


async def declare_service_topology(broker: RabbitBroker, service: str, queues: Sequence[QueueSpec]) -> None:
    await declare_shared_topology(broker)
    dead_letters = await broker.declare_exchange(DEAD_LETTERS)
    dlq = await broker.declare_queue(dead_letter_rabbit_queue(service))
    await dlq.bind(dead_letters, routing_key=dead_letter_queue(service))
    for spec in queues:
        exchange = await broker.declare_exchange(spec.exchange)
        queue = await broker.declare_queue(spec.rabbit_queue())
        for key in spec.routing_keys:
            await queue.bind(exchange, routing_key=key)
        # Retries: the consumer publishes a copy with its attempt count here (not via the default
        # exchange, which services may not write to).
        await queue.bind(dead_letters, routing_key=spec.name)


async def publish_outbox_row(broker: RabbitBroker, row: OutboxRow, *, app_id: str | None = None) -> None:
    """Persistent, mandatory, confirmed: raises if the broker returns or does not confirm the message.

    Goes straight to the AMQP channel under the broker's (robust) events exchange: the relay publishes
    every event of the system, and FastStream's and aio-pika's message objects cost more per message than
    the publish itself. A return raises `PublishError`, a nack `DeliveryError` (the channel is opened
    with `on_return_raises`).
    """
    exchange = await broker.declare_exchange(EVENTS)  # cached after the first call: no round trip
    channel = await exchange.channel.get_underlay_channel()
    await channel.basic_publish(
        row.body,
        exchange=row.exchange,
        routing_key=row.routing_key,
        properties=Basic.Properties(
            content_type=CONTENT_TYPE,
            delivery_mode=DeliveryMode.PERSISTENT,
            message_id=row.event_id,
            correlation_id=row.correlation_id,
            headers=dict(row.headers) or None,
            timestamp=datetime.now(UTC),
            app_id=app_id,
        ),
        mandatory=True,
        timeout=PUBLISH_TIMEOUT_SECONDS,
    )


async def publish_event_bytes(
    broker: RabbitBroker,
    body: bytes,
    *,
    routing_key: str,
    message_id: str,
    exchange: str = EVENTS_EXCHANGE,
    correlation_id: str | None = None,
    reply_to: str | None = None,
    headers: Mapping[str, Any] | None = None,
) -> None:
    """Direct publish (used by HTTP entrypoints that only forward a command, and by tests)."""
    await broker.publish(
        body,
        exchange=exchange or None,
        routing_key=routing_key,
        mandatory=True,
        persist=True,
        timeout=PUBLISH_TIMEOUT_SECONDS,
        message_id=message_id,
        correlation_id=correlation_id,
        reply_to=reply_to,
        content_type=CONTENT_TYPE,
        headers=dict(headers) if headers else None,
        timestamp=datetime.now(UTC),
    )
