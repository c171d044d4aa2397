"""Consuming: envelope parsing, dispatch by event type, retries, and dead-lettering with the reason.

Every message ends in exactly one of: handled and acknowledged; moved to `<service>.dead-letter` with the
error in its headers and acknowledged; or given back to the queue for another try (the queue's delivery
limit dead-letters it if that keeps failing). Nothing blocks the queue.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

import aio_pika.exceptions
import aiormq.exceptions
import asyncpg
import structlog
from faststream.rabbit import RabbitBroker
from faststream.rabbit.message import RabbitMessage
from opentelemetry.trace import Span
from pydantic import BaseModel, ValidationError
from tenacity import AsyncRetrying, retry_if_exception, stop_after_delay, wait_exponential_jitter

from qti_contracts.envelope import CONTENT_TYPE, RawEvent
from qti_contracts.registry import readable_errors
from qti_contracts.topology import DEAD_LETTER_EXCHANGE, dead_letter_queue
from qti_runtime import acks, metrics
from qti_runtime.batching import Batching, MicroBatcher
from qti_runtime.broker import PUBLISH_TIMEOUT_SECONDS, QueueSpec
from qti_runtime.logging import get_logger
from qti_runtime.tracing import consume_span, mark_error

log = get_logger(__name__)

MAX_ERROR_HEADER = 2000


@dataclass(frozen=True)
class Delivery:
    """What a handler may need to know about the message besides the envelope."""

    queue: str
    routing_key: str
    message_id: str | None
    correlation_id: str | None
    reply_to: str | None
    headers: Mapping[str, Any]
    delivery_count: int


Handler = Callable[[RawEvent, Delivery], Awaitable[None]]
UnknownTypes = Literal["dead-letter", "ignore"]


class DeadLetter(Exception):
    """Raise from a handler for a message that can never succeed; it goes to the dead-letter queue."""

    def __init__(self, reason: str, kind: str = "rejected") -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind


PayloadT = TypeVar("PayloadT", bound=BaseModel)


def parse_payload(model: type[PayloadT], event: RawEvent) -> PayloadT:
    """The event's data as `model`; data that can never be valid is dead-lettered with the reason."""
    try:
        return model.model_validate(event.data)
    except ValidationError as exc:
        raise DeadLetter(f"invalid {event.type} data: {readable_errors(exc)}", "invalid_data") from exc


@dataclass(frozen=True)
class Subscription:
    spec: QueueSpec
    handlers: Mapping[str, Handler]
    description: str = ""
    title: str | None = None
    # Types without a handler are dead-lettered unless the subscription says what to do with them
    # (a wildcard binding also receives types introduced after this code was written).
    unknown_types: UnknownTypes = "dead-letter"
    # Handle known types in batches (one transaction each); `handlers` remain the one-message fallback.
    batching: Batching | None = None


TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    # After a connection is killed mid-transaction asyncpg may raise this on the next use
    # ("cannot switch to state ..."); the pool replaces the connection, a retry succeeds.
    asyncpg.InternalClientError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.SerializationError,
    asyncpg.DeadlockDetectedError,
    asyncpg.OperatorInterventionError,
    aio_pika.exceptions.AMQPConnectionError,
    aio_pika.exceptions.ChannelInvalidStateError,
    aiormq.exceptions.ChannelClosed,
)


def is_transient(exc: BaseException) -> bool:
    """Infrastructure hiccups worth retrying in place; anything else is a bug or bad data."""
    return isinstance(exc, TRANSIENT_ERRORS)


@dataclass
class _Decoded:
    event: RawEvent | None = None
    error: str | None = None
    kind: str = "invalid_envelope"
    extra: dict[str, Any] = field(default_factory=dict)


def decode_envelope(body: bytes) -> _Decoded:
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return _Decoded(error=f"body is not JSON: {exc}", kind="invalid_json")
    if not isinstance(document, dict):
        return _Decoded(error="body is not a JSON object (CloudEvents structured mode)")
    try:
        return _Decoded(event=RawEvent.model_validate(document))
    except ValidationError as exc:
        return _Decoded(error=f"not a CloudEvents 1.0 envelope: {readable_errors(exc)}")


