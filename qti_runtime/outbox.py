"""Transactional outbox: write in the caller's transaction, publish later with confirms.

The relay takes a batch with `FOR UPDATE SKIP LOCKED` (so any number of replicas share the work without
publishing a row twice at the same time), publishes it concurrently with publisher confirms, and deletes
what the broker confirmed in the same transaction. A crash between confirm and commit publishes those rows
again: delivery is at-least-once, and consumers' inboxes absorb the duplicate.

No row blocks the others. A row the AMQP encoder can never send (e.g. a correlation id over 255 bytes) is
parked at once; a row the broker refuses (nack, return, no confirm in time, a channel it closes) is tried
again with back-off and parked after `park_after` refusals. Parked rows keep their error, are left out of
every batch, and are listed and re-queued by `qti outbox` (`qti_runtime.ops`). Outages (no connection,
channel being reopened) only postpone: they never park a row.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import struct
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from aio_pika.exceptions import ChannelClosed, DeliveryError
from pamqp import encode

from qti_contracts.envelope import CloudEvent
from qti_contracts.topology import EVENTS_EXCHANGE
from qti_runtime import metrics
from qti_runtime.logging import get_logger

log = get_logger(__name__)

# How long a batch waits for the broker to reopen a channel it closed, while it finds the row that did it.
CHANNEL_RECOVERY_SECONDS = 10.0
DEFAULT_PARK_AFTER = 10


def notify_channel(schema: str) -> str:
    return f"qti_outbox_{schema}"


@dataclass(frozen=True)
class OutboxMessage:
    event_id: str
    exchange: str
    routing_key: str
    body: bytes
    correlation_id: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    kind: str = "event"

    @classmethod
    def of_event(
        cls,
        event: CloudEvent[Any],
        *,
        exchange: str = EVENTS_EXCHANGE,
        routing_key: str | None = None,
        headers: Mapping[str, str] | None = None,
        body: bytes,
    ) -> OutboxMessage:
        """`body`: the event's JSON (serialised once by the unit of work)."""
        return cls(
            event_id=event.id,
            exchange=exchange,
            routing_key=routing_key or event.type,
            body=body,
            correlation_id=event.correlationid,
            headers=dict(headers or {}),
        )

    @classmethod
    def reply(
        cls, event: CloudEvent[Any], reply_to: str, correlation_id: str | None, *, body: bytes
    ) -> OutboxMessage:
        """The same outcome sent to a client's reply queue through the default exchange."""
        return cls(
            event_id=event.id,
            exchange="",
            routing_key=reply_to,
            body=body,
            correlation_id=correlation_id or event.correlationid,
            kind="reply",
        )


async def add_to_outbox(conn: asyncpg.Connection, schema: str, *messages: OutboxMessage) -> None:
    """Insert rows in the caller's transaction; the NOTIFY is delivered to relays only on commit.

    One statement for all rows and the NOTIFY: a round trip costs more than the SQL itself here.
    """
    if not messages:
        return
    await conn.execute(
        """
        WITH added AS (
            INSERT INTO outbox (event_id, exchange, routing_key, body, headers, correlation_id, kind)
            SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[], $5::jsonb[], $6::text[],
                                 $7::text[])
            RETURNING 1
        )
        SELECT pg_notify($8, '') FROM (SELECT count(*) FROM added) AS done
        """,
        [m.event_id for m in messages],
        [m.exchange for m in messages],
        [m.routing_key for m in messages],
        [m.body for m in messages],
        [json.dumps(dict(m.headers)) for m in messages],
        [m.correlation_id for m in messages],
        [m.kind for m in messages],
        notify_channel(schema),
    )


@dataclass(frozen=True)
class OutboxRow:
    id: int
    event_id: str
    exchange: str
    routing_key: str
    body: bytes
    headers: dict[str, str]
    correlation_id: str | None
    kind: str
    attempts: int
    refusals: int = 0


@dataclass(frozen=True)
class Failure:
    """Why a row was not published this time."""

    error: str
    # The broker or the encoder refused this row (counts towards parking); otherwise an outage.
    refused: bool
    # It can never succeed: park at once.
    permanent: bool = False
    # The broker closed the channel: every row in flight saw it, and only one of them may be the cause.
    channel_closed: bool = False


def encoding_error(row: OutboxRow) -> str | None:
    """Why the AMQP encoder can never send this row, or None; checked before it touches the channel.

    The short strings of a publish (exchange, routing key, message and correlation id) hold at most 255
    bytes of UTF-8, whatever the envelope's own checks said. The message names the field, never the value
    (it may quote personal data).
    """
    fields = {"exchange": row.exchange, "routing_key": row.routing_key, "message_id": row.event_id}
    if row.correlation_id is not None:
        fields["correlation_id"] = row.correlation_id
    for name, value in fields.items():
        try:
            encode.short_string(value)
        except TypeError as exc:
            return f"{name} ({len(value.encode())} bytes): {exc}"
    try:
        encode.field_table(dict(row.headers))
    except (TypeError, ValueError, struct.error) as exc:
        return f"headers: {exc}"
    return None


