"""The portal's own database: schema `portal` only, with its numbered migrations.

Every statement names its tables as `portal.<table>` and the pool's search_path holds nothing but
`portal`, so the console cannot reach a service's tables by accident (tests/portal/test_boundary.py).
The pool is made on first use: the public pages of the portal keep working without a database.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg

from qti_runtime.db import ensure_database
from qti_runtime.logging import get_logger

log = get_logger(__name__)
SCHEMA = "portal"
MIGRATIONS = Path(__file__).resolve().parents[1] / "migrations"


class ConsoleUnavailable(Exception):
    """The portal's database cannot be reached: the console says so in German (503)."""


async def migrate(conn: asyncpg.Connection) -> list[str]:
    """Apply the portal's pending migrations under an advisory lock; returns the versions applied."""
    applied: list[str] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('qti-migrations:portal'))")
        # A deployment may create the schema for a role without rights on the database (docs/portal.md).
        if not await conn.fetchval("SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = 'portal'"):
            await conn.execute("CREATE SCHEMA portal")
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS portal.schema_migrations ("
            " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM portal.schema_migrations")}
        for path in sorted(MIGRATIONS.glob("*.sql")):
            version = f"portal:{path.stem}"
            if version not in done:
                await conn.execute(path.read_text("utf-8"))
                await conn.execute("INSERT INTO portal.schema_migrations (version) VALUES ($1)", version)
                applied.append(version)
    if applied:
        log.info("migrations.applied", schema=SCHEMA, versions=applied)
    return applied


class ConsoleDatabase:
    def __init__(self, url: str) -> None:
        self.url = url
        self._pool: asyncpg.Pool | None = None
        self._lock = asyncio.Lock()

    async def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            async with self._lock:
                if self._pool is None:
                    self._pool = await self._connect()
        return self._pool

    async def _connect(self) -> asyncpg.Pool:
        try:
            await ensure_database(self.url)
            pool = await asyncpg.create_pool(
                self.url,
                min_size=1,
                max_size=5,
                server_settings={"search_path": SCHEMA, "application_name": "portal"},
            )
            async with pool.acquire() as conn:
                await migrate(conn)
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("console.database_unavailable", error=type(exc).__name__)
            raise ConsoleUnavailable(type(exc).__name__) from exc
        return pool

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()
