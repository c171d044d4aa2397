"""Test infrastructure: real Postgres databases and RabbitMQ vhosts, one of each per test, cleaned up.

Where the services come from, in order: `QTI_TEST_DATABASE_URL` / `QTI_TEST_AMQP_URL`, then
`QTI_DATABASE_URL` / `QTI_AMQP_URL`, then the local defaults, then testcontainers when a Docker engine
exists. When none is reachable the run fails with a message that says so; it never skips.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from base64 import b64encode
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import aio_pika
import asyncpg

LOCAL_DATABASE_URL = "postgresql://root@127.0.0.1:5432/postgres"
LOCAL_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"


def _reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or default_port), timeout=2):
            return True
    except OSError:
        return False


def _docker_engine() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=20, check=False).returncode == 0


@dataclass
class Backends:
    database_url: str  # points at an admin database (e.g. postgres)
    amqp_url: str  # the vhost in it is not used; each test gets its own
    rabbitmqctl: list[str] | None  # command prefix able to manage vhosts, if any
    management_url: str | None = None


@contextmanager
def backends() -> Iterator[Backends]:
    db_url = (
        os.environ.get("QTI_TEST_DATABASE_URL") or os.environ.get("QTI_DATABASE_URL") or LOCAL_DATABASE_URL
    )
    amqp_url = os.environ.get("QTI_TEST_AMQP_URL") or os.environ.get("QTI_AMQP_URL") or LOCAL_AMQP_URL
    db_ok, amqp_ok = _reachable(db_url, 5432), _reachable(amqp_url, 5672)
    if db_ok and amqp_ok:
        ctl = shutil.which("rabbitmqctl")
        mgmt = os.environ.get("QTI_TEST_RABBIT_MANAGEMENT_URL")
        yield Backends(db_url, amqp_url, [ctl] if ctl else None, mgmt)
        return
    if not _docker_engine():
        missing = [name for name, ok in (("Postgres", db_ok), ("RabbitMQ", amqp_ok)) if not ok]
        raise RuntimeError(
            f"{' and '.join(missing)} not reachable at {db_url} / {amqp_url}, and no Docker engine for "
            "testcontainers. Start them (bash .ci/run does) or set QTI_TEST_DATABASE_URL/QTI_TEST_AMQP_URL."
        )
    from testcontainers.postgres import PostgresContainer
    from testcontainers.rabbitmq import RabbitMqContainer

    with PostgresContainer("postgres:15", driver=None) as pg, RabbitMqContainer("rabbitmq:3.13") as mq:
        params = mq.get_connection_params()
        amqp = f"amqp://guest:guest@{params.host}:{params.port}/"
        container_id = mq.get_wrapped_container().id
        yield Backends(pg.get_connection_url(), amqp, ["docker", "exec", container_id, "rabbitmqctl"])


def with_path(url: str, path: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=path))


class Isolation:
    """Creates and removes per-test databases and vhosts whose names start with the run's prefix."""

    def __init__(self, backends: Backends) -> None:
        self.backends = backends
        self.prefix = f"qtitest_{uuid.uuid4().hex[:8]}"
        self._counter = 0
        self.databases: list[str] = []
        self.vhosts: list[str] = []
        # rabbitmqctl takes about a second a call; vhosts are made ahead and removed behind the tests.
        self._ready_vhosts: queue.Queue[str] = queue.Queue(maxsize=2)
        self._admin = ThreadPoolExecutor(max_workers=2, thread_name_prefix="vhost-admin")
        self._pending: list[Future[None]] = []
        self._closing = threading.Event()
        self._maker = threading.Thread(target=self._make_vhosts_ahead, daemon=True)
        self._maker_started = False
        self._deleted: set[str] = set()
        self.maker_error: BaseException | None = None

    def next_name(self) -> str:
        self._counter += 1
        return f"{self.prefix}_{self._counter}"

    async def create_database(self) -> str:
        name = self.next_name()
        conn = await asyncpg.connect(self.backends.database_url)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        self.databases.append(name)
        return with_path(self.backends.database_url, f"/{name}")

    async def drop_database(self, url: str) -> None:
        name = urlsplit(url).path.lstrip("/")
        conn = await asyncpg.connect(self.backends.database_url)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    def _ctl(self, *args: str) -> None:
        assert self.backends.rabbitmqctl is not None
        subprocess.run([*self.backends.rabbitmqctl, "-q", *args], check=True, capture_output=True, timeout=60)

    def _management(self, method: str, path: str, body: dict[str, Any] | None = None) -> None:
        assert self.backends.management_url is not None
        parts = urlsplit(self.backends.amqp_url)
        auth = b64encode(f"{parts.username}:{parts.password}".encode()).decode()
        request = urllib.request.Request(
            self.backends.management_url.rstrip("/") + path,
            data=json.dumps(body).encode() if body is not None else None,
            method=method,
            headers={"Authorization": f"Basic {auth}", "content-type": "application/json"},
        )
        urllib.request.urlopen(request, timeout=30).read()

    def _vhost_admin(self, action: str, vhost: str) -> None:
        user = urlsplit(self.backends.amqp_url).username or "guest"
        if self.backends.rabbitmqctl:
            if action == "add":
                self._ctl("add_vhost", vhost)
                self._ctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*")
            else:
                self._ctl("delete_vhost", vhost)
        elif self.backends.management_url:
            if action == "add":
                self._management("PUT", f"/api/vhosts/{quote(vhost, safe='')}")
                self._management(
                    "PUT",
                    f"/api/permissions/{quote(vhost, safe='')}/{user}",
                    {"configure": ".*", "write": ".*", "read": ".*"},
                )
            else:
                self._management("DELETE", f"/api/vhosts/{quote(vhost, safe='')}")
        else:
            raise RuntimeError(
                "cannot create a RabbitMQ vhost: no rabbitmqctl on PATH and no QTI_TEST_RABBIT_MANAGEMENT_URL"
            )

    def _make_vhosts_ahead(self) -> None:
        failures = 0
        while not self._closing.is_set():
            name = self.next_name()
            try:
                self._vhost_admin("add", name)
            except (subprocess.SubprocessError, OSError) as exc:
                # e.g. the broker is being restarted by a fault test: try again, give up after a minute
                failures += 1
                self.maker_error = exc
                if failures > 60:
                    return
                time.sleep(1)
                continue
            failures = 0
            self.vhosts.append(name)
            while not self._closing.is_set():
                try:
                    self._ready_vhosts.put(name, timeout=0.5)
                    break
                except queue.Full:
                    continue

    async def create_vhost(self) -> str:
        if not self._maker_started:
            self._maker_started = True
            self._maker.start()
        deadline = time.monotonic() + 120
        while True:
            try:
                name = await asyncio.to_thread(self._ready_vhosts.get, True, 1.0)
                break
            except queue.Empty:
                if not self._maker.is_alive() or time.monotonic() > deadline:
                    raise RuntimeError(f"no RabbitMQ vhost could be created: {self.maker_error!r}") from None
        return with_path(self.backends.amqp_url, f"/{quote(name, safe='')}")

    async def delete_vhost(self, url: str) -> None:
        name = unquote(urlsplit(url).path.lstrip("/"))
        self._pending.append(self._admin.submit(self._vhost_admin, "delete", name))
        self._deleted.add(name)

    async def cleanup_all(self) -> None:
        for name in self.databases:
            conn = await asyncpg.connect(self.backends.database_url)
            try:
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            finally:
                await conn.close()
        self._closing.set()
        if self._maker_started:
            await asyncio.to_thread(self._maker.join, 60)
        for future in self._pending:
            with contextlib.suppress(subprocess.CalledProcessError):
                await asyncio.wrap_future(future)
        self._admin.shutdown()
        for name in set(self.vhosts) - self._deleted:  # vhosts made ahead and never used
            with contextlib.suppress(subprocess.CalledProcessError):  # already gone
                await asyncio.to_thread(self._vhost_admin, "delete", name)


