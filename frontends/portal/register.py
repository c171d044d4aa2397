"""Registering: the single form, the coordinator form, and the outcome pages.

A submission publishes `registration.requested` with a request id derived from the form's hidden key and
the data (`forms.request_id_for`), so a reload or double click is one request (registration treats the
same event id as one). The browser is then sent (303) to the outcome page of that request id; request ids
are no secret, and the page shows no personal data, only the decision.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from frontends.portal import views
from frontends.portal.alternatives import HEADING, alternative_items, county_of, source_of
from frontends.portal.backend import ID_PATTERN
from frontends.portal.context import Portal, csrf_ok, portal_of, session_of, submitted_form
from frontends.portal.find import (
    GROUP_CONSENT_LABEL,
    card,
    choice_options,
    not_found,
    offering_page,
)
from frontends.portal.forms import (
    MAX_EMPLOYEES,
    FormResult,
    employee_rows,
    form_key,
    group_registration,
    request_id_for,
    single_registration,
)
from qti_contracts import REJECTION_LABELS, RejectionReason

router = APIRouter()
MAX_OUTCOMES = MAX_EMPLOYEES
FIELD_LABELS = {
    "vorname": "Vorname",
    "nachname": "Nachname",
    "email": "E-Mail-Adresse",
    "unternehmen": "Unternehmen",
    "postleitzahl": "Postleitzahl",
    "landkreis": "Landkreis",
    "datenschutz": "Datenschutz",
}


def summary_of(errors: dict[str, str]) -> list[tuple[str, str]]:
    """(field id, "Label: message") per error, "Vorname (Person 2)" for the coordinator's rows."""
    lines = []
    for name, message in errors.items():
        base, _, row = name.partition("_")
        label = FIELD_LABELS.get(base, base)
        if row.isdigit():
            label = f"{label} (Person {int(row) + 1})"
        lines.append((name, f"{label}: {message}"))
    return lines


async def refused(request: Request, form: dict[str, str], emails: list[str]) -> Response | None:
    """A German 403 for a missing or wrong CSRF token, 429 beyond the rate limits; None if all is well."""
    portal = portal_of(request)
    if not csrf_ok(request, form):
        return portal.error_page(
            request,
            403,
            "Formular abgelaufen",
            "Das Formular ist abgelaufen oder wurde nicht von dieser Seite gesendet. Bitte laden Sie die "
            "Seite neu und senden Sie es noch einmal.",
        )
    checks = [
        (portal.post_rule, portal.clients.of(request)),
        *((portal.email_rule, e.lower()) for e in emails),
    ]
    wait = await portal.limiter.wait_seconds(checks)
    if wait:
        page = portal.error_page(
            request,
            429,
            "Zu viele Anfragen",
            f"Von hier kamen in kurzer Zeit sehr viele Anfragen. Bitte versuchen Sie es in {wait} Sekunden "
            "noch einmal.",
        )
        page.headers["Retry-After"] = str(wait)
        return page
    return None


async def publish(request: Request, result: FormResult, key: str) -> list[str]:
    portal = portal_of(request)
    request_ids = []
    for command in result.commands:
        request_id = request_id_for(key, command)
        await portal.ownership.claim(request_id, session_of(request))
        await portal.bus.request_registration(command, request_id)
        request_ids.append(request_id)
    return request_ids


@router.post("/angebote/{offering_id}/anmelden")
async def register(request: Request, offering_id: str) -> Response:
    portal = portal_of(request)
    offering = await portal.backend.offering(offering_id)
    if offering is None:
        return not_found(request)
    form = await submitted_form(request)
    refusal = await refused(request, form, [form.get("email", "")[:320]])
    if refusal is not None:
        return refusal
    key = form_key(form.get("anfrage_schluessel"))
    result = single_registration(offering["offering_id"], form)
    if result.errors:
        return await offering_page(
            request, offering, 422, values=result.values, errors=result.errors,
            summary=summary_of(result.errors), form_key=key, quelle=source_of(form.get("quelle")),
        )  # fmt: skip
    (request_id,) = await publish(request, result, key)
    return RedirectResponse(outcome_url(request_id, form.get("landkreis")), status_code=303)


def outcome_url(request_id: str, county: object) -> str:
    """The outcome page; with the company's district (a closed-list code, no personal data) so that
    alternatives to a full offering are shown nearest first."""
    code = county_of(county)
    return f"/anmeldung/{request_id}" + (f"?landkreis={code}" if code else "")


def group_page(
    request: Request, offering: dict[str, Any], rows: int, status_code: int = 200, **context: Any
) -> Response:
    context.setdefault("form_key", form_key(None))
    context.setdefault("quelle", source_of(request.query_params.get("quelle")))
    return portal_of(request).render(
        request, "group.html", status_code, o=card(offering), rows=rows, max_rows=MAX_EMPLOYEES,
        consent_label=GROUP_CONSENT_LABEL, **choice_options(), **context,
    )  # fmt: skip


@router.get("/angebote/{offering_id}/mehrere")
async def group_form(request: Request, offering_id: str) -> Response:
    offering = await portal_of(request).backend.offering(offering_id)
    if offering is None:
        return not_found(request)
    return group_page(request, offering, 3)


