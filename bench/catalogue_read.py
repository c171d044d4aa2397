"""Read benchmark of the catalogue: `GET /offerings` over the demo data plus 5,000 generated offerings.

Creates the database `qti_bench_catalogue` (dropped at the end), loads the data, serves the real app
with uvicorn in-process on a free port and measures request latency (client side, sequential, keep-alive)
for a few filter combinations. Goal: p99 < 20 ms. Run: `.venv/bin/python bench/catalogue_read.py`.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import uvicorn

from qti_runtime.db import Database
from qti_runtime.migrations import migrate
from qti_runtime.settings import Settings
from services.catalogue.app import create_app
from services.catalogue.demo import load_catalogue
from services.catalogue.demo_data import demo_nodes, demo_offerings, generated_offerings, node_id_for
from services.catalogue.migrations_path import MIGRATIONS

BENCH_DB = "qti_bench_catalogue"

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


def with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered)) - 1))
    return ordered[index]


async def recreate_database(admin_url: str) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{BENCH_DB}"')
    finally:
        await conn.close()


async def drop_database(admin_url: str) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')
    finally:
        await conn.close()


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
            await conn.execute("ANALYZE")
        print(f"loaded {counts['offerings_created']} offerings in {time.perf_counter() - started:.1f} s")
    finally:
        await db.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def measure(base_url: str, requests: int) -> dict[str, list[float]]:
    timings: dict[str, list[float]] = {name: [] for name, _ in COMBINATIONS}
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
        for _name, params in COMBINATIONS:  # warm-up
            for _ in range(20):
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
    print(f"{'combination':<24}{'n':>6}{'total':>8}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}")
    for name, values in timings.items():
        print(
            f"{name:<24}{len(values):>6}{'':>8}{statistics.median(values):>9.2f}"
            f"{percentile(values, 95):>9.2f}{percentile(values, 99):>9.2f}"
        )
    every = [value for values in timings.values() for value in values]
    p99 = percentile(every, 99)
    print(
        f"{'all':<24}{len(every):>6}{'':>8}{statistics.median(every):>9.2f}"
        f"{percentile(every, 95):>9.2f}{p99:>9.2f}"
    )
    print(f"goal p99 < 20 ms: {'met' if p99 < 20 else 'NOT met'}")
    return p99


async def run(generated: int, requests: int) -> None:
    base = Settings()
    admin_url = with_database(base.database_url, "postgres")
    url = with_database(base.database_url, BENCH_DB)
    await recreate_database(admin_url)
    try:
        await load(url, generated)
        settings = base.model_copy(update={"database_url": url, "log_level": "WARNING"})
        port = free_port()
        config = uvicorn.Config(
            create_app(settings),
            host="127.0.0.1",
            port=port,
            log_config=None,
            access_log=False,
            lifespan="on",
        )
        server = uvicorn.Server(config)
        serving = asyncio.create_task(server.serve())
        for _ in range(400):  # up to 20 s for start-up (migrations, broker)
            if server.started:
                break
            await asyncio.sleep(0.05)
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                total = (await client.get("/offerings")).json()["total"]
            print(f"published offerings visible: {total}")
            report(await measure(f"http://127.0.0.1:{port}", requests))
        finally:
            server.should_exit = True
            await serving
    finally:
        await drop_database(admin_url)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--generated", type=int, default=5000)
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    asyncio.run(run(args.generated, args.requests))


if __name__ == "__main__":
    main()
