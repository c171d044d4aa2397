"""Operator mechanics behind the `qti` command: dead letters, outbox backlog, forgotten persons.

Nothing here knows a particular service: the actions take service names (their schema and queues follow
the conventions of `qti_contracts.topology`). What needs a service's own code, its privacy hook or a
maintenance command, is run by `qti_host.ops` from the service's definition.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aio_pika
import aio_pika.abc
import aio_pika.exceptions
import asyncpg

from qti_contracts.envelope import CONTENT_TYPE
from qti_contracts.topology import EVENTS_EXCHANGE, SERVICES, dead_letter_queue
from qti_runtime.migrations import migrate
from qti_runtime.outbox import notify_channel

UNROUTED = "qti.unrouted"  # qti_runtime.broker.UNROUTED (not imported: the CLI need not load FastStream)
ERROR_HEADER_PREFIX = "x-qti-"
REPLAYS_HEADER = "x-qti-replays"
ORIGINAL_ROUTING_KEY = "x-qti-original-routing-key"
ORIGINAL_QUEUE = "x-qti-original-queue"
# Headers the broker adds when it dead-letters on its own (delivery limit, rejection).
BROKER_DEATH_HEADERS = ("x-death", "x-first-death-exchange", "x-first-death-queue", "x-first-death-reason")
BROKER_DEATH_HEADERS_ALL = (
    *BROKER_DEATH_HEADERS,
    "x-last-death-exchange",
    "x-last-death-queue",
    "x-last-death-reason",
    "x-delivery-count",
)
GET_TIMEOUT_SECONDS = 5.0


class OpsError(Exception):
    """A failure to report to the operator in one line (no traceback)."""


# --------------------------------------------------------------------------------------------------
# Dead letters
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeadLetterInfo:
    message_id: str | None
    correlation_id: str | None
    event_type: str | None
    routing_key: str | None
    original_queue: str | None
    error: str | None
    error_kind: str | None
    dead_lettered_at: str | None
    replays: int
    body_size: int
    headers: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "message_id": self.message_id,
            "correlation_id": self.correlation_id,
            "type": self.event_type,
            "routing_key": self.routing_key,
            "original_queue": self.original_queue,
            "error": self.error,
            "error_kind": self.error_kind,
            "dead_lettered_at": self.dead_lettered_at,
            "replays": self.replays,
            "body_size": self.body_size,
            "headers": {k: _printable(v) for k, v in self.headers.items()},
        }


@dataclass(frozen=True)
class DeadLetterListing:
    queue: str
    total: int
    messages: list[DeadLetterInfo]


@dataclass
class ReplayResult:
    queue: str
    replayed: list[DeadLetterInfo] = field(default_factory=list)
    skipped: list[tuple[DeadLetterInfo, str]] = field(default_factory=list)
    # About a forgotten person: deleted, not replayed.
    dropped: list[DeadLetterInfo] = field(default_factory=list)


def _printable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return [_printable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _printable(v) for k, v in value.items()}
    return value


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return str(_printable(value))


def _first_death(headers: Mapping[str, Any]) -> Mapping[str, Any]:
    deaths = headers.get("x-death")
    if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict):
        return deaths[0]
    return {}


def original_routing_key(headers: Mapping[str, Any]) -> str | None:
    """The key the message was first published with: the runtime's header, else the broker's x-death."""
    key = _text(headers.get(ORIGINAL_ROUTING_KEY))
    if key:
        return key
    keys = _first_death(headers).get("routing-keys")
    if isinstance(keys, list) and keys:
        return _text(keys[0])
    return None


def describe(message: aio_pika.abc.AbstractIncomingMessage) -> DeadLetterInfo:
    headers = dict(message.headers or {})
    event_type: str | None = None
    try:
        document = json.loads(message.body)
        if isinstance(document, dict) and isinstance(document.get("type"), str):
            event_type = document["type"]
    except (UnicodeDecodeError, json.JSONDecodeError):
        pass
    death = _first_death(headers)
    error = _text(headers.get("x-qti-error"))
    if error is None and death:
        error = f"dead-lettered by the broker: {_text(death.get('reason'))}"
    return DeadLetterInfo(
        message_id=message.message_id,
        correlation_id=message.correlation_id,
        event_type=event_type,
        routing_key=original_routing_key(headers),
        original_queue=_text(headers.get(ORIGINAL_QUEUE)) or _text(death.get("queue")),
        error=error,
        error_kind=_text(headers.get("x-qti-error-kind")) or (_text(death.get("reason")) if death else None),
        dead_lettered_at=_text(headers.get("x-qti-dead-lettered-at")),
        replays=_count(headers.get(REPLAYS_HEADER)),
        body_size=len(message.body),
        headers=headers,
    )


def _count(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def replay_headers(headers: Mapping[str, Any]) -> dict[str, Any]:
    """Headers for a replayed message: without the error and death bookkeeping, replay count + 1."""
    clean = {
        key: value
        for key, value in headers.items()
        if not key.startswith(ERROR_HEADER_PREFIX) and key not in BROKER_DEATH_HEADERS_ALL
    }
    clean[REPLAYS_HEADER] = _count(headers.get(REPLAYS_HEADER)) + 1
    return clean


async def _open_dead_letter_queue(
    connection: aio_pika.abc.AbstractConnection, service: str, *, confirms: bool = False
) -> tuple[aio_pika.abc.AbstractChannel, aio_pika.abc.AbstractQueue]:
    channel = await connection.channel(publisher_confirms=confirms, on_return_raises=confirms)
    name = dead_letter_queue(service)
    try:
        queue = await channel.get_queue(name, ensure=True)
    except aio_pika.exceptions.ChannelNotFoundEntity as exc:
        raise OpsError(f"queue {name!r} does not exist (has the {service} service ever started?)") from exc
    return channel, queue


async def _connect(amqp_url: str) -> aio_pika.abc.AbstractConnection:
    try:
        return await aio_pika.connect(amqp_url, timeout=10)
    except (OSError, aio_pika.exceptions.AMQPConnectionError) as exc:
        raise OpsError(f"cannot connect to RabbitMQ at {mask_url(amqp_url)}: {exc}") from exc


async def _take(queue: aio_pika.abc.AbstractQueue, limit: int) -> list[aio_pika.abc.AbstractIncomingMessage]:
    """Get up to `limit` messages without acknowledging them (they stay unacked until settled)."""
    held: list[aio_pika.abc.AbstractIncomingMessage] = []
    while len(held) < limit:
        message = await queue.get(no_ack=False, fail=False, timeout=GET_TIMEOUT_SECONDS)
        if message is None:
            break
        held.append(message)
    return held


async def show_dead_letters(amqp_url: str, service: str, *, limit: int = 50) -> DeadLetterListing:
    """Peek at a dead-letter queue: every message is given back (nack + requeue) afterwards."""
    connection = await _connect(amqp_url)
    async with connection:
        _channel, queue = await _open_dead_letter_queue(connection, service)
        total = queue.declaration_result.message_count or 0
        held = await _take(queue, min(limit, total))
        try:
            return DeadLetterListing(queue.name, total, [describe(m) for m in held])
        finally:
            for message in held:
                await message.nack(requeue=True)


async def replay_dead_letters(
    amqp_url: str,
    service: str,
    *,
    limit: int | None = None,
    message_ids: Sequence[str] = (),
    to_original_queue: bool = False,
    forgotten: frozenset[str] = frozenset(),
    secret: str = "",
) -> ReplayResult:
    """Publish dead letters again (with confirms), then remove them from the dead-letter queue.

    By default each message goes to `qti.events` with its original routing key, so every queue bound to
    that key receives it again; consumers' inboxes make that harmless for those that had handled it.
    `to_original_queue` sends it through the default exchange to the queue it failed in only.
    Messages are taken at most once per call, so one that fails again is not replayed in a loop.
    A message that mentions a forgotten person (`forgotten`: keyed hashes from `forgotten_digests`, made
    with `secret`) is not replayed but deleted: `qti forget-person` ran while it was away.
    """
    connection = await _connect(amqp_url)
    async with connection:
        channel, queue = await _open_dead_letter_queue(connection, service, confirms=True)
        total = queue.declaration_result.message_count or 0
        exchange = (
            channel.default_exchange
            if to_original_queue
            else await channel.get_exchange(EVENTS_EXCHANGE, ensure=True)
        )
        replay = _Replay(
            ReplayResult(queue.name),
            exchange,
            to_original_queue,
            limit,
            frozenset(message_ids),
            forgotten,
            secret,
        )
        held = await _take(queue, total)
        keep: list[aio_pika.abc.AbstractIncomingMessage] = []
        try:
            for message in held:
                if await replay.settle(message):
                    keep.append(message)
        finally:
            for message in keep:
                await message.nack(requeue=True)
            # Anything not settled (e.g. after an exception) goes back when the channel closes.
    return replay.result


@dataclass
class _Replay:
    """One replay call's choices, applied to its messages one by one."""

    result: ReplayResult
    exchange: aio_pika.abc.AbstractExchange
    to_original_queue: bool
    limit: int | None
    wanted: frozenset[str]
    forgotten: frozenset[str]
    secret: str

    def _passed_over(self, info: DeadLetterInfo) -> bool:
        not_wanted = bool(self.wanted) and info.message_id not in self.wanted
        return not_wanted or (self.limit is not None and len(self.result.replayed) >= self.limit)

    def _about_forgotten(self, body: bytes) -> bool:
        return bool(self.forgotten) and any(
            forgotten_digest(value, self.secret) in self.forgotten for value in _strings_of(body)
        )

    async def settle(self, message: aio_pika.abc.AbstractIncomingMessage) -> bool:
        """Replay, delete or keep one message; True when it is kept (given back to the queue)."""
        info = describe(message)
        if self._passed_over(info):
            return True
        if self._about_forgotten(message.body):
            await message.ack()
            self.result.dropped.append(info)
            return False
        target = info.original_queue if self.to_original_queue else info.routing_key
        if not target:
            what = "original queue" if self.to_original_queue else "original routing key"
            self.result.skipped.append((info, f"no {what} in the headers"))
            return True
        try:
            await self.exchange.publish(_replayed(message), routing_key=target, mandatory=True, timeout=10)
        except (aio_pika.exceptions.DeliveryError, TimeoutError) as exc:
            self.result.skipped.append((info, f"not confirmed by the broker: {exc!r}"))
            return True
        await message.ack()
        self.result.replayed.append(info)
        return False


