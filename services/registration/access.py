"""Who may read or cancel a registration, and the refusals commands and queries raise."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import SecretStr

from qti_runtime import links


class NotFound(Exception):
    pass


class Conflict(Exception):
    pass


@dataclass(frozen=True)
class Caller:
    """Who asks to read or cancel a registration: staff (bearer token) or whoever holds a personal token.

    Ids are no secrets, so the id alone admits nobody; a participant may not cancel once the offering
    has begun, staff may still correct.
    """

    staff: bool = False
    token: str | None = None

    def may_see(self, link_secret: SecretStr, request_id: str) -> bool:
        """Whether the caller may see the registration that answers `request_id`."""
        if self.staff:
            return True
        return self.token is not None and links.token_matches(link_secret, request_id, self.token)


STAFF = Caller(staff=True)
