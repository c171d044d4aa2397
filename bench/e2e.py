"""End-to-end load: the whole system on this machine, measured from the outside, plus the machine's limits.

    python -m bench [--rate N] [--duration S] [--offerings N] [--registration-replicas N] [--quick] …

1. Machine limits (bench.limits), in a vhost and database of their own, before anything else runs.
2. All four services as processes (2 registration replicas by default) in a fresh vhost and database,
   mails to a light SMTP recorder (bench.mail_recorder); offerings created and published via catalogue's
   staff API, with seats for every request, so every request is confirmed and mailed.
3. Phases of `registration.requested` publishes (confirmed, persistent, `reply_to` our reply queue):
   a short warm-up, a fixed rate (default 150/s for 30 s: latency), then flat out (default 60 s:
   throughput). Flat out is a closed loop of `--window` undecided requests, so the queues stay bounded
   and the figure is the system's rate, not the rate at which a backlog was queued.
4. Per phase: decided/s (outcomes received in the window), mails/s (accepted by SMTP in the window),
   latency request published → outcome received and → mail accepted, reporting lag (last outcome →
   reporting's `requests` projection holds every decision), backlogs per stage (queues, outboxes,
   unsent mails), busy Postgres sessions per service, Postgres commits and CPU per component.

Writes e2e-<time>.json, .md and .log (the services' output) to `--out` (default bench/results/).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import time
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import aio_pika
import asyncpg
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

from bench import limits as machine
from bench.common import ROOT, Processes, percentile, sandbox
from bench.cpu import CpuMeter, pids_named
from bench.registration_load import request
from bench.report import caveats, render, write_results
from bench.system import System, create_offerings, running_system, service_queues, wait_replicated
from qti_contracts import FRONTEND_REPLY_PREFIX, make_event

console = Console()
SCHEMAS = ("catalogue", "registration", "notification", "reporting")


@dataclass(frozen=True)
class Phase:
    name: str
    rate: float  # requests/s offered; 0 = flat out
    seconds: float
    reported: bool = True


@dataclass
class Options:
    phases: list[Phase]
    offerings: int = 200
    capacity: int = 10_000
    replicas: dict[str, int] = field(default_factory=lambda: {"registration": 2, "notification": 1})
    window: int = 400
    limit_seconds: float = 5.0
    drain_seconds: float = 180.0
    # QTI_CPU_NICE of notification and reporting; None: their defaults (notification 0, reporting 10:
    # figures yield the CPU to answers and mails, as the compose file's cpu_shares and k8s' requests do).
    background_nice: int | None = None
    out: Path = Path(ROOT) / "bench" / "results"


# ------------------------------------------------------------------------------------------ tracking


@dataclass(slots=True)
class Request:
    phase: int
    sent: float  # time.monotonic() just before the publish
    decided: float = 0.0  # outcome received on the reply queue
    outcome: str = ""  # confirmed | waitlisted | rejected
    mailed: float = 0.0  # first mail to its participant accepted by SMTP (recorder's monotonic clock)


@dataclass
class Tracker:
    """Every request of the run by id and by participant address; every mail and outcome time."""

    requests: dict[str, Request] = field(default_factory=dict)
    by_address: dict[str, Request] = field(default_factory=dict)
    mail_times: list[float] = field(default_factory=list)
    decided_times: list[float] = field(default_factory=list)
    unmatched_mails: int = 0
    duplicate_replies: int = 0
    publish_errors: int = 0
    # Flat out: a slot per undecided request of the running phase; its outcome gives the slot back.
    slots: asyncio.Semaphore | None = None
    slot_phase: int = -1

    def decide(self, request_id: str, type_: str, at: float) -> None:
        found = self.requests.get(request_id)
        if found is None or found.decided:
            self.duplicate_replies += 1
            return
        found.decided, found.outcome = at, type_.rsplit(".", 1)[-1]
        self.decided_times.append(at)
        if self.slots is not None and found.phase == self.slot_phase:
            self.slots.release()

    def mail(self, address: str, at: float) -> None:
        self.mail_times.append(at)
        found = self.by_address.get(address.lower())
        if found is None or found.mailed:
            self.unmatched_mails += 1
        else:
            found.mailed = at

    def of_phase(self, index: int) -> list[Request]:
        return [r for r in self.requests.values() if r.phase == index]


async def read_mails(stream: asyncio.StreamReader, tracker: Tracker) -> None:
    while line := await stream.readline():
        stamp, address = line.decode().split(" ", 1)
        tracker.mail(address.strip(), float(stamp))


# ------------------------------------------------------------------------------------------ load


class Load:
    """Publishes realistic requests (the registration bench's) round-robin over the offerings."""

    def __init__(
        self, exchange: aio_pika.abc.AbstractExchange, reply_to: str, offerings: list[str], tracker: Tracker
    ) -> None:
        self.exchange, self.reply_to, self.offerings, self.tracker = exchange, reply_to, offerings, tracker
        self.count = 0
        self.tasks: set[asyncio.Task[None]] = set()
        self.failure = ""

    def spawn(self, phase: int) -> None:
        task = asyncio.create_task(self.publish(phase))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def publish(self, phase: int) -> None:
        n = self.count = self.count + 1
        data = request(self.offerings[n % len(self.offerings)], n)
        event = make_event("registration.requested", data, source="/bench")
        message = aio_pika.Message(
            event.model_dump_json().encode(),
            message_id=event.id,
            correlation_id=event.id,
            reply_to=self.reply_to,
            content_type="application/cloudevents+json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        tracked = Request(phase, time.monotonic())
        self.tracker.requests[event.id] = tracked
        self.tracker.by_address[data["participant"]["email"].lower()] = tracked
        try:
            await self.exchange.publish(message, "registration.requested", mandatory=True, timeout=10)
        except Exception as error:  # not confirmed: the broker restarted, a timeout …
            # Figures measured across a broker outage say nothing about the system: the phase stops
            # (`check`) and the run ends, to be run again.
            self.tracker.publish_errors += 1
            self.failure = self.failure or f"a publish was not confirmed: {error!r}"
            del self.tracker.requests[event.id]
            if self.tracker.slots is not None and phase == self.tracker.slot_phase:
                self.tracker.slots.release()  # so the flat-out loop gets to `check` at once

    def check(self) -> None:
        if self.failure:
            raise RuntimeError(f"{self.failure} (broker restarted? run again)")

    async def fixed_rate(self, phase: int, rate: float, seconds: float) -> None:
        """Open loop: request i at start + i/rate, whether or not earlier ones are answered."""
        started = time.monotonic()
        sent = 0
        while (now := time.monotonic()) < started + seconds:
            due = int((now - started) * rate) + 1
            self.check()
            for _ in range(due - sent):
                self.spawn(phase)
            sent = max(sent, due)
            await asyncio.sleep(max(0.0, started + sent / rate - time.monotonic()))
        await self.settle()

    async def flat_out(self, phase: int, window: int, seconds: float) -> None:
        """Closed loop: `window` undecided requests at any time, each outcome lets the next one go."""
        self.tracker.slots, self.tracker.slot_phase = asyncio.Semaphore(window), phase
        deadline = time.monotonic() + seconds
        try:
            while (left := deadline - time.monotonic()) > 0:
                # asyncio.timeout, not wait_for: on 3.11 wait_for loses a cancellation (Ctrl-C) that
                # arrives as the semaphore is acquired, and this one is acquired hundreds of times a second.
                try:
                    async with asyncio.timeout(left):
                        await self.tracker.slots.acquire()
                except TimeoutError:
                    break
                self.check()
                self.spawn(phase)
        finally:
            self.tracker.slots, self.tracker.slot_phase = None, -1
        await self.settle()

    async def settle(self) -> None:
        if self.tasks:
            await asyncio.gather(*self.tasks)


# ------------------------------------------------------------------------------------------ observers


@dataclass
class Probe:
    """Reads the sandbox database: reporting's progress, the commit counter, the backends' pids (a pool
    of two, so the reporting watcher and the occasional queries never wait for each other)."""

    pool: asyncpg.Pool
    reported: list[tuple[float, int]] = field(default_factory=list)  # (monotonic, decisions reported)

    async def watch_reporting(self) -> None:
        sql = "SELECT count(*) FROM reporting.requests WHERE outcome IS NOT NULL"
        while True:
            # A failed sample (e.g. too many clients on a shared Postgres) is simply taken again.
            with contextlib.suppress(OSError, asyncpg.PostgresError):
                self.reported.append((time.monotonic(), int(await self.pool.fetchval(sql))))
            await asyncio.sleep(0.25)

    def reported_at(self, count: int) -> float | None:
        return next((t for t, n in self.reported if n >= count), None)

    async def now(self) -> datetime:
        stamp: datetime = await self.pool.fetchval("SELECT now()")
        return stamp

    async def commits(self) -> int:
        sql = "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        return int(await self.pool.fetchval(sql))

    async def postgres_pids(self) -> list[int]:
        """Backends of this database and Postgres' own workers (WAL writer, checkpointer …); not the
        backends of other databases (other users of this Postgres)."""
        rows = await self.pool.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() OR datname IS NULL"
        )
        return [int(r["pid"]) for r in rows]

    async def busy_sessions(self) -> list[str]:
        """Each service's sessions that are running a statement (with what they wait for: a lock, I/O;
        nothing = CPU) or hold a transaction open while the service works (the service's own time)."""
        rows = await self.pool.fetch(
            "SELECT application_name AS service, CASE WHEN state = 'active'"
            " THEN coalesce(wait_event_type || ':' || wait_event, 'running') ELSE state END AS doing"
            " FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            " AND state IN ('active', 'idle in transaction')"
        )
        return [f"{r['service']}: {r['doing']}" for r in rows]

    async def stages(self) -> dict[str, int]:
        outboxes = ", ".join(f"(SELECT count(*) FROM {s}.outbox)" for s in SCHEMAS)
        unsent = "(SELECT count(*) FROM notification.deliveries WHERE status IN ('pending', 'sending'))"
        row = await self.pool.fetchrow(f"SELECT {outboxes}, {unsent}")
        assert row is not None
        names = [f"{s} outbox" for s in SCHEMAS] + ["notification: mails not sent"]
        return dict(zip(names, map(int, row), strict=True))

    async def inbox_since(self, since: datetime) -> tuple[int, int]:
        """(deliveries handled, distinct events) by every consumer since `since`: per decided request,
        the broker's work (each distinct event is one publish, each inbox row one delivery)."""
        union = " UNION ALL ".join(f"SELECT event_id FROM {s}.inbox WHERE received_at >= $1" for s in SCHEMAS)
        sql = f"SELECT count(*), count(DISTINCT event_id) FROM ({union}) AS handled"
        row = await self.pool.fetchrow(sql, since)
        assert row is not None
        return int(row[0]), int(row[1])


@dataclass
class Backlogs:
    """Work waiting at each stage: messages ready in each service queue (what the consumers have not
    fetched yet), rows in each outbox (not yet published) and mails not yet sent. The one that grows
    names the stage that is behind."""

    channel: aio_pika.abc.AbstractChannel
    queues: list[str]
    db: Probe
    peak: dict[str, int] = field(default_factory=dict)
    # Busy database sessions per (service, what they wait for), summed over samples: where time goes.
    sessions: Counter[str] = field(default_factory=Counter)
    samples: int = 0

    async def sample(self) -> dict[str, int]:
        depths = await self.db.stages()
        for name in self.queues:
            queue = await self.channel.declare_queue(name, passive=True)
            depths[name] = int(queue.declaration_result.message_count or 0)
        for name, depth in depths.items():
            self.peak[name] = max(self.peak.get(name, 0), depth)
        return depths

    async def at_end(self) -> dict[str, dict[str, Any]]:
        busy = {k: round(v / max(1, self.samples), 2) for k, v in self.sessions.most_common(8)}
        return {
            "queue_backlog_end": await self.sample(),
            "queue_backlog_peak": self.peak,
            "busy_db_sessions_avg": busy,
        }

    async def watch(self) -> None:
        self.peak, self.sessions, self.samples = {}, Counter(), 0
        while True:
            await self.sample()
            self.sessions.update(await self.db.busy_sessions())
            self.samples += 1
            await asyncio.sleep(1)


def pids_of(processes: Processes) -> Callable[[], list[int]]:
    return lambda: processes.pids


def cpu_meter(system: System, postgres: list[int]) -> CpuMeter:
    groups = {name: pids_of(processes) for name, processes in system.services.items()}
    groups["rabbitmq"] = lambda: pids_named("beam.smp")
    groups["postgres"] = lambda: postgres
    groups["load generator"] = lambda: [os.getpid()]
    groups["smtp recorder"] = lambda: [system.recorder.pid]
    return CpuMeter(groups)


# ------------------------------------------------------------------------------------------ figures


def cpu_ms_per_registration(meter: CpuMeter, figures: dict[str, Any]) -> dict[str, float]:
    """CPU ms per decided request and component, from the phase's start until it was drained, mailed and
    reported: the work a registration costs end to end, whatever else shares the cores."""
    decided = max(1, figures["requests"] - figures["undecided"])
    per = {name: round(1000 * seconds / decided, 2) for name, seconds in meter.used_seconds().items()}
    return dict(sorted(per.items(), key=lambda item: -item[1])) | {"total": round(sum(per.values()), 2)}


def window_rate(times: list[float], start: float, end: float) -> float:
    """Events per second in [start, end) of an ascending list of times (outcomes and mails arrive so)."""
    return (bisect_left(times, end) - bisect_left(times, start)) / max(end - start, 1e-9)


def lowest_rate(times: Iterable[float], start: float, end: float, span: int = 5) -> float:
    """The lowest rate over any `span` consecutive seconds of the window: 'sustained' means this one."""
    seconds = max(1, int(end - start))
    buckets = [0] * seconds
    for t in times:
        if start <= t < start + seconds:
            buckets[int(t - start)] += 1
    span = min(span, seconds)
    return min(sum(buckets[i : i + span]) for i in range(seconds - span + 1)) / span


def latency(values: list[float]) -> dict[str, float | None]:
    """Percentiles and maximum in ms; None without samples (JSON has no NaN)."""
    if not values:
        return dict.fromkeys(("p50_ms", "p95_ms", "p99_ms", "max_ms"))
    figures: dict[str, float | None] = {f"p{p}_ms": round(percentile(values, p), 1) for p in (50, 95, 99)}
    return figures | {"max_ms": round(max(values), 1)}


def phase_figures(phase: Phase, index: int, start: float, end: float, tracker: Tracker) -> dict[str, Any]:
    mine = tracker.of_phase(index)
    decided = [r for r in mine if r.decided]
    mailed = [r for r in decided if r.mailed]
    return {
        "phase": phase.name,
        "offered": "flat out" if not phase.rate else phase.rate,
        "seconds": round(end - start, 1),
        "requests": len(mine),
        "offered_per_s": round(len(mine) / (end - start), 1),
        "decided_per_s": round(window_rate(tracker.decided_times, start, end), 1),
        "decided_lowest_5s_per_s": round(lowest_rate(tracker.decided_times, start, end), 1),
        "mails_per_s": round(window_rate(tracker.mail_times, start, end), 1),
        "mails_lowest_5s_per_s": round(lowest_rate(tracker.mail_times, start, end), 1),
        "outcomes": dict(Counter(r.outcome for r in decided)),
        "undecided": len(mine) - len(decided),
        "unmailed": sum(1 for r in decided if r.outcome == "confirmed" and not r.mailed),
        "outcome_latency": latency([(r.decided - r.sent) * 1000 for r in decided]),
        "mail_latency": latency([(r.mailed - r.sent) * 1000 for r in mailed]),
        "decided_by_second": count_by_second(tracker.decided_times, start, end),
        "outcome_max_ms_by_second": max_by_second(
            [(r.sent - start, (r.decided - r.sent) * 1000) for r in decided]
        ),
    }


def count_by_second(times: Iterable[float], start: float, end: float) -> list[int]:
    """Outcomes received in each second of the window: where a dip in the rate lies."""
    counts = [0] * max(1, int(end - start))
    for t in times:
        if start <= t < start + len(counts):
            counts[int(t - start)] += 1
    return counts


def max_by_second(samples: Iterable[tuple[float, float]]) -> list[float]:
    """The slowest outcome of the requests sent in each second: one stall, or a spread tail."""
    worst: dict[int, float] = {}
    for offset, value in samples:
        second = max(0, int(offset))
        worst[second] = max(worst.get(second, 0.0), value)
    return [round(worst.get(second, 0.0), 1) for second in range(max(worst, default=-1) + 1)]


# ------------------------------------------------------------------------------------------ the run


async def drain(tracker: Tracker, index: int, timeout: float, system: System) -> dict[str, float | None]:
    """Wait until the phase's requests are decided and the confirmed ones mailed; seconds each took."""
    started = time.monotonic()
    took: dict[str, float | None] = {"decided_after_s": None, "mailed_after_s": None}
    while time.monotonic() - started < timeout:
        system.check_alive()
        mine = tracker.of_phase(index)
        if took["decided_after_s"] is None and all(r.decided for r in mine):
            took["decided_after_s"] = round(time.monotonic() - started, 2)
        if all(r.mailed for r in mine if r.outcome == "confirmed") and took["decided_after_s"] is not None:
            took["mailed_after_s"] = round(time.monotonic() - started, 2)
            break
        await asyncio.sleep(0.1)
    return took


async def reporting_lag(tracker: Tracker, db: Probe, timeout: float) -> float | None:
    """Seconds from the last outcome received until reporting's figures count every decision so far."""
    target = len(tracker.decided_times)
    last = max(tracker.decided_times, default=time.monotonic())
    deadline = time.monotonic() + timeout
    while (reached := db.reported_at(target)) is None and time.monotonic() < deadline:  # noqa: ASYNC110 - polls
        await asyncio.sleep(0.25)
    return None if reached is None else round(max(0.0, reached - last), 2)


@dataclass
class Runner:
    """What every phase uses: the load, the observers and the progress display."""

    options: Options
    load: Load
    db: Probe
    system: System
    backlogs: Backlogs
    progress: Progress

    async def phase(self, phase: Phase, index: int) -> dict[str, Any]:
        """Load for the phase's seconds, then drain it; the figures of its window."""
        meter = cpu_meter(self.system, await self.db.postgres_pids())
        commits_before = await self.db.commits()
        task = self.progress.add_task(phase.name, total=phase.seconds, figures="")
        start = time.monotonic()
        meter.start(start)
        ticker = asyncio.create_task(tick(self.progress, task, phase.seconds, self.load))
        watcher = asyncio.create_task(self.backlogs.watch())
        try:
            await self.offer(phase, index)
            self.load.check()
            self.system.check_alive()
            end = start + phase.seconds  # outcomes after the window belong to draining, not to the rate
            window: dict[str, Any] = {
                "cpu_percent_of_a_core": meter.stop(time.monotonic()),
                "postgres_commits_per_s": round((await self.db.commits() - commits_before) / phase.seconds),
            }
            watcher.cancel()
            window |= await self.backlogs.at_end()
            self.progress.update(task, description=f"{phase.name}: draining")
            window |= await drain(self.load.tracker, index, self.options.drain_seconds, self.system)
            window["reporting_lag_s"] = await reporting_lag(
                self.load.tracker, self.db, self.options.drain_seconds
            )
        finally:
            ticker.cancel()
            watcher.cancel()
            self.progress.update(task, visible=False)
        figures = phase_figures(phase, index, start, end, self.load.tracker) | window
        # Counted until the phase is drained and reported: busy backends report their commits to the
        # statistics about once a second, so a count over the window alone is rough.
        commits = await self.db.commits() - commits_before
        figures["postgres_commits_per_registration"] = round(commits / max(1, figures["requests"]), 1)
        figures["cpu_ms_per_registration"] = cpu_ms_per_registration(meter, figures)
        if mailed_after := figures["mailed_after_s"]:
            after = window_rate(self.load.tracker.mail_times, end, end + mailed_after)
            figures["mails_per_s_after_window"] = round(after, 1)
        return figures

    async def offer(self, phase: Phase, index: int) -> None:
        if phase.rate:
            await self.load.fixed_rate(index, phase.rate, phase.seconds)
        else:
            await self.load.flat_out(index, self.options.window, phase.seconds)


async def tick(progress: Progress, task: TaskID, seconds: float, load: Load) -> None:
    """The bar: time through the phase; the text: requests sent, and rates over the last 3 s."""
    start, sent_before = time.monotonic(), load.count
    while True:
        now = time.monotonic()
        decided = window_rate(load.tracker.decided_times, now - 3, now)
        mails = window_rate(load.tracker.mail_times, now - 3, now)
        figures = f"sent {load.count - sent_before:,} · decided {decided:,.0f}/s · mails {mails:,.0f}/s"
        progress.update(task, completed=min(now - start, seconds), figures=figures)
        await asyncio.sleep(0.5)


def new_progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[figures]}"),
        TimeRemainingColumn(),
        console=console,
        refresh_per_second=4,
    )


