"""`qti staff`: staff accounts of the console, kept by the catalogue (its staff directory).

    qti staff add EMAIL (--node NODE_ID | --all) [--password-stdin]   a node's staff, or the project lead
    qti staff list                                                    every account (never a password)
    qti staff disable EMAIL                                           the account can no longer sign in
    qti staff reset-password EMAIL [--password-stdin]                 a new password; ends any lockout

The commands write through the catalogue's own code (`services.catalogue.staff_accounts`) into its
schema, with the database of `QTI_DATABASE_URL`. The password is asked twice without echo, or read as
one line from standard input with `--password-stdin` (for scripts); it is never an argument, so it
stays out of shell histories and process lists.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar
from uuid import UUID

import asyncpg
import typer

from qti_host.ops import with_service_db
from qti_runtime.db import Database
from qti_runtime.ops import OpsError
from qti_runtime.settings import Settings
from services.catalogue import staff_accounts, staff_store
from services.catalogue.handlers import CatalogueError, Invalid
from services.catalogue.staff_rules import StaffAccount, is_locked

T = TypeVar("T")

staff_app = typer.Typer(
    help="Staff accounts of the console (/verwaltung), kept by the catalogue.", no_args_is_help=True
)

EmailArg = Annotated[str, typer.Argument(help="E-mail address: the account's sign-in name.")]
PasswordStdin = Annotated[
    bool, typer.Option("--password-stdin", help="Read the password as one line from standard input.")
]
NO_SCHEMA = (
    "the catalogue's schema has no staff accounts yet: start the catalogue once (it applies its "
    "migrations, e.g. `make run`), then try again"
)


def _fail(message: str) -> typer.Exit:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(1)


def _refusal(exc: CatalogueError) -> str:
    if isinstance(exc, Invalid):
        return "; ".join(f"{p.field}: {p.message}" for p in exc.problems)
    return exc.message


def _on_catalogue(action: Callable[[Database], Awaitable[T]]) -> T:
    """Run `action` with the catalogue's database; refusals become a message and exit code 1."""

    async def run() -> Any:
        return await with_service_db(Settings().database_url, "catalogue", action)

    try:
        result: T = asyncio.run(run())
    except CatalogueError as exc:
        raise _fail(_refusal(exc)) from None
    except asyncpg.UndefinedTableError:
        raise _fail(NO_SCHEMA) from None
    except OpsError as exc:
        raise _fail(str(exc)) from None
    return result


def _password(from_stdin: bool) -> str:
    if from_stdin:
        line = sys.stdin.readline()
        if not line:
            raise _fail("--password-stdin: standard input is empty")
        return line.rstrip("\r\n")
    text: str = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    return text


def _describe(account: StaffAccount, now: datetime) -> str:
    role = "project lead (all nodes)" if account.node_id is None else f"node staff of {account.node_id}"
    state = "disabled" if account.disabled else "locked" if is_locked(account.lockout, now) else "active"
    return f"{account.email:<40} {role:<58} {state}"


@staff_app.command("add")
def add(
    email: EmailArg,
    node: Annotated[str | None, typer.Option("--node", help="Node id: staff of this node only.")] = None,
    all_nodes: Annotated[bool, typer.Option("--all", help="The project lead: every node, reports.")] = False,
    password_stdin: PasswordStdin = False,
) -> None:
    """Create an account: node staff (--node NODE_ID) or the project lead (--all)."""
    if (node is None) == (not all_nodes):
        raise _fail("give exactly one of --node NODE_ID or --all")
    try:
        node_id = UUID(node) if node is not None else None
    except ValueError:
        raise _fail(f"--node needs a node id (a UUID, see GET /nodes), not {node!r}") from None
    password = _password(password_stdin)
    now = datetime.now(UTC)

    def create(db: Database) -> Awaitable[StaffAccount]:
        return staff_accounts.create_account(db, email, password, node_id=node_id, now=now)

    account = _on_catalogue(create)
    typer.echo(f"created {_describe(account, now).rstrip()}  (account {account.account_id})")


@staff_app.command("list")
def list_accounts() -> None:
    """Every account: address, role and node, state (active, locked, disabled)."""

    async def fetch(db: Database) -> list[StaffAccount]:
        async with db.pool.acquire() as conn:
            return await staff_store.list_accounts(conn)

    accounts = _on_catalogue(fetch)
    now = datetime.now(UTC)
    for account in accounts:
        typer.echo(_describe(account, now))
    typer.echo(f"{len(accounts)} account(s)")


@staff_app.command("disable")
def disable(email: EmailArg) -> None:
    """Disable an account: it can no longer sign in or act; its audit entries stay."""
    now = datetime.now(UTC)
    account = _on_catalogue(lambda db: staff_accounts.disable_account(db, email, now))
    typer.echo(f"disabled {account.email}")


@staff_app.command("reset-password")
def reset_password(email: EmailArg, password_stdin: PasswordStdin = False) -> None:
    """Set a new password (asked twice, or one line from stdin); failed attempts and a lock are cleared."""
    password = _password(password_stdin)
    account = _on_catalogue(lambda db: staff_accounts.reset_password(db, email, password))
    typer.echo(f"new password set for {account.email}")
