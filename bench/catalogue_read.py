"""Read benchmark of the catalogue: `GET /offerings` over the demo data plus 5,000 generated offerings.

Makes a throw-away database and vhost (`bench.common.sandbox`), loads the data, starts the real service
as a separate process (`python -m services.catalogue`, like production) and measures request latency on
the client side: one keep-alive httpx client, sequential requests, a warm-up per filter combination, then
`--requests` requests spread round-robin over the combinations. Goal: p99 < 20 ms overall.
Run: `.venv/bin/python -m bench.catalogue_read [--requests 2000 --generated 5000]`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import time
from typing import Any

import httpx

from bench.common import Processes, percentile, sandbox
from devtools.demo import load_catalogue
from devtools.demo_data import demo_nodes, demo_offerings, generated_offerings, node_id_for
from qti_runtime.db import Database
from qti_runtime.migrations import migrate
from services.catalogue.migrations_path import MIGRATIONS

COMBINATIONS: list[tuple[str, dict[str, Any]]] = [
    ("no filter", {}),
    ("topic", {"topic": "industrie_4_0"}),
    ("node + available", {"node": str(node_id_for("gotha")), "available": "true"}),
    ("county + kind", {"county": "Wartburgkreis", "kind": "workshop"}),
    ("from/to", {"from": "2027-05-01", "to": "2027-06-30"}),
    ("q (text)", {"q": "Wasserstoff"}),
    ("page 40 (offset 2000)", {"offset": 2000}),
    ("limit 200", {"limit": 200}),
]
WARM_UP = 20  # requests per combination before measuring


async def load(url: str, generated: int) -> None:
    db = Database(url, "catalogue", min_size=1, max_size=2)
    await db.connect()
    try:
        async with db.pool.acquire() as conn:
            await migrate(conn, "catalogue", MIGRATIONS)
        started = time.perf_counter()
        offerings = [*demo_offerings(), *generated_offerings(generated, seed=2027)]
        counts = await load_catalogue(db, demo_nodes(), offerings, emit=False)
        async with db.pool.acquire() as conn:
            await conn.execute("VACUUM ANALYZE")
        print(f"loaded {counts['offerings_created']} offerings in {time.perf_counter() - started:.1f} s")
    finally:
        await db.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def measure(base_url: str, requests: int) -> dict[str, list[float]]:
    timings: dict[str, list[float]] = {name: [] for name, _ in COMBINATIONS}
    limits = httpx.Limits(max_keepalive_connections=1, max_connections=1)
    async with httpx.AsyncClient(base_url=base_url, timeout=10, limits=limits) as client:
        for _name, params in COMBINATIONS:
            for _ in range(WARM_UP):
                (await client.get("/offerings", params=params)).raise_for_status()
        for index in range(requests):
            name, params = COMBINATIONS[index % len(COMBINATIONS)]
            started = time.perf_counter()
            response = await client.get("/offerings", params=params)
            elapsed = (time.perf_counter() - started) * 1000
            response.raise_for_status()
            timings[name].append(elapsed)
    return timings


def report(timings: dict[str, list[float]]) -> float:
    print(f"{'combination':<24}{'n':>6}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}")
    for name, values in timings.items():
        print(
            f"{name:<24}{len(values):>6}{statistics.median(values):>9.2f}"
            f"{percentile(values, 95):>9.2f}{percentile(values, 99):>9.2f}"
        )
    every = [value for values in timings.values() for value in values]
    p99 = percentile(every, 99)
    print(
        f"{'all':<24}{len(every):>6}{statistics.median(every):>9.2f}{percentile(every, 95):>9.2f}{p99:>9.2f}"
    )
    print(f"goal p99 < 20 ms: {'met' if p99 < 20 else 'NOT met'}")
    return p99


async def run(generated: int, requests: int) -> None:
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    async with sandbox("catalogue") as box:
        await load(box.database_url, generated)
        port = free_port()
        server = Processes(
            "catalogue", 1, {"QTI_DATABASE_URL": box.database_url, "QTI_AMQP_URL": box.amqp_url}, port
        )
        try:
            await server.start()
            print(f"server pid: {server.procs[0].pid}")
            base_url = f"http://127.0.0.1:{port}"
            async with httpx.AsyncClient(base_url=base_url) as client:
                total = (await client.get("/offerings")).json()["total"]
            print(f"published offerings visible: {total}")
            report(await measure(base_url, requests))
        finally:
            server.stop()
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--generated", type=int, default=5000)
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    asyncio.run(run(args.generated, args.requests))


if __name__ == "__main__":
    main()
