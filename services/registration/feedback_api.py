"""HTTP of the anonymous feedback: check a link's ticket, and answer once.

The token travels in the header `X-Feedback-Token` (never in a URL, as the personal token), from the
portal's `/rueckmeldung/{token}` page. Unknown or forged: 404; used already: 410; bad answers: 422 with a
German message per field.
"""

# No `from __future__ import annotations`: FastAPI reads the endpoints' annotations at run time.
import json
from typing import Annotated, Final

from fastapi import APIRouter, Header, Request
from pydantic import BaseModel

from qti_runtime.http import Problem
from services.registration import feedback
from services.registration.handlers import RegistrationService

UNKNOWN: Final = "Dieser Link zur Rückmeldung ist ungültig."
SPENT: Final = "Dieser Link wurde bereits verwendet: Mit jedem Link ist genau eine Rückmeldung möglich."

FeedbackToken = Annotated[
    str | None,
    Header(alias="X-Feedback-Token", description="The one-time token from the invitation mail's link."),
]


class TicketView(BaseModel):
    offering_id: str
    status: str = "open"


class Received(BaseModel):
    offering_id: str
    status: str = "received"


def _token_or_404(token: str | None) -> str:
    if not feedback.plausible_token(token):
        raise Problem(404, UNKNOWN)
    assert token is not None
    return token


def router(service: RegistrationService) -> APIRouter:
    api = APIRouter(tags=["feedback"])

    @api.get("/feedback", summary="Whether a feedback link may still be used", response_model=TicketView)
    async def feedback_ticket(token: FeedbackToken = None) -> TicketView:
        state = await feedback.ticket_state(service.db, _token_or_404(token))
        if state is None:
            raise Problem(404, UNKNOWN)
        offering_id, spent = state
        if spent:
            raise Problem(410, SPENT)
        return TicketView(offering_id=offering_id)

    @api.post(
        "/feedback",
        summary="Answer the questionnaire once (anonymous: the answer is passed on without a person)",
        response_model=Received,
        status_code=202,
    )
    async def submit_feedback(request: Request, token: FeedbackToken = None) -> Received:
        checked = _token_or_404(token)
        try:
            raw = json.loads(await request.body())
        except (ValueError, RecursionError):
            raise Problem(422, "Die Rückmeldung ist kein gültiges JSON.") from None
        answer, errors = feedback.check_answer(raw)
        if answer is None:
            detail = " ".join(errors.values())
            raise Problem(422, detail, errors=[{"field": k, "message": v} for k, v in errors.items()])
        try:
            offering_id = await feedback.submit(service.db, checked, answer)
        except feedback.TicketSpent:
            raise Problem(410, SPENT) from None
        except feedback.TicketUnknown:
            raise Problem(404, UNKNOWN) from None
        return Received(offering_id=offering_id)

    return api