async def get_messages(
    amqp_url: str, queue: str, *, expect: int = 1, timeout: float = 10.0
) -> list[aio_pika.abc.AbstractIncomingMessage]:
    """Collect at least `expect` messages from `queue` (acknowledging them), waiting up to `timeout`."""
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        q = await channel.get_queue(queue, ensure=True)
        received: list[aio_pika.abc.AbstractIncomingMessage] = []
        deadline = asyncio.get_running_loop().time() + timeout
        while len(received) < expect and asyncio.get_running_loop().time() < deadline:
            message = await q.get(fail=False, no_ack=True)
            if message is None:
                await asyncio.sleep(0.05)
                continue
            received.append(message)
        return received
    finally:
        await connection.close()


async def eventually(check: Callable[[], Any], *, timeout: float = 15.0, interval: float = 0.1) -> Any:
    """Await `check()` until it returns a truthy value; raise AssertionError with its last value."""
    deadline = asyncio.get_running_loop().time() + timeout
    last: Any = None
    while True:
        last = check()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last value: {last!r})")
        await asyncio.sleep(interval)


class ServiceProcess:
    """A service replica as a real OS process (`python -m services.<name>`), for replica and fault tests."""

    def __init__(self, service: str, env: dict[str, str], port: int) -> None:
        self.service = service
        self.port = port
        self.env = {**os.environ, **env, f"QTI_{service.upper()}_PORT": str(port), "QTI_LOG_LEVEL": "WARNING"}
        self.process: subprocess.Popen[bytes] | None = None
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the process

    def log_text(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def start(self) -> None:
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        self.env["PYTHONPATH"] = os.pathsep.join([root, os.path.join(root, "contracts")])
        self.process = subprocess.Popen(
            [sys.executable, "-m", f"services.{self.service}"],
            env=self.env,
            cwd=root,
            stdout=subprocess.DEVNULL,
            # A file, not a pipe: a replica that logs a lot during a fault must never block on a full pipe.
            stderr=self.log,
        )

    async def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        url = f"http://127.0.0.1:{self.port}/readyz"
        while asyncio.get_running_loop().time() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                err = self.log_text()
                raise AssertionError(f"{self.service} exited with {self.process.returncode}: {err[-3000:]}")
            try:
                response = await asyncio.to_thread(urllib.request.urlopen, url, None, 2)
                if response.status == 200:
                    return
            except OSError:
                pass
            await asyncio.sleep(0.2)
        raise AssertionError(f"{self.service} on port {self.port} not ready within {timeout}s")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def terminate(self, timeout: float = 20.0) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        return self.process.returncode


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def broker_away(rabbitmqctl: list[str] | None) -> Iterator[Callable[[], None]]:
    """`rabbitmqctl stop_app` now; the returned function (and in any case the exit) runs `start_app` again.

    The broker is shared by every test run on the machine, so it is always started again, even when
    `stop_app` or the test fails or is interrupted meanwhile (`start_app` is tried up to three times).
    """
    assert rabbitmqctl is not None, "rabbitmqctl is needed to restart the broker"
    ctl = [*rabbitmqctl, "-q"]
    started = False

    def start() -> None:
        nonlocal started
        if started:
            return
        for attempt in range(3):
            try:
                subprocess.run([*ctl, "start_app"], check=True, capture_output=True, timeout=120)
                break
            except (subprocess.SubprocessError, OSError):
                if attempt == 2:
                    raise
                time.sleep(2)
        started = True

    try:
        subprocess.run([*ctl, "stop_app"], check=True, capture_output=True, timeout=120)
        yield start
    finally:
        start()


async def run_qti(database_url: str, amqp_url: str, *args: str) -> tuple[int, str]:
    """The real `qti` command line in a subprocess, configured like an operator's shell."""
    env = {
        **os.environ,
        "QTI_DATABASE_URL": database_url,
        "QTI_AMQP_URL": amqp_url,
        "QTI_LOG_LEVEL": "WARNING",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "qti_host.cli",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, output.decode()