def _replayed(message: aio_pika.abc.AbstractIncomingMessage) -> aio_pika.Message:
    """The message as it is published again: without the error headers, replay count + 1, persistent."""
    return aio_pika.Message(
        message.body,
        headers=replay_headers(message.headers or {}),
        content_type=message.content_type or CONTENT_TYPE,
        content_encoding=message.content_encoding,
        message_id=message.message_id,
        correlation_id=message.correlation_id,
        reply_to=message.reply_to,
        type=message.type,
        app_id=message.app_id,
        timestamp=datetime.now(UTC),
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
    )


def mask_url(url: str) -> str:
    """The URL without its password, for messages."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


# --------------------------------------------------------------------------------------------------
# Outbox
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParkedRow:
    """An outbox row the relay gave up on (`qti_runtime.outbox`), with the error that parked it."""

    id: int
    event_id: str
    exchange: str
    routing_key: str
    refusals: int
    parked_at: str
    error: str | None


@dataclass(frozen=True)
class OutboxStatus:
    service: str
    exists: bool
    backlog: int = 0
    oldest_age_seconds: float = 0.0
    failing: int = 0
    last_error: str | None = None
    parked: int = 0
    parked_rows: list[ParkedRow] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "parked_rows": [row.__dict__ for row in self.parked_rows]}


async def _connect_db(database_url: str) -> asyncpg.Connection:
    try:
        return await asyncpg.connect(database_url, timeout=10)
    except (OSError, asyncpg.PostgresError) as exc:
        raise OpsError(f"cannot connect to Postgres at {mask_url(database_url)}: {exc}") from exc


async def _can_park(conn: asyncpg.Connection, service: str) -> bool:
    """Whether the service's outbox has the parking columns (runtime migration 0002) yet."""
    found = await conn.fetchval(
        "SELECT 1 FROM information_schema.columns"
        " WHERE table_schema = $1 AND table_name = 'outbox' AND column_name = 'parked_at'",
        service,
    )
    return found is not None


