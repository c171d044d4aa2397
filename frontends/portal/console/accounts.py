"""Staff accounts as the console sees them: from the catalogue's staff directory (`/staff/sign-in`,
`/staff/accounts/{id}`), which keeps them with their argon2id hashes, the lockout and the audit log.
The portal stores no account and no password; `qti staff add` creates accounts (docs/operations.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Account:
    account_id: str
    email: str
    role: str  # "node" or "lead"
    node_id: str | None

    @property
    def is_lead(self) -> bool:
        return self.role == "lead"

    def may_manage(self, node_id: object) -> bool:
        """Whether this account may act on an offering of `node_id`."""
        return self.is_lead or (self.node_id is not None and str(node_id) == self.node_id)


def account_of(body: Any) -> Account | None:
    """The account of a directory answer; None for a disabled account or an answer not shaped so."""
    if not isinstance(body, dict) or body.get("disabled") or body.get("role") not in ("node", "lead"):
        return None
    node_id = body.get("node_id")
    return Account(
        str(body["account_id"]), str(body["email"]), str(body["role"]), str(node_id) if node_id else None
    )