@router.post("/angebote/{offering_id}/mehrere")
async def group_register(request: Request, offering_id: str) -> Response:
    offering = await portal_of(request).backend.offering(offering_id)
    if offering is None:
        return not_found(request)
    form = await submitted_form(request)
    rows = employee_rows(form)
    emails = [form.get(f"email_{i}", "")[:320] for i in range(rows) if form.get(f"email_{i}")]
    refusal = await refused(request, form, emails)
    if refusal is not None:
        return refusal
    key = form_key(form.get("anfrage_schluessel"))
    quelle = source_of(form.get("quelle"))
    if form.get("aktion") == "zeile":
        values = {k: v for k, v in form.items() if k != "zeilen"}
        return group_page(
            request, offering, min(rows + 1, MAX_EMPLOYEES), values=values, form_key=key, quelle=quelle
        )
    result = group_registration(offering["offering_id"], form)
    if result.errors:
        return group_page(
            request, offering, rows, 422, values=result.values, errors=result.errors,
            summary=summary_of(result.errors), form_key=key, quelle=quelle,
        )  # fmt: skip
    request_ids = await publish(request, result, key)
    query = "&".join(f"anfrage={rid}" for rid in request_ids)
    return RedirectResponse(f"/anmeldungen?{query}", status_code=303)


async def outcome_of(portal: Portal, request_id: str) -> dict[str, Any] | None:
    """The decision: from this portal's replies if there (with the token), else registration's status API
    (marked `from_api`: the reply may still be on its way through registration's outbox)."""
    reply = await portal.replies.get(request_id)
    if reply is not None:
        return reply
    status = await portal.backend.request_status(request_id)
    return {**status, "from_api": True} if status is not None else None


def settled(outcome: dict[str, Any] | None, want_reply: bool) -> bool:
    if outcome is None or outcome.get("status") == "pending":
        return False
    return not (want_reply and outcome.get("from_api"))


async def awaited_outcomes(
    portal: Portal, request_ids: list[str], *, want_reply: bool = False
) -> list[dict[str, Any] | None]:
    """Waits (briefly) until every request is decided, so the page usually shows the outcome at once;
    with `want_reply`, also for the reply that carries the personal token."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + portal.settings.portal_outcome_wait_seconds
    while True:
        outcomes = [await outcome_of(portal, rid) for rid in request_ids]
        if all(settled(o, want_reply) for o in outcomes) or loop.time() >= deadline:
            return outcomes
        await asyncio.sleep(0.25)


def outcome_texts(outcome: dict[str, Any]) -> dict[str, Any]:
    status = outcome.get("status", "pending")
    reason = str(outcome.get("reason"))
    known = reason in {r.value for r in RejectionReason}
    headings = {
        "confirmed": "Anmeldung bestätigt",
        "waitlisted": "Sie stehen auf der Warteliste",
        "rejected": "Anmeldung nicht möglich",
    }
    return {
        "heading": headings.get(status, "Anmeldung wird bearbeitet"),
        "reason_text": REJECTION_LABELS[RejectionReason(reason)] if known else "",
        "next_step": views.NEXT_STEP.get(str(reason), views.NEXT_STEP["invalid_request"]),
        "pending": status not in headings,
    }


@router.get("/anmeldung/{request_id}")
async def outcome(request: Request, request_id: str) -> Response:
    portal = portal_of(request)
    owner = ID_PATTERN.match(request_id) is not None and await portal.ownership.owns(
        request_id, session_of(request)
    )
    known = ID_PATTERN.match(request_id) is not None
    found = (await awaited_outcomes(portal, [request_id], want_reply=owner))[0] if known else None
    if found is None and not owner:
        return portal.error_page(request, 404, "Anmeldung nicht gefunden", "Zu diesem Link liegt nichts vor.")
    shown = found or {"request_id": request_id, "status": "pending"}
    token = shown.pop("personal_token", None) if owner else None
    shown.pop("personal_token", None)
    link = f"/meine-anmeldung/{token}" if token else None
    county = county_of(request.query_params.get("landkreis"))
    return portal.render(
        request, "outcome.html", outcome=shown, personal_link=link,
        refresh_url=outcome_url(request_id, county), **outcome_texts(shown),
        alternatives=await outcome_alternatives(portal, shown, county), alternatives_heading=HEADING,
    )  # fmt: skip


async def outcome_alternatives(
    portal: Portal, outcome: dict[str, Any], county: str | None
) -> list[dict[str, Any]]:
    """Offerings with free seats when the request landed on the waiting list or found it full."""
    full = outcome.get("status") == "waitlisted" or outcome.get("reason") == "waitlist_full"
    offering_id = outcome.get("offering_id")
    if not full or not isinstance(offering_id, str):
        return []
    found = await alternative_items(portal, offering_id, county)
    return [card(item) | {"link": item["link"]} for item in found]


def row_text(found: dict[str, Any] | None) -> str:
    status = (found or {}).get("status")
    if status == "confirmed":
        return "bestätigt"
    if status == "waitlisted":
        return f"Warteliste, Platz {found.get('position') if found else ''}"
    if status == "rejected":
        texts = outcome_texts(found or {})
        return f"abgelehnt: {(found or {}).get('detail') or texts['reason_text']} {texts['next_step']}"
    return "wird bearbeitet"


@router.get("/anmeldungen")
async def outcomes(request: Request) -> Response:
    portal = portal_of(request)
    request_ids = [r for r in request.query_params.getlist("anfrage") if ID_PATTERN.match(r)]
    if not request_ids or len(request_ids) > MAX_OUTCOMES:
        return portal.error_page(request, 404, "Nichts gefunden", "Zu diesem Link liegt nichts vor.")
    found = await awaited_outcomes(portal, request_ids)
    rows = [{"text": row_text(f)} for f in found]
    query = "&".join(f"anfrage={rid}" for rid in request_ids)
    return portal.render(
        request, "outcomes.html", rows=rows, refresh_url=f"/anmeldungen?{query}",
        pending=any(r["text"] == "wird bearbeitet" for r in rows),
    )  # fmt: skip