async def outbox_status(
    database_url: str, services: Sequence[str] = SERVICES, *, parked_limit: int = 50
) -> list[OutboxStatus]:
    """Per service: rows waiting (not parked), the oldest one's age, failing rows, and the parked rows."""
    conn = await _connect_db(database_url)
    try:
        return [await _outbox_status(conn, service, parked_limit) for service in services]
    finally:
        await conn.close()


async def _outbox_status(conn: asyncpg.Connection, service: str, parked_limit: int) -> OutboxStatus:
    table = f"{_ident(service)}.outbox"
    if await conn.fetchval("SELECT to_regclass($1)", table) is None:
        return OutboxStatus(service, exists=False)
    waiting = "parked_at IS NULL" if await _can_park(conn, service) else "true"
    record = await conn.fetchrow(
        f"SELECT count(*) FILTER (WHERE {waiting}) AS n,"
        f" coalesce(extract(epoch FROM now() - min(created_at) FILTER (WHERE {waiting})), 0) AS age,"
        f" count(*) FILTER (WHERE {waiting} AND attempts > 0) AS failing,"
        f" count(*) FILTER (WHERE NOT ({waiting})) AS parked,"
        f" (SELECT last_error FROM {table} WHERE last_error IS NOT NULL AND {waiting}"
        "   ORDER BY id DESC LIMIT 1) AS last_error"
        f" FROM {table}"
    )
    assert record is not None
    parked: list[ParkedRow] = []
    if record["parked"]:
        rows = await conn.fetch(
            "SELECT id, event_id, exchange, routing_key, refusals, parked_at, last_error"
            f" FROM {table} WHERE parked_at IS NOT NULL ORDER BY id LIMIT $1",
            parked_limit,
        )
        parked = [
            ParkedRow(
                id=row["id"],
                event_id=row["event_id"],
                exchange=row["exchange"],
                routing_key=row["routing_key"],
                refusals=row["refusals"],
                parked_at=row["parked_at"].isoformat(),
                error=row["last_error"],
            )
            for row in rows
        ]
    return OutboxStatus(
        service,
        exists=True,
        backlog=int(record["n"]),
        oldest_age_seconds=float(record["age"]),
        failing=int(record["failing"]),
        last_error=record["last_error"],
        parked=int(record["parked"]),
        parked_rows=parked,
    )


