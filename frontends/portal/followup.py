"""After the course: checking a certificate (`/bescheinigung/{code}`) and the anonymous questionnaire
(`/rueckmeldung/{token}`).

Both talk to the services' public HTTP APIs only: notification's `GET /certificates/{code}` (course,
dates, node; never a person) and registration's `GET`/`POST /feedback` with the one-time token in the
header `X-Feedback-Token` (never in a URL to a service). A malformed code or token is never sent on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Any, Final

import httpx
from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from frontends.portal.backend import BackendUnavailable
from frontends.portal.context import portal_of, submitted_form
from frontends.portal.register import refused
from qti_contracts import KIND_LABELS
from qti_runtime.german import MONTHS, WEEKDAYS

router = APIRouter()

CODE_INPUT: Final = re.compile(r"^[A-Za-z2-7\s-]{16,40}$")
FEEDBACK_TOKEN: Final = re.compile(r"^[A-Za-z0-9_-]{43}$")
MAX_COMMENT: Final = 2000
SCORES: Final = (
    ("5", "5 – sehr gut"),
    ("4", "4 – gut"),
    ("3", "3 – mittel"),
    ("2", "2 – weniger gut"),
    ("1", "1 – schlecht"),
)
USEFULNESS: Final = (
    ("5", "5 – sehr nützlich"),
    ("4", "4 – nützlich"),
    ("3", "3 – teils, teils"),
    ("2", "2 – wenig nützlich"),
    ("1", "1 – nicht nützlich"),
)
LABELS: Final = {"rating": "Gesamteindruck", "usefulness": "Nutzen für Ihre Arbeit"}


class TooManyChecks(Exception):
    """Notification's limit of certificate checks per client was reached; the value is Retry-After."""


