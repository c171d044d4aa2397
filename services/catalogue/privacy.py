"""Catalogue's adapter for the purge command `qti forget-person <email>` (`qti_runtime.ops`).

Catalogue keeps no participant's data. The one person it may know is a node's contact person (staff,
entered through `POST /nodes` / `PATCH /nodes/{id}`): `forget_person` clears the contact name, e-mail
address and telephone number of every node whose contact e-mail address is the given one (ignoring
case and surrounding blanks) and returns how many nodes it changed. The contact person is not part of
`catalogue.node.*` events, so no other service holds a copy and no event is needed.

Its schema (`migrations/*.sql`) holds:

* `nodes`: the QTI offices (name, town, county, host organisation, postal address, description, contact);
* `offerings` and `sessions`: what staff publish (titles, descriptions, places, dates, seats);
* `occupancy`: seat counters per offering from registration events (numbers only, no registration ids);
* `outbox` / `inbox`: catalogue's own events (offerings, nodes) and the ids of events it handled.

The registration events catalogue consumes are reduced to their seat counters (`occupancy`) in the
handler. If a later change stores anything else about a person here, this hook must remove it.
"""

from __future__ import annotations

from qti_runtime.db import Database


async def forget_person(db: Database, email: str) -> int:
    """Clear the contact person of the nodes whose contact e-mail address is `email`."""
    async with db.pool.acquire() as conn:
        status = await conn.execute(
            "UPDATE nodes SET contact_name = NULL, contact_email = NULL, contact_phone = NULL,"
            " updated_at = now() WHERE lower(contact_email) = lower(btrim($1))",
            email,
        )
    return int(status.split()[-1])
