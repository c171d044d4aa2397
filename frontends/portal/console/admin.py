"""Staff accounts from the command line: `python -m frontends.portal.console.admin add|list|remove`.

`qti staff …` (qti_host/cli.py) runs this module; the password arrives on stdin (one line), never as
an argument (it would be visible in the process list). Database: QTI_PORTAL_DATABASE_URL.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import asyncpg

from frontends.portal.console.accounts import AccountProblem, add_account, list_accounts, remove_account
from frontends.portal.console.db import migrate
from frontends.portal.settings import PortalSettings
from qti_runtime.db import ensure_database


async def _connect() -> asyncpg.Connection:
    url = PortalSettings().portal_database_url
    await ensure_database(url)
    conn = await asyncpg.connect(url)
    await migrate(conn)
    return conn


async def run(args: argparse.Namespace, password: str) -> str:
    conn = await _connect()
    try:
        if args.command == "add":
            account = await add_account(conn, args.email, password, args.node)
            where = f"node {account.node_id}" if account.node_id else "all nodes (project lead)"
            return f"staff account {account.email}: {where}"
        if args.command == "remove":
            removed = await remove_account(conn, args.email)
            return f"removed {args.email}" if removed else f"no account {args.email}"
        accounts = await list_accounts(conn)
        return (
            "\n".join(f"{a.email}\t{a.role}\t{a.node_id or 'alle Knoten'}" for a in accounts) or "no accounts"
        )
    finally:
        await conn.close()


def parser() -> argparse.ArgumentParser:
    parse = argparse.ArgumentParser(prog="qti staff")
    commands = parse.add_subparsers(dest="command", required=True)
    add = commands.add_parser("add")
    add.add_argument("email")
    add.add_argument("--node", default=None, help="node id (UUID); without it: the project lead")
    remove = commands.add_parser("remove")
    remove.add_argument("email")
    commands.add_parser("list")
    return parse


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    password = sys.stdin.readline().rstrip("\r\n") if args.command == "add" else ""
    try:
        print(asyncio.run(run(args, password)))
    except AccountProblem as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
