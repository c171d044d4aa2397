"""„Meine Anmeldung“: the participant's page behind the personal link in their mails.

The token is passed on to registration only in a header (never in a URL to a service). An unknown,
forged or malformed token gets the same German 404 page, with nothing else.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from fastapi import APIRouter, Request
from pydantic import ValidationError
from starlette.responses import RedirectResponse, Response

from frontends.portal import views
from frontends.portal.context import Portal, portal_of, submitted_form
from frontends.portal.find import calendar_response, card
from frontends.portal.register import refused
from qti_contracts import RegistrationCancellationRequested

router = APIRouter()
CANCELLABLE = ("confirmed", "waitlisted")
CANCEL_NAMESPACE = uuid.UUID("0b7e3c52-91d4-5a6f-8e21-7c3d9f4a6b10")


def unknown(request: Request) -> Response:
    return portal_of(request).error_page(
        request,
        404,
        "Anmeldung nicht gefunden",
        "Zu diesem Link gibt es keine Anmeldung. Bitte prüfen Sie, ob Sie den Link aus Ihrer E-Mail "
        "vollständig übernommen haben.",
    )


async def registration_and_offering(
    portal: Portal, token: str
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    registration = await portal.backend.registration_by_token(token)
    if registration is None:
        return None, None
    return registration, await portal.backend.offering(str(registration["offering_id"]))


async def awaited_cancellation(portal: Portal, token: str) -> dict[str, Any] | None:
    """After a cancel: wait briefly until registration has processed the command."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + portal.settings.portal_outcome_wait_seconds
    while True:
        registration = await portal.backend.registration_by_token(token)
        if registration is None or registration["status"] == "cancelled" or loop.time() >= deadline:
            return registration
        await asyncio.sleep(0.25)


@router.get("/meine-anmeldung/{token}")
async def my_registration(request: Request, token: str) -> Response:
    portal = portal_of(request)
    cancelling = request.query_params.get("abgesagt") == "1"
    if cancelling:
        await awaited_cancellation(portal, token)
    registration, offering = await registration_and_offering(portal, token)
    if registration is None:
        return unknown(request)
    still_cancelling = cancelling and registration["status"] != "cancelled"
    base = f"/meine-anmeldung/{token}"
    return portal.render(
        request, "mine.html", r=registration, o=card(offering) if offering else None,
        status_text=views.STATUS_TEXT.get(registration["status"], registration["status"]),
        may_cancel=registration["status"] in CANCELLABLE and not still_cancelling,
        cancelling=still_cancelling, pending=still_cancelling, base_url=base,
        refresh_url=f"{base}?abgesagt=1",
    )  # fmt: skip


@router.get("/meine-anmeldung/{token}/kalender.ics")
async def my_calendar(request: Request, token: str) -> Response:
    portal = portal_of(request)
    registration, offering = await registration_and_offering(portal, token)
    if registration is None or offering is None:
        return unknown(request)
    return calendar_response(offering, portal.settings.portal_url)


@router.get("/meine-anmeldung/{token}/absagen")
async def cancel_confirm(request: Request, token: str) -> Response:
    portal = portal_of(request)
    registration, offering = await registration_and_offering(portal, token)
    if registration is None:
        return unknown(request)
    if registration["status"] not in CANCELLABLE:
        return RedirectResponse(f"/meine-anmeldung/{token}", status_code=303)
    title = offering["title"] if offering else "dieses Angebot"
    return portal.render(request, "cancel.html", base_url=f"/meine-anmeldung/{token}", title=title)


def cancellation(registration_id: str, token: str, reason: str | None) -> RegistrationCancellationRequested:
    """The command; a reason the contract does not take (control characters, too long) is left out."""
    try:
        return RegistrationCancellationRequested(
            registration_id=registration_id, reason=(reason or "").strip()[:500] or None, personal_token=token
        )
    except ValidationError:
        return RegistrationCancellationRequested(registration_id=registration_id, personal_token=token)


@router.post("/meine-anmeldung/{token}/absagen")
async def cancel(request: Request, token: str) -> Response:
    portal = portal_of(request)
    form = await submitted_form(request)
    refusal = await refused(request, form, [])
    if refusal is not None:
        return refusal
    registration = await portal.backend.registration_by_token(token)
    if registration is None:
        return unknown(request)
    if registration["status"] in CANCELLABLE:
        command = cancellation(registration["registration_id"], token, form.get("grund"))
        # One cancellation per registration: a repeated confirm is the same command.
        event_id = f"portal-cancel-{uuid.uuid5(CANCEL_NAMESPACE, registration['registration_id'])}"
        await portal.bus.request_cancellation(command, event_id)
    return RedirectResponse(f"/meine-anmeldung/{token}?abgesagt=1", status_code=303)
