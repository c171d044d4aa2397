"""The system on a three-node RabbitMQ cluster; one node stopped under load and brought back (opt-in).

    python -m bench.cluster [--requests 3000 --rate 100 --offerings 20 --capacity 50]
                            [--stop-node 2 --stop-after 10 --down-seconds 20 --stop-mode kill|app]

Starts three local RabbitMQ nodes of its own (`qti1..3@localhost`, AMQP on 5681-5683, distribution on
25681-25683, data, logs and Erlang cookie in a temporary directory; the shared broker on 5672 is not
touched) and joins them into one cluster. Every service queue is a quorum queue, replicated on all three
nodes (RabbitMQ 3.10 places a new quorum queue on every cluster member); the script checks that and
spreads the queue leaders over the nodes (`rabbitmq-queues rebalance quorum`), so that stopping a node
moves leaders. The four services (2 registration replicas) connect to node 1; offerings with few seats
(no waiting list) are created through catalogue's staff API, then `registration.requested` commands are
published at `--rate` with publisher confirms. After `--stop-after` seconds node `--stop-node` is killed
(SIGKILL of its Erlang VM; `--stop-mode app`: `rabbitmqctl stop_app`), `--down-seconds` later it is
started again and rejoins. A publish that is not confirmed (the leader moving) is sent again with the
same event id, as a real client would: the inboxes must absorb the copies.

Then it checks, from registration's schema, the replies and the SMTP recorder: every request decided
exactly once (one `requests` row, decided, one reply), no request registered twice, no offering over its
capacity (counted rows and counters), exactly one mail per decided request. Results go to
`bench/results/cluster-<time>.json` and `.md`. Needs `rabbitmq-server` (Debian's) and Postgres as for the
tests; about 2-3 minutes. Not part of `make test`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aio_pika
import asyncpg

from bench.common import DB_BASE, ROOT, Sandbox, admin_execute, percentile
from bench.registration_load import request
from bench.system import create_offerings, running_system, wait_replicated
from qti_contracts import make_event
from qti_contracts.topology import FRONTEND_REPLY_PREFIX

SBIN = Path(os.environ.get("QTI_RABBITMQ_SBIN", "/usr/lib/rabbitmq/lib/rabbitmq_server-3.10.8/sbin"))
NODES = (1, 2, 3)
AMQP_PORT, DIST_PORT = 5680, 25680  # + node number


def node_name(n: int) -> str:
    return f"qti{n}@localhost"


def amqp_url(n: int) -> str:
    return f"amqp://guest:guest@127.0.0.1:{AMQP_PORT + n}/"


# ------------------------------------------------------------------------------------------ the cluster


@dataclass
class Cluster:
    """Three RabbitMQ nodes under one temporary directory."""

    base: Path
    procs: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)

    def env(self, n: int) -> dict[str, str]:
        node = self.base / f"n{n}"
        return {
            **os.environ,
            "HOME": str(self.base / "home"),  # .erlang.cookie, shared by nodes and rabbitmqctl
            "RABBITMQ_CONF_ENV_FILE": str(self.base / "rabbitmq-env.conf"),  # not /etc's (node name)
            "RABBITMQ_CONFIG_FILE": str(node / "rabbitmq.conf"),  # not /etc's (its listener is 5672)
            "RABBITMQ_NODENAME": node_name(n),
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(AMQP_PORT + n),
            "RABBITMQ_DIST_PORT": str(DIST_PORT + n),
            "RABBITMQ_MNESIA_BASE": str(node / "mnesia"),
            "RABBITMQ_LOG_BASE": str(node / "log"),
            "RABBITMQ_PID_FILE": str(node / "pid"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.base / "enabled_plugins"),  # none: no management
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "ERL_FLAGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }

    def prepare(self) -> None:
        home = self.base / "home"
        home.mkdir(parents=True)
        cookie = home / ".erlang.cookie"
        cookie.write_text(uuid.uuid4().hex.upper())
        cookie.chmod(0o400)
        (self.base / "rabbitmq-env.conf").write_text("")
        (self.base / "enabled_plugins").write_text("[].\n")
        for n in NODES:
            (self.base / f"n{n}").mkdir()
            (self.base / f"n{n}" / "rabbitmq.conf").write_text(
                f"listeners.tcp.default = 127.0.0.1:{AMQP_PORT + n}\nloopback_users.guest = true\n"
            )

    def ctl(self, n: int, *args: str, tool: str = "rabbitmqctl", timeout: float = 120) -> str:
        result = subprocess.run(
            [str(SBIN / tool), "-n", node_name(n), *args],
            env=self.env(1),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"{tool} {' '.join(args)} on {node_name(n)}: {result.stderr.strip()[-500:]}")
        return result.stdout

    def start(self, n: int) -> None:
        log = (self.base / f"n{n}.out").open("ab")
        self.procs[n] = subprocess.Popen(
            [str(SBIN / "rabbitmq-server")],
            env=self.env(n),
            cwd=self.base,
            stdout=log,
            stderr=log,
            start_new_session=True,  # a process group of its own: `kill` reaches the VM too
        )
        # `wait` waits for the pid file, then for the node to start (await_startup gives up at once on a
        # node that has not registered with epmd yet).
        self.ctl(n, "wait", str(self.base / f"n{n}" / "pid"), "--timeout", "120", timeout=150)

    def form(self) -> None:
        for n in NODES:
            self.start(n)
        for n in NODES[1:]:
            self.ctl(n, "stop_app")
            self.ctl(n, "reset")
            self.ctl(n, "join_cluster", node_name(1))
            self.ctl(n, "start_app")
        self.ctl(1, "await_online_nodes", str(len(NODES)))

    def stop(self, n: int, mode: str) -> None:
        if mode == "app":
            self.ctl(n, "stop_app")
            return
        self.kill(n)  # a crash: no goodbye to the other nodes
        self.procs[n].wait(timeout=30)

    def restart(self, n: int, mode: str) -> None:
        if mode == "app":
            self.ctl(n, "start_app")
        else:
            self.start(n)
        self.ctl(1, "await_online_nodes", str(len(NODES)))

    def quorum_queues(self) -> list[dict[str, Any]]:
        out = self.ctl(1, "list_queues", "name", "type", "leader", "members", "online", "--formatter", "json")
        return [q for q in json.loads(out) if q.get("type") == "quorum"]

    def close(self) -> None:
        for n, proc in self.procs.items():
            if proc.poll() is None:
                with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                    self.ctl(n, "stop", timeout=60)
            self.kill(n)  # whatever is left of it
            proc.wait(timeout=60)

    def kill(self, n: int) -> None:
        """SIGKILL to the node's process group: its launcher script, the Erlang VM and epmd helpers."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.procs[n].pid, signal.SIGKILL)


