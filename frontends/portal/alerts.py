"""Offer alerts ("Angebotsalarm") and "Interesse melden": the forms and the pages of the mail links.

The portal keeps nothing: it validates the form and hands the sign-up to notification's public API
(`POST /alerts`), which stores it, sends the confirmation mail and answers the same whether the address
is new or known. Double opt-in: `GET /angebotsalarm/bestaetigen/{token}` only shows a button, because
mail scanners open (GET) every link in a mail; the POST behind the button confirms.

`POST /angebotsalarm/abmelden/{token}` is the RFC 8058 one-click unsubscribe URL of `List-Unsubscribe`:
mail clients post `List-Unsubscribe=One-Click` to it without any page or cookie, so it needs no CSRF token
(and none could be had); the token in the URL is what proves the right to end the subscription, so a
forged cross-site POST would need that token already. It ends the subscription at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import httpx
from fastapi import APIRouter, Request
from starlette.datastructures import FormData
from starlette.responses import Response

from frontends.portal.backend import TOKEN_PATTERN, BackendUnavailable
from frontends.portal.context import csrf_ok, portal_of
from frontends.portal.forms import _email_problem as email_problem
from frontends.portal.register import refused
from qti_contracts import COUNTY_LABELS, KIND_LABELS, TOPIC_LABELS

router = APIRouter()

ALERT_NOTICE_VERSION: Final = "2026-12-alarm-v1"
TOPICS: Final = [(t.value, label) for t, label in TOPIC_LABELS.items()]
KINDS: Final = [(k.value, label) for k, label in KIND_LABELS.items()]
COUNTIES: Final = [(c.value, label) for c, label in COUNTY_LABELS.items() if c.value != "ausserhalb"]
_COUNTY_BY_LABEL: Final = {label.casefold(): code for code, label in COUNTIES}
FREQUENCIES: Final = [
    ("immediate", "sofort bei jedem neuen Angebot"),
    ("weekly", "einmal pro Woche gesammelt"),
]
FIELD_LABELS: Final = {
    "email": "E-Mail-Adresse",
    "thema": "Themen",
    "landkreis": "Landkreis",
    "datenschutz": "Einwilligung",
}


# --------------------------------------------------------------------------------- notification API


async def _post(request: Request, path: str, body: dict[str, Any]) -> httpx.Response:
    """A call to notification's public API, naming the browser's address for its rate limits."""
    portal = portal_of(request)
    settings = portal.settings
    client_ip = portal.clients.address(request)
    try:
        async with httpx.AsyncClient(base_url=settings.notification_url, timeout=10.0) as client:
            response = await client.post(path, json=body, headers={"X-Forwarded-For": client_ip})
    except httpx.HTTPError as exc:
        raise BackendUnavailable(str(exc)) from exc
    if response.status_code >= 500:
        raise BackendUnavailable(f"{path}: {response.status_code}")
    return response


# ------------------------------------------------------------------------------------ form parsing


async def _form(request: Request) -> FormData:
    return await request.form(max_files=0, max_fields=200)


def _chosen(form: FormData, name: str, allowed: list[tuple[str, str]]) -> list[str]:
    """The ticked boxes of `name` that are real choices (anything else is dropped, never echoed)."""
    valid = {value for value, _ in allowed}
    picked = [value for value in form.getlist(name) if isinstance(value, str) and value in valid]
    return list(dict.fromkeys(picked))


def _text(form: FormData, name: str, limit: int = 320) -> str:
    value = form.get(name)
    return value.strip()[:limit] if isinstance(value, str) else ""


def _errors(values: Mapping[str, Any], *, need_topic: bool) -> dict[str, str]:
    errors: dict[str, str] = {}
    problem = email_problem(str(values.get("email", "")))
    if problem:
        errors["email"] = problem
    if need_topic and not values.get("thema"):
        errors["thema"] = "Bitte wählen Sie mindestens ein Thema aus."
    if values.get("datenschutz") != "ja":
        errors["datenschutz"] = "Bitte willigen Sie ein, damit wir Ihnen schreiben dürfen."
    return errors


def _summary(errors: dict[str, str]) -> list[tuple[str, str]]:
    first_box = {"thema": f"thema-{TOPICS[0][0]}"}
    return [(first_box.get(n, n), f"{FIELD_LABELS.get(n, n)}: {m}") for n, m in errors.items()]


# ---------------------------------------------------------------------------------- Angebotsalarm


async def _alert_page(request: Request, status_code: int = 200, **context: Any) -> Response:
    nodes = await portal_of(request).backend.nodes()
    node_options = [(str(n["node_id"]), f"{n['name']} ({n['town']})") for n in nodes]
    return portal_of(request).render(
        request, "alert_form.html", status_code, topics=TOPICS, kinds=KINDS, counties=COUNTIES,
        nodes=node_options, frequencies=FREQUENCIES, alert_notice_version=ALERT_NOTICE_VERSION,
        **context,
    )  # fmt: skip


@router.get("/angebotsalarm")
async def alert_form(request: Request) -> Response:
    return await _alert_page(request, values={"haeufigkeit": "immediate"})


@router.post("/angebotsalarm")
async def alert_submit(request: Request) -> Response:
    form = await _form(request)
    nodes = [(str(n["node_id"]), "") for n in await portal_of(request).backend.nodes()]
    values: dict[str, Any] = {
        "email": _text(form, "email"),
        "thema": _chosen(form, "thema", TOPICS),
        "format": _chosen(form, "format", KINDS),
        "landkreis": _chosen(form, "landkreis", COUNTIES),
        "knoten": _chosen(form, "knoten", nodes),
        "haeufigkeit": "weekly" if _text(form, "haeufigkeit") == "weekly" else "immediate",
        "datenschutz": _text(form, "datenschutz"),
    }
    plain = {key: value for key, value in form.items() if isinstance(value, str)}
    refusal = await refused(request, plain, [values["email"]])
    if refusal is not None:
        return refusal
    errors = _errors(values, need_topic=True)
    if errors:
        return await _alert_page(request, 422, values=values, errors=errors, summary=_summary(errors))
    body = {
        "email": values["email"], "kind": "alert", "topics": values["thema"], "kinds": values["format"],
        "counties": values["landkreis"], "nodes": values["knoten"], "frequency": values["haeufigkeit"],
        "privacy_consent": True, "consent_text_version": ALERT_NOTICE_VERSION,
    }  # fmt: skip
    return await _signed_up(request, body, values, "alert")


async def _signed_up(request: Request, body: dict[str, Any], values: dict[str, Any], kind: str) -> Response:
    response = await _post(request, "/alerts", body)
    portal = portal_of(request)
    if response.status_code == 429:
        page = portal.error_page(
            request, 429, "Zu viele Anmeldungen",
            "Für diese E-Mail-Adresse oder von hier kamen in kurzer Zeit zu viele Anmeldungen. "
            "Bitte versuchen Sie es später noch einmal.",
        )  # fmt: skip
        page.headers["Retry-After"] = response.headers.get("Retry-After", "60")
        return page
    if response.status_code != 202:
        errors = {"email": "Diese Angaben konnten wir nicht annehmen. Bitte prüfen Sie die E-Mail-Adresse."}
        if kind == "interest":
            return _interest_page(request, 422, values=values, errors=errors, summary=_summary(errors))
        return await _alert_page(request, 422, values=values, errors=errors, summary=_summary(errors))
    return portal.render(request, "alert_sent.html", kind=kind)


# ---------------------------------------------------------------------------------- mail links


def _bad_link(request: Request) -> Response:
    return portal_of(request).error_page(
        request, 404, "Link ungültig oder abgelaufen",
        "Dieser Link ist ungültig oder abgelaufen. Unbestätigte Anmeldungen verfallen nach einigen Tagen; "
        "Sie können sich jederzeit neu anmelden.",
    )  # fmt: skip


@router.get("/angebotsalarm/bestaetigen/{token}")
async def confirm_page(request: Request, token: str) -> Response:
    if not TOKEN_PATTERN.match(token):
        return _bad_link(request)
    return portal_of(request).render(request, "alert_link.html", action="bestaetigen", token=token)


@router.post("/angebotsalarm/bestaetigen/{token}")
async def confirm(request: Request, token: str) -> Response:
    form = {k: v for k, v in (await _form(request)).items() if isinstance(v, str)}
    if not csrf_ok(request, form):
        return await refused(request, form, []) or _bad_link(request)
    if not TOKEN_PATTERN.match(token):
        return _bad_link(request)
    response = await _post(request, "/alerts/confirm", {"token": token})
    if response.status_code != 200:
        return _bad_link(request)
    return portal_of(request).render(
        request, "alert_done.html", action="bestaetigt", kind=response.json()["kind"]
    )


@router.get("/angebotsalarm/abmelden/{token}")
async def unsubscribe_page(request: Request, token: str) -> Response:
    if not TOKEN_PATTERN.match(token):
        return _bad_link(request)
    return portal_of(request).render(request, "alert_link.html", action="abmelden", token=token)


@router.post("/angebotsalarm/abmelden/{token}")
async def unsubscribe(request: Request, token: str) -> Response:
    """One click (RFC 8058) or the button of the page: ends the subscription at once, no CSRF token."""
    if not TOKEN_PATTERN.match(token):
        return _bad_link(request)
    response = await _post(request, "/alerts/unsubscribe", {"token": token})
    if response.status_code != 200:
        return _bad_link(request)
    return portal_of(request).render(
        request, "alert_done.html", action="abgemeldet", kind=response.json()["kind"]
    )


# --------------------------------------------------------------------------------- Interesse melden


def _interest_page(request: Request, status_code: int = 200, **context: Any) -> Response:
    return portal_of(request).render(
        request, "interest_form.html", status_code, topics=TOPICS, counties=COUNTIES,
        alert_notice_version=ALERT_NOTICE_VERSION, **context,
    )  # fmt: skip


def _county_code(value: str) -> str:
    """A county code, or the code of the German label the start page's filter uses."""
    if value in {code for code, _ in COUNTIES}:
        return value
    return _COUNTY_BY_LABEL.get(value.strip().casefold(), "")


