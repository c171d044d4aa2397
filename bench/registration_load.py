"""Registration load: decided requests per second and latency (request published → outcome received).

Publishes realistic `registration.requested` commands through the broker to registration replicas running
as separate processes, and times each request until its outcome arrives on the client's reply queue.

    python -m bench.registration_load [--replicas 2] [--requests 6000] [--rate 300]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aio_pika
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from bench.common import Processes, Sandbox, percentile, sandbox
from qti_contracts import FRONTEND_REPLY_PREFIX, make_event

console = Console()


def offering(offering_id: str, capacity: int, waitlist: int) -> dict[str, Any]:
    start = datetime.now(UTC) + timedelta(days=40)
    return {
        "offering_id": offering_id,
        "node_id": "qti-gotha",
        "kind": "course",
        "topic": "industrie_4_0",
        "title": "Industrie 4.0 im Mittelstand",
        "description": "Digitale Transformation in der Produktion.",
        "sessions": [
            {
                "session_id": "s1",
                "starts_at": start.isoformat(),
                "ends_at": (start + timedelta(hours=6)).isoformat(),
                "location": "Gotha",
                "teaching_units": 8,
            }
        ],
        "capacity": capacity,
        "registration_deadline": (start - timedelta(days=2)).isoformat(),
        "waitlist_limit": waitlist,
        "revision": 1,
    }


def request(offering_id: str, n: int) -> dict[str, Any]:
    return {
        "offering_id": offering_id,
        "participant": {
            "given_name": "Jana",
            "family_name": f"Becker{n}",
            "email": f"jana.becker{n}@example.de",
            "gender": "female",
            "age_band": "30_54",
        },
        "company": {
            "name": f"Thüringer Zulieferer {n % 400} GmbH",
            "postal_code": "99867",
            "county": "Gotha",
            "size_class": "medium",
            "automotive_supplier": True,
        },
        "privacy_consent": True,
    }


@dataclass
class Run:
    sent: dict[str, float] = field(default_factory=dict)
    latency_ms: list[float] = field(default_factory=list)
    outcomes: dict[str, int] = field(default_factory=dict)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    expected: int = 0


async def scenario(
    box: Sandbox, name: str, offerings: int, requests: int, rate: float | None, capacity: int, waitlist: int
) -> dict[str, Any]:
    connection = await aio_pika.connect_robust(box.amqp_url)
    channel = await connection.channel(publisher_confirms=True)
    exchange = await channel.get_exchange("qti.events")
    # Registration answers only frontends' reply queues (`frontend.reply.…` or direct reply-to).
    reply = await channel.declare_queue(f"{FRONTEND_REPLY_PREFIX}bench-{os.getpid()}", exclusive=True)
    run = Run(expected=requests)

    async def on_reply(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        event = json.loads(message.body)
        request_id = event["data"]["request_id"]
        if request_id in run.sent and request_id not in run.outcomes:
            run.latency_ms.append((time.perf_counter() - run.sent[request_id]) * 1000)
            run.outcomes[request_id] = 1
            if len(run.outcomes) >= run.expected:
                run.done.set()

    await reply.consume(on_reply, no_ack=True)
    slug = "".join(c if c.isalnum() else "-" for c in name)
    ids = [f"bench-{slug}-{uuid.uuid4().hex[:8]}-{i}" for i in range(offerings)]
    for oid in ids:
        body = make_event("catalogue.offering.published", offering(oid, capacity, waitlist), source="/bench")
        await exchange.publish(
            aio_pika.Message(
                body.model_dump_json().encode(),
                message_id=body.id,
                content_type="application/cloudevents+json",
            ),
            "catalogue.offering.published",
        )
    await asyncio.sleep(2)
    sem = asyncio.Semaphore(300)
    # Frontends run elsewhere: the requests are built before the clock starts, so that the load
    # generator takes as little as possible of the cores the system under test shares with it.
    prepared = [
        make_event("registration.requested", request(ids[i % offerings], i), source="/bench")
        for i in range(requests)
    ]
    bodies = [(event.id, event.model_dump_json().encode()) for event in prepared]

    async def send(i: int) -> None:
        async with sem:
            event_id, body = bodies[i]
            run.sent[event_id] = time.perf_counter()
            await exchange.publish(
                aio_pika.Message(
                    body,
                    message_id=event_id,
                    reply_to=reply.name,
                    correlation_id=event_id,
                    content_type="application/cloudevents+json",
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                ),
                "registration.requested",
            )

    started = time.perf_counter()
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task(f"{name}", total=requests)
        tasks = []
        for i in range(requests):
            if rate:
                delay = started + i / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(send(i)))
            progress.update(task, completed=len(run.outcomes))
        await asyncio.gather(*tasks)
        while not run.done.is_set():
            progress.update(task, completed=len(run.outcomes))
            try:
                await asyncio.wait_for(run.done.wait(), timeout=0.5)
            except TimeoutError:
                if time.perf_counter() - started > 600:
                    break
    elapsed = time.perf_counter() - started
    await connection.close()
    return {
        "scenario": name,
        "offerings": offerings,
        "requests": requests,
        "offered_rate": rate or "flat out",
        "decided": len(run.outcomes),
        "seconds": round(elapsed, 2),
        "decided_per_s": round(len(run.outcomes) / elapsed, 1),
        "p50_ms": round(percentile(run.latency_ms, 50), 1),
        "p95_ms": round(percentile(run.latency_ms, 95), 1),
        "p99_ms": round(percentile(run.latency_ms, 99), 1),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--requests", type=int, default=6000)
    parser.add_argument("--rate", type=float, default=300.0, help="offered rate of the latency scenario")
    parser.add_argument("--json", help="write results to this file")
    args = parser.parse_args()
    results = []
    async with sandbox("registration") as box:
        services = Processes(
            "registration",
            args.replicas,
            {"QTI_AMQP_URL": box.amqp_url, "QTI_DATABASE_URL": box.database_url},
            18102,
        )
        await services.start()
        try:
            results.append(await scenario(box, "many-offerings", 200, args.requests, None, 100, 100))
            results.append(await scenario(box, "one-offering", 1, args.requests // 2, None, 25, 100))
            results.append(
                await scenario(
                    box, f"latency@{int(args.rate)}/s", 200, int(args.rate * 10), args.rate, 100, 100
                )
            )
        finally:
            services.stop()
    table = Table(title=f"registration, {args.replicas} replicas (broker and database on this machine)")
    for column in results[0]:
        table.add_column(column)
    for row in results:
        table.add_row(*(str(v) for v in row.values()))
    console.print(table)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)


if __name__ == "__main__":
    asyncio.run(main())