async def load_phases(
    system: System, db: Probe, tracker: Tracker, ids: list[str], options: Options
) -> list[dict[str, Any]]:
    connection = await aio_pika.connect_robust(system.amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange("qti.events")
        # Registration answers only frontends' reply queues (`frontend.reply.…` or direct reply-to).
        replies = await channel.declare_queue(f"{FRONTEND_REPLY_PREFIX}bench-{os.getpid()}", exclusive=True)

        async def on_reply(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            event = json.loads(message.body)
            tracker.decide(event["data"]["request_id"], event["type"], time.monotonic())

        await replies.consume(on_reply, no_ack=True)
        # Its own channel: a failed passive declare would close the publishing channel.
        queues = await asyncio.to_thread(service_queues, system.amqp_url)
        backlogs = Backlogs(await connection.channel(), queues, db)
        phases = []
        with new_progress() as progress:
            runner = Runner(
                options, Load(exchange, replies.name, ids, tracker), db, system, backlogs, progress
            )
            for index, phase in enumerate(options.phases):
                figures = await runner.phase(phase, index)
                if phase.reported:
                    phases.append(figures)
                    progress.console.print(summary_line(figures))
    return phases


def summary_line(f: dict[str, Any]) -> str:
    lat = f["outcome_latency"]
    return (
        f"{f['phase']}: {f['decided_per_s']:,.0f} decided/s, {f['mails_per_s']:,.0f} mails/s, "
        f"request → outcome p50/p99 {lat['p50_ms']}/{lat['p99_ms']} ms, "
        f"reporting lag {f['reporting_lag_s']} s"
    )


async def measure_system(options: Options, log: IO[bytes]) -> dict[str, Any]:
    """Steps 2-4 of the module's docstring, in a sandbox removed afterwards (also on Ctrl-C)."""
    tracker = Tracker()
    async with (
        sandbox("e2e") as box,
        running_system(box, options.replicas, log, background_nice=options.background_nice) as system,
    ):
        db = Probe(await asyncpg.create_pool(box.database_url, min_size=2, max_size=2))
        background = [
            asyncio.create_task(db.watch_reporting()),
            asyncio.create_task(read_mails(system.mails, tracker)),
        ]
        try:
            console.print(f"creating and publishing {options.offerings} offerings …")
            ids = await create_offerings(system.urls["catalogue"], options.offerings, options.capacity)
            await wait_replicated(box.database_url, ids)
            since = await db.now()
            phases = await load_phases(system, db, tracker, ids, options)
            deliveries, events = await db.inbox_since(since)
        finally:
            for task in background:
                task.cancel()
            await db.pool.close()
    decided = max(1, len(tracker.decided_times))
    return {
        "phases": phases,
        "per_registration": {
            # Each distinct event is one publish, plus the reply; each inbox row one delivery, plus the reply.
            "publishes": round((events + decided) / decided, 2),
            "deliveries": round((deliveries + decided) / decided, 2),
        },
        "publish_errors": tracker.publish_errors,
        "duplicate_replies": tracker.duplicate_replies,
        "unmatched_mails": tracker.unmatched_mails,
    }


async def run(options: Options) -> dict[str, Any]:
    started_at = datetime.now(UTC)
    stamp = started_at.strftime("%Y%m%d-%H%M%S")
    options.out.mkdir(parents=True, exist_ok=True)
    console.print(f"measuring the machine's limits ({options.limit_seconds:g} s each) …")
    limits = await machine.measure(options.limit_seconds)
    machine.print_limits(limits, console)
    log_path = options.out / f"e2e-{stamp}.log"
    with log_path.open("wb") as log:
        try:
            measured = await measure_system(options, log)
        except RuntimeError as error:  # a service did not start, offerings not replicated …
            raise SystemExit(f"e2e benchmark failed: {error}; the services' output: {log_path}") from error
    results = {
        "started_at": started_at.isoformat(),
        "machine": {"cores": os.cpu_count(), "load_average_after": os.getloadavg()},
        "options": options_dict(options),
        "limits": limits.as_dict(),
        **measured,
        "services_log": str(log_path),
    }
    results["services_log_warnings"] = warnings_in(log_path)
    paths = write_results(results, options.out, stamp)
    console.print(render(results))
    for note in caveats(results):
        console.print(note)
    console.print(f"written: {', '.join(str(p) for p in paths)}")
    return results


def warnings_in(log_path: Path) -> int:
    """Log lines at warning level or above (JSON logs; a traceback counts once per line, so roughly)."""
    levels = ('"level": "warning"', '"level": "error"', '"level": "critical"', "Traceback")
    with log_path.open(errors="replace") as log:
        return sum(1 for line in log if any(level in line for level in levels))


def options_dict(options: Options) -> dict[str, Any]:
    return {
        "phases": [vars(p) for p in options.phases],
        "offerings": options.offerings,
        "capacity": options.capacity,
        "replicas": options.replicas,
        "background_nice": options.background_nice,
        "window": options.window,
        "limit_seconds": options.limit_seconds,
    }


# ------------------------------------------------------------------------------------------ command line


def parse(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__.split("\n\n")[0],
        epilog="Per service: python -m bench registration|catalogue|notification|reporting|limits [--help]",
    )
    parser.add_argument(
        "--rate", type=float, help="one phase at this rate (0 = flat out) instead of the default two"
    )
    parser.add_argument(
        "--duration",
        type=float,
        help="seconds of that phase (default 60; without --rate: of the flat-out phase)",
    )
    parser.add_argument("--latency-rate", type=float, default=150.0, help="rate of the default latency phase")
    parser.add_argument("--latency-duration", type=float, default=30.0)
    parser.add_argument("--offerings", type=int, default=200)
    parser.add_argument("--capacity", type=int, default=10_000, help="seats per offering")
    parser.add_argument("--registration-replicas", type=int, default=2)
    parser.add_argument("--notification-replicas", type=int, default=1)
    parser.add_argument(
        "--background-nice",
        type=int,
        default=None,
        help="QTI_CPU_NICE of notification and reporting (default: theirs, 0 and 10)",
    )
    parser.add_argument("--window", type=int, default=400, help="undecided requests at a time when flat out")
    parser.add_argument("--limit-seconds", type=float, default=5.0, help="per machine-limit measurement")
    parser.add_argument("--out", type=Path, default=Path(ROOT) / "bench" / "results")
    parser.add_argument("--quick", action="store_true", help="smoke run: about 10 s of load, 40 offerings")
    args = parser.parse_args(argv)
    return options_from(args)


def options_from(args: argparse.Namespace) -> Options:
    if args.quick:
        phases = [
            Phase("warm-up", 50, 1, reported=False),
            Phase(f"{args.latency_rate:g}/s", args.latency_rate, 4),
            Phase("flat out", 0, 5),
        ]
        args.offerings, args.limit_seconds = min(args.offerings, 40), min(args.limit_seconds, 1.0)
    elif args.rate is not None:
        name = f"{args.rate:g}/s" if args.rate else "flat out"
        phases = [Phase("warm-up", 50, 3, reported=False), Phase(name, args.rate, args.duration or 60)]
    else:
        phases = [
            Phase("warm-up", 50, 3, reported=False),
            Phase(f"{args.latency_rate:g}/s", args.latency_rate, args.latency_duration),
            Phase("flat out", 0, args.duration or 60),
        ]
    return Options(
        phases=phases,
        offerings=args.offerings,
        capacity=args.capacity,
        replicas={"registration": args.registration_replicas, "notification": args.notification_replicas},
        window=args.window,
        limit_seconds=args.limit_seconds,
        background_nice=args.background_nice,
        drain_seconds=30.0 if args.quick else 180.0,
        out=args.out,
    )


async def main(argv: list[str] | None = None) -> None:
    options = parse(argv)
    # SIGTERM like Ctrl-C: cancel, so every `finally` stops the processes and drops vhost and database.
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    await run(options)