class Consumer:
    """Processes messages of one subscription for one service."""

    def __init__(
        self,
        broker: RabbitBroker,
        service: str,
        subscription: Subscription,
        *,
        delivery_limit: int,
        transient_retry_seconds: float,
    ) -> None:
        self._broker = broker
        self._service = service
        self._subscription = subscription
        self._queue = subscription.spec.name
        self._delivery_limit = delivery_limit
        self._transient_retry_seconds = transient_retry_seconds
        self._batcher = MicroBatcher(subscription.batching) if subscription.batching else None

    async def process(self, message: RabbitMessage) -> None:
        raw = message.raw_message
        delivery = Delivery(
            queue=self._queue,
            routing_key=raw.routing_key or "",
            message_id=raw.message_id,
            correlation_id=raw.correlation_id,
            reply_to=raw.reply_to,
            headers=dict(raw.headers or {}),
            delivery_count=_delivery_count(raw.headers),
        )
        decoded = decode_envelope(message.body)
        if decoded.event is None:
            await self._dead_letter(message, delivery, decoded.error or "invalid", decoded.kind, "invalid")
            return
        event = decoded.event
        handler = self._subscription.handlers.get(event.type)
        if handler is None and self._subscription.unknown_types == "ignore":
            # Forward compatible, and nothing of the message is kept (it may carry personal data).
            await _ack(message)
            log.info("message.ignored_unknown_type", event_type=event.type, queue=self._queue)
            metrics.MESSAGES_HANDLED.labels(self._service, self._queue, "unknown", "ignored").inc()
            return
        if handler is None:
            reason = f"no handler for event type {event.type!r} on queue {self._queue}"
            await self._dead_letter(message, delivery, reason, "unknown_type", event.type)
            return
        with structlog.contextvars.bound_contextvars(
            event_id=event.id, event_type=event.type, correlation_id=event.correlationid
        ):
            if (
                self._batcher is not None
                and self._batcher.accepts(event.type)
                and await self._handled_in_batch(message, delivery, event)
            ):
                return
            await self._handle(message, delivery, event, handler)

    def _span(self, delivery: Delivery, event: RawEvent) -> AbstractContextManager[Span]:
        return consume_span(
            delivery.headers,
            event_type=event.type,
            event_id=event.id,
            queue=self._queue,
            correlation_id=event.correlationid,
        )

    async def _handled_in_batch(self, message: RabbitMessage, delivery: Delivery, event: RawEvent) -> bool:
        assert self._batcher is not None
        started = time.perf_counter()
        with self._span(delivery, event):
            if not await self._batcher.submit(event, delivery):
                return False
        metrics.HANDLER_SECONDS.labels(self._service, event.type).observe(time.perf_counter() - started)
        await _ack(message)
        metrics.MESSAGES_HANDLED.labels(self._service, self._queue, event.type, "ok").inc()
        return True

    async def _handle(
        self, message: RabbitMessage, delivery: Delivery, event: RawEvent, handler: Handler
    ) -> None:
        started = time.perf_counter()
        with self._span(delivery, event) as span:
            try:
                async for attempt in AsyncRetrying(
                    retry=retry_if_exception(is_transient),
                    stop=stop_after_delay(self._transient_retry_seconds),
                    wait=wait_exponential_jitter(multiplier=0.1, max=2.0),
                    reraise=True,
                ):
                    with attempt:
                        await handler(event, delivery)
            except DeadLetter as exc:
                mark_error(span, f"dead-lettered: {exc.reason}", exc)
                await self._dead_letter(message, delivery, exc.reason, exc.kind, event.type)
                return
            except Exception as exc:
                mark_error(span, repr(exc), exc)
                await self._failed(message, delivery, event, exc)
                return
            finally:
                metrics.HANDLER_SECONDS.labels(self._service, event.type).observe(
                    time.perf_counter() - started
                )
            await _ack(message)
        metrics.MESSAGES_HANDLED.labels(self._service, self._queue, event.type, "ok").inc()

    async def _failed(
        self, message: RabbitMessage, delivery: Delivery, event: RawEvent, exc: Exception
    ) -> None:
        attempts = delivery.delivery_count + 1
        if attempts >= self._delivery_limit:
            reason = f"failed {attempts} times, last error: {exc!r}"
            await self._dead_letter(message, delivery, reason, "delivery_limit", event.type)
            return
        # The traceback once per message is enough to find a bug; later attempts only count.
        log.warning("message.failed", attempt=attempts, error=repr(exc), exc_info=attempts == 1)
        await _nack(message)
        metrics.MESSAGES_HANDLED.labels(self._service, self._queue, event.type, "requeued").inc()

    async def _dead_letter(
        self, message: RabbitMessage, delivery: Delivery, reason: str, kind: str, type_label: str
    ) -> None:
        raw = message.raw_message
        headers = {
            **delivery.headers,
            "x-qti-error": reason[:MAX_ERROR_HEADER],
            "x-qti-error-kind": kind,
            "x-qti-original-queue": self._queue,
            "x-qti-original-routing-key": delivery.routing_key,
            "x-qti-dead-lettered-at": datetime.now(UTC).isoformat(),
            "x-qti-delivery-count": delivery.delivery_count,
        }
        try:
            await self._broker.publish(
                message.body,
                exchange=DEAD_LETTER_EXCHANGE,
                routing_key=dead_letter_queue(self._service),
                mandatory=True,
                persist=True,
                timeout=PUBLISH_TIMEOUT_SECONDS,
                message_id=raw.message_id,
                correlation_id=raw.correlation_id,
                reply_to=raw.reply_to,
                content_type=raw.content_type or CONTENT_TYPE,
                headers=headers,
            )
        except Exception as exc:
            # Not parked: give it back so that it is neither lost nor acknowledged.
            log.error("dead_letter.publish_failed", error=repr(exc), reason=reason)
            await _nack(message)
            return
        await _ack(message)
        log.warning("message.dead_lettered", reason=reason, kind=kind, queue=self._queue)
        metrics.DEAD_LETTERED.labels(self._service, self._queue, kind).inc()
        metrics.MESSAGES_HANDLED.labels(self._service, self._queue, type_label, "dead_lettered").inc()


async def _ack(message: RabbitMessage) -> None:
    raw = message.raw_message
    assert raw.delivery_tag is not None  # consumed with acknowledgements
    await acks.of_channel(raw.channel).ack(raw.delivery_tag)


async def _nack(message: RabbitMessage) -> None:
    """Back to the queue for another try (its delivery limit dead-letters a message that keeps failing)."""
    raw = message.raw_message
    assert raw.delivery_tag is not None
    await acks.of_channel(raw.channel).nack(raw.delivery_tag, requeue=True)


def _delivery_count(headers: Mapping[str, Any] | None) -> int:
    """Quorum queues count earlier deliveries in `x-delivery-count` (absent on the first one)."""
    value = (headers or {}).get("x-delivery-count", 0)
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0
