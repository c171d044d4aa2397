"""HTTP entrypoints of registration: browser frontends and staff (attendance)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field

from qti_contracts import CancellationCause, RegistrationRequested
from qti_runtime.http import Problem, staff_guard
from qti_runtime.settings import Settings
from services.registration.handlers import Conflict, NotFound, RegistrationService
from services.registration.limits import SubmissionLimits


class RegistrationSubmission(RegistrationRequested):
    """The command's data, optionally with the client's own request id (makes retries safe)."""

    request_id: Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._:-]+$")] | None = (
        None
    )


class Accepted(BaseModel):
    request_id: str
    status: str
    status_url: str


class CancelBody(BaseModel):
    reason: Annotated[str, Field(max_length=500)] | None = None


class AttendanceRecord(BaseModel):
    registration_id: Annotated[str, Field(min_length=1, max_length=100)]
    attended: bool


class AttendanceBody(BaseModel):
    records: Annotated[list[AttendanceRecord], Field(min_length=1, max_length=1000)]


def router(service: RegistrationService, settings: Settings) -> APIRouter:
    api = APIRouter(tags=["registration"])
    staff = [Depends(staff_guard(settings.staff_token))]
    limits = SubmissionLimits.for_settings(service.db, settings)

    @api.post(
        "/registrations",
        status_code=202,
        response_model=Accepted,
        summary="Submit a registration request (answered asynchronously)",
    )
    async def submit(body: RegistrationSubmission, request: Request, response: Response) -> Accepted:
        await limits.check(request, str(body.participant.email))  # 429 beyond the abuse limits
        command = RegistrationRequested.model_validate(body.model_dump(exclude={"request_id"}))
        request_id, _new = await service.submit(
            command, body.request_id, request.headers.get("x-correlation-id")
        )
        url = f"/registrations/requests/{request_id}"
        response.headers["Location"] = url
        return Accepted(request_id=request_id, status="pending", status_url=url)

    @api.get("/registrations/requests/{request_id}", summary="Outcome of a request: pending until decided")
    async def request_status(request_id: str) -> dict[str, Any]:
        status = await service.request_status(request_id)
        if status is None:
            raise Problem(404, f"Zu der Anfrage {request_id} liegt nichts vor.")
        return status

    @api.get(
        "/registrations/{registration_id}", summary="A registration with its status and waitlist position"
    )
    async def registration(registration_id: str) -> dict[str, Any]:
        view = await service.registration_view(registration_id)
        if view is None:
            raise Problem(404, f"Die Anmeldung {registration_id} ist nicht bekannt.")
        return view

    @api.post("/registrations/{registration_id}/cancel", summary="Cancel a registration (frees the seat)")
    async def cancel(registration_id: str, body: CancelBody | None = None) -> dict[str, Any]:
        try:
            await service.cancel(
                registration_id, CancellationCause.PARTICIPANT, body.reason if body else None
            )
        except NotFound as exc:
            raise Problem(404, f"Die Anmeldung {registration_id} ist nicht bekannt.") from exc
        except Conflict as exc:
            raise Problem(409, str(exc)) from exc
        view = await service.registration_view(registration_id)
        assert view is not None
        return view

    @api.get(
        "/offerings/{offering_id}/registrations",
        dependencies=staff,
        summary="Staff: registrations of an offering",
    )
    async def offering_registrations(offering_id: str) -> list[dict[str, Any]]:
        return await service.offering_registrations(offering_id)

    @api.put(
        "/offerings/{offering_id}/sessions/{session_id}/attendance",
        dependencies=staff,
        summary="Staff: record attendance for one session",
    )
    async def attendance(offering_id: str, session_id: str, body: AttendanceBody) -> dict[str, int]:
        records = {r.registration_id: r.attended for r in body.records}
        try:
            changed = await service.record_attendance(offering_id, session_id, records)
        except NotFound as exc:
            raise Problem(404, str(exc)) from exc
        except Conflict as exc:
            raise Problem(409, str(exc)) from exc
        return {"recorded": len(records), "changed": changed}

    return api