@asynccontextmanager
async def cluster() -> AsyncIterator[Cluster]:
    found = Cluster(Path(tempfile.mkdtemp(prefix="qti-cluster-")))
    try:
        found.prepare()
        await asyncio.to_thread(found.form)
        yield found
    finally:
        await asyncio.to_thread(found.close)
        shutil.rmtree(found.base, ignore_errors=True)


@asynccontextmanager
async def database() -> AsyncIterator[str]:
    name = f"qti_bench_cluster_{uuid.uuid4().hex[:6]}"
    admin = urlunsplit(urlsplit(DB_BASE)._replace(path="/postgres"))
    await admin_execute(admin, f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit(urlsplit(DB_BASE)._replace(path=f"/{name}"))
    finally:
        await admin_execute(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# ------------------------------------------------------------------------------------------ the load


@dataclass
class Run:
    addresses: dict[str, str] = field(default_factory=dict)  # request (event) id → participant address
    replies: Counter[str] = field(default_factory=Counter)  # request id → replies received
    answers: dict[str, set[str]] = field(default_factory=dict)  # request id → outcome types replied
    sent_at: dict[str, float] = field(default_factory=dict)  # request id → first publish
    latency_ms: dict[str, float] = field(default_factory=dict)  # request id → first reply - first publish
    mails: Counter[str] = field(default_factory=Counter)  # address → mails accepted by SMTP
    resent: int = 0  # publishes sent again after no confirm (same event id)
    resent_ids: set[str] = field(default_factory=set)
    timeline: list[tuple[float, str]] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def note(self, what: str) -> None:
        self.timeline.append((round(time.monotonic() - self.started, 1), what))
        print(f"{self.timeline[-1][0]:7.1f} s  {what}", flush=True)


async def publish(
    exchange: aio_pika.abc.AbstractExchange, reply_to: str, offering: str, n: int, run: Run
) -> None:
    """Until confirmed; a copy the broker did take is absorbed by registration's inbox (same id)."""
    data = request(offering, n)
    event = make_event("registration.requested", data, source="/bench-cluster")
    run.addresses[event.id] = data["participant"]["email"].lower()
    run.sent_at[event.id] = time.monotonic()
    body = event.model_dump_json().encode()
    deadline = time.monotonic() + 180
    while True:
        message = aio_pika.Message(
            body,
            message_id=event.id,
            correlation_id=event.id,
            reply_to=reply_to,
            content_type="application/cloudevents+json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        try:
            await exchange.publish(message, "registration.requested", mandatory=True, timeout=5)
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            run.resent += 1
            run.resent_ids.add(event.id)
            await asyncio.sleep(0.5)


async def offer(
    exchange: aio_pika.abc.AbstractExchange, reply_to: str, ids: list[str], args: Any, run: Run
) -> None:
    started = time.monotonic()
    tasks = []
    for n in range(args.requests):
        await asyncio.sleep(max(0.0, started + n / args.rate - time.monotonic()))
        tasks.append(asyncio.create_task(publish(exchange, reply_to, ids[n % len(ids)], n, run)))
    await asyncio.gather(*tasks)
    run.note(f"all {args.requests} requests published and confirmed ({run.resent} sent again)")


async def node_outage(found: Cluster, args: Any, run: Run) -> None:
    await asyncio.sleep(args.stop_after)
    run.note(f"stopping {node_name(args.stop_node)} ({args.stop_mode})")
    await asyncio.to_thread(found.stop, args.stop_node, args.stop_mode)
    run.note(f"{node_name(args.stop_node)} is down")
    await asyncio.sleep(args.down_seconds)
    run.note(f"starting {node_name(args.stop_node)} again")
    await asyncio.to_thread(found.restart, args.stop_node, args.stop_mode)
    run.note(f"{node_name(args.stop_node)} is back, all {len(NODES)} nodes online")


async def drain(run: Run, timeout: float) -> None:
    """Until every request has a reply and a mail (then a few seconds more, for late duplicates)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(run.replies[i] for i in run.addresses) and all(run.mails[a] for a in run.addresses.values()):
            break
        await asyncio.sleep(0.5)
    await asyncio.sleep(5)
    run.note("drained")


# ------------------------------------------------------------------------------------------ checks


async def checks(database_url: str, run: Run, offering_ids: list[str]) -> dict[str, Any]:
    conn = await asyncpg.connect(database_url)
    try:
        ids = list(run.addresses)
        requests = await conn.fetchrow(
            "SELECT count(*) AS rows, count(*) FILTER (WHERE status = 'decided') AS decided "
            "FROM registration.requests WHERE request_id = ANY($1::text[])",
            ids,
        )
        twice = await conn.fetchval(
            "SELECT count(*) FROM (SELECT offering_id, email FROM registration.registrations "
            "GROUP BY offering_id, email HAVING count(*) > 1) AS d"
        )
        overbooked = await conn.fetch(
            "SELECT o.offering_id, o.capacity, o.confirmed, "
            "count(r.registration_id) FILTER (WHERE r.status = 'confirmed') AS counted "
            "FROM registration.offerings o LEFT JOIN registration.registrations r USING (offering_id) "
            "GROUP BY o.offering_id HAVING count(r.registration_id) FILTER (WHERE r.status = 'confirmed') "
            "> o.capacity OR o.confirmed > o.capacity "
            "OR o.confirmed <> count(r.registration_id) FILTER (WHERE r.status = 'confirmed')"
        )
        seats = await conn.fetchrow(
            "SELECT sum(capacity) AS capacity, sum(confirmed) AS confirmed FROM registration.offerings "
            "WHERE offering_id = ANY($1::text[])",
            offering_ids,
        )
        sent = await conn.fetchval("SELECT count(*) FROM notification.deliveries WHERE status = 'sent'")
    finally:
        await conn.close()
    per_address = Counter(run.mails[a] for a in run.addresses.values())
    return {
        "requests_published": len(ids),
        "requests_stored": requests["rows"],
        "requests_decided": requests["decided"],
        "requests_without_reply": sum(1 for i in ids if not run.replies[i]),
        # A request published again is answered again (registration's `_answer_again`), with the same
        # decision; a second reply to a request published once, or a different answer, would be a fault.
        "requests_answered_twice_though_sent_once": sum(
            1 for i in ids if run.replies[i] > 1 and i not in run.resent_ids
        ),
        "requests_answered_twice_after_a_resend": sum(
            1 for i in ids if run.replies[i] > 1 and i in run.resent_ids
        ),
        "requests_with_different_answers": sum(1 for i in ids if len(run.answers.get(i, ())) > 1),
        "outcomes": dict(Counter(next(iter(a)) for a in run.answers.values() if a)),
        "participants_registered_twice": twice,
        "offerings_over_capacity_or_miscounted": [dict(r) for r in overbooked],
        "seats": {"capacity": seats["capacity"], "confirmed": seats["confirmed"]},
        "mails_per_request": {str(k): v for k, v in sorted(per_address.items())},
        "deliveries_sent": sent,
        "publishes_sent_again": run.resent,
        "outcome_latency_ms": latency(list(run.latency_ms.values())),
    }


def latency(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    return {f"p{p}": round(percentile(values, p), 1) for p in (50, 99)} | {"max": round(max(values), 1)}


def verdict(found: dict[str, Any]) -> list[str]:
    problems = []
    n = found["requests_published"]
    if found["requests_stored"] != n or found["requests_decided"] != n:
        problems.append("not every request stored and decided once")
    if found["requests_without_reply"] or found["requests_answered_twice_though_sent_once"]:
        problems.append("not exactly one reply per request")
    if found["requests_with_different_answers"]:
        problems.append("a request answered with two different decisions")
    if found["participants_registered_twice"]:
        problems.append("a participant registered twice")
    if found["offerings_over_capacity_or_miscounted"]:
        problems.append("an offering over capacity or its counter wrong")
    if set(found["mails_per_request"]) != {"1"}:
        problems.append("not exactly one mail per request")
    return problems


# ------------------------------------------------------------------------------------------ the run


async def read_recorder(stream: asyncio.StreamReader, run: Run) -> None:
    while line := await stream.readline():
        run.mails[line.decode().split(" ", 1)[1].strip().lower()] += 1


async def run_load(system: Any, found: Cluster, ids: list[str], args: Any, run: Run) -> None:
    connection = await aio_pika.connect_robust(amqp_url(1))
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange("qti.events")
        replies = await channel.declare_queue(f"{FRONTEND_REPLY_PREFIX}cluster-{os.getpid()}", exclusive=True)

        async def on_reply(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            event = json.loads(message.body)
            request_id = event["data"]["request_id"]
            run.replies[request_id] += 1
            if request_id in run.sent_at and request_id not in run.latency_ms:
                run.latency_ms[request_id] = (time.monotonic() - run.sent_at[request_id]) * 1000
            run.answers.setdefault(request_id, set()).add(event["type"].rsplit(".", 1)[-1])

        await replies.consume(on_reply, no_ack=True)
        run.note(f"load: {args.requests} requests at {args.rate:g}/s over {len(ids)} offerings")
        await asyncio.gather(offer(exchange, replies.name, ids, args, run), node_outage(found, args, run))
        await drain(run, args.drain_seconds)


async def main(args: Any) -> dict[str, Any]:
    run = Run()
    results: dict[str, Any] = {"started_at": datetime.now(UTC).isoformat(), "options": vars(args)}
    async with cluster() as found, database() as database_url:
        run.note(f"cluster formed: {', '.join(node_name(n) for n in NODES)}")
        log_path = Path(ROOT) / "bench" / "results" / f"cluster-{time.strftime('%Y%m%d-%H%M%S')}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("wb") as log:
            box = Sandbox(amqp_url(1), database_url)
            async with running_system(box, {"registration": 2}, log) as system:
                reader = asyncio.create_task(read_recorder(system.mails, run))
                ids = await create_offerings(system.urls["catalogue"], args.offerings, args.capacity)
                await wait_replicated(database_url, ids)
                await asyncio.to_thread(found.ctl, 1, "rebalance", "quorum", tool="rabbitmq-queues")
                results["queues_before"] = await asyncio.to_thread(found.quorum_queues)
                run.note(f"{len(results['queues_before'])} quorum queues, leaders spread over the nodes")
                await run_load(system, found, ids, args, run)
                results["queues_after"] = await asyncio.to_thread(found.quorum_queues)
                results["checks"] = await checks(database_url, run, ids)
                reader.cancel()
    results["timeline"] = run.timeline
    results["replication"] = replication(results["queues_before"], results["queues_after"])
    results["problems"] = verdict(results["checks"]) + results["replication"]["problems"]
    return results


def replication(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> dict[str, Any]:
    problems = []
    if any(len(q["members"]) != len(NODES) for q in before):
        problems.append("a quorum queue without a replica on every node")
    if any(len(q["online"]) != len(NODES) for q in after):
        problems.append("a quorum queue replica not back online")
    return {
        "queues": len(before),
        "members_per_queue": sorted({len(q["members"]) for q in before}),
        "leaders_before": dict(Counter(q["leader"] for q in before)),
        "leaders_after": dict(Counter(q["leader"] for q in after)),
        "problems": problems,
    }


def report(results: dict[str, Any]) -> str:
    c, r = results["checks"], results["replication"]
    lines = [
        f"qti-net on a three-node RabbitMQ cluster, {results['started_at'][:16].replace('T', ' ')} UTC",
        "",
        f"- {r['queues']} quorum queues, members per queue {r['members_per_queue']}; leaders before "
        f"{r['leaders_before']}, after {r['leaders_after']}",
        *(f"- {t:g} s: {what}" for t, what in results["timeline"]),
        f"- requests published {c['requests_published']}, stored {c['requests_stored']}, decided "
        f"{c['requests_decided']}, without reply {c['requests_without_reply']}; outcomes {c['outcomes']}; "
        f"request → outcome (ms, whole run including the outage) {c['outcome_latency_ms']}",
        f"- publishes sent again after no confirm: {c['publishes_sent_again']}; answered twice after such a "
        f"resend: {c['requests_answered_twice_after_a_resend']}, answered twice though sent once: "
        f"{c['requests_answered_twice_though_sent_once']}, different answers: "
        f"{c['requests_with_different_answers']}",
        f"- participants registered twice: {c['participants_registered_twice']}; seats confirmed "
        f"{c['seats']['confirmed']} of {c['seats']['capacity']}; offerings over capacity or miscounted: "
        f"{len(c['offerings_over_capacity_or_miscounted'])}",
        f"- mails per request (count: requests): {c['mails_per_request']}; "
        f"deliveries sent {c['deliveries_sent']}",
        "",
        "Result: "
        + (
            "nothing lost, nothing doubled, no seat overbooked"
            if not results["problems"]
            else "; ".join(results["problems"])
        ),
    ]
    return "\n".join(lines) + "\n"


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--offerings", type=int, default=20)
    parser.add_argument("--capacity", type=int, default=50, help="seats per offering (no waiting list)")
    parser.add_argument("--stop-node", type=int, choices=NODES[1:], default=2)
    parser.add_argument("--stop-after", type=float, default=10.0, help="seconds into the load")
    parser.add_argument("--down-seconds", type=float, default=20.0)
    parser.add_argument("--stop-mode", choices=("kill", "app"), default="kill")
    parser.add_argument("--drain-seconds", type=float, default=300.0)
    args = parser.parse_args()
    results = asyncio.run(main(args))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    folder = Path(ROOT) / "bench" / "results"
    (folder / f"cluster-{stamp}.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    text = report(results)
    (folder / f"cluster-{stamp}.md").write_text(text)
    print(text)
    raise SystemExit(1 if results["problems"] else 0)


if __name__ == "__main__":
    cli()
