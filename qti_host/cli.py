"""`qti`: the operator command line of qti-net (docs/operations.md).

    qti run                                  everything locally, in the foreground (`make run`)
    qti dead-letters show <service>          peek at <service>.dead-letter with the error headers
    qti dead-letters replay <service>        publish them again to qti.events, then remove them
    qti outbox [<service>]                   backlog, oldest unpublished event, parked rows (--retry-parked)
    qti demo-data                            load the demo catalogue (python -m devtools.demo)
    qti reporting rebuild                    rebuild reporting's projections from its event store
    qti forget-person <email>                every service forgets a person (reporting keeps aggregates)
    qti procfile                             print the processes of `qti run` as a Procfile
    qti staff add|list|disable|reset-password  staff accounts of the console (qti_host/staff.py)

Configuration comes from the `QTI_*` environment variables (qti_runtime.settings.Settings). What it
knows of the services it reads from their definitions (`qti_host.services`); the mail sink and the demo
data are development tools (`devtools`), not part of any service.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any, TypeVar

import httpx
import typer

from qti_contracts.topology import SERVICES
from qti_host import ops as host_ops
from qti_host.procfile import ProcessSpec, Supervisor, procfile_text
from qti_host.services import definitions, module_available, runnable_module
from qti_host.staff import staff_app
from qti_runtime import ops
from qti_runtime.settings import Settings

T = TypeVar("T")

app = typer.Typer(
    name="qti",
    help="Operate qti-net: run it locally, inspect and replay dead letters, check outboxes, privacy.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
dead_letters_app = typer.Typer(help="Inspect and replay a service's dead-letter queue.", no_args_is_help=True)
reporting_app = typer.Typer(help="Reporting maintenance.", no_args_is_help=True)
app.add_typer(dead_letters_app, name="dead-letters")
app.add_typer(reporting_app, name="reporting")
app.add_typer(staff_app, name="staff")

MAIL_SINK_HTTP_PORT = 8025
DEMO_MODULE = "devtools.demo"
SINK_MODULE = "devtools.mail_sink"
READY_TIMEOUT_SECONDS = 180.0

ServiceArg = Annotated[str, typer.Argument(help="Service name, e.g. registration.", metavar="SERVICE")]


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code)


def _run(coro: Coroutine[Any, Any, T]) -> T:
    try:
        return asyncio.run(coro)
    except ops.OpsError as exc:
        raise _fail(str(exc)) from None


def _env_flag(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    return value.strip().lower() not in {"0", "false", "no", "off"}


# `qti run`'s default replicas: the configuration `make bench` measures (docs/performance.md), so a
# new user gets the benchmarked speed. Registration decides the seats: two replicas keep one core busy
# deciding while the other waits for Postgres (the compose file's default too).
DEFAULT_REPLICAS = {"registration": 2}


def _replicas(service: str) -> int:
    name = f"{service.upper()}_REPLICAS"
    default = str(DEFAULT_REPLICAS.get(service, 1))
    raw = os.environ.get(name, default).strip() or default
    try:
        count = int(raw)
    except ValueError:
        raise _fail(f"{name} must be a whole number, not {raw!r}") from None
    if not 0 <= count <= 32:
        raise _fail(f"{name} must be between 0 and 32, not {count}")
    return count


# --------------------------------------------------------------------------------------------------
# qti run
# --------------------------------------------------------------------------------------------------


def _local_host(settings: Settings) -> str:
    return "127.0.0.1" if settings.http_host in {"0.0.0.0", "", "::"} else settings.http_host


def _process_specs(settings: Settings, *, mail_sink: bool) -> tuple[list[ProcessSpec], list[str]]:
    """The processes of a local run, and the services that are not installed (skipped)."""
    python = sys.executable
    specs: list[ProcessSpec] = []
    missing: list[str] = []
    if mail_sink:
        if module_available(SINK_MODULE):
            smtp_port = os.environ.get("QTI_SMTP_PORT", "1025")
            http_port = os.environ.get("QTI_MAIL_SINK_HTTP_PORT", str(MAIL_SINK_HTTP_PORT))
            folder = os.environ.get("QTI_MAIL_SINK_FOLDER", "var/mail")
            argv = [python, "-m", SINK_MODULE, "--smtp-port", smtp_port, "--http-port", http_port]
            specs.append(ProcessSpec("mail-sink", [*argv, "--folder", folder]))
        else:
            missing.append("mail-sink")
    installed = {definition.name for definition in definitions()}
    for service in SERVICES:
        if service not in installed:
            missing.append(service)
            continue
        count = _replicas(service)
        for index in range(1, count + 1):
            name = service if count == 1 else f"{service}.{index}"
            argv = [python, "-m", runnable_module(service)]
            specs.append(ProcessSpec(name, argv, env={"QTI_REPLICA": str(index)}))
    if module_available("frontends.portal.__main__"):  # the reference frontend (docs/portal.md)
        specs.append(ProcessSpec("portal", [python, "-m", "frontends.portal"]))
    return specs, missing


def _child_env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("QTI_SMTP_HOST", "127.0.0.1")
    env.setdefault("QTI_SMTP_PORT", "1025")
    env.setdefault("QTI_STAFF_TOKEN", settings.staff_token.get_secret_value())
    env.setdefault("QTI_LOG_JSON", "0")  # readable logs in a terminal; containers keep JSON
    # `qti run` loads the demo data itself once catalogue is ready (and reports the result).
    env["QTI_DEMO_DATA"] = "0"
    return env


async def _check_backends(settings: Settings) -> None:
    import aio_pika

    from qti_runtime.db import ensure_database

    try:
        await ensure_database(settings.database_url)
    except Exception as exc:
        raise ops.OpsError(
            f"Postgres is not reachable at {ops.mask_url(settings.database_url)} ({exc}). Start it (e.g."
            " `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`)"
            " or set QTI_DATABASE_URL."
        ) from exc
    try:
        connection = await aio_pika.connect(settings.amqp_url, timeout=10)
        await connection.close()
    except Exception as exc:
        raise ops.OpsError(
            f"RabbitMQ is not reachable at {ops.mask_url(settings.amqp_url)} ({exc}). Start it, e.g. "
            "`rabbitmq-server -detached`, or set QTI_AMQP_URL."
        ) from exc


async def _ready(client: httpx.AsyncClient, url: str) -> bool:
    try:
        response = await client.get(url, timeout=2.0)
    except httpx.HTTPError:
        return False
    return response.status_code == 200


async def _wait_ready(urls: dict[str, str], timeout: float) -> list[str]:
    """Wait until every `/readyz` answers 200; returns those that did not within `timeout`."""
    pending = dict(urls)
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as client:
        while pending and time.monotonic() < deadline:
            for name, url in list(pending.items()):
                if await _ready(client, url):
                    del pending[name]
            if pending:
                await asyncio.sleep(0.5)
    return sorted(pending)


def _banner(settings: Settings, services: list[str], mail_sink: bool, *, demo: bool = False) -> str:
    host = _local_host(settings)
    lines = ["", "qti-net is ready:"]
    for service in services:
        base = f"http://{host}:{settings.port_of(service)}"
        lines.append(f"  {service:<13} {base:<24} OpenAPI: {base}/docs")
    if "reporting" in services:
        lines.append(f"  {'dashboard':<13} http://{host}:{settings.reporting_port}/dashboard")
    lines.append(f"  {'portal':<13} {settings.portal_url}/")
    if demo and settings.env != "production":  # devtools.demo prints the demo accounts' passwords above
        accounts = "leitung@qti-demo.de, gotha@qti-demo.de (passwords: demo-data above)"
        lines.append(f"  {'console':<13} {settings.portal_url}/verwaltung  demo: {accounts}")
    if mail_sink:
        port = os.environ.get("QTI_MAIL_SINK_HTTP_PORT", str(MAIL_SINK_HTTP_PORT))
        lines.append(f"  {'mail sink':<13} http://127.0.0.1:{port}/")
    lines.append(f"  {'broker':<13} {ops.mask_url(settings.amqp_url)}")
    lines.append(f"  {'database':<13} {ops.mask_url(settings.database_url)}")
    lines.append("Press Ctrl-C to stop.")
    return "\n".join(lines)


async def _startup(
    supervisor: Supervisor, settings: Settings, services: list[str], *, demo: bool, mail_sink: bool
) -> None:
    host = _local_host(settings)
    urls = {s: f"http://{host}:{settings.port_of(s)}/readyz" for s in services}
    timeout = float(os.environ.get("QTI_RUN_READY_TIMEOUT", READY_TIMEOUT_SECONDS))
    # Demo data is announced once, as events: every consumer must have its queue bound before that,
    # or it would never hear of the demo nodes and offerings. So wait for all services first.
    not_ready = await _wait_ready(urls, timeout)
    if not_ready:
        supervisor.say(f"not ready after {timeout:g}s: {', '.join(not_ready)} (see their output above)")
    if demo and "catalogue" in services:
        if "catalogue" in not_ready:
            supervisor.say("catalogue did not become ready: demo data not loaded")
        elif not module_available(DEMO_MODULE):
            supervisor.say(f"{DEMO_MODULE} is not installed: no demo data loaded")
        else:
            await supervisor.start(
                ProcessSpec("demo-data", [sys.executable, "-m", DEMO_MODULE], oneshot=True)
            )
            code = await supervisor.wait_oneshot("demo-data")
            supervisor.say("demo data loaded" if code == 0 else f"loading demo data failed (exit {code})")
    supervisor.say(_banner(settings, services, mail_sink, demo=demo))


async def run_local(settings: Settings) -> int:
    mail_sink = _env_flag("QTI_MAIL_SINK", True)
    demo = _env_flag("QTI_DEMO_DATA", True)
    specs, missing = _process_specs(settings, mail_sink=mail_sink)
    await _check_backends(settings)
    await asyncio.to_thread(Path("var").mkdir, exist_ok=True)
    supervisor = Supervisor(
        base_env=_child_env(settings),
        grace_seconds=settings.shutdown_grace_seconds + 5,
        name_width=max([len("demo-data"), *(len(spec.name) for spec in specs)]),
    )
    if missing:
        supervisor.say(f"not installed, not started: {', '.join(missing)}")
    started = [s for s in SERVICES if s not in missing and _replicas(s) > 0]

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    code = 0
    startup: asyncio.Task[None] | None = None
    try:
        for spec in specs:
            await supervisor.start(spec)
        startup = asyncio.create_task(
            _startup(
                supervisor, settings, started, demo=demo, mail_sink=mail_sink and "mail-sink" not in missing
            )
        )
        stopped = asyncio.create_task(stop.wait())
        exited = asyncio.create_task(supervisor.wait())
        done, _ = await asyncio.wait({stopped, exited}, return_when=asyncio.FIRST_COMPLETED)
        if exited in done and exited.result():
            name = exited.result()
            supervisor.say(f"{name} exited with code {supervisor.returncode(name)}: stopping everything")
            code = 1
        for task in (stopped, exited):
            task.cancel()
    finally:
        if startup is not None:
            startup.cancel()
        await supervisor.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    supervisor.say("all processes stopped")
    return code


@app.command()
def run() -> None:
    """Start the mail sink and all four services (replicas from <SERVICE>_REPLICAS), load demo data,
    print the URLs, and stay in the foreground until Ctrl-C or SIGTERM."""
    raise typer.Exit(_run(run_local(Settings())))


@app.command()
def procfile() -> None:
    """Print the processes that `qti run` starts as a Procfile (for honcho or foreman)."""
    specs, _missing = _process_specs(Settings(), mail_sink=_env_flag("QTI_MAIL_SINK", True))
    typer.echo(procfile_text(specs), nl=False)


# --------------------------------------------------------------------------------------------------
# Dead letters and outbox
# --------------------------------------------------------------------------------------------------


@dead_letters_app.command("show")
def dead_letters_show(
    service: ServiceArg,
    limit: Annotated[int, typer.Option(min=1, help="At most this many messages.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document instead of text.")] = False,
) -> None:
    """List the messages in <service>.dead-letter with their error headers (they stay in the queue)."""
    listing = _run(ops.show_dead_letters(Settings().amqp_url, service, limit=limit))
    if as_json:
        document = {"queue": listing.queue, "total": listing.total}
        typer.echo(json.dumps({**document, "messages": [m.as_dict() for m in listing.messages]}, indent=2))
        return
    typer.echo(f"{listing.queue}: {listing.total} message(s)")
    for info in listing.messages:
        typer.echo(
            f"- {info.message_id}  type={info.event_type}  routing_key={info.routing_key}"
            f"  queue={info.original_queue}  replays={info.replays}"
        )
        typer.echo(f"    kind={info.error_kind}  at={info.dead_lettered_at}")
        typer.echo(f"    error: {info.error}")
    if listing.total > len(listing.messages):
        typer.echo(f"({listing.total - len(listing.messages)} more not shown; use --limit)")


@dead_letters_app.command("replay")
def dead_letters_replay(
    service: ServiceArg,
    message_id: Annotated[
        list[str] | None, typer.Option("--id", help="Replay only this message id (repeatable).")
    ] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Replay at most this many.")] = None,
    to_queue: Annotated[
        bool,
        typer.Option("--to-queue", help="Send each message only to the queue it failed in."),
    ] = False,
) -> None:
    """Publish dead letters again to qti.events with their original routing key (publisher confirms),
    without the x-qti-error headers, and remove them from the dead-letter queue."""
    settings = Settings()
    forgotten = _run(ops.forgotten_digests(settings.database_url, service))
    result = _run(
        ops.replay_dead_letters(
            settings.amqp_url,
            service,
            limit=limit,
            message_ids=message_id or (),
            to_original_queue=to_queue,
            forgotten=frozenset(forgotten),
            secret=settings.link_secret.get_secret_value(),
        )
    )
    for info in result.replayed:
        typer.echo(f"replayed {info.message_id} ({info.event_type}) -> {info.routing_key}")
    for info in result.dropped:
        typer.echo(f"deleted {info.message_id}: about a person forgotten on request (qti forget-person)")
    for info, reason in result.skipped:
        typer.echo(f"kept {info.message_id}: {reason}")
    typer.echo(
        f"{result.queue}: {len(result.replayed)} replayed, {len(result.skipped)} kept"
        + (f", {len(result.dropped)} deleted (forgotten persons)" if result.dropped else "")
    )
    if result.skipped:
        raise typer.Exit(2)


@app.command()
def outbox(
    service: Annotated[str | None, typer.Argument(help="One service; all four if omitted.")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    retry_parked: Annotated[
        bool, typer.Option("--retry-parked", help="Give parked rows back to the relay (all, or --id).")
    ] = False,
    row_id: Annotated[
        list[int] | None, typer.Option("--id", help="With --retry-parked: only this outbox row (repeatable).")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many parked rows per service.")] = 50,
) -> None:
    """Outbox backlog per service: rows waiting, age of the oldest, rows that failed to publish, and the
    parked rows (refused by the broker or the AMQP encoder) with their errors."""
    services = [service] if service else list(SERVICES)
    settings = Settings()
    if row_id and not retry_parked:
        raise _fail("--id only goes with --retry-parked")
    if retry_parked:
        counts = _run(ops.retry_parked(settings.database_url, services, ids=row_id or ()))
        for name, count in counts.items():
            typer.echo(f"{name:<13} {count} parked row(s) given back to the relay")
        return
    found = _run(ops.outbox_status(settings.database_url, services, parked_limit=limit))
    if as_json:
        typer.echo(json.dumps([s.as_dict() for s in found], indent=2))
        return
    for status in found:
        if not status.exists:
            typer.echo(f"{status.service:<13} no outbox table (service never started on this database)")
            continue
        line = (
            f"{status.service:<13} backlog={status.backlog}  oldest={status.oldest_age_seconds:.1f}s"
            f"  failing={status.failing}  parked={status.parked}"
        )
        typer.echo(line + (f"  last_error={status.last_error}" if status.last_error else ""))
        for row in status.parked_rows:
            typer.echo(
                f"  parked id={row.id}  event={row.event_id}"
                f"  {row.exchange or '(default)'} -> {row.routing_key}"
                f"  refusals={row.refusals}  at={row.parked_at}"
            )
            typer.echo(f"    error: {row.error}")
        if status.parked > len(status.parked_rows):
            hidden = status.parked - len(status.parked_rows)
            typer.echo(f"  ({hidden} more parked rows not shown; use --limit)")
        if status.parked:
            typer.echo(f"  send them again: qti outbox {status.service} --retry-parked [--id ID]")


# --------------------------------------------------------------------------------------------------
# Hooks into the services
# --------------------------------------------------------------------------------------------------


@app.command("demo-data")
def demo_data() -> None:
    """Load the demo data (the five QTI nodes and their offerings) through the catalogue."""
    if not module_available(DEMO_MODULE):
        raise _fail(f"{DEMO_MODULE} is not installed")
    code = subprocess.run([sys.executable, "-m", DEMO_MODULE], check=False).returncode
    raise typer.Exit(code)


@reporting_app.command("rebuild")
def reporting_rebuild() -> None:
    """Rebuild reporting's projections (reporting's maintenance command `rebuild`)."""
    count = _run(host_ops.run_maintenance(Settings().database_url, "reporting", "rebuild"))
    typer.echo(f"reporting rebuilt ({count} processed)")


@app.command("forget-person")
def forget_person(
    email: Annotated[str, typer.Argument(help="E-mail address of the person.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Every service forgets the person's data (its definition's privacy hook); their messages are
    removed from every dead-letter queue and qti.unrouted, and a replay of dead letters skips them."""
    if not yes and not typer.confirm(f"Remove all personal data of {email}?", default=False):
        raise typer.Exit(1)
    settings = Settings()
    # The ids first: registration anonymises the address they are found by.
    keys = _run(host_ops.person_keys(settings.database_url, email))
    secret = settings.link_secret.get_secret_value()
    parked = _run(ops.record_forgotten(settings.database_url, keys, secret))
    results = _run(host_ops.forget_person(settings.database_url, email))
    for service, count in results.items():
        typer.echo(f"{service:<13} " + ("no privacy hook" if count is None else f"{count} record(s) removed"))
    for service, count in parked.items():
        if count:
            typer.echo(f"{service}.outbox  {count} parked row(s) removed")
    for queue, removed in _run(ops.forget_in_queues(settings.amqp_url, keys)).items():
        typer.echo(f"{queue}  " + ("no such queue" if removed is None else f"{removed} message(s) removed"))
    if all(count is None for count in results.values()):
        raise _fail("no service has a privacy hook installed")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
