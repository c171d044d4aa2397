"""Load the demo catalogue (five nodes, realistic offerings) idempotently.

`python -m devtools.demo` applies the migrations and loads the data into the database of
`QTI_DATABASE_URL`. Loading again changes nothing and emits nothing: rows that exist are left alone,
and events leave through the outbox only for rows this call created.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from devtools.demo_data import demo_nodes, demo_offerings
from qti_contracts.events import OfferingStatus
from qti_contracts.topology import RoutingKey
from qti_runtime.db import Database
from qti_runtime.migrations import migrate
from qti_runtime.settings import Settings
from qti_runtime.unit_of_work import unit_of_work
from services.catalogue import store
from services.catalogue.domain import Node, Offering
from services.catalogue.handlers import emit_node_published, emit_offering_state
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


async def run(settings: Settings) -> dict[str, int]:
    db = Database(settings.database_url, SERVICE, min_size=1, max_size=2)
    await db.connect()
    try:
        async with db.pool.acquire() as conn:
            await migrate(conn, SERVICE, MIGRATIONS)
        return await load_demo_data(db)
    finally:
        await db.close()


def main() -> None:
    counts = asyncio.run(run(Settings()))
    print(
        f"Demo-Katalog geladen: {counts['nodes_created']} Knoten und {counts['offerings_created']} Angebote "
        f"neu angelegt, {counts['events_emitted']} Ereignisse im Postausgang."
    )


if __name__ == "__main__":
    main()
