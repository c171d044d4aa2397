"""Certificates in the console: re-send or revoke (with a reason) one of an offering's certificates.

The code must belong to the offering in the path, and the offering to the account's node (the lead:
any), so nobody acts on another node's certificate by typing its code. Both actions name the signed-in
account in `X-Staff-Actor` and go into the audit log."""

from __future__ import annotations

import re
import unicodedata

from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from frontends.portal.console import audit
from frontends.portal.console.core import console_of, offering_post
from frontends.portal.console.offerings import detail

router = APIRouter()
CODE = re.compile(r"^[A-Z2-7]{4}(?:-[A-Z2-7]{4}){3}$")
MAX_REASON = 500
UNKNOWN = "Diese Bescheinigung gehört nicht zu diesem Angebot oder ist nicht bekannt."


def reason_problem(reason: str) -> str | None:
    if not reason:
        return "Bitte geben Sie einen Grund für den Widerruf an."
    if len(reason) > MAX_REASON:
        return f"Bitte fassen Sie den Grund in höchstens {MAX_REASON} Zeichen."
    if any(unicodedata.category(ch) in {"Cc", "Cf", "Cs", "Zl", "Zp"} for ch in reason):
        return "Bitte geben Sie den Grund in einer Zeile ohne Steuerzeichen an."
    return None


async def _certificate_action(request: Request, offering_id: str, code: str, action: str) -> Response:
    post = await offering_post(request, offering_id)
    if isinstance(post, Response):
        return post
    form, account, found = post.form, post.account, post.offering
    api = console_of(request).api
    known = {str(c["code"]) for c in await api.certificates(offering_id)} if CODE.match(code) else set()
    if code not in known:
        return await detail(request, account, found, 404, UNKNOWN)
    body = None
    if action == "revoke":
        reason = (form.get("grund") or "").strip()
        if (problem := reason_problem(reason)) is not None:
            return await detail(request, account, found, 422, problem, {f"grund-{code}": problem})
        body = {"reason": reason}
    answer = await api.certificate_action(code, action, account.account_id, body)
    if not answer.ok:
        problem = answer.detail or "Das war nicht möglich."
        key = f"grund-{code}" if answer.status == 422 else f"code-{code}"
        status = answer.status if answer.status in (404, 422) else 409
        return await detail(request, account, found, status, problem, {key: problem})
    audit_action = "certificate.revoked" if action == "revoke" else "certificate.resent"
    await audit.record(api, account, audit_action, offering_id, code)
    notice = "widerrufen" if action == "revoke" else "erneut-gesendet"
    return RedirectResponse(f"/verwaltung/angebote/{offering_id}?meldung={notice}#bescheinigungen", 303)


@router.post("/verwaltung/angebote/{offering_id}/bescheinigungen/{code}/erneut-senden")
async def resend(request: Request, offering_id: str, code: str) -> Response:
    return await _certificate_action(request, offering_id, code, "resend")


@router.post("/verwaltung/angebote/{offering_id}/bescheinigungen/{code}/widerrufen")
async def revoke(request: Request, offering_id: str, code: str) -> Response:
    return await _certificate_action(request, offering_id, code, "revoke")
