"""Composition of one service process: database, migrations, broker, consumers, outbox relay, HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from functools import partial
from pathlib import Path

import uvicorn
from fastapi import APIRouter, FastAPI
from faststream.middlewares import AckPolicy
from faststream.rabbit import RabbitBroker
from faststream.rabbit.annotations import RabbitMessage

from qti_runtime import metrics
from qti_runtime.bodylimit import BodyLimit, LargeBodyRoute
from qti_runtime.broker import (
    QueueSpec,
    create_broker,
    dead_letter_bounds,
    dead_letter_rabbit_queue,
    declare_service_topology,
    publish_outbox_row,
    unrouted_bounds,
)
from qti_runtime.consumer import Consumer, Subscription
from qti_runtime.db import Database
from qti_runtime.http import install_problem_handlers, operations_router
from qti_runtime.logging import configure_logging, get_logger
from qti_runtime.migrations import migrate
from qti_runtime.outbox import OutboxRelay
from qti_runtime.settings import Settings
from qti_runtime.tracing import configure_tracing

log = get_logger(__name__)

BackgroundJob = Callable[[], Awaitable[None]]
# A job that ran this long before failing restarts after the shortest back-off again.
JOB_HEALTHY_SECONDS = 30.0


class ServiceRuntime:
    """Owns the connections and long-running tasks of one service replica."""

    def __init__(
        self,
        name: str,
        settings: Settings,
        *,
        migrations: Path | None = None,
        subscriptions: Sequence[Subscription] = (),
        extra_queues: Sequence[QueueSpec] = (),
        prefetch: int | None = None,
    ) -> None:
        self.name = name
        self.settings = settings
        self.migrations = migrations
        self.db = Database(
            settings.database_url, name, min_size=settings.db_pool_min, max_size=settings.db_pool_max
        )
        self.broker: RabbitBroker = create_broker(settings, name, prefetch=prefetch)
        self.subscriptions: list[Subscription] = []
        self.extra_queues = list(extra_queues)
        self.relay: OutboxRelay | None = None
        self._jobs: list[tuple[str, BackgroundJob]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self.started = False
        for subscription in subscriptions:
            self.add_subscription(subscription)

    def add_subscription(self, subscription: Subscription) -> None:
        """Consume a queue with the given handlers; call before `start()`."""
        self.subscriptions.append(subscription)
        consumer = Consumer(
            self.broker,
            self.name,
            subscription,
            delivery_limit=subscription.spec.delivery_limit,
            transient_retry_seconds=self.settings.transient_retry_seconds,
        )

        async def on_message(message: RabbitMessage) -> None:
            await consumer.process(message)

        self.broker.subscriber(
            subscription.spec.rabbit_queue(),
            exchange=subscription.spec.exchange,
            ack_policy=AckPolicy.MANUAL,
            no_reply=True,  # answers to reply_to are outcome events sent through the outbox, not returns
            decoder=_message_itself,  # the consumer decodes the envelope; hand it the message as it came
            title=subscription.title or f"{subscription.spec.name}:consume",
            description=subscription.description or f"Handles {', '.join(sorted(subscription.handlers))}.",
        )(on_message)

    def add_job(self, name: str, job: BackgroundJob) -> None:
        """A long-running coroutine, restarted with back-off if it fails, stopped on shutdown."""
        self._jobs.append((name, job))

    async def start(self) -> None:
        configure_logging(self.name, self.settings.log_level, self.settings.log_json)
        configure_tracing(self.name, self.settings.otel_exporter)
        self.settings.check_production()  # raises, naming every default secret, before connecting anything
        await self.db.connect()
        async with self.db.pool.acquire() as conn:
            await migrate(conn, self.name, self.migrations)
        await self.broker.connect()
        specs = [s.spec for s in self.subscriptions] + self.extra_queues
        # In production the definitions made the shared exchanges; the service's user may not configure them.
        await declare_service_topology(
            self.broker,
            self.name,
            specs,
            shared_exist=self.settings.env == "production",
            dead_letter_bounds=dead_letter_bounds(self.settings),
            unrouted_bounds=unrouted_bounds(self.settings),
        )
        self.relay = OutboxRelay(
            self.db.pool,
            self.name,
            partial(publish_outbox_row, self.broker, app_id=self.name),
            batch_size=self.settings.outbox_batch_size,
            poll_seconds=self.settings.outbox_poll_seconds,
            service=self.name,
            park_after=self.settings.outbox_park_after,
        )
        await self.relay.start()
        await self.broker.start()
        for name, job in [*self._jobs, ("metrics-sampler", self._sample_metrics)]:
            self._tasks.append(asyncio.create_task(self._supervise(name, job), name=name))
        self.started = True
        log.info("service.started", service=self.name)

    async def stop(self) -> None:
        """Drain: stop taking messages, let in-flight ones finish, flush the outbox, then disconnect."""
        if not self.started:
            return
        self.started = False
        grace = self.settings.shutdown_grace_seconds
        for subscriber in self.broker.subscribers:
            with contextlib.suppress(Exception):
                await subscriber.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self.relay is not None:
            await self.relay.stop(grace_seconds=grace)
        with contextlib.suppress(Exception):
            await self.broker.stop()
        await self.db.close()
        log.info("service.stopped", service=self.name)

    async def _supervise(self, name: str, job: BackgroundJob) -> None:
        backoff = 1.0
        while True:
            started = time.monotonic()
            try:
                await job()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("job.failed", job=name, error=repr(exc))
                if time.monotonic() - started > JOB_HEALTHY_SECONDS:
                    backoff = 1.0  # it ran fine for a while: this is a new outage, not a crash loop
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)

    async def _sample_metrics(self) -> None:
        while True:
            if self.relay is not None:
                with contextlib.suppress(Exception):
                    backlog, age = await self.relay.backlog()
                    metrics.OUTBOX_BACKLOG.labels(self.name).set(backlog)
                    metrics.OUTBOX_OLDEST_AGE.labels(self.name).set(age)
            with contextlib.suppress(Exception):
                dlq = await self.broker.declare_queue(
                    dead_letter_rabbit_queue(self.name, dead_letter_bounds(self.settings))
                )
                depth = (await dlq.declare()).message_count  # a passive re-declare reports the depth
                metrics.DEAD_LETTER_DEPTH.labels(self.name).set(depth or 0)
            await asyncio.sleep(5)

    async def readiness(self) -> dict[str, bool]:
        checks = {
            "database": await self.db.ping(),
            "broker": self.started and await self.broker.ping(timeout=1.0),
            "consumers": self.started and all(s.running for s in self.broker.subscribers),
            "outbox_relay": self.relay is not None and self.relay.running,
        }
        metrics.READY.labels(self.name).set(1 if all(checks.values()) else 0)
        return checks

    def create_app(
        self,
        routers: Sequence[APIRouter] = (),
        *,
        title: str,
        version: str = "1.0.0",
        large_body_routes: Sequence[LargeBodyRoute] = (),
    ) -> FastAPI:
        """The service's HTTP app; `large_body_routes` may take `http_max_staff_body_bytes`."""

        @contextlib.asynccontextmanager
        async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
            await self.start()
            try:
                yield
            finally:
                await self.stop()

        app = FastAPI(title=title, version=version, lifespan=lifespan)
        install_problem_handlers(app)
        app.add_middleware(
            BodyLimit,
            max_bytes=self.settings.http_max_body_bytes,
            large_routes=large_body_routes,
            large_max_bytes=self.settings.http_max_staff_body_bytes,
        )
        app.include_router(operations_router(self.readiness))
        for router in routers:
            app.include_router(router)
        app.state.runtime = self
        return app


