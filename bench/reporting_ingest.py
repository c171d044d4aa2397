"""Reporting benchmark: events/s ingested from the broker, and rebuild time of the projections.

    .venv/bin/python bench/reporting_ingest.py [--events 100000]

Uses a fresh database and RabbitMQ vhost (needs `rabbitmqctl`) next to QTI_DATABASE_URL / QTI_AMQP_URL and
removes both afterwards. The events are queued first, then the service is started, so the figure is the
consumer's own rate (scrub + inbox + raw log + projections, one transaction per event).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg

sys.path[:0] = [
    str(Path(__file__).resolve().parents[1]),
    str(Path(__file__).resolve().parents[1] / "contracts"),
]

from qti_contracts import COUNTY_LABELS  # noqa: E402
from qti_runtime.broker import create_broker, publish_event_bytes  # noqa: E402
from qti_runtime.db import Database  # noqa: E402
from services.reporting.app import ReportingSettings, build_runtime  # noqa: E402
from services.reporting.rebuild import rebuild  # noqa: E402
from services.reporting.report import kpi_updated  # noqa: E402
from services.reporting.store import load_facts, node_names  # noqa: E402

TOPICS = ["elektromobilitaet", "wasserstoff", "industrie_4_0", "innovation", "weiterbildung"]
KINDS = ["course", "workshop", "info_event", "certificate_course"]
GENDERS = ["female", "male", "diverse", "unspecified"]
SIZES = ["micro", "small", "medium", "large"]


def envelope(type_: str, data: dict[str, Any], at: datetime) -> tuple[str, str, bytes]:
    event_id = str(uuid.uuid4())
    body = {
        "specversion": "1.0",
        "id": event_id,
        "source": "/bench",
        "type": type_,
        "time": at.isoformat(),
        "datacontenttype": "application/json",
        "data": data,
    }
    return event_id, type_, json.dumps(body).encode()


def generate(n: int, seed: int = 1) -> list[tuple[str, str, bytes]]:
    rng = random.Random(seed)
    start = datetime(2026, 1, 1, 8, tzinfo=UTC)
    events: list[tuple[str, str, bytes]] = []
    offerings: list[str] = []
    counties = list(COUNTY_LABELS.values())  # the closed list, as German labels
    for i in range(5):
        events.append(
            envelope(
                "catalogue.node.published",
                {
                    "node_id": f"node-{i}",
                    "name": f"QTI-Knoten {i}",
                    "town": "Ort",
                    "county": counties[i],
                    "host": "Träger",
                    "address": "Straße 1, 99610 Ort",
                    "opened_on": "2024-01-01",
                },
                start,
            )
        )
    for i in range(max(10, n // 100)):
        first = start + timedelta(days=rng.randrange(700))
        offering_id = f"off-{i}"
        offerings.append(offering_id)
        sessions = [
            {
                "session_id": f"{offering_id}-s{k}",
                "starts_at": (first + timedelta(days=7 * k)).isoformat(),
                "ends_at": (first + timedelta(days=7 * k, hours=3)).isoformat(),
                "location": "Raum 1",
            }
            for k in range(3)
        ]
        events.append(
            envelope(
                "catalogue.offering.published",
                {
                    "offering_id": offering_id,
                    "node_id": f"node-{i % 5}",
                    "kind": rng.choice(KINDS),
                    "topic": rng.choice(TOPICS),
                    "title": f"Angebot {i}",
                    "sessions": sessions,
                    "capacity": 20,
                    "registration_deadline": first.isoformat(),
                    "revision": 1,
                },
                first - timedelta(days=30),
            )
        )
    k = 0
    while len(events) < n:
        k += 1
        offering_id = rng.choice(offerings)
        registration_id = f"reg-{k}"
        at = start + timedelta(minutes=k)
        data = {
            "registration_id": registration_id,
            "request_id": f"req-{k}",
            "offering_id": offering_id,
            "participant": {
                "given_name": "Vorname",
                "family_name": f"Name{k}",
                "email": f"person{rng.randrange(n // 3)}@example.de",
                "gender": rng.choice(GENDERS),
                "age_band": "30_54",
            },
            "company": {
                "name": f"Firma {rng.randrange(n // 10)} GmbH",
                "postal_code": "99610",
                "county": "Sömmerda",
                "size_class": rng.choice(SIZES),
                "automotive_supplier": True,
            },
            "from_waitlist": False,
        }
        events.append(envelope("registration.confirmed", data, at))
        events.append(
            envelope(
                "registration.attendance_recorded",
                {
                    "registration_id": registration_id,
                    "offering_id": offering_id,
                    "session_id": f"{offering_id}-s0",
                    "attended": True,
                },
                at + timedelta(days=1),
            )
        )
        events.append(
            envelope(
                "notification.sent",
                {
                    "notification_id": f"n-{k}",
                    "template": "confirmation",
                    "trigger_event_id": f"t-{k}",
                    "trigger_type": "registration.confirmed",
                    "registration_id": registration_id,
                    "offering_id": offering_id,
                    "recipient_ref": f"rcp-{k}",
                },
                at,
            )
        )
    return events[:n]


def ctl(*args: str) -> None:
    command = shutil.which("rabbitmqctl")
    if command is None:
        raise SystemExit("rabbitmqctl is needed to create the benchmark's vhost")
    subprocess.run([command, "-q", *args], check=True, capture_output=True, timeout=60)


async def time_kpis(db: Database) -> None:
    """The KPI job's work for one `reporting.kpi.updated`: all facts loaded, then the figures computed."""
    t0 = time.perf_counter()
    async with db.pool.acquire() as conn:
        facts = await load_facts(conn)
        names = await node_names(conn)
    loaded = time.perf_counter() - t0
    kpi_updated(facts, names, datetime.now(UTC))
    computed = time.perf_counter() - t0 - loaded
    print(
        f"reporting.kpi.updated from all facts: loaded in {loaded * 1000:.0f} ms,"
        f" computed in {computed * 1000:.0f} ms",
        flush=True,
    )


