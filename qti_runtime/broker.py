"""The RabbitMQ side of every service: broker factory, topology, and publishing with confirms.

FastStream 0.7 publishes non-persistent, unconfirmed-on-return and without a prefetch limit unless told;
everything here is explicit about those choices.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aio_pika import DeliveryMode, RobustQueue
from aio_pika.exceptions import ChannelPreconditionFailed
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
from qti_runtime.logging import get_logger
from qti_runtime.outbox import OutboxRow
from qti_runtime.settings import Settings

log = get_logger(__name__)

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
# A topic exchange (not direct) only so that RabbitMQ's topic permissions limit each service to the routing
# keys of its own queues: routing keys are exact queue names, so it routes like a direct exchange.
DEAD_LETTERS = RabbitExchange(DEAD_LETTER_EXCHANGE, type=ExchangeType.TOPIC, durable=True)
UNROUTED_EXCHANGE = RabbitExchange(UNROUTED, type=ExchangeType.FANOUT, durable=True)


@dataclass(frozen=True)
class QueueBounds:
    """How long and how many messages a parking queue (dead letters, unrouted events) keeps.

    When full, the oldest message is dropped (`drop-head`): these queues hold personal data, and a bound
    that refused new messages would block the dead-lettering of the consumers instead.
    """

    ttl_days: float
    max_messages: int

    def arguments(self) -> Any:  # FastStream types queue arguments per queue type (TypedDicts)
        return {
            "x-max-length": self.max_messages,
            "x-overflow": "drop-head",
            "x-message-ttl": round(self.ttl_days * 24 * 3600 * 1000),
        }


DEAD_LETTER_BOUNDS = QueueBounds(ttl_days=14, max_messages=100_000)
UNROUTED_BOUNDS = QueueBounds(ttl_days=7, max_messages=10_000)


def dead_letter_bounds(settings: Settings) -> QueueBounds:
    return QueueBounds(settings.dead_letter_ttl_days, settings.dead_letter_max_messages)


def unrouted_bounds(settings: Settings) -> QueueBounds:
    return QueueBounds(settings.unrouted_ttl_days, settings.unrouted_max_messages)


def unrouted_rabbit_queue(bounds: QueueBounds = UNROUTED_BOUNDS) -> RabbitQueue:
    return RabbitQueue(UNROUTED, durable=True, arguments=bounds.arguments())


UNROUTED_QUEUE = unrouted_rabbit_queue()


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


def dead_letter_rabbit_queue(service: str, bounds: QueueBounds = DEAD_LETTER_BOUNDS) -> RabbitQueue:
    return RabbitQueue(
        dead_letter_queue(service), queue_type=QueueType.QUORUM, durable=True, arguments=bounds.arguments()
    )


async def _declare_bounded(broker: RabbitBroker, queue: RabbitQueue) -> RobustQueue:
    """Declare a bounded queue; one declared earlier with other arguments is used as it is, with a warning.

    RabbitMQ refuses to redeclare a queue with other arguments (PRECONDITION_FAILED) and closes the
    channel, and a broker keeps its queues across runs (`make run`). So the arguments are tried on a
    channel of their own first: the broker's channel, which publishes and consumes, never sees the refusal.
    """
    connection = broker._connection  # the broker's own connection: no second login
    if connection is None:
        raise RuntimeError("the broker is not connected")
    channel = await connection.channel()
    try:
        await channel.declare_queue(queue.name, durable=True, arguments=dict(queue.arguments or {}))
    except ChannelPreconditionFailed as exc:
        log.warning(
            "broker.queue_bounds_not_applied",
            queue=queue.name,
            wanted=dict(queue.arguments or {}),
            error=str(exc),
            hint=(
                "the queue exists with other arguments and keeps them. Either apply the bounds as a policy,"
                " e.g. rabbitmqctl set_policy qti-parking-bounds"
                " '^(qti\\.unrouted|[a-z]+\\.dead-letter)$'"
                ' \'{"max-length":100000,"message-ttl":1209600000,"overflow":"drop-head"}\''
                " --apply-to queues, or empty the queue (qti dead-letters replay) and delete it"
                " (rabbitmqctl delete_queue NAME); the service declares it anew when it starts"
            ),
        )
        # Same name and arguments (the cache key of FastStream's declarer), so later lookups get this
        # passive handle and never redeclare the queue with the arguments it refuses.
        queue = copy.copy(queue)
        queue.declare = False
    finally:
        if not channel.is_closed:
            await channel.close()
    return await broker.declare_queue(queue)


async def declare_shared_topology(
    broker: RabbitBroker, *, existing: bool = False, unrouted_bounds: QueueBounds = UNROUTED_BOUNDS
) -> None:
    """Exchanges every service relies on; identical arguments everywhere, so replicas can race.

    `existing` (production): the definitions (deploy/rabbitmq/definitions.json) created them, and a
    service's broker user has no configure permission on them; they are only checked (passive declares,
    which RabbitMQ does not subject to permissions), and declared so under the same objects, so that
    later declares of these exchanges (subscribers, the outbox relay) hit the declarer's cache.
    """
    if existing:
        declarer = broker.config.declarer
        for exchange in (UNROUTED_EXCHANGE, EVENTS, REPORTING, DEAD_LETTERS):
            await declarer.declare_exchange(exchange, declare=False)
        return
    unrouted = await broker.declare_exchange(UNROUTED_EXCHANGE)
    unrouted_queue = await _declare_bounded(broker, unrouted_rabbit_queue(unrouted_bounds))
    await unrouted_queue.bind(unrouted, routing_key="")
    events = await broker.declare_exchange(EVENTS)
    reporting = await broker.declare_exchange(REPORTING)
    await reporting.bind(events, routing_key="reporting.#")
    await broker.declare_exchange(DEAD_LETTERS)


async def declare_service_topology(
    broker: RabbitBroker,
    service: str,
    queues: Sequence[QueueSpec],
    *,
    shared_exist: bool = False,
    dead_letter_bounds: QueueBounds = DEAD_LETTER_BOUNDS,
    unrouted_bounds: QueueBounds = UNROUTED_BOUNDS,
) -> None:
    """The shared exchanges (see `declare_shared_topology`), then the service's own queues and bindings."""
    await declare_shared_topology(broker, existing=shared_exist, unrouted_bounds=unrouted_bounds)
    dead_letters = await broker.declare_exchange(DEAD_LETTERS)
    dlq = await _declare_bounded(broker, dead_letter_rabbit_queue(service, dead_letter_bounds))
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
