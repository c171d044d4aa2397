"""The machine's own limits, measured in the same run as the load: what RabbitMQ and Postgres do here
without our services, from one Python client like ours (aio-pika, asyncpg), in a throw-away vhost and
database.

- broker publish: persistent messages of a realistic size with publisher confirms into a quorum queue
  (the kind every service queue is), through a topic exchange, `window` unconfirmed at a time;
- broker consume: the same messages consumed and acknowledged one by one at prefetch 100 (as a service);
- Postgres commits: N connections each committing a one-row INSERT in a loop (`synchronous_commit` as
  the server is configured).

    python -m bench limits [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from dataclasses import asdict, dataclass

import aio_pika
import asyncpg
from rich.console import Console
from rich.table import Table

from bench.common import sandbox
from bench.registration_load import request
from qti_contracts import make_event

QUEUE = "bench.limits"
PUBLISH_WINDOW = 100  # unconfirmed publishes at a time (our outbox relay has about as many in flight)
PREFETCH = 100  # the services' default prefetch
COMMIT_CLIENTS = (1, 8)  # one connection (commit latency), and 8 (`pgbench -N` in docs/performance.md)


@dataclass
class Limits:
    publish_per_s: float
    consume_per_s: float
    commits_per_s: dict[str, float]  # connections → commits/s (str keys: the JSON has them so)
    message_bytes: int
    synchronous_commit: str
    fsync: str
    seconds: float

    @property
    def commits_many(self) -> float:
        """The commit rate with the most connections: the figure our services' pools compare to."""
        return self.commits_per_s[str(max(COMMIT_CLIENTS))]

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def sample_body() -> bytes:
    """A `registration.requested` envelope as the load sends it (about 700 bytes)."""
    return (
        make_event("registration.requested", request("limits", 0), source="/bench").model_dump_json().encode()
    )


async def declare(channel: aio_pika.abc.AbstractChannel) -> aio_pika.abc.AbstractExchange:
    exchange = await channel.declare_exchange("bench.limits", aio_pika.ExchangeType.TOPIC, durable=True)
    queue = await channel.declare_queue(
        QUEUE, durable=True, arguments={"x-queue-type": "quorum", "x-delivery-limit": 5}
    )
    await queue.bind(exchange, "bench.#")
    return exchange


async def publish_rate(amqp_url: str, body: bytes, seconds: float) -> tuple[int, float]:
    """Confirmed persistent publishes per second; returns (count, rate)."""
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await declare(channel)
        count = 0
        deadline = time.monotonic() + seconds

        async def publisher() -> None:
            nonlocal count
            while time.monotonic() < deadline:
                message = aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
                await exchange.publish(message, "bench.limits", mandatory=True, timeout=30)
                count += 1

        started = time.monotonic()
        await asyncio.gather(*(publisher() for _ in range(PUBLISH_WINDOW)))
        return count, count / (time.monotonic() - started)


async def consume_rate(amqp_url: str, available: int, seconds: float) -> float:
    """Consume + ack per second from the queue `publish_rate` filled, for at most `seconds`."""
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=PREFETCH)
        queue = await channel.declare_queue(QUEUE, passive=True)
        done = asyncio.Event()
        count = 0

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            nonlocal count
            await message.ack()
            count += 1
            if count >= available:
                done.set()

        started = time.monotonic()
        tag = await queue.consume(on_message)
        # The queue may hold more than `seconds` worth: then the rate so far is the figure.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await done.wait()
        elapsed = time.monotonic() - started
        await queue.cancel(tag)
        return count / elapsed


async def commit_rate(database_url: str, clients: int, seconds: float) -> float:
    """Committed one-row INSERTs per second over `clients` connections (each statement is a commit)."""
    connections = [await asyncpg.connect(database_url) for _ in range(clients)]
    try:
        await connections[0].execute(
            "CREATE TABLE IF NOT EXISTS bench_commits (id bigserial PRIMARY KEY, client int NOT NULL, "
            "at timestamptz NOT NULL DEFAULT now())"
        )
        deadline = time.monotonic() + seconds

        async def client(conn: asyncpg.Connection, number: int) -> int:
            done = 0
            while time.monotonic() < deadline:
                await conn.execute("INSERT INTO bench_commits (client) VALUES ($1)", number)
                done += 1
            return done

        started = time.monotonic()
        counts = await asyncio.gather(*(client(c, i) for i, c in enumerate(connections)))
        return sum(counts) / (time.monotonic() - started)
    finally:
        for conn in connections:
            await conn.close()


async def durability(database_url: str) -> tuple[str, str]:
    """`synchronous_commit` and `fsync`: what a commit waits for, so what the commit rates mean."""
    conn = await asyncpg.connect(database_url)
    try:
        return str(await conn.fetchval("SHOW synchronous_commit")), str(await conn.fetchval("SHOW fsync"))
    finally:
        await conn.close()


async def measure(seconds: float = 5.0) -> Limits:
    """All three limits, one after the other, in a vhost and database of their own."""
    body = sample_body()
    async with sandbox("limits") as box:
        published, publish = await publish_rate(box.amqp_url, body, seconds)
        consume = await consume_rate(box.amqp_url, published, seconds)
        commits = {str(n): await commit_rate(box.database_url, n, seconds) for n in COMMIT_CLIENTS}
        mode, fsync = await durability(box.database_url)
    return Limits(
        publish_per_s=round(publish),
        consume_per_s=round(consume),
        commits_per_s={k: round(v) for k, v in commits.items()},
        message_bytes=len(body),
        synchronous_commit=mode,
        fsync=fsync,
        seconds=seconds,
    )


def print_limits(limits: Limits, console: Console) -> None:
    table = Table(title="machine limits (one Python client, everything on this machine)")
    table.add_column("what")
    table.add_column("per second", justify="right")
    table.add_row(
        f"broker: confirmed persistent publishes ({limits.message_bytes} B, quorum queue, "
        f"{PUBLISH_WINDOW} unconfirmed)",
        f"{limits.publish_per_s:,.0f}",
    )
    table.add_row(f"broker: consume + ack (prefetch {PREFETCH})", f"{limits.consume_per_s:,.0f}")
    for clients, rate in limits.commits_per_s.items():
        table.add_row(
            f"Postgres: commits, {clients} connection(s), synchronous_commit={limits.synchronous_commit}",
            f"{rate:,.0f}",
        )
    console.print(table)


async def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench limits", description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0, help="per measurement")
    args = parser.parse_args(argv)
    print_limits(await measure(args.seconds), Console())
