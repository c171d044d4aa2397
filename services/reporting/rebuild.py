"""Rebuild every projection from the raw log: `python -m services.reporting.rebuild`.

Runs in one transaction: readers see the old figures until the new ones are complete. Events that a
running service consumes meanwhile wait for the commit and are then applied on top (projections are
order-independent), so the rebuild can run while the service is up.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from qti_runtime.db import Database
from qti_runtime.migrations import migrate
from services.reporting import store
from services.reporting.consumers import SERVICE
from services.reporting.settings import MIGRATIONS, ReportingSettings


async def rebuild(db: Database, on_progress: Callable[[int, int], None] | None = None) -> int:
    """Truncate and replay; returns the number of events replayed."""
    done = 0
    async with db.pool.acquire() as conn, conn.transaction():
        # The KPI job locks this row before it reads the projections: taking it first makes the job
        # wait for the rebuild, instead of both waiting for each other's table locks (a deadlock).
        await store.reset_kpi_state(conn)  # also: publish the rebuilt figures with the next KPI event
        total = int(await conn.fetchval("SELECT count(*) FROM event_log"))
        await store.truncate_projections(conn)
        if on_progress:
            on_progress(0, total)
        async for batch in store.log_batches(conn):
            await store.apply(conn, batch)
            done += len(batch)
            if on_progress:
                on_progress(done, total)
    return done


async def run(settings: ReportingSettings) -> None:
    db = Database(settings.database_url, SERVICE, min_size=1, max_size=2)
    await db.connect()
    try:
        async with db.pool.acquire() as conn:
            await migrate(conn, SERVICE, MIGRATIONS)
        columns = (
            TextColumn("Projektionen neu aufbauen"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
        )
        with Progress(*columns) as progress:
            task = progress.add_task("rebuild", total=None)

            def update(done: int, total: int) -> None:
                progress.update(task, completed=done, total=total)

            started = time.perf_counter()
            count = await rebuild(db, update)
        progress.console.print(
            f"{count} Ereignisse in {time.perf_counter() - started:.1f} s neu eingespielt."
        )
    finally:
        await db.close()


def main() -> None:
    asyncio.run(run(ReportingSettings()))


if __name__ == "__main__":
    main()
