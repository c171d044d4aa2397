"""Throughput of the notification service: confirmation mails per second accepted by the mail sink.

    .venv/bin/python bench/notification_throughput.py --count 2000 [--replicas 2]

Creates a fresh vhost and database (both `qti_bench_notification`, removed afterwards), publishes one
node, one offering and N `registration.confirmed` events, then starts the service in-process with the
built-in mail sink (aiosmtpd, storing each mail as a file; its own process, as under `make run`) and
measures until all N mails are stored. With `--replicas N`, N-1 more service processes (same database,
queue and sink; the delivery-log leases keep them apart) run beside the in-process one.
Needs RabbitMQ (with `rabbitmqctl` on PATH) and Postgres as for the tests.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from qti_contracts import make_event
from qti_runtime.broker import create_broker, declare_service_topology, publish_event_bytes
from services.notification.app import build_runtime
from services.notification.consumers import events_queue
from services.notification.settings import NotificationSettings

NAME = "qti_bench_notification"


def with_path(url: str, path: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=path))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def rabbitmqctl(*args: str, check: bool = True) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=check, capture_output=True, timeout=60)


async def recreate_database(admin_url: str) -> None:
    conn = await asyncpg.connect(with_path(admin_url, "/postgres"))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{NAME}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{NAME}"')
    finally:
        await conn.close()


async def drop_database(admin_url: str) -> None:
    conn = await asyncpg.connect(with_path(admin_url, "/postgres"))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{NAME}" WITH (FORCE)')
    finally:
        await conn.close()


def offering_data() -> dict[str, object]:
    return {
        "offering_id": "bench-offering",
        "node_id": "node-jena",
        "kind": "workshop",
        "topic": "industrie_4_0",
        "title": "Digitaler Zwilling in der Zulieferindustrie",
        "description": "Praxisworkshop mit Beispielen aus Thüringer Unternehmen.",
        "sessions": [
            {
                "session_id": "bench-s1",
                "starts_at": "2030-05-14T07:00:00Z",
                "ends_at": "2030-05-14T14:00:00Z",
                "location": "Technologie- und Innovationspark Jena",
            },
            {
                "session_id": "bench-s2",
                "starts_at": "2030-05-21T07:00:00Z",
                "ends_at": "2030-05-21T14:00:00Z",
                "location": "Technologie- und Innovationspark Jena",
            },
        ],
        "capacity": 5000,
        "registration_deadline": "2030-05-01T12:00:00Z",
        "fee_eur": 149,
        "revision": 1,
    }


def start_sink(folder: Path, smtp_port: int) -> subprocess.Popen[str]:
    """The sink in its own process (in one process it would compete with the service for the GIL)."""
    command = [sys.executable, "-m", "devtools.mail_sink", "--smtp-port", str(smtp_port)]
    command += ["--http-port", str(free_port()), "--folder", str(folder)]
    sink = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert sink.stdout is not None
    sink.stdout.readline()  # "Mail sink: …" once it listens
    return sink


def stop_sink(sink: subprocess.Popen[str], folder: Path) -> None:
    sink.terminate()
    sink.wait(timeout=10)
    shutil.rmtree(folder, ignore_errors=True)


def count_mails(folder: Path) -> int:
    try:
        return sum(1 for entry in os.scandir(folder) if entry.name.endswith(".eml"))
    except FileNotFoundError:
        return 0


def bench_settings(
    amqp_url: str, database_url: str, smtp_port: int, concurrency: int
) -> NotificationSettings:
    return NotificationSettings(
        amqp_url=amqp_url,
        database_url=database_url,
        smtp_port=smtp_port,
        send_concurrency=concurrency,
        db_pool_max=20,
        log_level="WARNING",
        log_json=True,
    )


def start_replica(settings: NotificationSettings) -> subprocess.Popen[str]:
    """Another replica in its own process; it starts when told "go" on stdin, stops at "stop"."""
    command = [sys.executable, "-m", "bench.notification_throughput", "--replica-worker"]
    command += [
        settings.amqp_url,
        settings.database_url,
        str(settings.smtp_port),
        str(settings.send_concurrency),
    ]
    proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    proc.stdout.readline()  # "loaded"
    return proc


async def replica_worker(amqp_url: str, database_url: str, smtp_port: int, concurrency: int) -> None:
    runtime = build_runtime(bench_settings(amqp_url, database_url, smtp_port, concurrency))
    print("loaded", flush=True)
    await asyncio.to_thread(sys.stdin.readline)  # "go"
    await runtime.start()
    await asyncio.to_thread(sys.stdin.readline)  # "stop" (or EOF)
    await runtime.stop()


async def run(count: int, concurrency: int, replicas: int = 1) -> None:  # noqa: PLR0915 - a linear script
    base_db = os.environ.get("QTI_DATABASE_URL", "postgresql://root@127.0.0.1:5432/qti")
    base_amqp = os.environ.get("QTI_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
    user = urlsplit(base_amqp).username or "guest"
    rabbitmqctl("delete_vhost", NAME, check=False)
    rabbitmqctl("add_vhost", NAME)
    rabbitmqctl("set_permissions", "-p", NAME, user, ".*", ".*", ".*")
    await recreate_database(base_db)
    folder = Path(tempfile.mkdtemp(prefix="qti-bench-mail-"))
    smtp_port = free_port()
    sink = start_sink(folder, smtp_port)
    try:
        settings = bench_settings(
            with_path(base_amqp, f"/{NAME}"), with_path(base_db, f"/{NAME}"), smtp_port, concurrency
        )
        broker = create_broker(settings, "bench")
        await broker.connect()
        await declare_service_topology(broker, "notification", [events_queue()])

        async def publish(type_: str, data: dict[str, object]) -> None:
            event = make_event(type_, data, source="/bench")
            await publish_event_bytes(
                broker, event.model_dump_json().encode(), routing_key=type_, message_id=event.id
            )

        node = {
            "node_id": "node-jena",
            "name": "QTI-Knoten Jena",
            "town": "Jena",
            "county": "Jena",
            "host": "Ernst-Abbe-Hochschule Jena",
            "address": "Carl-Zeiss-Promenade 2, 07745 Jena",
            "opened_on": "2024-03-01",
        }
        await publish("catalogue.node.published", node)
        await publish("catalogue.offering.published", offering_data())
        started = time.perf_counter()
        events = [
            {
                "registration_id": f"bench-reg-{i}",
                "request_id": f"bench-req-{i}",
                "offering_id": "bench-offering",
                "participant": {
                    "given_name": "Jörg",
                    "family_name": f"Müller-{i}",
                    "email": f"teilnehmer{i}@example.de",
                    "gender": "male",
                },
                "company": {"name": "Zulieferer Jena GmbH", "postal_code": "07745"},
            }
            for i in range(count)
        ]
        for chunk in range(0, count, 200):
            await asyncio.gather(*(publish("registration.confirmed", e) for e in events[chunk : chunk + 200]))
        publish_seconds = time.perf_counter() - started
        await broker.stop()

        runtime = build_runtime(settings)
        # The first replica migrates the database; the others start once it has.
        others = [start_replica(settings) for _ in range(replicas - 1)]
        t0 = time.perf_counter()
        await runtime.start()
        for proc in others:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        first: float | None = None
        seen = 0
        deadline = t0 + 300
        while seen < count and time.perf_counter() < deadline:
            await asyncio.sleep(0.05)
            seen = count_mails(folder)
            if seen and first is None:
                first = time.perf_counter()
        done = time.perf_counter()
        async with runtime.db.pool.acquire() as conn:
            statuses = dict(
                await conn.fetch(
                    "SELECT status, count(*) FROM deliveries WHERE template = 'confirmation' GROUP BY status"
                )
            )
        for proc in others:
            assert proc.stdin is not None
            proc.stdin.write("stop\n")
            proc.stdin.close()
        await runtime.stop()
        for proc in others:
            await asyncio.to_thread(proc.wait, 30)
        total = done - t0
        steady = done - (first or t0)
        print(
            f"events published:          {count} in {publish_seconds:.2f} s ({count / publish_seconds:.0f}/s)"
        )
        print(f"mails stored by the sink:  {seen} of {count}; delivery log: {statuses}")
        print(f"service start → last mail: {total:.2f} s  → {seen / total:.0f} mails/s end to end")
        print(f"first mail → last mail:    {steady:.2f} s  → {seen / steady:.0f} mails/s into the sink")
        print(f"cores: {os.cpu_count()}, send concurrency: {concurrency}, replicas: {replicas}")
    finally:
        stop_sink(sink, folder)
        await drop_database(base_db)
        rabbitmqctl("delete_vhost", NAME, check=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32, help="mails in flight per replica")
    parser.add_argument("--replicas", type=int, default=1, help="service processes (1 in-process + N-1)")
    parser.add_argument("--replica-worker", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.getLogger("faststream").setLevel(logging.WARNING)
    if args.replica_worker:
        amqp_url, database_url, smtp_port, concurrency = args.replica_worker
        asyncio.run(replica_worker(amqp_url, database_url, int(smtp_port), int(concurrency)))
        return
    asyncio.run(run(args.count, args.concurrency, max(1, args.replicas)))


if __name__ == "__main__":
    main()
