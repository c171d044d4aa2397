"""Consuming: envelope parsing, dispatch by event type, retries, and dead-lettering with the reason.

Every delivery ends in exactly one of: handled and acknowledged; moved to `<service>.dead-letter` with the
error in its headers and acknowledged; or retried. Whatever is raised anywhere on the way (header
parsing, envelope decoding, batching, the handler), nothing is left unsettled and nothing blocks the
queue: a message that cannot be handled costs its own retries, never the queue's progress.

A retry is a copy of the message with `x-qti-attempt` raised by one, published (persistent, mandatory,
confirmed) through `qti.dead-letter` back to the queue it came from, after which the original is
acknowledged; at the subscription's delivery limit the message is dead-lettered instead. The count
travels with the message because RabbitMQ 4 no longer counts `basic.nack` in `x-delivery-count` (that
count is still honoured while a queue provides it: the larger of both counts applies). If the copy cannot
be published, the original is given back to the queue (`basic.nack` with requeue), so nothing is lost.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

import aio_pika.exceptions
import aiormq.exceptions
import asyncpg
import structlog
from aio_pika import DeliveryMode
from aio_pika.message import IncomingMessage
from faststream.rabbit import RabbitBroker
from faststream.rabbit.message import RabbitMessage
from opentelemetry.trace import Span
from pamqp.commands import Basic
from pamqp.encode import encode_table_value
from pydantic import BaseModel, ValidationError
from tenacity import AsyncRetrying, retry_if_exception, stop_after_delay, wait_exponential_jitter

from qti_contracts.envelope import RawEvent
from qti_contracts.registry import readable_errors
from qti_contracts.topology import DEAD_LETTER_EXCHANGE, dead_letter_queue
from qti_runtime import acks, metrics
from qti_runtime.batching import Batching, MicroBatcher
from qti_runtime.broker import DEAD_LETTERS, PUBLISH_TIMEOUT_SECONDS, QueueSpec
from qti_runtime.delivery import Delivery, Handler
from qti_runtime.logging import get_logger
from qti_runtime.tracing import consume_span, mark_error

# `Delivery` and `Handler` live in `qti_runtime.delivery` (the batcher needs them too) and are re-exported.
__all__ = [
    "ATTEMPT_HEADER",
    "BROKER_DELIVERY_COUNT",
    "INVALID_LABEL",
    "MAX_ERROR_HEADER",
    "UNKNOWN_TYPE_LABEL",
    "Consumer",
    "DeadLetter",
    "Delivery",
    "Handler",
    "Subscription",
    "UnknownTypes",
    "decode_envelope",
    "is_transient",
    "parse_payload",
]

log = get_logger(__name__)

MAX_ERROR_HEADER = 2000
# Failed attempts so far, written by this consumer on each retry copy (see the module docstring).
ATTEMPT_HEADER = "x-qti-attempt"
# Quorum queues count earlier deliveries here (RabbitMQ 3.x also counts `basic.nack`; 4.x no longer).
BROKER_DELIVERY_COUNT = "x-delivery-count"
# Metric label for event types without a handler: their names come from the sender, unbounded.
UNKNOWN_TYPE_LABEL = "unknown"
INVALID_LABEL = "invalid"


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
    """The envelope, or why there is none; never raises, whatever the body."""
    try:
        document = json.loads(body)
    except Exception as exc:
        # Besides bad UTF-8 and syntax: RecursionError (deep nesting), ValueError (an integer literal
        # beyond Python's digit limit), MemoryError. None of these can ever parse.
        return _Decoded(error=f"body is not JSON: {_describe(exc)}", kind="invalid_json")
    if not isinstance(document, dict):
        return _Decoded(error="body is not a JSON object (CloudEvents structured mode)")
    try:
        return _Decoded(event=RawEvent.model_validate(document))
    except ValidationError as exc:
        return _Decoded(error=f"not a CloudEvents 1.0 envelope: {readable_errors(exc)}")
    except Exception as exc:
        return _Decoded(error=f"not a CloudEvents 1.0 envelope: {_describe(exc)}")


@dataclass
class _Inbound:
    """One delivery on its way through the consumer, and whether it has been settled yet."""

    message: RabbitMessage
    delivery: Delivery
    settled: bool = False

    @property
    def raw(self) -> IncomingMessage:
        return self.message.raw_message


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
        inbound = _Inbound(message, _delivery(message, self._queue))
        try:
            await self._process(inbound)
        except Exception as exc:
            # A bug or a message the runtime did not foresee: the message costs its own retries.
            log.error("message.processing_failed", error=_describe(exc), queue=self._queue, exc_info=True)
            if not inbound.settled:
                await self._settle_after_error(inbound, exc)

    async def _process(self, inbound: _Inbound) -> None:
        decoded = decode_envelope(inbound.message.body)
        if decoded.event is None:
            await self._dead_letter(inbound, decoded.error or "invalid", decoded.kind, INVALID_LABEL)
            return
        event = decoded.event
        handler = self._subscription.handlers.get(event.type)
        if handler is None and self._subscription.unknown_types == "ignore":
            # Forward compatible, and nothing of the message is kept (it may carry personal data).
            await self._ack(inbound)
            log.info("message.ignored_unknown_type", event_type=event.type, queue=self._queue)
            metrics.MESSAGES_HANDLED.labels(self._service, self._queue, UNKNOWN_TYPE_LABEL, "ignored").inc()
            return
        if handler is None:
            reason = f"no handler for event type {event.type!r} on queue {self._queue}"
            await self._dead_letter(inbound, reason, "unknown_type", UNKNOWN_TYPE_LABEL)
            return
        with structlog.contextvars.bound_contextvars(
            event_id=event.id, event_type=event.type, correlation_id=event.correlationid
        ):
            if (
                self._batcher is not None
                and self._batcher.accepts(event.type)
                and await self._handled_in_batch(inbound, event)
            ):
                return
            await self._handle(inbound, event, handler)

    def _span(self, delivery: Delivery, event: RawEvent) -> AbstractContextManager[Span]:
        return consume_span(
            _trace_headers(delivery.headers),
            event_type=event.type,
            event_id=event.id,
            queue=self._queue,
            correlation_id=event.correlationid,
        )

    async def _handled_in_batch(self, inbound: _Inbound, event: RawEvent) -> bool:
        assert self._batcher is not None
        started = time.perf_counter()
        with self._span(inbound.delivery, event):
            if not await self._batcher.submit(event, inbound.delivery):
                return False
        metrics.HANDLER_SECONDS.labels(self._service, event.type).observe(time.perf_counter() - started)
        await self._ack(inbound)
        metrics.MESSAGES_HANDLED.labels(self._service, self._queue, event.type, "ok").inc()
        return True

    async def _handle(self, inbound: _Inbound, event: RawEvent, handler: Handler) -> None:
        started = time.perf_counter()
        with self._span(inbound.delivery, event) as span:
            try:
                async for attempt in AsyncRetrying(
                    retry=retry_if_exception(is_transient),
                    stop=stop_after_delay(self._transient_retry_seconds),
                    wait=wait_exponential_jitter(multiplier=0.1, max=2.0),
                    reraise=True,
                ):
                    with attempt:
                        await handler(event, inbound.delivery)
            except DeadLetter as exc:
                mark_error(span, f"dead-lettered: {exc.reason}", exc)
                await self._dead_letter(inbound, exc.reason, exc.kind, event.type)
                return
            except Exception as exc:
                mark_error(span, repr(exc), exc)
                await self._failed(inbound, event.type, exc)
                return
            finally:
                metrics.HANDLER_SECONDS.labels(self._service, event.type).observe(
                    time.perf_counter() - started
                )
            await self._ack(inbound)
        metrics.MESSAGES_HANDLED.labels(self._service, self._queue, event.type, "ok").inc()

    async def _settle_after_error(self, inbound: _Inbound, exc: Exception) -> None:
        """The last line: a failed attempt; and if even that fails, back to the queue."""
        try:
            await self._failed(inbound, INVALID_LABEL, exc)
        except Exception as again:
            log.error("message.settle_failed", error=_describe(again), queue=self._queue)
            if not inbound.settled:
                await self._nack_quietly(inbound)

    async def _failed(self, inbound: _Inbound, type_label: str, exc: Exception) -> None:
        attempts = inbound.delivery.delivery_count + 1
        if attempts >= self._delivery_limit:
            reason = f"failed {attempts} times, last error: {_describe(exc)}"
            await self._dead_letter(inbound, reason, "delivery_limit", type_label)
            return
        # The traceback once per message is enough to find a bug; later attempts only count.
        log.warning("message.failed", attempt=attempts, error=_describe(exc), exc_info=attempts == 1)
        headers = {
            key: value for key, value in inbound.delivery.headers.items() if key != BROKER_DELIVERY_COUNT
        }
        headers[ATTEMPT_HEADER] = attempts
        try:
            # Through the dead-letter exchange, where every consumed queue is bound under its own name.
            await self._republish(inbound, routing_key=self._queue, headers=headers)
        except Exception as publish_error:
            log.error("retry.publish_failed", error=_describe(publish_error), attempt=attempts)
            await self._nack(inbound)
        else:
            await self._ack(inbound)
        metrics.MESSAGES_HANDLED.labels(self._service, self._queue, type_label, "requeued").inc()

    async def _dead_letter(self, inbound: _Inbound, reason: str, kind: str, type_label: str) -> None:
        delivery = inbound.delivery
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
            await self._republish(inbound, routing_key=dead_letter_queue(self._service), headers=headers)
        except Exception as exc:
            # Not parked: give it back so that it is neither lost nor acknowledged.
            log.error("dead_letter.publish_failed", error=_describe(exc), reason=reason)
            await self._nack(inbound)
            return
        await self._ack(inbound)
        log.warning("message.dead_lettered", reason=reason, kind=kind, queue=self._queue)
        metrics.DEAD_LETTERED.labels(self._service, self._queue, kind).inc()
        metrics.MESSAGES_HANDLED.labels(self._service, self._queue, type_label, "dead_lettered").inc()

    async def _republish(self, inbound: _Inbound, *, routing_key: str, headers: dict[str, Any]) -> None:
        """Persistent, mandatory and confirmed to `qti.dead-letter`, with the original's properties.

        Raises unless the broker confirmed that the copy is in a queue.
        """
        raw = inbound.raw
        properties = Basic.Properties(
            content_type=raw.content_type,
            content_encoding=raw.content_encoding,
            headers=_encodable(headers),
            delivery_mode=DeliveryMode.PERSISTENT,
            priority=raw.priority,
            correlation_id=raw.correlation_id,
            reply_to=raw.reply_to,
            message_id=raw.message_id,
            timestamp=raw.timestamp,
            message_type=raw.type,
            app_id=raw.app_id,
            # No user_id: the broker closes the channel if it is not the publishing connection's user.
        )
        async with asyncio.timeout(PUBLISH_TIMEOUT_SECONDS):
            exchange = await self._broker.declare_exchange(DEAD_LETTERS)  # cached: no round trip
            channel = await exchange.channel.get_underlay_channel()
            await channel.basic_publish(
                raw.body,
                exchange=DEAD_LETTER_EXCHANGE,
                routing_key=routing_key,
                properties=properties,
                mandatory=True,
                timeout=PUBLISH_TIMEOUT_SECONDS,
            )

    async def _ack(self, inbound: _Inbound) -> None:
        inbound.settled = True  # even if the ack fails: then the channel is gone and the broker redelivers
        raw = inbound.raw
        assert raw.delivery_tag is not None  # consumed with acknowledgements
        await acks.of_channel(raw.channel).ack(raw.delivery_tag)

    async def _nack(self, inbound: _Inbound) -> None:
        """Back to the queue for another try, when even a retry copy or a dead letter cannot be published."""
        inbound.settled = True
        raw = inbound.raw
        assert raw.delivery_tag is not None
        await acks.of_channel(raw.channel).nack(raw.delivery_tag, requeue=True)

    async def _nack_quietly(self, inbound: _Inbound) -> None:
        try:
            await self._nack(inbound)
        except Exception as exc:
            # The channel is gone; the broker gives the message to the next consumer.
            log.error("message.nack_failed", error=_describe(exc), queue=self._queue)


def _delivery(message: RabbitMessage, queue: str) -> Delivery:
    raw = message.raw_message
    headers = raw.headers if isinstance(raw.headers, Mapping) else {}
    return Delivery(
        queue=queue,
        routing_key=raw.routing_key or "",
        message_id=raw.message_id,
        correlation_id=raw.correlation_id,
        reply_to=raw.reply_to,
        headers=dict(headers),
        delivery_count=_delivery_count(headers),
    )


def _delivery_count(headers: Mapping[str, Any]) -> int:
    """Earlier failed attempts: ours (`x-qti-attempt`) or the broker's (`x-delivery-count`), the larger."""
    return max(_count(headers.get(ATTEMPT_HEADER)), _count(headers.get(BROKER_DELIVERY_COUNT)))