@router.get("/interesse")
async def interest_form(request: Request) -> Response:
    topic = request.query_params.get("topic", "")
    values = {
        "thema": topic if topic in {t for t, _ in TOPICS} else "",
        "landkreis": _county_code(request.query_params.get("county", "")[:100]),
    }
    return _interest_page(request, values=values)


@router.post("/interesse")
async def interest_submit(request: Request) -> Response:
    form = await _form(request)
    values: dict[str, Any] = {
        "email": _text(form, "email"),
        "thema": next(iter(_chosen(form, "thema", TOPICS)), ""),
        "landkreis": next(iter(_chosen(form, "landkreis", COUNTIES)), ""),
        "datenschutz": _text(form, "datenschutz"),
    }
    plain = {key: value for key, value in form.items() if isinstance(value, str)}
    refusal = await refused(request, plain, [values["email"]])
    if refusal is not None:
        return refusal
    errors = _errors(values, need_topic=False)
    if not values["thema"]:
        errors["thema"] = "Bitte wählen Sie ein Thema aus."
    if not values["landkreis"]:
        errors["landkreis"] = "Bitte wählen Sie einen Landkreis aus."
    if errors:
        summary = [(n, f"{FIELD_LABELS.get(n, n)}: {m}") for n, m in errors.items()]
        return _interest_page(request, 422, values=values, errors=errors, summary=summary)
    body = {
        "email": values["email"], "kind": "interest", "topics": [values["thema"]],
        "counties": [values["landkreis"]], "privacy_consent": True,
        "consent_text_version": ALERT_NOTICE_VERSION,
    }  # fmt: skip
    return await _signed_up(request, body, values, "interest")
