"""Shared pieces of the benchmarks: a throw-away vhost and database, service processes, percentiles."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import IO
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AMQP_BASE = os.environ.get("QTI_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
DB_BASE = os.environ.get("QTI_DATABASE_URL", "postgresql://root@127.0.0.1:5432/qti")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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
    try:
        await admin_execute(admin_url, f'CREATE DATABASE "{database}"')
        yield Sandbox(
            urlunsplit(urlsplit(AMQP_BASE)._replace(path=f"/{quote(vhost, safe='')}")),
            urlunsplit(urlsplit(DB_BASE)._replace(path=f"/{database}")),
        )
    finally:
        try:
            # A connection of its own: one kept from the start is gone if Postgres restarted meanwhile.
            await admin_execute(admin_url, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        finally:
            subprocess.run(["rabbitmqctl", "-q", "delete_vhost", vhost], check=False, capture_output=True)


async def admin_execute(admin_url: str, sql: str) -> None:
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(sql)
    finally:
        await admin.close()


class ProcessExited(RuntimeError):
    pass


class Processes:
    """Service replicas as OS processes sharing one port (SO_REUSEPORT)."""

    def __init__(
        self, service: str, replicas: int, env: dict[str, str], port: int, log: IO[bytes] | None = None
    ) -> None:
        self.service, self.replicas, self.port = service, replicas, port
        # Where the replicas' stdout and stderr go (default: stdout discarded, stderr inherited).
        self.log = log
        self.env = {
            **os.environ,
            **env,
            f"QTI_{service.upper()}_PORT": str(port),
            "QTI_LOG_LEVEL": "WARNING",
            "PYTHONPATH": os.pathsep.join([ROOT, os.path.join(ROOT, "contracts")]),
        }
        self.procs: list[subprocess.Popen[bytes]] = []

    async def start(self, attempts: int = 3) -> None:
        for _ in range(self.replicas):
            for attempt in range(attempts):
                self.procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", f"services.{self.service}"],
                        env=self.env,
                        cwd=ROOT,
                        stdout=self.log or subprocess.DEVNULL,
                        stderr=self.log,
                    )
                )
                try:
                    await self.wait_ready()
                    break
                except ProcessExited:
                    # e.g. "too many clients" from a Postgres shared with tests: a moment later it starts.
                    self.procs.pop()
                    if attempt == attempts - 1:
                        raise
                    await asyncio.sleep(2)

    async def wait_ready(self, timeout: float = 60) -> None:
        import httpx

        deadline = asyncio.get_running_loop().time() + timeout
        async with httpx.AsyncClient() as client:
            while asyncio.get_running_loop().time() < deadline:
                if exited := [p.returncode for p in self.procs if p.poll() is not None]:
                    raise ProcessExited(f"{self.service} exited on start (exit code {exited[0]})")
                try:
                    if (await client.get(f"http://127.0.0.1:{self.port}/readyz")).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.2)
        raise RuntimeError(f"{self.service} not ready")

    @property
    def pids(self) -> list[int]:
        return [proc.pid for proc in self.procs]

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