@dataclass
class FollowUp:
    """HTTP clients for notification (certificates) and registration (feedback)."""

    notification: httpx.AsyncClient
    registration: httpx.AsyncClient

    @classmethod
    def connect(cls, notification_url: str, registration_url: str) -> FollowUp:
        timeout = httpx.Timeout(10.0, connect=3.0)
        return cls(
            httpx.AsyncClient(base_url=notification_url, timeout=timeout),
            httpx.AsyncClient(base_url=registration_url, timeout=timeout),
        )

    async def close(self) -> None:
        await self.notification.aclose()
        await self.registration.aclose()

    async def certificate(self, code: str, client_address: str) -> dict[str, Any] | None:
        """The public check of `code`; notification limits checks per browser, named in X-Forwarded-For."""
        try:
            answer = await self.notification.get(
                f"/certificates/{code}", headers={"X-Forwarded-For": client_address}
            )
        except httpx.HTTPError as exc:
            raise BackendUnavailable(str(exc)) from exc
        if answer.status_code == 404:
            return None
        if answer.status_code == 429:
            raise TooManyChecks(answer.headers.get("retry-after", "60"))
        if answer.status_code != 200:
            raise BackendUnavailable(f"/certificates: {answer.status_code}")
        found: dict[str, Any] = answer.json()
        return found

    async def ticket(self, token: str) -> tuple[int, dict[str, Any]]:
        """(status, body) of the ticket: 200 open, 404 unknown, 410 used."""
        return await self._call("GET", token)

    async def answer(self, token: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return await self._call("POST", token, body)

    async def _call(
        self, method: str, token: str, body: dict[str, Any] | None = None
    ) -> tuple[int, dict[str, Any]]:
        try:
            answer = await self.registration.request(
                method, "/feedback", headers={"X-Feedback-Token": token}, json=body
            )
        except httpx.HTTPError as exc:
            raise BackendUnavailable(str(exc)) from exc
        if answer.status_code >= 500:
            raise BackendUnavailable(f"/feedback: {answer.status_code}")
        return answer.status_code, answer.json()


def followup_of(request: Request) -> FollowUp:
    followup: FollowUp = request.app.state.followup
    return followup


# ------------------------------------------------------------------------------------- certificates


def _long_day(value: str) -> str:
    day = date.fromisoformat(value)
    return f"{WEEKDAYS[day.weekday()]}, {day.day}. {MONTHS[day.month - 1]} {day.year}"


def _certificate_view(found: dict[str, Any]) -> dict[str, Any]:
    first, last = found.get("first_day"), found.get("last_day")
    days = ""
    if first:
        days = _long_day(first) if first == last or not last else f"{_long_day(first)} bis {_long_day(last)}"
    kinds = {kind.value: label for kind, label in KIND_LABELS.items()}
    return {
        "code": found["code"],
        "valid": found["status"] == "valid",
        "title": found["title"],
        "kind": kinds.get(found.get("kind", ""), "Veranstaltung"),
        "days": days,
        "units": found.get("total_units"),
        "node_name": found["node_name"],
        "issuer": found["issuer"],
        "issued_on": _day(found.get("issued_on")),
        "revoked_on": _day(found.get("revoked_on")),
    }


def _day(value: str | None) -> str:
    if not value:
        return ""
    day = date.fromisoformat(value)
    return f"{day.day:02d}.{day.month:02d}.{day.year}"


@router.get("/bescheinigung")
async def certificate_form(request: Request) -> Response:
    """The check form; `?code=…` (the form's GET) goes to the code's page."""
    code = (request.query_params.get("code") or "").strip()
    if code:
        compact = re.sub(r"[\s-]", "", code).upper() if CODE_INPUT.match(code) else ""
        if len(compact) == 16:
            grouped = "-".join(compact[i : i + 4] for i in range(0, 16, 4))
            return RedirectResponse(f"/bescheinigung/{grouped}", status_code=303)
        errors = {
            "code": "Bitte geben Sie den Prüfcode so ein, wie er auf der Bescheinigung steht (16 Zeichen)."
        }
        return portal_of(request).render(
            request, "certificate_check.html", 422, errors=errors, summary=[("code", errors["code"])],
            values={"code": code[:40]},
        )  # fmt: skip
    return portal_of(request).render(request, "certificate_check.html")


@router.get("/bescheinigung/{code}")
async def certificate(request: Request, code: str) -> Response:
    portal = portal_of(request)
    try:
        found = await _checked(request, code)
    except TooManyChecks as limited:
        page = portal.error_page(
            request, 429, "Zu viele Abfragen",
            "Von hier kamen in kurzer Zeit sehr viele Prüfungen. "
            "Bitte versuchen Sie es in einer Minute erneut.",
        )  # fmt: skip
        page.headers["Retry-After"] = str(limited) if str(limited).isdigit() else "60"
        return page
    if found is None:
        return portal.render(request, "certificate.html", 404, found=None, code=code[:40])
    return portal.render(request, "certificate.html", found=_certificate_view(found), code=found["code"])


async def _checked(request: Request, code: str) -> dict[str, Any] | None:
    if not CODE_INPUT.match(code):
        return None
    return await followup_of(request).certificate(code, portal_of(request).clients.address(request))


# --------------------------------------------------------------------------------------- feedback


def _spent_or_unknown(request: Request, status: int) -> Response:
    return portal_of(request).render(request, "feedback_gone.html", 410 if status == 410 else 404)


def _choice(
    form: dict[str, str], name: str, allowed: tuple[tuple[str, str], ...], errors: dict[str, str]
) -> int:
    value = form.get(name, "")
    if value not in {v for v, _ in allowed}:
        errors[name] = f"Bitte wählen Sie bei „{LABELS[name]}“ einen Wert aus."
        return 0
    return int(value)


def parse_answers(form: dict[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """The answer for registration, or German messages per field."""
    errors: dict[str, str] = {}
    rating = _choice(form, "rating", SCORES, errors)
    usefulness = _choice(form, "usefulness", USEFULNESS, errors)
    recommend = form.get("would_recommend", "")
    if recommend not in ("ja", "nein"):
        errors["would_recommend"] = "Bitte wählen Sie, ob Sie die Veranstaltung weiterempfehlen würden."
    comment = form.get("comment", "").replace("\r\n", "\n").strip()
    if len(comment) > MAX_COMMENT:
        errors["comment"] = f"Bitte kürzen Sie Ihren Kommentar auf höchstens {MAX_COMMENT} Zeichen."
    elif any(ord(ch) < 32 and ch not in "\n\t" for ch in comment):
        errors["comment"] = "Der Kommentar enthält Steuerzeichen. Bitte geben Sie nur normalen Text ein."
    body = {"rating": rating, "usefulness": usefulness, "would_recommend": recommend == "ja",
            "comment": comment or None}  # fmt: skip
    return body, errors


async def _questionnaire(request: Request, token: str, status: int = 200, **context: Any) -> Response:
    portal = portal_of(request)
    state, ticket = await followup_of(request).ticket(token)
    if state != 200:
        return _spent_or_unknown(request, state)
    offering = await portal.backend.offering(str(ticket["offering_id"]))
    return portal.render(
        request, "feedback.html", status, title=offering["title"] if offering else None,
        action=f"/rueckmeldung/{token}", scores=SCORES, usefulness=USEFULNESS, max_comment=MAX_COMMENT,
        **context,
    )  # fmt: skip


@router.get("/rueckmeldung/danke")
async def thanks(request: Request) -> Response:
    return portal_of(request).render(request, "feedback_thanks.html")


@router.get("/rueckmeldung/{token}")
async def questionnaire(request: Request, token: str) -> Response:
    if not FEEDBACK_TOKEN.match(token):
        return _spent_or_unknown(request, 404)
    return await _questionnaire(request, token)


@router.post("/rueckmeldung/{token}")
async def answer(request: Request, token: str) -> Response:
    form = await submitted_form(request)
    refusal = await refused(request, form, [])
    if refusal is not None:
        return refusal
    if not FEEDBACK_TOKEN.match(token):
        return _spent_or_unknown(request, 404)
    body, errors = parse_answers(form)
    if errors:
        summary = [(name, text) for name, text in errors.items()]
        values = {
            k: v for k, v in form.items() if k in ("rating", "usefulness", "would_recommend", "comment")
        }
        return await _questionnaire(request, token, 422, errors=errors, summary=summary, values=values)
    status, reply = await followup_of(request).answer(token, body)
    if status in (404, 410):
        return _spent_or_unknown(request, status)
    if status != 202:
        problem = str(reply.get("detail", "Die Angaben konnten nicht angenommen werden."))
        return await _questionnaire(request, token, 422, errors={"comment": problem},
                                    summary=[("comment", problem)], values=form)  # fmt: skip
    return RedirectResponse("/rueckmeldung/danke", status_code=303)
