"""The audit log: every staff action of the console goes to the staff directory (`POST /staff/audit`:
actor, action, offering, a short subject such as a registration id, a small flat detail; never names).
The project lead reads it at /verwaltung/protokoll (`GET /staff/audit`)."""

from __future__ import annotations

from typing import Any

from frontends.portal.console.accounts import Account
from frontends.portal.console.staff_api import StaffApi
from frontends.portal.views import moment
from qti_runtime.logging import get_logger

log = get_logger(__name__)


async def record(
    api: StaffApi,
    actor: Account,
    action: str,
    offering_id: str | None,
    subject: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Record the action; a refusal is logged (ids only) — the action itself has already happened."""
    body: dict[str, Any] = {"actor_account_id": actor.account_id, "action": action}
    body.update(
        {k: v for k, v in (("offering_id", offering_id), ("subject", subject), ("detail", detail)) if v}
    )
    answer = await api.record_audit(body)
    if not answer.ok:
        log.error("audit.refused", action=action, offering_id=offering_id, status=answer.status)


async def entries(api: StaffApi, limit: int = 200) -> list[dict[str, Any]]:
    found = await api.audit_log(limit)
    return [{**e, "at_local": moment(e["at"]).strftime("%d.%m.%Y %H:%M:%S")} for e in found]
