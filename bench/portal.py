"""Benchmark of the portal: registrations completed through its form over HTTP (no browser) per second,
and the latency of its start page with 5,000 generated offerings in the catalogue.

A sandbox (own database and vhost) with 5,000 generated offerings loaded into catalogue's schema, the four
services and the portal as processes. Each simulated person (`--clients` at once) does what a browser
does: GET the offering page (CSRF token and form key), POST the form, GET the outcome page until it says
`bestätigt`. Then `--requests` sequential GETs of the start page (unfiltered and filtered).
Run: `.venv/bin/python -m bench.portal [--seconds 20 --clients 8 --requests 300]`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

import httpx

from bench.catalogue_read import load
from bench.common import ROOT, free_port, percentile, sandbox
from bench.system import create_offerings, running_system

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
KEY = re.compile(r'name="anfrage_schluessel" value="([^"]+)"')
START_PAGES = ["/", "/?topic=wasserstoff", "/?q=Wasserstoff", "/?kind=workshop&seite=3"]


async def one_registration(client: httpx.AsyncClient, offering_id: str) -> None:
    page = (await client.get(f"/angebote/{offering_id}")).text
    csrf, key = CSRF.search(page), KEY.search(page)
    assert csrf and key, "no form on the offering page"
    n = uuid.uuid4().hex[:12]
    form = {
        "csrf_token": csrf.group(1), "anfrage_schluessel": key.group(1), "vorname": "Bench",
        "nachname": f"Person {n}", "email": f"bench-{n}@example.de", "unternehmen": "Bench GmbH",
        "postleitzahl": "99610", "landkreis": "soemmerda", "datenschutz": "ja",
    }  # fmt: skip
    answer = await client.post(f"/angebote/{offering_id}/anmelden", data=form)
    assert answer.status_code == 303, answer.text[:500]
    for _ in range(60):
        if "bestätigt" in (await client.get(answer.headers["location"])).text:
            return
    raise RuntimeError("no confirmation within 60 outcome-page loads")


async def registrations(portal_url: str, offering_id: str, clients: int, seconds: float) -> None:
    done = 0
    deadline = time.perf_counter() + seconds

    async def person_after_person() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            async with httpx.AsyncClient(base_url=portal_url, timeout=30) as client:  # a new browser
                await one_registration(client, offering_id)
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(person_after_person() for _ in range(clients)))
    elapsed = time.perf_counter() - started
    print(
        f"registrations through the form: {done} in {elapsed:.1f} s = {done / elapsed:.1f}/s "
        f"({clients} clients)"
    )


async def start_page(portal_url: str, requests: int) -> None:
    timings: list[float] = []
    async with httpx.AsyncClient(base_url=portal_url, timeout=30) as client:
        for path in START_PAGES * 5:  # warm-up
            (await client.get(path)).raise_for_status()
        for index in range(requests):
            started = time.perf_counter()
            (await client.get(START_PAGES[index % len(START_PAGES)])).raise_for_status()
            timings.append((time.perf_counter() - started) * 1000)
    print(
        f"start page ({requests} requests, {len(START_PAGES)} filter sets): "
        f"p50 {statistics.median(timings):.1f} ms, "
        f"p95 {percentile(timings, 95):.1f} ms, p99 {percentile(timings, 99):.1f} ms"
    )


async def start_portal(
    urls: dict[str, str], amqp_url: str, log: object
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {
        **os.environ, "PYTHONPATH": os.pathsep.join([ROOT, os.path.join(ROOT, "contracts")]),
        "QTI_AMQP_URL": amqp_url, "QTI_CATALOGUE_URL": urls["catalogue"],
        "QTI_REGISTRATION_URL": urls["registration"], "QTI_PORTAL_PORT": str(port),
        "QTI_REDIS_PREFIX": f"qti-portal-bench-{uuid.uuid4().hex[:6]}", "QTI_LOG_LEVEL": "WARNING",
        "QTI_PORTAL_POSTS_PER_CLIENT": "1000000", "QTI_PORTAL_POSTS_PER_EMAIL": "1000000",
    }  # fmt: skip
    process = subprocess.Popen(
        [sys.executable, "-m", "frontends.portal"], env=env, cwd=ROOT, stdout=log, stderr=log
    )  # type: ignore[arg-type]
    url = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient() as client:
        for _ in range(300):
            try:
                if (await client.get(f"{url}/readyz")).status_code == 200:
                    return process, url
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError("the portal did not become ready")


async def run(generated: int, clients: int, seconds: float, requests: int) -> None:
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryFile() as log:
        async with sandbox("portal") as box:
            await load(box.database_url, generated)
            async with running_system(box, {"registration": 1}, log) as system:
                offering_id = (await create_offerings(system.urls["catalogue"], 1, 1_000_000))[0]
                process, portal_url = await start_portal(system.urls, box.amqp_url, log)
                try:
                    # Warm-up: registration decides the first request once the offering has reached it.
                    async with httpx.AsyncClient(base_url=portal_url, timeout=30) as client:
                        await one_registration(client, offering_id)
                    await start_page(portal_url, requests)
                    await registrations(portal_url, offering_id, clients, seconds)
                finally:
                    process.terminate()
                    process.wait(20)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--generated", type=int, default=5000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    asyncio.run(run(args.generated, args.clients, args.seconds, args.requests))


if __name__ == "__main__":
    main()
