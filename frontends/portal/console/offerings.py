"""Offerings in the console: overview, create (from the form or as a copy), edit, publish, cancel,
complete. Node staff see and touch only their node's offerings (403 otherwise)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from frontends.portal.console import audit
from frontends.portal.console.accounts import Account
from frontends.portal.console.core import console_of, managed_offering, render, signed_in, to_sign_in
from frontends.portal.console.followup_view import followup_view
from frontends.portal.console.offering_form import (
    KIND_OPTIONS,
    MAX_SESSION_ROWS,
    TOPIC_OPTIONS,
    form_values,
    offering_form,
    service_errors,
    session_rows,
    summary,
)
from frontends.portal.console.staff_api import Answer
from frontends.portal.console.views import offering_row, registrations_view, sessions_of
from frontends.portal.context import submitted_form
from frontends.portal.register import refused

router = APIRouter()
NOTICES = {
    "angelegt": "Das Angebot ist als Entwurf angelegt.",
    "gespeichert": "Die Änderungen sind gespeichert.",
    "veroeffentlicht": "Das Angebot ist veröffentlicht.",
    "abgesagt": "Das Angebot ist abgesagt. Die Angemeldeten erhalten eine E-Mail mit dem Grund.",
    "abgeschlossen": "Das Angebot ist abgeschlossen.",
    "anwesenheit": "Die Anwesenheit ist gespeichert.",
    "nachgerueckt": "Die Person ist von der Warteliste nachgerückt und erhält eine Bestätigung.",
    "erneut-gesendet": "Die Teilnahmebescheinigung wird erneut per E-Mail gesendet.",
    "widerrufen": "Die Teilnahmebescheinigung ist widerrufen. Die öffentliche Prüfung zeigt das an.",
}
ACTIONS = {
    "veroeffentlichen": ("publish", "offering.published", "veroeffentlicht"),
    "abschliessen": ("complete", "offering.completed", "abgeschlossen"),
}


async def node_options(request: Request, account: Account) -> list[tuple[str, str]]:
    nodes = await console_of(request).api.nodes()
    return [(str(n["node_id"]), n["name"]) for n in nodes if account.may_manage(n["node_id"])]


@router.get("/verwaltung")
async def overview(request: Request) -> Response:
    account = await signed_in(request)
    if account is None:
        return to_sign_in(request)
    offerings = await console_of(request).api.offerings(None if account.is_lead else account.node_id)
    rows = [offering_row(o) for o in offerings if account.may_manage(o["node_id"])]
    return render(request, account, "uebersicht.html", offerings=rows)


async def form_page(
    request: Request, account: Account, values: dict[str, str], status_code: int = 200, **context: Any
) -> Response:
    errors: dict[str, str] = context.pop("errors", {})
    return render(
        request, account, "angebot_form.html", status_code, values=values, errors=errors,
        summary=summary(errors), rows=session_rows(values), max_rows=MAX_SESSION_ROWS,
        kinds=KIND_OPTIONS, topics=TOPIC_OPTIONS, nodes=await node_options(request, account), **context,
    )  # fmt: skip


@router.get("/verwaltung/angebote/neu")
async def new_offering(request: Request) -> Response:
    account = await signed_in(request)
    if account is None:
        return to_sign_in(request)
    values: dict[str, str] = {"warteliste": "0", "gebuehr": "0,00", "knoten": account.node_id or ""}
    template_id = request.query_params.get("vorlage")
    if template_id:
        found = await managed_offering(request, account, template_id)
        if isinstance(found, Response):
            return found
        values = form_values(found.body, copy=True)
    return await form_page(request, account, values, action="/verwaltung/angebote/neu", editing=False)


@router.post("/verwaltung/angebote/neu")
async def create_offering(request: Request) -> Response:
    account = await signed_in(request)
    if account is None:
        return to_sign_in(request)
    form = await submitted_form(request)
    if (refusal := await refused(request, form, [])) is not None:
        return refusal
    nodes = {node_id for node_id, _ in await node_options(request, account)}
    result = offering_form(form, nodes)
    page = {"action": "/verwaltung/angebote/neu", "editing": False}
    if "mehr_termine" in form or result.errors:
        if "mehr_termine" in form:
            result.values["zeilen"] = str(session_rows(form) + 1)
            result.errors = {}
        return await form_page(request, account, result.values, 422 if result.errors else 200,
                               errors=result.errors, **page)  # fmt: skip
    answer = await console_of(request).api.create_offering(result.body)
    if not answer.ok:
        errors = service_errors(answer.field_errors, answer.detail)
        return await form_page(request, account, result.values, 422, errors=errors, **page)
    offering_id = str(answer.body["offering_id"])
    await audit.record(console_of(request).api, account, "offering.created", offering_id,
                       detail={"title": result.body["title"][:200]})  # fmt: skip
    return RedirectResponse(f"/verwaltung/angebote/{offering_id}?meldung=angelegt", status_code=303)


@router.get("/verwaltung/angebote/{offering_id}")
async def offering_page(request: Request, offering_id: str) -> Response:
    account = await signed_in(request)
    if account is None:
        return to_sign_in(request)
    found = await managed_offering(request, account, offering_id)
    if isinstance(found, Response):
        return found
    return await detail(request, account, found)


async def detail(
    request: Request,
    account: Account,
    found: Answer,
    status_code: int = 200,
    problem: str | None = None,
    errors: dict[str, str] | None = None,
) -> Response:
    """The offering page; `errors` are shown next to the fields of the certificate forms."""
    offering = found.body
    sessions = sessions_of(offering)
    api = console_of(request).api
    registrations = await api.registrations(str(offering["offering_id"]))
    notice = NOTICES.get(request.query_params.get("meldung", ""))
    return render(
        request, account, "angebot.html", status_code, o=offering, sessions=sessions, notice=notice,
        problem=problem, regs=registrations_view(registrations, sessions), row=offering_row(offering),
        after=await followup_view(api, offering, registrations), errors=errors or {},
    )  # fmt: skip


@router.get("/verwaltung/angebote/{offering_id}/bearbeiten")
async def edit_form(request: Request, offering_id: str) -> Response:
    account = await signed_in(request)
    if account is None:
        return to_sign_in(request)
    found = await managed_offering(request, account, offering_id)
    if isinstance(found, Response):
        return found
    values = {**form_values(found.body), "etag": found.etag or ""}
    action = f"/verwaltung/angebote/{offering_id}/bearbeiten"
    return await form_page(request, account, values, action=action, editing=True, o=found.body)


@router.post("/verwaltung/angebote/{offering_id}/bearbeiten")
async def edit_offering(request: Request, offering_id: str) -> Response:
    account = await signed_in(request)
    if account is None:
        return to_sign_in(request)
    form = await submitted_form(request)
    if (refusal := await refused(request, form, [])) is not None:
        return refusal
    found = await managed_offering(request, account, offering_id)
    if isinstance(found, Response):
        return found
    nodes = {node_id for node_id, _ in await node_options(request, account)}
    result = offering_form(form, nodes)
    page = {"action": f"/verwaltung/angebote/{offering_id}/bearbeiten", "editing": True, "o": found.body}
    if "mehr_termine" in form:
        result.values["zeilen"] = str(session_rows(form) + 1)
        return await form_page(request, account, result.values, **page)
    if result.errors:
        return await form_page(request, account, result.values, 422, errors=result.errors, **page)
    answer = await console_of(request).api.edit_offering(offering_id, result.body, form.get("etag") or "*")
    if answer.status == 412:
        errors = {"formular": "Das Angebot wurde inzwischen geändert. Bitte laden Sie es neu und ändern "
                  "Sie es dann noch einmal."}  # fmt: skip
        return await form_page(request, account, result.values, 409, errors=errors, **page)
    if not answer.ok:
        errors = service_errors(answer.field_errors, answer.detail)
        return await form_page(request, account, result.values, 422, errors=errors, **page)
    await audit.record(console_of(request).api, account, "offering.edited", offering_id)
    return RedirectResponse(f"/verwaltung/angebote/{offering_id}?meldung=gespeichert", status_code=303)


async def _act(request: Request, offering_id: str, action: str, reason: str | None = None) -> Response:
    """Publish, complete or cancel (with the reason) on the catalogue; refusals shown on the page."""
    account = await signed_in(request)
    if account is None:
        return to_sign_in(request)
    form = await submitted_form(request)
    if (refusal := await refused(request, form, [])) is not None:
        return refusal
    found = await managed_offering(request, account, offering_id)
    if isinstance(found, Response):
        return found
    api = console_of(request).api
    if action == "absagen":
        reason = (form.get("grund") or "").strip()
        if not reason:
            return await detail(
                request, account, found, 422, "Bitte geben Sie einen Grund für die Absage an."
            )
        answer = await api.offering_action(offering_id, "cancel", found.etag, {"reason": reason[:2000]})
        audit_action, notice = "offering.cancelled", "abgesagt"
    else:
        api_action, audit_action, notice = ACTIONS[action]
        answer = await api.offering_action(offering_id, api_action, found.etag)
    if not answer.ok:
        problem = "; ".join(e["message"] for e in answer.field_errors if "message" in e) or answer.detail
        return await detail(request, account, found, 409, problem or "Das war nicht möglich.")
    detail_of = {"reason": reason[:200]} if reason else {}
    await audit.record(console_of(request).api, account, audit_action, offering_id, detail=detail_of)
    return RedirectResponse(f"/verwaltung/angebote/{offering_id}?meldung={notice}", status_code=303)


@router.post("/verwaltung/angebote/{offering_id}/veroeffentlichen")
async def publish(request: Request, offering_id: str) -> Response:
    return await _act(request, offering_id, "veroeffentlichen")


@router.post("/verwaltung/angebote/{offering_id}/abschliessen")
async def complete(request: Request, offering_id: str) -> Response:
    return await _act(request, offering_id, "abschliessen")


@router.post("/verwaltung/angebote/{offering_id}/absagen")
async def cancel(request: Request, offering_id: str) -> Response:
    return await _act(request, offering_id, "absagen")
