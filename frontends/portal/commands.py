"""The portal's side of the broker: it publishes the two commands of INTERFACE.md and hears its replies.

Publishes to `qti.events` as the `frontend` broker user (write on `qti.events` for the two routing keys,
configure and read on `frontend.reply.*` only: deploy/rabbitmq/definitions.json). Each portal process
has its own exclusive reply queue `frontend.reply.portal.<random>`; registration answers a request's
`reply_to` there with the outcome and, in the first answer only, the participant's personal token.

A reply is kept in Redis for `REPLY_TTL_SECONDS` under the request id, without the person's name or
address (status, position, reason, registration id, token), so that any portal replica can show it. The
token is handed to a browser only if that browser submitted the request (see `security.SubmittedCookie`).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass
from typing import Any

import aio_pika
import aio_pika.abc
import aio_pika.exceptions
from pydantic import BaseModel
from redis.asyncio import Redis

from qti_contracts import (
    CONTENT_TYPE,
    EVENTS_EXCHANGE,
    FRONTEND_REPLY_PREFIX,
    RegistrationCancellationRequested,
    RegistrationRequested,
    RoutingKey,
    make_event,
)

SOURCE = "/frontends/portal"
REPLY_TTL_SECONDS = 3600
OUTCOME_STATUS = {
    RoutingKey.REGISTRATION_CONFIRMED: "confirmed",
    RoutingKey.REGISTRATION_WAITLISTED: "waitlisted",
    RoutingKey.REGISTRATION_REJECTED: "rejected",
}
KEPT_FIELDS = ("registration_id", "offering_id", "position", "reason", "detail", "personal_token")


def reply_summary(event: dict[str, Any]) -> dict[str, Any] | None:
    """What the portal keeps of a reply: the decision without personal data (None for anything else)."""
    status = OUTCOME_STATUS.get(str(event.get("type")))
    data = event.get("data")
    if status is None or not isinstance(data, dict) or not isinstance(data.get("request_id"), str):
        return None
    kept = {k: data[k] for k in KEPT_FIELDS if data.get(k) is not None}
    return {"request_id": data["request_id"], "status": status, **kept}


@dataclass
class ReplyStore:
    redis: Redis
    prefix: str

    def _key(self, request_id: str) -> str:
        return f"{self.prefix}:reply:{request_id}"

    async def keep(self, summary: dict[str, Any]) -> None:
        """Keeps the decision; the token (only in the first answer: a repeated request is answered again
        without it) under a key of its own, so a later answer never erases it."""
        request_id = summary["request_id"]
        token = summary.pop("personal_token", None)
        pipe = self.redis.pipeline(transaction=True)
        pipe.set(self._key(request_id), json.dumps(summary), ex=REPLY_TTL_SECONDS)
        if token is not None:
            pipe.set(self._key(request_id) + ":token", token, ex=REPLY_TTL_SECONDS)
        await pipe.execute()

    async def get(self, request_id: str) -> dict[str, Any] | None:
        raw, token = await self.redis.mget(self._key(request_id), self._key(request_id) + ":token")
        if not raw:
            return None
        found = dict(json.loads(raw))
        if token:
            found["personal_token"] = token.decode() if isinstance(token, bytes) else str(token)
        return found


class CommandBus:
    """Publishes commands with publisher confirms; consumes the replies into the `ReplyStore`."""

    def __init__(self, amqp_url: str, replies: ReplyStore) -> None:
        self.amqp_url = amqp_url
        self.replies = replies
        self.reply_queue = f"{FRONTEND_REPLY_PREFIX}portal.{uuid.uuid4().hex}"
        self._connection: aio_pika.abc.AbstractRobustConnection | None = None
        self._channel: aio_pika.abc.AbstractChannel | None = None

    async def start(self, attempts: int = 30) -> None:
        """Connects (the broker may be restarting: tried once a second, `attempts` times)."""
        for attempt in range(attempts):
            try:
                self._connection = await aio_pika.connect_robust(self.amqp_url)
                break
            except (ConnectionError, aio_pika.exceptions.AMQPConnectionError):
                if attempt == attempts - 1:
                    raise
                await asyncio.sleep(1)
        assert self._connection is not None
        self._channel = await self._connection.channel(publisher_confirms=True)
        queue = await self._channel.declare_queue(self.reply_queue, exclusive=True, auto_delete=True)
        await queue.consume(self._on_reply)

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()

    @property
    def ready(self) -> bool:
        return self._connection is not None and not self._connection.is_closed

    async def _on_reply(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        async with message.process(ignore_processed=True):
            try:
                summary = reply_summary(json.loads(message.body))
            except ValueError:
                return
            if summary is not None:
                await self.replies.keep(summary)

    async def _publish(self, type_: str, payload: BaseModel, event_id: str, subject: str) -> None:
        assert self._channel is not None, "CommandBus.start() first"
        event = make_event(type_, payload, source=SOURCE, id_=event_id, subject=subject)
        message = aio_pika.Message(
            event.model_dump_json().encode(),
            content_type=CONTENT_TYPE,
            message_id=event.id,
            correlation_id=event.id,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            reply_to=self.reply_queue,
        )
        exchange = await self._channel.get_exchange(EVENTS_EXCHANGE, ensure=False)
        await exchange.publish(message, routing_key=type_)

    async def request_registration(self, command: RegistrationRequested, request_id: str) -> None:
        await self._publish(RoutingKey.REGISTRATION_REQUESTED, command, request_id, command.offering_id)

    async def request_cancellation(self, command: RegistrationCancellationRequested, event_id: str) -> None:
        await self._publish(
            RoutingKey.REGISTRATION_CANCELLATION_REQUESTED, command, event_id, command.registration_id
        )
