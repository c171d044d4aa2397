"""Postgres access: one pool per service, its search_path set to the schema the service owns."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from qti_runtime.logging import get_logger

log = get_logger(__name__)


def _with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))


def database_name(url: str) -> str:
    return urlsplit(url).path.lstrip("/") or "postgres"


async def ensure_database(url: str) -> None:
    """Create the database named in `url` if it is missing (safe when replicas race)."""
    name = database_name(url)
    admin = await asyncpg.connect(_with_database(url, "postgres"))
    try:
        exists = await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            try:
                await admin.execute(f'CREATE DATABASE "{name}"')
                log.info("database.created", database=name)
            except (asyncpg.DuplicateDatabaseError, asyncpg.UniqueViolationError):
                pass
    finally:
        await admin.close()


async def _no_session_reset(_conn: asyncpg.Connection) -> None:
    """Replaces asyncpg's reset query, which costs a round trip each time a connection is released.

    The services keep no session state: no SET (only SET LOCAL), no session-level advisory locks, and
    listeners are removed by their owners. asyncpg still rolls back a transaction left open.
    """


def unnest_columns(rows: Sequence[Any], *fields: str) -> list[list[Any]]:
    """One list per field of `rows`, in order: the arguments of `unnest($1::…[], $2::…[], …)`, which
    writes a whole batch in one statement."""
    return [[getattr(row, name) for row in rows] for name in fields]


class Database:
    """A connection pool bound to one schema. SQL in the services uses unqualified table names."""

    def __init__(self, url: str, schema: str, *, min_size: int = 2, max_size: int = 10) -> None:
        self.url = url
        self.schema = schema
        self._min_size = min_size
        self._max_size = max_size
        self._pool: asyncpg.Pool | None = None

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("database is not connected")
        return self._pool

    async def connect(self) -> None:
        await ensure_database(self.url)
        self._pool = await asyncpg.create_pool(
            self.url,
            min_size=self._min_size,
            max_size=self._max_size,
            server_settings={
                "search_path": f"{self.schema},public",
                "application_name": self.schema,
                # A prepared statement's generic plan is fixed after five runs, from the statistics of
                # that moment: a young table (or a backlog that grew since) keeps a sequential scan
                # for the connection's lifetime. Planning each run costs less than one such scan.
                "plan_cache_mode": "force_custom_plan",
            },
            reset=_no_session_reset,
        )

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            try:
                await asyncio.wait_for(pool.close(), timeout=10)
            except TimeoutError:
                pool.terminate()

    async def ping(self) -> bool:
        if self._pool is None:
            return False
        try:
            async with self._pool.acquire(timeout=2) as conn:
                await conn.fetchval("SELECT 1", timeout=2)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
            return False
        return True

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[asyncpg.Connection]:
        async with self.pool.acquire() as conn, conn.transaction():
            yield conn
