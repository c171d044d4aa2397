"""Offer alerts at scale: the time from publishing one offering to the last alert mail accepted by the
mail sink, with N confirmed subscribers who all want it (default 10,000).

    python -m bench.alerts [--subscribers 10000] [--limits-seconds 3]

A fresh vhost and database (removed afterwards); the notification service in process, the built-in mail
sink (aiosmtpd, one file per mail) in a process of its own, as under `make run`. The subscribers are
written straight into the table (the sign-up path is one mail each and is not what is measured). Then
one `catalogue.offering.published` goes to the broker and the clock runs: until the matching statement
has queued every mail (one INSERT … SELECT into the delivery log), and until the sink has stored the
last one. The machine's broker and Postgres limits (bench.limits) are measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench.common import sandbox
from bench.limits import measure, print_limits
from bench.notification_throughput import count_mails, free_port, offering_data, start_sink, stop_sink
from qti_contracts import make_event
from qti_runtime.broker import create_broker, publish_event_bytes
from services.notification import alerts
from services.notification.app import build_runtime
from services.notification.settings import NotificationSettings

NODE: dict[str, object] = {
    "node_id": "node-jena",
    "name": "QTI-Knoten Jena",
    "town": "Jena",
    "county": "Jena",
    "host": "Ernst-Abbe-Hochschule Jena",
    "address": "Carl-Zeiss-Promenade 2, 07745 Jena",
    "opened_on": "2024-03-01",
}


def subscriber_rows(count: int, secret: NotificationSettings) -> list[tuple[object, ...]]:
    """Confirmed immediate alerts for the bench offering's topic, half of them also naming Jena."""
    now = datetime.now(UTC)
    rows: list[tuple[object, ...]] = []
    for i in range(count):
        sid = f"alr-{uuid.uuid4().hex}"
        rows.append(
            (
                sid,
                f"abonnent-{i}@example.de",
                f"rcpt-bench-{i}",
                ["industrie_4_0"],
                ["jena"] if i % 2 else [],
                alerts.token_hash(alerts.token(secret.link_secret, "confirm", sid)),
                alerts.token_hash(alerts.token(secret.link_secret, "unsubscribe", sid)),
                now,
                now + timedelta(hours=72),
                "alert",
                "confirmed",
                now,
                "bench",
                "bench",
            )
        )
    return rows


async def seed(settings: NotificationSettings, count: int) -> None:
    import asyncpg

    conn = await asyncpg.connect(settings.database_url, server_settings={"search_path": "notification"})
    try:
        await conn.copy_records_to_table(
            "alert_subscriptions",
            records=subscriber_rows(count, settings),
            columns=[
                "subscription_id", "email", "recipient_ref", "topics", "counties", "confirm_hash",
                "unsubscribe_hash", "consent_at", "expires_at", "kind", "status", "confirmed_at",
                "consent_text_version", "consent_source",
            ],
        )  # fmt: skip
    finally:
        await conn.close()


async def queued(settings: NotificationSettings) -> int:
    import asyncpg

    conn = await asyncpg.connect(settings.database_url, server_settings={"search_path": "notification"})
    try:
        return int(await conn.fetchval("SELECT count(*) FROM deliveries WHERE template = 'alert'"))
    finally:
        await conn.close()


async def poll(current: Callable[[], Awaitable[int]], target: int, interval: float) -> None:
    """Until `current()` reaches `target` (the clock is read by the caller right after)."""
    while True:
        if await current() >= target:
            return
        await asyncio.sleep(interval)


async def run(count: int) -> dict[str, float]:
    folder = Path(tempfile.mkdtemp(prefix="qti-bench-alerts-"))
    smtp_port = free_port()
    sink = start_sink(folder, smtp_port)
    try:
        async with sandbox("alerts") as box:
            settings = NotificationSettings(
                amqp_url=box.amqp_url, database_url=box.database_url, smtp_port=smtp_port,
                db_pool_max=20, log_level="WARNING", log_json=True,
                # The bench seeds the table itself; no digest or purge run meanwhile.
                alert_maintenance_seconds=3600,
            )  # fmt: skip
            runtime = build_runtime(settings)
            await runtime.start()
            try:
                return await _measure(settings, count, folder)
            finally:
                await runtime.stop()
    finally:
        stop_sink(sink, folder)


async def _measure(settings: NotificationSettings, count: int, folder: Path) -> dict[str, float]:
    seeded = time.perf_counter()
    await seed(settings, count)
    seed_s = time.perf_counter() - seeded
    broker = create_broker(settings, "bench")
    await broker.connect()
    try:

        async def publish(type_: str, data: dict[str, object]) -> None:
            event = make_event(type_, data, source="/bench")
            body = event.model_dump_json().encode()
            await publish_event_bytes(broker, body, routing_key=type_, message_id=event.id)

        await publish("catalogue.node.published", NODE)
        await asyncio.sleep(1.0)  # the node replicated first, as in production
        started = time.perf_counter()
        await publish("catalogue.offering.published", offering_data())
        await poll(lambda: queued(settings), count, 0.05)
        queued_s = time.perf_counter() - started
        await poll(lambda: asyncio.to_thread(count_mails, folder), count, 0.1)
        last_s = time.perf_counter() - started
    finally:
        await broker.stop()
    return {"seed_s": seed_s, "queued_s": queued_s, "last_mail_s": last_s, "mails_per_s": count / last_s}


async def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.alerts", description=__doc__)
    parser.add_argument("--subscribers", type=int, default=10_000)
    parser.add_argument("--limits-seconds", type=float, default=3.0)
    args = parser.parse_args(argv)
    console = Console()
    figures = await run(args.subscribers)
    table = Table(title=f"one published offering → {args.subscribers:,} confirmed subscribers")
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row(
        "subscribers written (COPY, not measured as part of the alert)", f"{figures['seed_s']:.2f} s"
    )
    table.add_row("publish → every alert mail queued (one INSERT … SELECT)", f"{figures['queued_s']:.2f} s")
    table.add_row("publish → last alert mail accepted by the sink", f"{figures['last_mail_s']:.1f} s")
    table.add_row("mails per second, end to end", f"{figures['mails_per_s']:,.0f}")
    console.print(table)
    print_limits(await measure(args.limits_seconds), console)


if __name__ == "__main__":
    asyncio.run(main())
