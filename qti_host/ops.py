"""Operator actions that run a service's own code, taken from its definition (`qti_runtime.definition`):

- `forget_person`: every installed service's privacy hook (`ServiceDefinition.forget_person`,
  `(db, email) -> rows removed or anonymised`, awaited when awaitable), used by `qti forget-person`;
- `run_maintenance`: a named maintenance command of one service (`ServiceDefinition.maintenance`, e.g.
  reporting's `rebuild`), used by `qti reporting rebuild`;
- `person_keys`: what identifies a person in messages, read from registration's schema before it forgets.

`db` is a connected `qti_runtime.db.Database` whose search_path is the service's own schema. The
mechanics that need no service code (dead letters, outbox, forgotten digests) are in `qti_runtime.ops`.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import asyncpg

from qti_contracts.topology import SERVICES
from qti_host.services import AnyDefinition, definition_of, definitions
from qti_runtime.db import Database
from qti_runtime.ops import OpsError, PersonKeys, mask_url, normalise_person_key


class HookMissing(OpsError):
    """The service or the hook a command needs is not installed."""


async def call_hook(hook: Callable[..., Any], *args: Any) -> Any:
    result = hook(*args)
    if inspect.isawaitable(result):
        return await result
    return result


async def with_service_db(
    database_url: str, service: str, action: Callable[[Database], Awaitable[Any]]
) -> Any:
    db = Database(database_url, service, min_size=1, max_size=2)
    try:
        await db.connect()
    except (OSError, asyncpg.PostgresError) as exc:
        raise OpsError(f"cannot connect to Postgres at {mask_url(database_url)}: {exc}") from exc
    try:
        return await action(db)
    finally:
        await db.close()


async def forget_person(
    database_url: str, email: str, installed: Sequence[AnyDefinition] | None = None
) -> dict[str, int | None]:
    """Run every service's privacy hook; None for services without one (or not installed)."""
    by_name = {d.name: d for d in (definitions() if installed is None else installed)}
    results: dict[str, int | None] = {}
    for service in SERVICES:
        definition = by_name.get(service)
        hook = definition.forget_person if definition is not None else None
        if hook is None:
            results[service] = None
            continue

        async def run(db: Database, hook: Callable[..., Any] = hook) -> Any:
            return await call_hook(hook, db, email)

        results[service] = int(await with_service_db(database_url, service, run) or 0)
    return results


async def run_maintenance(database_url: str, service: str, command: str) -> int:
    """One service's maintenance command (e.g. `reporting`, `rebuild`) against its schema."""
    definition = definition_of(service)
    if definition is None:
        raise HookMissing(f"services.{service} is not installed (no {command})")
    action = definition.maintenance.get(command)
    if action is None:
        raise HookMissing(f"{service} has no maintenance command {command!r}")
    return int(await with_service_db(database_url, service, action) or 0)


async def person_keys(database_url: str, email: str, services: Sequence[str] = SERVICES) -> PersonKeys:
    """The address and the registration ids registration knows for it (read before it forgets them)."""
    target = normalise_person_key(email)
    if not target:
        raise OpsError("no e-mail address given")
    try:
        conn = await asyncpg.connect(database_url, timeout=10)
    except (OSError, asyncpg.PostgresError) as exc:
        raise OpsError(f"cannot connect to Postgres at {mask_url(database_url)}: {exc}") from exc
    try:
        ids: list[str] = []
        if "registration" in services and await conn.fetchval(
            "SELECT to_regclass('registration.registrations')"
        ):
            rows = await conn.fetch(
                "SELECT registration_id FROM registration.registrations WHERE lower(btrim(email)) = $1",
                target,
            )
            ids = [row["registration_id"] for row in rows]
        return PersonKeys(target, tuple(sorted(ids)))
    finally:
        await conn.close()
