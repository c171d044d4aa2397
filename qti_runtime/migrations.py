"""Schema migrations: numbered SQL files applied once per schema, under an advisory lock.

The lock makes concurrent start-up of many replicas safe: one applies, the others wait and find
everything applied. The runtime's own tables (outbox, inbox) are migrated into every service schema first.
"""

from __future__ import annotations

import re
from pathlib import Path

import asyncpg

from qti_runtime.logging import get_logger

log = get_logger(__name__)

RUNTIME_MIGRATIONS = Path(__file__).with_name("migrations")
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def _sql_files(folder: Path, prefix: str) -> list[tuple[str, str]]:
    return [(f"{prefix}:{path.stem}", path.read_text("utf-8")) for path in sorted(folder.glob("*.sql"))]


async def migrate(conn: asyncpg.Connection, schema: str, service_migrations: Path | None) -> list[str]:
    """Apply pending migrations to `schema`; returns the versions applied by this call."""
    if not _SCHEMA_NAME.match(schema):
        raise ValueError(f"invalid schema name: {schema!r}")
    pending = _sql_files(RUNTIME_MIGRATIONS, "runtime")
    if service_migrations is not None:
        pending += _sql_files(service_migrations, schema)
    applied: list[str] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"qti-migrations:{schema}")
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        await conn.execute(f"SET LOCAL search_path TO {schema}, public")
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {row["version"] for row in await conn.fetch("SELECT version FROM schema_migrations")}
        for version, sql in pending:
            if version in done:
                continue
            await conn.execute(sql)
            await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", version)
            applied.append(version)
    if applied:
        log.info("migrations.applied", schema=schema, versions=applied)
    return applied