async def main(n: int) -> None:
    base = ReportingSettings()
    name = f"qti_bench_reporting_{uuid.uuid4().hex[:8]}"
    db_parts = urlsplit(base.database_url)
    admin = urlunsplit(db_parts._replace(path="/postgres"))
    conn = await asyncpg.connect(admin)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    amqp_parts = urlsplit(base.amqp_url)
    user = amqp_parts.username or "guest"
    ctl("add_vhost", name)
    ctl("set_permissions", "-p", name, user, ".*", ".*", ".*")
    settings = ReportingSettings(
        **{
            **base.model_dump(),
            "database_url": urlunsplit(db_parts._replace(path=f"/{name}")),
            "amqp_url": urlunsplit(amqp_parts._replace(path=f"/{quote(name, safe='')}")),
            "log_level": "WARNING",
            "prefetch": int(os.environ.get("QTI_PREFETCH", "200")),
            "db_pool_max": 20,
        }
    )
    try:
        print(f"generating {n} events …", flush=True)
        events = generate(n)
        runtime = build_runtime(settings)
        await runtime.start()  # declares queue and schema
        await runtime.stop()
        broker = create_broker(settings, "bench")
        await broker.connect()
        t0 = time.perf_counter()
        for start in range(0, len(events), 500):
            await asyncio.gather(
                *(
                    publish_event_bytes(broker, body, routing_key=type_, message_id=event_id)
                    for event_id, type_, body in events[start : start + 500]
                )
            )
        await broker.stop()
        print(f"queued {n} events in {time.perf_counter() - t0:.1f} s", flush=True)

        runtime = build_runtime(settings)
        t0 = time.perf_counter()
        await runtime.start()
        while True:
            async with runtime.db.pool.acquire() as c:
                done = await c.fetchval("SELECT count(*) FROM event_log")
            if done >= n:
                break
            await asyncio.sleep(0.25)
        ingest = time.perf_counter() - t0
        await runtime.stop()
        print(f"ingested {n} events in {ingest:.1f} s: {n / ingest:,.0f} events/s", flush=True)

        runtime = build_runtime(settings)
        await runtime.db.connect()
        t0 = time.perf_counter()
        replayed = await rebuild(runtime.db)
        took = time.perf_counter() - t0
        print(f"rebuilt projections from {replayed} logged events in {took:.1f} s", flush=True)
        await time_kpis(runtime.db)
        await runtime.db.close()
    finally:
        conn = await asyncpg.connect(admin)
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()
        ctl("delete_vhost", name)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=100_000)
    asyncio.run(main(parser.parse_args().events))
