"""Read models of registration for the HTTP API: what a request came to, and registrations as views."""

from __future__ import annotations

from typing import Any

from pydantic import SecretStr

from qti_contracts import RoutingKey
from qti_runtime import links
from qti_runtime.db import Database
from services.registration import store
from services.registration.access import Caller
from services.registration.domain import Status

_STATUS_OF_OUTCOME: dict[str, str] = {
    RoutingKey.REGISTRATION_CONFIRMED: "confirmed",
    RoutingKey.REGISTRATION_WAITLISTED: "waitlisted",
    RoutingKey.REGISTRATION_REJECTED: "rejected",
}


class RegistrationQueries:
    """Reads only; each query takes a connection of its own, outside any transaction of a command."""

    def __init__(self, db: Database, link_secret: SecretStr) -> None:
        self.db = db
        self.link_secret = link_secret

    async def request_status(self, request_id: str) -> dict[str, Any] | None:
        """The state of a request, without personal data; None if unknown."""
        async with self.db.pool.acquire() as conn:
            row = await store.get_request(conn, request_id)
        if row is None:
            return None
        if row.outcome is None:
            return {"request_id": request_id, "status": "pending", "offering_id": row.offering_id}
        data = row.outcome["data"]
        return {
            "request_id": request_id,
            "status": _STATUS_OF_OUTCOME[row.outcome_type or ""],
            "offering_id": data.get("offering_id"),
            "registration_id": data.get("registration_id"),
            "position": data.get("position"),
            "reason": data.get("reason"),
            "detail": data.get("detail"),
        }

    async def registration_view(self, registration_id: str, caller: Caller) -> dict[str, Any] | None:
        """The registration if `caller` may see it; None for an unknown id and a wrong token alike."""
        async with self.db.pool.acquire() as conn:
            row = await store.get_registration(conn, registration_id)
            if row is None or not caller.may_see(self.link_secret, row.request_id):
                return None
            position = await store.waitlist_position(conn, row)
        return registration_view(row, position)

    async def registration_of_token(self, token: str) -> str | None:
        """The id of the registration `token` belongs to (found by its hash; the token is stored nowhere)."""
        async with self.db.pool.acquire() as conn:
            return await store.registration_id_by_token_hash(conn, links.token_hash(token))

    async def offering_registrations(self, offering_id: str) -> list[dict[str, Any]]:
        async with self.db.pool.acquire() as conn:
            rows = await store.registrations_of_offering(conn, offering_id)
            attendance = await store.attendance_of_offering(conn, offering_id)
        views = []
        waiting = 0
        for row in rows:
            waiting += row.status == Status.WAITLISTED
            view = registration_view(row, waiting if row.status == Status.WAITLISTED else None)
            view["attendance"] = attendance.get(row.registration_id, {})
            views.append(view)
        return views


def registration_view(row: store.RegistrationRow, position: int | None) -> dict[str, Any]:
    return {
        "registration_id": row.registration_id,
        "request_id": row.request_id,
        "offering_id": row.offering_id,
        "status": row.status.value,
        "position": position,
        "from_waitlist": row.from_waitlist,
        "participant": row.participant,
        "company": row.company,
        "cancel_cause": row.cancel_cause,
        "completion": row.completion,
        # Consent is shown by the notice's version and the registration's time (DSGVO Art. 7(1)).
        "privacy_notice_version": row.privacy_notice_version,
        "promoted_by": row.promoted_by,
        "promoted_at": row.promoted_at.isoformat() if row.promoted_at else None,
        "created_at": row.created_at.isoformat(),
        "updated_at": row.updated_at.isoformat(),
    }
