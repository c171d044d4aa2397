"""Catalogue's adapter for the purge command `qti forget-person <email>` (`qti_runtime.ops`).

Catalogue keeps no participant's data, so there is nothing to forget and `forget_person` returns 0.
Its schema (`migrations/*.sql`) holds:

* `nodes`: the QTI offices (name, town, county, host organisation, postal address of the office);
* `offerings` and `sessions`: what staff publish (titles, descriptions, places, dates, seats);
* `occupancy`: seat counters per offering from registration events (numbers only, no registration ids);
* `outbox` / `inbox`: catalogue's own events (offerings, nodes) and the ids of events it handled.

None of them stores names or e-mail addresses of participants; the registration events catalogue
consumes are reduced to their seat counters (`occupancy`) in the handler. If a later change stores
anything about a person here, this hook must remove it.
"""

from __future__ import annotations

from qti_runtime.db import Database


def forget_person(db: Database, email: str) -> int:
    """Nothing to remove: catalogue holds no personal data of participants."""
    return 0
