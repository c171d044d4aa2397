"""HTTP entrypoints of registration: browser frontends, participants (personal token) and staff.

Ids are no secrets (they travel in events and mails): reading or cancelling a registration needs the
participant's personal token (header `X-Personal-Token`, from the link in their mails or the 202 answer
to the submitting frontend) or the staff bearer token. Tokens travel in headers, never in URLs, so they
do not end up in access logs.
"""

# No `from __future__ import annotations`: FastAPI reads the endpoints' annotations at run time.
import secrets
import unicodedata
from dataclasses import dataclass, field
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Header, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field

from qti_contracts import RegistrationRequested, amqp_short
from qti_runtime.http import Problem, staff_guard
from services.registration.access import Caller, Conflict, NotFound
from services.registration.handlers import RegistrationService
from services.registration.limits import SubmissionLimits
from services.registration.settings import RegistrationSettings

MAX_CORRELATION_ID = 200
NOT_FOUND = "Die Anmeldung ist nicht bekannt, oder der Link ist nicht gültig."

PersonalTokenHeader = Annotated[
    str | None,
    Header(
        alias="X-Personal-Token",
        description="The participant's personal token (from the link in their mails).",
    ),
]
CorrelationHeader = Annotated[
    str | None,
    Header(
        alias="X-Correlation-ID",
        description="Optional; at most 200 characters and 255 bytes (UTF-8), no control characters.",
    ),
]


class RegistrationSubmission(RegistrationRequested):
    """The command's data, optionally with the client's own request id (makes retries safe)."""

    request_id: Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._:-]+$")] | None = (
        None
    )


class Accepted(BaseModel):
    request_id: str
    status: str
    status_url: str
    personal_token: str = Field(
        description="The participant's personal token for this request's registration: only for the "
        "submitting frontend (e.g. to show the portal's personal page); a secret."
    )


class RequestStatus(BaseModel):
    """The state of a request, without personal data."""

    request_id: str
    status: str
    offering_id: str | None = None
    registration_id: str | None = None
    position: int | None = None
    reason: str | None = None
    detail: str | None = None


class CancelBody(BaseModel):
    reason: Annotated[str, Field(max_length=500)] | None = None


class PromoteBody(BaseModel):
    over_capacity: bool = Field(
        default=False,
        description="The organiser's explicit decision to confirm beyond the capacity when no seat is free.",
    )


StaffActorHeader = Annotated[
    str | None,
    Header(
        alias="X-Staff-Actor",
        description="Who acts (the staff console's account), recorded with the action; at most 200 "
        "characters, no control characters.",
    ),
]


def checked_actor(value: str | None) -> str:
    """The acting staff member as recorded; `staff` if the caller names nobody; 422 if malformed."""
    if value is None or not value.strip():
        return "staff"
    if len(value) > 200 or any(unicodedata.category(ch) in ("Cc", "Cs") for ch in value):
        raise Problem(
            422, "Die Kopfzeile X-Staff-Actor ist ungültig: höchstens 200 Zeichen, ohne Steuerzeichen."
        )
    return value.strip()


class AttendanceRecord(BaseModel):
    registration_id: Annotated[str, Field(min_length=1, max_length=100)]
    attended: bool


class AttendanceBody(BaseModel):
    records: Annotated[list[AttendanceRecord], Field(min_length=1, max_length=1000)]


def checked_correlation_id(value: str | None) -> str | None:
    """The header if it can travel as an AMQP correlation id; 422 otherwise (never a 500 later)."""
    if value is None:
        return None
    try:
        amqp_short(value)
        fits = len(value) <= MAX_CORRELATION_ID
    except ValueError:
        fits = False
    if not fits or any(unicodedata.category(ch) == "Cc" for ch in value):
        raise Problem(
            422,
            "Die Kopfzeile X-Correlation-ID ist ungültig: höchstens 200 Zeichen und 255 Bytes (UTF-8), "
            "ohne Steuerzeichen.",
        )
    return value


_optional_bearer = HTTPBearer(auto_error=False)


class Presented:
    """What a request presents to say who asks: a personal token and/or a bearer token (a dependency)."""

    def __init__(
        self,
        token: PersonalTokenHeader = None,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_optional_bearer)] = None,
    ) -> None:
        self.token = token
        self.bearer = credentials.credentials if credentials is not None else None


PresentedDep = Annotated[Presented, Depends()]