def _count(value: object) -> int:
    """A non-negative count from a header the sender may have set to anything (0 if it is not a count)."""
    if isinstance(value, float) and math.isfinite(value):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int | str | bytes):
        return 0
    try:
        return max(int(value), 0)
    except ValueError:  # not a number, or more digits than Python converts
        return 0


def _encodable(headers: Mapping[str, Any]) -> dict[str, Any]:
    """`headers` with the values the client library decodes but cannot encode again as text.

    E.g. a long string that is not UTF-8 arrives as bytes, a double beyond float32 as a float that
    is sent back as float32; either would make every publish of the message fail, forever.
    """
    return {key: value if _is_encodable(value) else _describe_value(value) for key, value in headers.items()}


def _is_encodable(value: object) -> bool:
    try:
        encode_table_value(value)  # type: ignore[arg-type]  # anything a sender put there
    except Exception:
        return False
    return True


def _describe_value(value: object) -> str:
    try:
        return repr(value)[:MAX_ERROR_HEADER]
    except Exception:
        return type(value).__name__


def _trace_headers(headers: Mapping[str, Any]) -> dict[str, str]:
    """The W3C trace context headers as text: a sender's odd value must not stop the message."""
    return dict(_text_items(headers, ("traceparent", "tracestate")))


def _text_items(headers: Mapping[str, Any], keys: tuple[str, ...]) -> Iterator[tuple[str, str]]:
    for key in keys:
        value = headers.get(key)
        if isinstance(value, str):
            yield key, value
        elif isinstance(value, bytes):
            yield key, value.decode(errors="replace")


def _describe(exc: BaseException) -> str:
    """`repr` of an error, short: some (a huge number, a deep structure) describe themselves at length."""
    try:
        text = repr(exc)
    except Exception:
        text = type(exc).__name__
    return text[:MAX_ERROR_HEADER]
