"""Unit of work: one Postgres transaction holding a handler's inbox claim, its effects and its outbox rows."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import asyncpg

from qti_contracts.envelope import CloudEvent
from qti_contracts.topology import EVENTS_EXCHANGE
from qti_runtime.db import Database
from qti_runtime.outbox import OutboxMessage, add_to_outbox
from qti_runtime.tracing import inject_trace_headers

# Serialises handlers of one entity (e.g. "registration:<id>") across replicas until the transaction ends.
_ADVISORY_LOCK = "pg_advisory_xact_lock(hashtextextended({}, 0))"


async def advisory_lock(conn: asyncpg.Connection, key: str) -> None:
    """Take the transaction-scoped lock of `key`; other transactions taking it wait until this one ends."""
    await conn.execute(f"SELECT {_ADVISORY_LOCK.format('$1')}", key)


async def advisory_locks(conn: asyncpg.Connection, keys: Sequence[str]) -> None:
    """`advisory_lock` for many keys in one round trip, taken in sorted order (so that transactions
    locking overlapping sets wait for each other instead of deadlocking)."""
    await conn.execute(
        f"SELECT {_ADVISORY_LOCK.format('k')} FROM"
        " (SELECT k FROM unnest($1::text[]) WITH ORDINALITY AS u(k, n) ORDER BY n) AS ordered",
        sorted(set(keys)),
    )


class UnitOfWork:
    """Collects outgoing events; they are written to the outbox just before the transaction commits."""

    def __init__(self, conn: asyncpg.Connection, schema: str) -> None:
        self.conn = conn
        self.schema = schema
        self._outgoing: list[OutboxMessage] = []
        self._bodies: dict[str, bytes] = {}

    async def claim(self, consumer: str, event_id: str, *, lock: str | None = None) -> bool:
        """Record that `consumer` handles `event_id`; False if it was handled before (a duplicate).

        A concurrent duplicate in another replica waits on the primary key until this transaction ends,
        then sees the row: the effects of one event happen once. With `lock`, a claimed event also takes
        the transaction-scoped advisory lock of that key (see `advisory_lock`), in the same round trip.
        """
        if lock is None:
            inserted = await self.conn.fetchval(
                "INSERT INTO inbox (consumer, event_id) VALUES ($1, $2)"
                " ON CONFLICT DO NOTHING RETURNING true",
                consumer,
                event_id,
            )
            return bool(inserted)
        claimed = await self.conn.fetchrow(
            "WITH claimed AS (INSERT INTO inbox (consumer, event_id) VALUES ($1, $2)"
            " ON CONFLICT DO NOTHING RETURNING true)"
            f" SELECT {_ADVISORY_LOCK.format('$3')} FROM claimed",
            consumer,
            event_id,
            lock,
        )
        return claimed is not None

    async def claim_many(self, consumer: str, event_ids: Sequence[str]) -> set[str]:
        """`claim` for a batch in one statement; returns the ids not handled before.

        Ids are inserted in sorted order, so two replicas claiming overlapping batches wait on each other
        instead of deadlocking.
        """
        rows = await self.conn.fetch(
            "INSERT INTO inbox (consumer, event_id)"
            " SELECT $1, id FROM unnest($2::text[]) AS id ORDER BY id"
            " ON CONFLICT DO NOTHING RETURNING event_id",
            consumer,
            list(event_ids),
        )
        return {row["event_id"] for row in rows}

    def emit(
        self, event: CloudEvent[Any], *, exchange: str = EVENTS_EXCHANGE, routing_key: str | None = None
    ) -> None:
        message = OutboxMessage.of_event(
            event,
            exchange=exchange,
            routing_key=routing_key,
            headers=inject_trace_headers(),
            body=self.serialised(event),
        )
        self._outgoing.append(message)

    def reply(
        self,
        event: CloudEvent[Any],
        reply_to: str,
        correlation_id: str | None = None,
        *,
        body: bytes | None = None,
    ) -> None:
        """Send `event` to a client's reply queue; `body` if the asker is to hear more than the event."""
        message = OutboxMessage.reply(event, reply_to, correlation_id, body=body or self.serialised(event))
        self._outgoing.append(replace(message, headers=inject_trace_headers()))

    def serialised(self, event: CloudEvent[Any]) -> bytes:
        """The event's JSON, made once per transaction however often it is sent or stored."""
        body = self._bodies.get(event.id)
        if body is None:
            body = self._bodies[event.id] = event.model_dump_json().encode()
        return body

    @property
    def outgoing(self) -> list[OutboxMessage]:
        return list(self._outgoing)

    async def flush(self) -> None:
        await add_to_outbox(self.conn, self.schema, *self._outgoing)
        self._outgoing.clear()


@asynccontextmanager
async def unit_of_work(db: Database) -> AsyncIterator[UnitOfWork]:
    """Commit the handler's effects and its outgoing events together, or neither."""
    async with db.pool.acquire() as conn, conn.transaction():
        uow = UnitOfWork(conn, db.schema)
        yield uow
        await uow.flush()
