"""Cost of recording registration outcomes in notification's handlers (no broker, no SMTP): the
`on_batch` path, in batches of 1 (a quiet system) and of 50 (under load), on a fresh database.

    .venv/bin/python -m bench.notification_outcomes [--outcomes 2000]

To compare two revisions in one sitting, run it from each checkout in turn (the script imports
`services.notification` from the working directory), e.g. a worktree of `main` and this one:

    (cd /tmp/old && /work/wt/mail/.venv/bin/python -m bench.notification_outcomes)
    .venv/bin/python -m bench.notification_outcomes

Each outcome is a `registration.confirmed` of its own registration for an offering with a first session
in a month: a confirmation mail and a reminder per outcome. Prints outcomes/s and ms per batch.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

import services.notification
from qti_contracts import make_event
from qti_contracts.envelope import RawEvent
from qti_runtime.consumer import Delivery
from qti_runtime.db import Database, ensure_database
from qti_runtime.migrations import migrate
from services.notification.handlers import NotificationHandlers
from services.notification.settings import NotificationSettings

NAME = "qti_bench_notification_outcomes"
MIGRATIONS = Path(services.notification.__file__).parent / "migrations"
DELIVERY = Delivery("notification.events", "registration.confirmed", None, None, None, {}, 0)


def offering_event() -> RawEvent:
    start = datetime.now(UTC) + timedelta(days=30)
    data = {
        "offering_id": "off-bench",
        "node_id": "node-bench",
        "kind": "workshop",
        "topic": "industrie_4_0",
        "title": "Digitaler Zwilling",
        "description": "",
        "sessions": [
            {
                "session_id": "s-1",
                "starts_at": start.isoformat(),
                "ends_at": (start + timedelta(hours=6)).isoformat(),
                "location": "Jena",
            }
        ],
        "capacity": 100_000,
        "registration_deadline": start.isoformat(),
        "fee_eur": 0,
        "revision": 1,
    }
    return raw("catalogue.offering.published", data)


def raw(type_: str, data: dict[str, Any]) -> RawEvent:
    return RawEvent.model_validate(json.loads(make_event(type_, data, source="/bench").model_dump_json()))


def confirmed(n: int) -> RawEvent:
    person = {"given_name": "Teil", "family_name": f"Nehmer {n}", "email": f"p{n}@example.de"}
    company = {"name": "Muster GmbH", "postal_code": "99610", "county": "Sömmerda"}
    data = {
        "registration_id": f"reg-{n}",
        "request_id": f"req-{n}",
        "offering_id": "off-bench",
        "participant": person,
        "company": company,
    }
    return raw("registration.confirmed", data)


async def fresh_database(settings: NotificationSettings) -> Database:
    server = settings.database_url.rsplit("/", 1)[0]
    admin = await asyncpg.connect(f"{server}/postgres")
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{NAME}" WITH (FORCE)')
    finally:
        await admin.close()
    url = f"{server}/{NAME}"
    await ensure_database(url)
    db = Database(url, "notification", min_size=1, max_size=2)
    await db.connect()
    async with db.pool.acquire() as conn:
        await migrate(conn, "notification", MIGRATIONS)
    return db


async def run(outcomes: int, batch: int) -> float:
    settings = NotificationSettings()
    db = await fresh_database(settings)
    try:
        handlers = NotificationHandlers(db, settings)
        await handlers.on_offering(offering_event(), DELIVERY)
        events = [confirmed(n) for n in range(outcomes)]
        start = time.perf_counter()
        for first in range(0, outcomes, batch):
            await handlers.on_batch([(event, DELIVERY) for event in events[first : first + batch]])
        return time.perf_counter() - start
    finally:
        await db.close()


async def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--outcomes", type=int, default=2000)
    args = parser.parse_args(argv)
    print(f"notification outcomes from {MIGRATIONS.parent}")
    for batch in (1, 50):
        seconds = await run(args.outcomes, batch)
        batches = -(-args.outcomes // batch)
        print(
            f"  batches of {batch:>2}: {args.outcomes / seconds:7.0f} outcomes/s,"
            f" {seconds / batches * 1000:6.2f} ms per batch"
        )


if __name__ == "__main__":
    asyncio.run(main())