async def retry_parked(
    database_url: str, services: Sequence[str] = SERVICES, *, ids: Sequence[int] = ()
) -> dict[str, int]:
    """Give parked rows (all, or those with the given outbox ids) back to the relay; rows per service.

    Their refusals start again from zero, so a row that is still refused is parked again after the
    configured number of tries.
    """
    conn = await _connect_db(database_url)
    try:
        counts: dict[str, int] = {}
        for service in services:
            table = f"{_ident(service)}.outbox"
            if await conn.fetchval("SELECT to_regclass($1)", table) is None or not await _can_park(
                conn, service
            ):
                continue
            status = await conn.execute(
                f"UPDATE {table} SET parked_at = NULL, refusals = 0, attempts = 0, available_at = now()"
                " WHERE parked_at IS NOT NULL AND (cardinality($1::bigint[]) = 0 OR id = ANY($1::bigint[]))",
                list(ids),
            )
            counts[service] = int(status.rsplit(maxsplit=1)[-1])
            if counts[service]:
                await conn.execute("SELECT pg_notify($1, '')", notify_channel(service))
        return counts
    finally:
        await conn.close()


def _ident(name: str) -> str:
    if not name.replace("_", "").isalnum() or not name.islower():
        raise OpsError(f"invalid service name: {name!r}")
    return f'"{name}"'


# --------------------------------------------------------------------------------------------------
# Forgetting a person in the dead letters, the unrouted events and parked outbox rows
# --------------------------------------------------------------------------------------------------

# Strings in a message that may name a person: e-mail-like tokens (found anywhere in the body).
_EMAIL_LIKE = re.compile(r"[^\s\"'<>,;:()\[\]{}\\/]+@[^\s\"'<>,;:()\[\]{}\\/]+")


def normalise_person_key(value: str) -> str:
    """How addresses and ids are compared: trimmed, NFC, lower-case (as the services store them)."""
    return unicodedata.normalize("NFC", value.strip()).lower()


def forgotten_digest(value: str, secret: str) -> str:
    """Keyed hash of an address or id: who holds the table cannot read it back, only test a guess with
    the key (the link secret)."""
    message = b"qti-forgotten-person:" + normalise_person_key(value).encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def _text_of(body: bytes) -> str:
    return unicodedata.normalize("NFC", body.decode("utf-8", errors="replace")).lower()


def _mentions(body: bytes, needles: Sequence[str]) -> bool:
    text = _text_of(body)
    return any(needle in text for needle in needles)


def _strings_of(body: bytes) -> set[str]:
    """Every e-mail-like token and every JSON string value of a message body, normalised."""
    found = {normalise_person_key(m) for m in _EMAIL_LIKE.findall(_text_of(body))}
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return found
    stack: list[Any] = [document]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            found.add(normalise_person_key(item))
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


@dataclass(frozen=True)
class PersonKeys:
    """What identifies a person in messages: the address and the registration ids known for it."""

    email: str
    registration_ids: tuple[str, ...] = ()

    @property
    def needles(self) -> list[str]:
        return [normalise_person_key(v) for v in (self.email, *self.registration_ids) if v.strip()]


