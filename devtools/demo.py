"""Load the demo catalogue (five nodes, realistic offerings) idempotently.

`python -m devtools.demo` applies the migrations and loads the data into the database of
`QTI_DATABASE_URL`. Loading again changes nothing and emits nothing: rows that exist are left alone,
and events leave through the outbox only for rows this call created.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import UTC, datetime

from devtools.demo_data import DEMO_STAFF, demo_nodes, demo_offerings
from qti_contracts.events import OfferingStatus
from qti_contracts.topology import RoutingKey
from qti_runtime.db import Database
from qti_runtime.migrations import migrate
from qti_runtime.settings import Settings
from qti_runtime.unit_of_work import unit_of_work
from services.catalogue import staff_accounts, store
from services.catalogue.domain import Node, Offering
from services.catalogue.handlers import Conflict, emit_node_published, emit_offering_state
from services.catalogue.migrations_path import MIGRATIONS

SERVICE = "catalogue"


async def load_catalogue(
    db: Database, nodes: Iterable[Node], offerings: Iterable[Offering], *, emit: bool = True
) -> dict[str, int]:
    """Insert what is missing in one transaction; announce new nodes and new published offerings."""
    counts = {"nodes_created": 0, "offerings_created": 0, "events_emitted": 0}
    async with unit_of_work(db) as uow:
        for node in nodes:
            if await store.insert_node_if_missing(uow.conn, node):
                counts["nodes_created"] += 1
                if emit:
                    emit_node_published(uow, node)
                    counts["events_emitted"] += 1
        for offering in offerings:
            if await store.insert_offering(uow.conn, offering, if_missing=True):
                counts["offerings_created"] += 1
                if emit and offering.status is OfferingStatus.PUBLISHED:
                    emit_offering_state(uow, RoutingKey.OFFERING_PUBLISHED, offering)
                    counts["events_emitted"] += 1
    return counts


async def load_demo_data(db: Database) -> dict[str, int]:
    """The demo nodes and offerings; a second call returns zeros and changes nothing."""
    return await load_catalogue(db, demo_nodes(), demo_offerings())


async def load_demo_staff(db: Database, now: datetime) -> list[str]:
    """The demo accounts of the staff console that are missing; an existing address is left alone.

    Returns one line per account for the operator (with the password of a new account)."""
    lines = []
    for demo in DEMO_STAFF:
        try:
            await staff_accounts.create_account(db, demo.email, demo.password, node_id=demo.node_id, now=now)
        except Conflict:
            lines.append(f"  {demo.email}: gab es schon (Passwort unverändert)")
            continue
        role = "Projektleitung" if demo.node is None else f"Knoten {demo.node}"
        lines.append(f"  {demo.email} / {demo.password} ({role})")
    return lines


async def run(settings: Settings, staff_lines: list[str] | None = None) -> dict[str, int]:
    """Migrate and load the demo catalogue; outside production also the demo staff accounts (their
    lines are appended to `staff_lines`)."""
    db = Database(settings.database_url, SERVICE, min_size=1, max_size=2)
    await db.connect()
    try:
        async with db.pool.acquire() as conn:
            await migrate(conn, SERVICE, MIGRATIONS)
        counts = await load_demo_data(db)
        if settings.env != "production":
            lines = await load_demo_staff(db, datetime.now(UTC))
            if staff_lines is not None:
                staff_lines.extend(lines)
        return counts
    finally:
        await db.close()


def main() -> None:
    staff_lines: list[str] = []
    counts = asyncio.run(run(Settings(), staff_lines))
    print(
        f"Demo-Katalog geladen: {counts['nodes_created']} Knoten und {counts['offerings_created']} Angebote "
        f"neu angelegt, {counts['events_emitted']} Ereignisse im Postausgang."
    )
    if staff_lines:
        print("Demo-Konten der Verwaltung (/verwaltung, nur Entwicklung):", *staff_lines, sep="\n")


if __name__ == "__main__":
    main()
