"""Catalogue's adapter for the purge command `qti forget-person <email>` (`qti_runtime.ops`).

Catalogue keeps no participant's data. The one person it may know is a node's contact person (staff,
entered through `POST /nodes` / `PATCH /nodes/{id}`): `forget_person` clears the contact name, e-mail
address and telephone number of every node whose contact e-mail address is the given one (ignoring
case and surrounding blanks) and returns how many nodes it changed. The contact person is not part of
`catalogue.node.*` events, so no other service holds a copy and no event is needed.

The staff directory knows staff by their e-mail address (`staff_accounts`, and `staff_audit` as the
actor's address). For that address `forget_person` disables the account, removes its password hash and
replaces the address in the account and in its audit entries by `geloescht-<account id>@invalid`; the
entries themselves stay (what was done, when, by which account id).

Its schema (`migrations/*.sql`) holds:

* `nodes`: the QTI offices (name, town, county, host organisation, postal address, description, contact);
* `offerings` and `sessions`: what staff publish (titles, descriptions, places, dates, seats);
* `staff_accounts` / `staff_audit`: staff console accounts (address, argon2id hash, role, node) and
  the log of their actions;
* `occupancy`: seat counters per offering from registration events (numbers only, no registration ids);
* `outbox` / `inbox`: catalogue's own events (offerings, nodes) and the ids of events it handled.

The registration events catalogue consumes are reduced to their seat counters (`occupancy`) in the
handler. If a later change stores anything else about a person here, this hook must remove it.
"""

from __future__ import annotations

import asyncpg

from qti_runtime.db import Database
from services.catalogue.staff_rules import normalise_email


async def forget_person(db: Database, email: str) -> int:
    """Clear the contact person of the nodes whose contact e-mail address is `email`, and pseudonymise
    the staff account with that address (and its audit entries); returns the rows changed."""
    async with db.transaction() as conn:
        status = await conn.execute(
            "UPDATE nodes SET contact_name = NULL, contact_email = NULL, contact_phone = NULL,"
            " updated_at = now() WHERE lower(contact_email) = lower(btrim($1))",
            email,
        )
        return int(status.split()[-1]) + await _forget_staff(conn, email)


async def _forget_staff(conn: asyncpg.Connection, email: str) -> int:
    account_id = await conn.fetchval(
        "UPDATE staff_accounts SET email = 'geloescht-' || account_id || '@invalid', password_hash = '',"
        " disabled_at = coalesce(disabled_at, now()) WHERE email = $1 RETURNING account_id",
        normalise_email(email),
    )
    if account_id is None:
        return 0
    status = await conn.execute(
        "UPDATE staff_audit SET actor_email = $2 WHERE actor_account_id = $1",
        account_id,
        f"geloescht-{account_id}@invalid",
    )
    return 1 + int(status.split()[-1])