async def _message_itself(message: RabbitMessage) -> RabbitMessage:
    return message


def serve(app: FastAPI, host: str, port: int, *, grace_seconds: float = 15.0, nice: int = 0) -> None:
    """Run the app; replicas on one machine share the port (SO_REUSEPORT) and the kernel spreads load.

    `nice` lowers the process's CPU priority: see `Settings.cpu_nice`.
    """
    lower_cpu_priority(nice)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    config = uvicorn.Config(
        app,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=int(grace_seconds) or None,
        # libuv's transports in C: 6 % less CPU per registration across the services (issue 19,
        # docs/performance.md). Named, not "auto", so every deployment runs the loop that was measured.
        loop="uvloop",
    )
    server = uvicorn.Server(config)
    if threading.current_thread() is threading.main_thread():
        # uvicorn drains on SIGTERM/SIGINT and then raises the signal again under the handler that was
        # installed before it; with the default one the process would die of the signal (exit -15) after a
        # clean drain. Under this handler a drained replica exits 0, and a signal before uvicorn has taken
        # over (nothing started yet) exits 0 as well.
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, _exit_after_drain)
    server.run(sockets=[sock])


def lower_cpu_priority(nice: int) -> None:
    """Set this process's nice value to `nice` unless it is already higher (never raises priority)."""
    if nice > os.getpriority(os.PRIO_PROCESS, 0):
        os.setpriority(os.PRIO_PROCESS, 0, nice)


def _exit_after_drain(_signum: int, _frame: object) -> None:
    raise SystemExit(0)
