"""Registrations of an offering in the console: manual promotion off the waiting list, attendance per
session (a tablet-sized page of checkboxes) and the printable sign-in sheet per session (PDF)."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response
from weasyprint import HTML

from frontends.portal.console import audit
from frontends.portal.console.accounts import Account
from frontends.portal.console.core import (
    console_of,
    managed_offering,
    offering_post,
    render,
    signed_in,
    to_sign_in,
)
from frontends.portal.console.offerings import detail
from frontends.portal.console.staff_api import Answer
from frontends.portal.console.views import person, registrations_view, sessions_of
from frontends.portal.context import portal_of

router = APIRouter()
ID = re.compile(r"^[A-Za-z0-9._:-]{1,100}$")


async def _staff_and_offering(request: Request, offering_id: str) -> tuple[Account, Answer] | Response:
    account = await signed_in(request)
    if account is None:
        return to_sign_in(request)
    found = await managed_offering(request, account, offering_id)
    return found if isinstance(found, Response) else (account, found)


def _session(request: Request, offering: dict[str, Any], session_id: str) -> dict[str, Any] | Response:
    for session in sessions_of(offering):
        if str(session["session_id"]) == session_id:
            return session
    return portal_of(request).error_page(
        request, 404, "Termin nicht gefunden", "Diesen Termin gibt es bei diesem Angebot nicht."
    )


@router.post("/verwaltung/angebote/{offering_id}/anmeldungen/{registration_id}/nachruecken")
async def promote(request: Request, offering_id: str, registration_id: str) -> Response:
    post = await offering_post(request, offering_id)
    if isinstance(post, Response):
        return post
    form, account, offering = post.form, post.account, post.offering
    over = form.get("ueber_kapazitaet") == "ja"
    if not ID.match(registration_id):
        return await detail(request, account, offering, 404, "Diese Anmeldung gibt es nicht.")
    answer = await console_of(request).api.promote(offering_id, registration_id, account.account_id, over)
    if not answer.ok:
        return await detail(request, account, offering, 409, answer.detail or "Das war nicht möglich.")
    await audit.record(console_of(request).api, account, "registration.promoted", offering_id,
                       registration_id, {"over_capacity": over})  # fmt: skip
    return RedirectResponse(f"/verwaltung/angebote/{offering_id}?meldung=nachgerueckt", status_code=303)


async def _attendance_page(
    request: Request, account: Account, offering: dict[str, Any], session: dict[str, Any], **context: Any
) -> Response:
    registrations = await console_of(request).api.registrations(str(offering["offering_id"]))
    confirmed = registrations_view(registrations, sessions_of(offering))["confirmed"]
    sid = str(session["session_id"])
    people = [{**r, "present": bool((r.get("attendance") or {}).get(sid))} for r in confirmed]
    return render(request, account, "anwesenheit.html", context.pop("status_code", 200), o=offering,
                  s=session, people=people, **context)  # fmt: skip


@router.get("/verwaltung/angebote/{offering_id}/termine/{session_id}/anwesenheit")
async def attendance_form(request: Request, offering_id: str, session_id: str) -> Response:
    found = await _staff_and_offering(request, offering_id)
    if isinstance(found, Response):
        return found
    account, offering = found
    session = _session(request, offering.body, session_id)
    if isinstance(session, Response):
        return session
    return await _attendance_page(request, account, offering.body, session)


@router.post("/verwaltung/angebote/{offering_id}/termine/{session_id}/anwesenheit")
async def record_attendance(request: Request, offering_id: str, session_id: str) -> Response:
    post = await offering_post(request, offering_id)
    if isinstance(post, Response):
        return post
    form, account, offering = post.form, post.account, post.offering
    session = _session(request, offering.body, session_id)
    if isinstance(session, Response):
        return session
    api = console_of(request).api
    confirmed = [
        r["registration_id"] for r in await api.registrations(offering_id) if r["status"] == "confirmed"
    ]
    records = {rid: form.get(f"anwesend_{rid}") == "ja" for rid in confirmed}
    if not records:
        return await _attendance_page(request, account, offering.body, session, status_code=409,
                                      problem="Es gibt keine bestätigten Anmeldungen.")  # fmt: skip
    answer = await api.record_attendance(offering_id, session_id, records)
    if not answer.ok:
        return await _attendance_page(request, account, offering.body, session, status_code=409,
                                      problem=answer.detail or "Das war nicht möglich.")  # fmt: skip
    present = sum(records.values())
    detail_of = {
        "present": present,
        "absent": len(records) - present,
        "changed": answer.body.get("changed", 0),
    }
    await audit.record(console_of(request).api, account, "attendance.recorded", offering_id,
                       session_id, detail_of)  # fmt: skip
    return RedirectResponse(f"/verwaltung/angebote/{offering_id}?meldung=anwesenheit", status_code=303)


def sheet_pdf(html: str) -> bytes:
    pdf: bytes = HTML(string=html).write_pdf(pdf_variant="pdf/ua-1")
    return pdf


@router.get("/verwaltung/angebote/{offering_id}/termine/{session_id}/unterschriften.pdf")
async def sign_in_sheet(request: Request, offering_id: str, session_id: str) -> Response:
    found = await _staff_and_offering(request, offering_id)
    if isinstance(found, Response):
        return found
    _account, offering = found
    session = _session(request, offering.body, session_id)
    if isinstance(session, Response):
        return session
    registrations = await console_of(request).api.registrations(offering_id)
    confirmed = [r for r in registrations if r["status"] == "confirmed"]
    confirmed.sort(key=lambda r: (str(r["participant"].get("family_name", "")).casefold(), person(r)))
    people = [{"name": person(r), "company": (r.get("company") or {}).get("name", "")} for r in confirmed]
    html = (
        portal_of(request)
        .templates.get_template("verwaltung/unterschriften.html")
        .render(o=offering.body, s=session, people=people)
    )
    pdf = await asyncio.to_thread(sheet_pdf, html)
    filename = f"unterschriften-termin-{session['number']}.pdf"
    return Response(pdf, media_type="application/pdf", headers={
        "Content-Disposition": f'inline; filename="{filename}"', "Cache-Control": "no-store"})  # fmt: skip