async def _existing_schemas(conn: asyncpg.Connection, services: Sequence[str]) -> list[str]:
    rows = await conn.fetch(
        "SELECT nspname FROM pg_namespace WHERE nspname = ANY($1::text[])",
        [_ident(s)[1:-1] for s in services],
    )
    present = {row["nspname"] for row in rows}
    return [s for s in services if s in present]


async def record_forgotten(
    database_url: str, keys: PersonKeys, secret: str, services: Sequence[str] = SERVICES
) -> dict[str, int]:
    """Note the person as forgotten (keyed hashes only) in every service schema, and delete the parked
    outbox rows that mention them (they would never leave, and a retry would bring the person back).
    Returns the parked rows removed per service."""
    conn = await _connect_db(database_url)
    digests = [forgotten_digest(v, secret) for v in keys.needles]
    removed: dict[str, int] = {}
    try:
        for service in await _existing_schemas(conn, services):
            await migrate(conn, service, None)  # the runtime's tables, if the service did not start since
            table = _ident(service)
            await conn.execute(
                f"INSERT INTO {table}.forgotten_persons (digest) SELECT unnest($1::text[])"
                " ON CONFLICT (digest) DO NOTHING",
                digests,
            )
            status = await conn.execute(
                f"DELETE FROM {table}.outbox WHERE parked_at IS NOT NULL AND"
                " EXISTS (SELECT 1 FROM unnest($1::text[]) AS needle"
                "         WHERE position(needle IN lower(convert_from(body, 'UTF8'))) > 0)",
                keys.needles,
            )
            removed[service] = int(status.rsplit(maxsplit=1)[-1])
        return removed
    finally:
        await conn.close()


async def forgotten_digests(database_url: str, service: str) -> set[str]:
    """The keyed hashes of forgotten persons recorded in the service's schema (empty if none yet)."""
    conn = await _connect_db(database_url)
    try:
        table = f"{_ident(service)}.forgotten_persons"
        if await conn.fetchval("SELECT to_regclass($1)", table) is None:
            return set()
        return {row["digest"] for row in await conn.fetch(f"SELECT digest FROM {table}")}
    finally:
        await conn.close()


def parking_queues(services: Sequence[str] = SERVICES) -> list[str]:
    return [*(dead_letter_queue(s) for s in services), UNROUTED]


async def forget_in_queues(
    amqp_url: str, keys: PersonKeys, queues: Sequence[str] | None = None
) -> dict[str, int | None]:
    """Drop every message that mentions the person from the dead-letter queues and `qti.unrouted`.

    Each message present when the queue is opened is taken once: one that mentions the address or a
    registration id (case-insensitively, anywhere in the body) is acknowledged, i.e. deleted; any other
    is published again to the same queue (same body, headers and properties, publisher confirm) before
    it is acknowledged, so nothing else is lost. Kept messages move to the end of their queue and their
    queue TTL starts again. None for a queue that does not exist.
    """
    needles = keys.needles
    if not needles:
        raise OpsError("no e-mail address given")
    connection = await _connect(amqp_url)
    removed: dict[str, int | None] = {}
    async with connection:
        for name in queues if queues is not None else parking_queues():
            removed[name] = await _forget_in_queue(connection, name, needles)
    return removed


async def _forget_in_queue(
    connection: aio_pika.abc.AbstractConnection, name: str, needles: Sequence[str]
) -> int | None:
    channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
    async with channel:
        try:
            queue = await channel.get_queue(name, ensure=True)
        except aio_pika.exceptions.ChannelNotFoundEntity:
            return None
        removed = 0
        for _ in range(queue.declaration_result.message_count or 0):
            message = await queue.get(no_ack=False, fail=False, timeout=GET_TIMEOUT_SECONDS)
            if message is None:
                break
            if _mentions(message.body, needles):
                await message.ack()
                removed += 1
                continue
            try:
                await channel.default_exchange.publish(
                    _same_message(message), routing_key=name, mandatory=True, timeout=10
                )
            except BaseException:
                await message.nack(requeue=True)
                raise
            await message.ack()
    return removed


def _same_message(message: aio_pika.abc.AbstractIncomingMessage) -> aio_pika.Message:
    return aio_pika.Message(
        message.body,
        headers=dict(message.headers or {}),
        content_type=message.content_type,
        content_encoding=message.content_encoding,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        priority=message.priority,
        correlation_id=message.correlation_id,
        reply_to=message.reply_to,
        message_id=message.message_id,
        timestamp=message.timestamp,
        type=message.type,
        app_id=message.app_id,
    )
