"""Staff view of the delivery log (addresses masked)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from qti_runtime.db import Database
from qti_runtime.http import Problem, staff_guard
from services.notification import domain, store
from services.notification.settings import NotificationSettings


class DeliveryView(BaseModel):
    notification_id: str
    template: str = Field(description="confirmation, waitlisted, promoted, rejected, cancelled, …")
    status: str = Field(description="pending | sending | sent | failed | skipped")
    attempts: int
    recipient: str = Field(description="Masked e-mail address, e.g. a***@e***.de")
    recipient_ref: str = Field(description="Pseudonym used in notification events")
    registration_id: str | None
    request_id: str | None
    offering_id: str | None
    trigger_event_id: str
    trigger_type: str
    message_id: str
    next_attempt_at: datetime | None = Field(description="When a pending mail is (re)tried")
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None


def notifications_router(db: Database, settings: NotificationSettings) -> APIRouter:
    router = APIRouter(tags=["notifications"], dependencies=[Depends(staff_guard(settings.staff_token))])

    @router.get(
        "/notifications",
        summary="Delivery log of a registration or offering (staff only)",
        response_model=list[DeliveryView],
    )
    async def list_notifications(
        registration_id: Annotated[str | None, Query(max_length=100)] = None,
        offering_id: Annotated[str | None, Query(max_length=100)] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
    ) -> list[DeliveryView]:
        if registration_id is None and offering_id is None:
            raise Problem(400, "Bitte registration_id oder offering_id angeben.")
        async with db.pool.acquire() as conn:
            records = await store.list_deliveries(
                conn, registration_id=registration_id, offering_id=offering_id, limit=limit
            )
        return [
            DeliveryView(
                notification_id=r["notification_id"],
                template=r["template"],
                status=r["status"],
                attempts=r["attempts"],
                recipient=domain.mask_email(r["email"]),
                recipient_ref=r["recipient_ref"],
                registration_id=r["registration_id"],
                request_id=r["request_id"],
                offering_id=r["offering_id"],
                trigger_event_id=r["trigger_event_id"],
                trigger_type=r["trigger_type"],
                message_id=r["message_id"],
                next_attempt_at=r["next_attempt_at"] if r["status"] == "pending" else None,
                last_error=r["last_error"],
                created_at=r["created_at"],
                sent_at=r["sent_at"],
            )
            for r in records
        ]

    return router