class RegistrationApi:
    """The endpoints, as methods over the service; `router` lists their paths."""

    def __init__(self, service: RegistrationService, settings: RegistrationSettings) -> None:
        self.service = service
        self.queries = service.queries
        self.limits = SubmissionLimits.for_settings(service.db, settings)
        self._staff_token = settings.staff_token.get_secret_value().encode()

    def caller(self, presented: Presented) -> Caller:
        """Staff with the bearer token, or whoever sent a personal token."""
        staff = presented.bearer is not None and secrets.compare_digest(
            presented.bearer.encode("utf-8", "replace"), self._staff_token
        )
        return Caller(staff=staff, token=presented.token)

    async def view_or_404(self, registration_id: str, caller: Caller) -> dict[str, Any]:
        view = await self.queries.registration_view(registration_id, caller)
        if view is None:
            raise Problem(404, NOT_FOUND)
        return view

    async def cancel_or_problem(
        self, registration_id: str, caller: Caller, body: CancelBody | None
    ) -> dict[str, Any]:
        try:
            await self.service.cancel(registration_id, caller, body.reason if body else None)
        except NotFound as exc:
            raise Problem(404, NOT_FOUND) from exc
        except Conflict as exc:
            raise Problem(409, str(exc)) from exc
        return await self.view_or_404(registration_id, caller)

    async def id_of_token(self, token: str | None) -> str:
        registration_id = await self.queries.registration_of_token(token) if token else None
        if registration_id is None:
            raise Problem(404, NOT_FOUND)
        return registration_id

    # Endpoints ---------------------------------------------------------------------------------------

    async def submit(
        self,
        body: RegistrationSubmission,
        request: Request,
        response: Response,
        correlation_id: CorrelationHeader = None,
    ) -> Accepted:
        correlation = checked_correlation_id(correlation_id)
        await self.limits.check(request, str(body.participant.email))  # 429 beyond the abuse limits
        command = RegistrationRequested.model_validate(body.model_dump(exclude={"request_id"}))
        request_id, _new = await self.service.submit(command, body.request_id, correlation)
        url = f"/registrations/requests/{request_id}"
        response.headers["Location"] = url
        return Accepted(
            request_id=request_id,
            status="pending",
            status_url=url,
            personal_token=self.service.personal_token(request_id),
        )

    async def request_status(self, request_id: str) -> RequestStatus:
        status = await self.queries.request_status(request_id)
        if status is None:
            raise Problem(404, f"Zu der Anfrage {request_id} liegt nichts vor.")
        return RequestStatus.model_validate(status)

    async def registration_by_token(self, presented: PresentedDep) -> dict[str, Any]:
        registration_id = await self.id_of_token(presented.token)
        return await self.view_or_404(registration_id, Caller(token=presented.token))

    async def cancel_by_token(
        self, presented: PresentedDep, body: CancelBody | None = None
    ) -> dict[str, Any]:
        registration_id = await self.id_of_token(presented.token)
        return await self.cancel_or_problem(registration_id, Caller(token=presented.token), body)

    async def registration(self, registration_id: str, presented: PresentedDep) -> dict[str, Any]:
        return await self.view_or_404(registration_id, self.caller(presented))

    async def cancel(
        self, registration_id: str, presented: PresentedDep, body: CancelBody | None = None
    ) -> dict[str, Any]:
        return await self.cancel_or_problem(registration_id, self.caller(presented), body)

    async def offering_registrations(self, offering_id: str) -> list[dict[str, Any]]:
        return await self.queries.offering_registrations(offering_id)

    async def promote(
        self,
        offering_id: str,
        registration_id: str,
        body: PromoteBody | None = None,
        actor: StaffActorHeader = None,
    ) -> dict[str, Any]:
        who = checked_actor(actor)
        over_capacity = body.over_capacity if body else False
        try:
            await self.service.promote_by_hand(offering_id, registration_id, who, over_capacity=over_capacity)
        except NotFound as exc:
            raise Problem(404, NOT_FOUND) from exc
        except Conflict as exc:
            raise Problem(409, str(exc)) from exc
        return await self.view_or_404(registration_id, Caller(staff=True))

    async def attendance(self, offering_id: str, session_id: str, body: AttendanceBody) -> dict[str, int]:
        records = {r.registration_id: r.attended for r in body.records}
        try:
            changed = await self.service.record_attendance(offering_id, session_id, records)
        except NotFound as exc:
            raise Problem(404, str(exc)) from exc
        except Conflict as exc:
            raise Problem(409, str(exc)) from exc
        return {"recorded": len(records), "changed": changed}


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    endpoint: str  # name of the `RegistrationApi` method
    summary: str
    staff: bool = False  # staff bearer token required
    options: dict[str, Any] = field(default_factory=dict)


# In matching order: fixed paths before `{registration_id}`.
ROUTES: Final = (
    Route(
        "POST",
        "/registrations",
        "submit",
        "Submit a registration request (answered asynchronously)",
        options={"status_code": 202, "response_model": Accepted},
    ),
    Route(
        "GET",
        "/registrations/requests/{request_id}",
        "request_status",
        "Outcome of a request, without personal data: pending until decided",
        options={"response_model": RequestStatus, "response_model_exclude_none": False},
    ),
    Route(
        "GET",
        "/registrations/by-token",
        "registration_by_token",
        "The registration a personal token (header X-Personal-Token) belongs to",
    ),
    Route(
        "POST",
        "/registrations/by-token/cancel",
        "cancel_by_token",
        "Cancel the registration a personal token (header X-Personal-Token) belongs to",
    ),
    Route(
        "GET",
        "/registrations/{registration_id}",
        "registration",
        "A registration with its status and waitlist position (personal token or staff)",
    ),
    Route(
        "POST",
        "/registrations/{registration_id}/cancel",
        "cancel",
        "Cancel a registration, freeing the seat (personal token, or staff as organiser)",
    ),
    Route(
        "GET",
        "/offerings/{offering_id}/registrations",
        "offering_registrations",
        "Staff: registrations of an offering",
        staff=True,
    ),
    Route(
        "POST",
        "/offerings/{offering_id}/registrations/{registration_id}/promote",
        "promote",
        "Staff: move a waitlisted person to a confirmed seat by hand (an organiser's decision)",
        staff=True,
    ),
    Route(
        "PUT",
        "/offerings/{offering_id}/sessions/{session_id}/attendance",
        "attendance",
        "Staff: record attendance for one session",
        staff=True,
    ),
)


def router(service: RegistrationService, settings: RegistrationSettings) -> APIRouter:
    endpoints = RegistrationApi(service, settings)
    staff = [Depends(staff_guard(settings.staff_token))]
    api = APIRouter(tags=["registration"])
    for route in ROUTES:
        api.add_api_route(
            route.path,
            getattr(endpoints, route.endpoint),
            methods=[route.method],
            summary=route.summary,
            dependencies=staff if route.staff else None,
            **route.options,
        )
    return api
