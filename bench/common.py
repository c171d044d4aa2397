"""Shared pieces of the benchmarks: a throw-away vhost and database, service processes, percentiles."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AMQP_BASE = os.environ.get("QTI_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
DB_BASE = os.environ.get("QTI_DATABASE_URL", "postgresql://root@127.0.0.1:5432/qti")


def percentile(values: Sequence[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[index]


@dataclass
class Sandbox:
    amqp_url: str
    database_url: str


@asynccontextmanager
async def sandbox(name: str) -> AsyncIterator[Sandbox]:
    """A fresh vhost and database for one benchmark run, removed afterwards."""
    suffix = f"{name}_{uuid.uuid4().hex[:6]}"
    vhost, database = f"qti_bench_{suffix}", f"qti_bench_{suffix}"
    subprocess.run(["rabbitmqctl", "-q", "add_vhost", vhost], check=True, capture_output=True)
    user = urlsplit(AMQP_BASE).username or "guest"
    subprocess.run(
        ["rabbitmqctl", "-q", "set_permissions", "-p", vhost, user, ".*", ".*", ".*"],
        check=True,
        capture_output=True,
    )
    admin_url = urlunsplit(urlsplit(DB_BASE)._replace(path="/postgres"))
    admin = await asyncpg.connect(admin_url)
    await admin.execute(f'CREATE DATABASE "{database}"')
    try:
        yield Sandbox(
            urlunsplit(urlsplit(AMQP_BASE)._replace(path=f"/{quote(vhost, safe='')}")),
            urlunsplit(urlsplit(DB_BASE)._replace(path=f"/{database}")),
        )
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await admin.close()
        subprocess.run(["rabbitmqctl", "-q", "delete_vhost", vhost], check=False, capture_output=True)


class Processes:
    """Service replicas as OS processes sharing one port (SO_REUSEPORT)."""

    def __init__(self, service: str, replicas: int, env: dict[str, str], port: int) -> None:
        self.service, self.replicas, self.port = service, replicas, port
        self.env = {
            **os.environ,
            **env,
            f"QTI_{service.upper()}_PORT": str(port),
            "QTI_LOG_LEVEL": "WARNING",
            "PYTHONPATH": os.pathsep.join([ROOT, os.path.join(ROOT, "contracts")]),
        }
        self.procs: list[subprocess.Popen[bytes]] = []

    async def start(self) -> None:
        for _ in range(self.replicas):
            self.procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", f"services.{self.service}"],
                    env=self.env,
                    cwd=ROOT,
                    stdout=subprocess.DEVNULL,
                )
            )
            await self.wait_ready()

    async def wait_ready(self, timeout: float = 60) -> None:
        import httpx

        deadline = asyncio.get_running_loop().time() + timeout
        async with httpx.AsyncClient() as client:
            while asyncio.get_running_loop().time() < deadline:
                try:
                    if (await client.get(f"http://127.0.0.1:{self.port}/readyz")).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.2)
        raise RuntimeError(f"{self.service} not ready")

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
