"""The audit log: every staff action of the console, with who, when and what (ids, never names)."""

from __future__ import annotations

import json
from typing import Any

import asyncpg

from frontends.portal.console.accounts import Account

ACTION_LABELS = {
    "offering.created": "Angebot angelegt",
    "offering.edited": "Angebot geändert",
    "offering.published": "Angebot veröffentlicht",
    "offering.cancelled": "Angebot abgesagt",
    "offering.completed": "Angebot abgeschlossen",
    "attendance.recorded": "Anwesenheit erfasst",
    "registration.promoted": "Von der Warteliste nachgerückt",
}


async def record(
    pool: asyncpg.Pool,
    actor: Account,
    action: str,
    offering_id: str | None,
    subject: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    assert action in ACTION_LABELS, action
    async with pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO portal.audit_log (actor, action, offering_id, subject, detail)"
            " VALUES ($1, $2, $3, $4, $5::jsonb)",
            actor.email,
            action,
            offering_id,
            subject,
            json.dumps(detail or {}, ensure_ascii=False),
        )


async def entries(pool: asyncpg.Pool, limit: int = 500) -> list[dict[str, Any]]:
    async with pool.acquire() as conn:
        records = await conn.fetch(
            "SELECT at, actor, action, offering_id, subject, detail FROM portal.audit_log"
            " ORDER BY at DESC, audit_id DESC LIMIT $1",
            limit,
        )
    return [
        {**dict(r), "detail": json.loads(r["detail"]), "label": ACTION_LABELS.get(r["action"], r["action"])}
        for r in records
    ]
