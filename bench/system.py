"""The whole system for the end-to-end benchmark: four services as processes, the SMTP recorder, and
offerings created and published through catalogue's staff API (as staff would), in a sandbox.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import IO, Any
from urllib.parse import unquote, urlsplit

import asyncpg
import httpx

from bench.common import ROOT, Processes, Sandbox, free_port
from bench.registration_load import offering
from devtools.demo import run as load_demo
from devtools.demo_data import node_id_for
from qti_runtime.settings import Settings

STAFF_TOKEN = "bench-staff-token"
STAFF = {"Authorization": f"Bearer {STAFF_TOKEN}"}
NODE = str(node_id_for("gotha"))  # a demo node: loaded once catalogue is ready (devtools.demo)
# Schemas that replicate offerings from catalogue's events; each must know an offering before the load.
REPLICAS = ("registration", "notification", "reporting")


@dataclass
class System:
    services: dict[str, Processes]
    recorder: asyncio.subprocess.Process
    urls: dict[str, str]
    amqp_url: str

    def check_alive(self) -> None:
        """Figures from a system whose process died are not figures: stop the run instead."""
        for name, processes in self.services.items():
            if any(proc.poll() is not None for proc in processes.procs):
                raise RuntimeError(f"{name} exited during the run")
        if self.recorder.returncode is not None:
            raise RuntimeError("the SMTP recorder exited during the run")

    @property
    def mails(self) -> asyncio.StreamReader:
        assert self.recorder.stdout is not None
        return self.recorder.stdout


async def start_recorder() -> tuple[asyncio.subprocess.Process, int]:
    port = free_port()
    recorder = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.mail_recorder",
        "--port",
        str(port),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    assert recorder.stdout is not None
    async with asyncio.timeout(30):
        ready = await recorder.stdout.readline()
    if ready.strip() != b"ready":
        raise RuntimeError("the SMTP recorder did not start")
    return recorder, port


def service_processes(
    box: Sandbox,
    smtp_port: int,
    replicas: dict[str, int],
    log: IO[bytes],
    background_nice: int | None = None,
) -> dict[str, Processes]:
    env = {
        "QTI_AMQP_URL": box.amqp_url,
        "QTI_DATABASE_URL": box.database_url,
        "QTI_SMTP_HOST": "127.0.0.1",
        "QTI_SMTP_PORT": str(smtp_port),
        "QTI_STAFF_TOKEN": STAFF_TOKEN,
    }

    def env_of(name: str) -> dict[str, str]:
        if name in ("notification", "reporting") and background_nice is not None:
            return {**env, "QTI_CPU_NICE": str(background_nice)}
        return env

    return {
        name: Processes(
            name,
            replicas.get(name, 1),
            env_of(name),
            free_port(),
            log,
        )
        for name in ("registration", "notification", "reporting", "catalogue")
    }


@asynccontextmanager
async def running_system(
    box: Sandbox, replicas: dict[str, int], log: IO[bytes], *, background_nice: int | None = None
) -> AsyncIterator[System]:
    """Consumers first, catalogue and its demo data last: the demo nodes are announced once, and an event
    published before notification's queue is bound never reaches it (every mail needs the node)."""
    recorder, smtp_port = await start_recorder()
    services = service_processes(box, smtp_port, replicas, log, background_nice)
    try:
        await asyncio.gather(*(p.start() for name, p in services.items() if name != "catalogue"))
        await services["catalogue"].start()
        await load_demo(Settings(database_url=box.database_url))
        urls = {name: f"http://127.0.0.1:{p.port}" for name, p in services.items()}
        yield System(services, recorder, urls, box.amqp_url)
    finally:
        await asyncio.gather(*(asyncio.to_thread(p.stop) for p in services.values()))
        if recorder.returncode is None:
            recorder.terminate()
            await recorder.wait()


def offering_body(capacity: int) -> dict[str, Any]:
    """The registration bench's offering as a staff `POST /offerings` body (ids are catalogue's)."""
    body = offering("unused", capacity, 0)
    for key in ("offering_id", "revision"):
        body.pop(key)
    body["sessions"] = [{k: v for k, v in s.items() if k != "session_id"} for s in body["sessions"]]
    return {**body, "node_id": NODE}


async def create_offerings(catalogue_url: str, count: int, capacity: int) -> list[str]:
    """Created and published as staff; a few at a time (the catalogue is one process)."""
    async with httpx.AsyncClient(base_url=catalogue_url, headers=STAFF, timeout=30) as client:
        await wait_for_node(client)
        gate = asyncio.Semaphore(8)

        async def one() -> str:
            async with gate:
                created = await retried(client, "/offerings", offering_body(capacity))
                offering_id = str(created.json()["offering_id"])
                await retried(client, f"/offerings/{offering_id}/publish")
                return offering_id

        return list(await asyncio.gather(*(one() for _ in range(count))))


async def retried(
    client: httpx.AsyncClient, path: str, body: Any = None, attempts: int = 5
) -> httpx.Response:
    """POST, again after a 5xx: a Postgres shared with others may refuse a connection for a moment
    ("too many clients"), and a 5xx means nothing was stored."""
    for attempt in range(attempts):
        response = await client.post(path, json=body)
        if response.status_code < 500 or attempt == attempts - 1:
            break
        await asyncio.sleep(0.5 * 2**attempt)
    response.raise_for_status()
    return response


async def wait_for_node(client: httpx.AsyncClient, timeout: float = 60) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while NODE not in (await client.get("/nodes")).text:
        if asyncio.get_running_loop().time() > deadline:
            raise RuntimeError("catalogue did not load its demo nodes")
        await asyncio.sleep(0.2)


async def wait_replicated(database_url: str, offering_ids: list[str], timeout: float = 120) -> None:
    """Until every consumer's schema knows every offering (and notification the node): a request for an
    offering registration has not seen yet would wait, and a mail without its node would be retried."""
    conn = await asyncpg.connect(database_url)
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            known = [
                await conn.fetchval(
                    f"SELECT count(*) FROM {schema}.offerings WHERE offering_id = ANY($1::text[])",
                    offering_ids,
                )
                for schema in REPLICAS
            ]
            node = await conn.fetchval("SELECT count(*) FROM notification.nodes WHERE node_id = $1", NODE)
            if min(known) == len(offering_ids) and node:
                return
            if asyncio.get_running_loop().time() > deadline:
                raise RuntimeError(
                    f"offerings not replicated after {timeout} s: {dict(zip(REPLICAS, known, strict=True))}"
                )
            await asyncio.sleep(0.25)
    finally:
        await conn.close()


def service_queues(amqp_url: str) -> list[str]:
    """The queues the services declared in the sandbox's vhost (exclusive ones, like ours, left out)."""
    vhost = unquote(urlsplit(amqp_url).path[1:])
    listing = subprocess.run(
        ["rabbitmqctl", "-q", "list_queues", "-p", vhost, "name", "exclusive", "--no-table-headers"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    rows = [line.split("\t") for line in listing.splitlines() if "\t" in line]
    # Quorum queues leave the column empty; ours is server-named (amq.gen-…) and exclusive.
    return sorted(
        name for name, exclusive in rows if exclusive.strip() != "true" and not name.startswith("amq.")
    )