Publish = Callable[[OutboxRow], Awaitable[None]]


class OutboxRelay:
    """Publishes outbox rows of one schema; run one per replica."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        schema: str,
        publish: Publish,
        *,
        batch_size: int = 200,
        poll_seconds: float = 1.0,
        service: str | None = None,
        park_after: int = DEFAULT_PARK_AFTER,
    ) -> None:
        self._pool = pool
        self._schema = schema
        self._publish = publish
        self._batch_size = batch_size
        self._poll_seconds = poll_seconds
        self._service = service or schema
        self._park_after = park_after
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._listener: asyncpg.Connection | None = None
        # A hook for tests that simulate a crash between the broker's confirm and the commit.
        self.after_publish: Callable[[list[OutboxRow]], Awaitable[None]] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        self._stopping.clear()
        self._task = asyncio.create_task(self._run(), name=f"outbox-relay-{self._schema}")

    async def stop(self, grace_seconds: float = 10.0) -> None:
        """Finish the batch in flight, publish what is already due once more, then stop."""
        self._stopping.set()
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, timeout=grace_seconds)
            except TimeoutError:
                self._task.cancel()
            self._task = None
        await self._close_listener()

    async def _run(self) -> None:
        backoff = 0.5
        while True:
            try:
                await self._ensure_listener()
                published = await self.publish_batch()
                backoff = 0.5
                if self._stopping.is_set():
                    if published == 0:
                        return
                    continue
                if published < self._batch_size:
                    await self._wait_for_work()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("outbox.relay_error", schema=self._schema, error=repr(exc))
                await self._close_listener()
                if self._stopping.is_set():
                    return
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)

    async def _wait_for_work(self) -> None:
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=self._poll_seconds)

    def _listener_alive(self) -> bool:
        if self._listener is None:
            return False
        try:
            return not self._listener.is_closed()
        except asyncpg.InterfaceError:  # the pool took the connection back after it was lost
            return False

    async def _ensure_listener(self) -> None:
        if self._listener_alive():
            return
        await self._close_listener()  # a lost one still holds its place in the pool
        conn = await self._pool.acquire()
        await conn.add_listener(notify_channel(self._schema), self._on_notify)
        self._listener = conn

    async def _close_listener(self) -> None:
        conn, self._listener = self._listener, None
        if conn is None:
            return
        # Whatever state a lost connection is in (asyncpg raises various errors on it, among them
        # InternalClientError), closing must not fail: the relay loop would end and never publish again.
        with contextlib.suppress(Exception):
            await conn.remove_listener(notify_channel(self._schema), self._on_notify)
        try:
            await self._pool.release(conn)
        except Exception:
            conn.terminate()

    def _on_notify(self, *_args: object) -> None:
        self._wake.set()

    async def publish_batch(self) -> int:
        """Publish one batch of due rows; returns how many were confirmed."""
        async with self._pool.acquire() as conn, conn.transaction():
            # Losing this transaction's commit in a database crash only publishes its rows again (the
            # consumers' inboxes absorb that), so it need not wait for the WAL flush.
            records = await conn.fetch(
                "WITH relaxed AS (SELECT set_config('synchronous_commit', 'off', true))"
                " SELECT id, event_id, exchange, routing_key, body, headers, correlation_id, kind, attempts,"
                " refusals FROM outbox, relaxed WHERE parked_at IS NULL AND available_at <= now()"
                " ORDER BY id LIMIT $1 FOR UPDATE OF outbox SKIP LOCKED",
                self._batch_size,
            )
            if not records:
                return 0
            rows = [_row(record) for record in records]
            results = await asyncio.gather(*(self._publish_one(row) for row in rows))
            if sum(1 for result in results if result is not None and result.channel_closed) > 1:
                results = await self._isolate(rows, results)
            if self.after_publish is not None:
                await self.after_publish(rows)
            done = [row.id for row, failure in zip(rows, results, strict=True) if failure is None]
            if done:
                await conn.execute("DELETE FROM outbox WHERE id = ANY($1::bigint[])", done)
            for row, failure in zip(rows, results, strict=True):
                if failure is None:
                    continue
                if failure.refused and (failure.permanent or row.refusals + 1 >= self._park_after):
                    await self._park(conn, row, failure)
                else:
                    await self._postpone(conn, row, failure)
        metrics.OUTBOX_PUBLISHED.labels(self._service).inc(len(done))
        return len(done)

    async def _publish_one(self, row: OutboxRow) -> Failure | None:
        """None when the broker confirmed the row (or a reply queue no longer exists)."""
        problem = encoding_error(row)
        if problem is not None:
            return Failure(f"AMQP cannot encode the message: {problem}", refused=True, permanent=True)
        try:
            await self._publish(row)
        except DeliveryError as exc:  # a nack, or a return (PublishError)
            if row.kind == "reply":
                # The client that asked for a direct answer is gone; the outcome event itself was
                # published to qti.events separately, so nothing is lost by dropping the reply.
                log.info("outbox.reply_unroutable", reply_to=row.routing_key, event_id=row.event_id)
                return None
            return Failure(f"returned or not confirmed by broker: {exc!r}", refused=True)
        except TimeoutError as exc:
            return Failure(f"no confirm from the broker in time: {exc!r}", refused=True)
        except ChannelClosed as exc:
            return Failure(f"the broker closed the channel: {exc!r}", refused=True, channel_closed=True)
        except (TypeError, ValueError, struct.error) as exc:  # the encoder refused what the check let pass
            return Failure(f"AMQP cannot encode the message: {exc!r}", refused=True)
        except Exception as exc:  # no connection, channel being reopened: an outage, not this row's fault
            return Failure(repr(exc), refused=False)
        return None

    async def _isolate(self, rows: list[OutboxRow], results: list[Failure | None]) -> list[Failure | None]:
        """Publish the rows that saw the broker close the channel again, one at a time.

        Every row in flight fails with the same error when one of them makes the broker close the channel
        (e.g. an exchange that does not exist). Alone, each either goes out or is refused on its own
        account, so the refusal counts against the row that caused it and not against its neighbours.
        """
        deadline = asyncio.get_running_loop().time() + CHANNEL_RECOVERY_SECONDS
        settled = list(results)
        for index, (row, result) in enumerate(zip(rows, results, strict=True)):
            if result is None or not result.channel_closed:
                continue
            outcome = await self._publish_alone(row, deadline)
            if outcome is None or outcome.refused:
                settled[index] = outcome
                continue
            # The channel did not come back in time: this row and the rest are tried next batch, uncounted.
            for rest in range(index, len(rows)):
                if (later := settled[rest]) is not None and later.channel_closed:
                    settled[rest] = Failure(later.error, refused=False)
            break
        return settled

    async def _publish_alone(self, row: OutboxRow, deadline: float) -> Failure | None:
        loop = asyncio.get_running_loop()
        while True:
            outcome = await self._publish_one(row)
            # An outage here is the channel still being reopened after the previous row closed it.
            if outcome is None or outcome.refused or loop.time() >= deadline:
                return outcome
            await asyncio.sleep(0.2)

    async def _postpone(self, conn: asyncpg.Connection, row: OutboxRow, failure: Failure) -> None:
        delay = min(2 ** min(row.attempts, 8), 300)
        metrics.OUTBOX_PUBLISH_FAILURES.labels(self._service).inc()
        log.warning(
            "outbox.publish_failed",
            event_id=row.event_id,
            attempts=row.attempts + 1,
            refusals=row.refusals + int(failure.refused),
            error=failure.error,
        )
        await conn.execute(
            "UPDATE outbox SET attempts = attempts + 1, refusals = refusals + $4, last_error = $2,"
            " available_at = now() + make_interval(secs => $3) WHERE id = $1",
            row.id,
            failure.error[:2000],
            float(delay),
            int(failure.refused),
        )

    async def _park(self, conn: asyncpg.Connection, row: OutboxRow, failure: Failure) -> None:
        metrics.OUTBOX_PARKED_TOTAL.labels(self._service).inc()
        log.error(
            "outbox.parked",
            schema=self._schema,
            outbox_id=row.id,
            event_id=row.event_id,
            exchange=row.exchange,
            routing_key=row.routing_key,
            refusals=row.refusals + 1,
            error=failure.error,
            hint=f"qti outbox {self._service} lists it; --retry-parked sends it again",
        )
        await conn.execute(
            "UPDATE outbox SET attempts = attempts + 1, refusals = refusals + 1, last_error = $2,"
            " parked_at = now() WHERE id = $1",
            row.id,
            failure.error[:2000],
        )

    async def backlog(self) -> tuple[int, float]:
        """Rows waiting (not parked) and the age in seconds of the oldest one; refreshes the parked gauge."""
        async with self._pool.acquire() as conn:
            record = await conn.fetchrow(
                "SELECT count(*) FILTER (WHERE parked_at IS NULL) AS n,"
                " coalesce(extract(epoch FROM now() - min(created_at) FILTER (WHERE parked_at IS NULL)), 0)"
                " AS age, count(*) FILTER (WHERE parked_at IS NOT NULL) AS parked FROM outbox"
            )
        assert record is not None
        metrics.OUTBOX_PARKED.labels(self._service).set(int(record["parked"]))
        return int(record["n"]), float(record["age"])


def _row(record: asyncpg.Record) -> OutboxRow:
    headers = record["headers"]
    return OutboxRow(
        id=record["id"],
        event_id=record["event_id"],
        exchange=record["exchange"],
        routing_key=record["routing_key"],
        body=bytes(record["body"]),
        headers=json.loads(headers) if isinstance(headers, str) else dict(headers),
        correlation_id=record["correlation_id"],
        kind=record["kind"],
        attempts=record["attempts"],
        refusals=record["refusals"],
    )
