"""Sign-in and sign-out of the console, its start page and the audit log page (project lead only)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from frontends.portal.console import audit
from frontends.portal.console.accounts import account_of
from frontends.portal.console.core import console_of, lead_only, render, safe_next, signed_in, to_sign_in
from frontends.portal.context import portal_of, submitted_form
from frontends.portal.register import refused

router = APIRouter()
FAILED = (
    "E-Mail-Adresse oder Passwort stimmen nicht, oder das Konto ist gesperrt. Nach fünf Fehlversuchen "
    "innerhalb von 15 Minuten wird ein Konto für 15 Minuten gesperrt."
)


def sign_in_page(request: Request, status_code: int = 200, **context: object) -> Response:
    weiter = safe_next(request.query_params.get("weiter") or str(context.pop("weiter", "")))
    return portal_of(request).render(
        request, "verwaltung/anmelden.html", status_code, weiter=weiter,
        signed_out=request.query_params.get("abgemeldet") == "1", **context,
    )  # fmt: skip


@router.get("/verwaltung/anmelden")
async def sign_in_form(request: Request) -> Response:
    return sign_in_page(request)


@router.post("/verwaltung/anmelden")
async def sign_in(request: Request) -> Response:
    form = await submitted_form(request)
    email, password = form.get("email", "").strip()[:254], form.get("passwort", "")
    refusal = await refused(request, form, [email] if email else [])
    if refusal is not None:
        return refusal
    errors = {}
    if not email:
        errors["email"] = "Bitte geben Sie Ihre E-Mail-Adresse ein."
    if not password:
        errors["passwort"] = "Bitte geben Sie Ihr Passwort ein."
    console = console_of(request)
    account = account_of(await console.api.sign_in(email, password)) if not errors else None
    if account is None:
        errors = errors or {"email": FAILED}
        summary = [(name, text) for name, text in errors.items()]
        return sign_in_page(
            request, 422, errors=errors, summary=summary, values={"email": email}, weiter=form.get("weiter")
        )
    session_id = await console.sessions.start(account.account_id)
    response = RedirectResponse(safe_next(form.get("weiter")), status_code=303)
    console.policy.set_cookie(response, session_id)
    return response


@router.post("/verwaltung/abmelden")
async def sign_out(request: Request) -> Response:
    form = await submitted_form(request)
    refusal = await refused(request, form, [])
    if refusal is not None:
        return refusal
    console = console_of(request)
    session_id = console.policy.cookie_of(request)
    if session_id is not None:
        await console.sessions.end(session_id)
    response = RedirectResponse("/verwaltung/anmelden?abgemeldet=1", status_code=303)
    console.policy.clear_cookie(response)
    return response


@router.get("/verwaltung/protokoll")
async def audit_log(request: Request) -> Response:
    account = await signed_in(request)
    if account is None:
        return to_sign_in(request)
    if not account.is_lead:
        return lead_only(request)
    found = await audit.entries(console_of(request).api)
    return render(request, account, "protokoll.html", entries=found)
