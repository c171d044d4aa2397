"""What every console page needs: the console's adapters, the signed-in account and German refusals."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from fastapi import Request
from redis.asyncio import Redis
from starlette.responses import RedirectResponse, Response

from frontends.portal.console.accounts import Account, account_of
from frontends.portal.console.sessions import SessionPolicy, SessionStore
from frontends.portal.console.staff_api import Answer, StaffApi
from frontends.portal.context import portal_of, submitted_form
from frontends.portal.register import refused
from frontends.portal.settings import PortalSettings

SIGN_IN = "/verwaltung/anmelden"


@dataclass
class Console:
    api: StaffApi
    sessions: SessionStore

    @property
    def policy(self) -> SessionPolicy:
        return self.sessions.policy

    @classmethod
    def of_settings(cls, settings: PortalSettings, redis: Redis) -> Console:
        policy = SessionPolicy(
            secure=settings.portal_url.startswith("https://"),
            idle_seconds=settings.console_idle_minutes * 60,
            absolute_seconds=settings.console_absolute_hours * 3600,
        )
        token = settings.staff_token.get_secret_value()
        return cls(
            api=StaffApi.connect(urls_of(settings), token),
            sessions=SessionStore(redis, settings.redis_prefix, policy),
        )

    async def close(self) -> None:
        await self.api.close()


def urls_of(settings: PortalSettings) -> dict[str, str]:
    return {
        "catalogue": settings.catalogue_url,
        "registration": settings.registration_url,
        "notification": settings.notification_url,
        "reporting": settings.reporting_url,
    }


def console_of(request: Request) -> Console:
    console: Console = request.app.state.console
    return console


async def signed_in(request: Request) -> Account | None:
    """The signed-in account, read again from the staff directory (a disabled account is out at once)."""
    console = console_of(request)
    session_id = console.policy.cookie_of(request)
    account_id = await console.sessions.account_id(session_id) if session_id else None
    if account_id is None:
        return None
    return account_of(await console.api.account(account_id))


def to_sign_in(request: Request) -> Response:
    return RedirectResponse(f"{SIGN_IN}?weiter={quote(request.url.path)}", status_code=303)


def safe_next(value: str | None) -> str:
    """Only a console path of this portal (no other host, no scheme) is a target after sign-in."""
    if value and value.startswith("/verwaltung") and "//" not in value and "\\" not in value:
        return value if value.isprintable() and len(value) < 300 else "/verwaltung"
    return "/verwaltung"


def render(request: Request, account: Account, name: str, status_code: int = 200, **context: Any) -> Response:
    return portal_of(request).render(request, f"verwaltung/{name}", status_code, account=account, **context)


def forbidden(request: Request) -> Response:
    return portal_of(request).error_page(
        request,
        403,
        "Keine Berechtigung",
        "Dieses Angebot gehört zu einem anderen QTI-Knoten. Ihr Konto darf nur die Angebote des eigenen "
        "Knotens sehen und bearbeiten.",
    )


def lead_only(request: Request) -> Response:
    return portal_of(request).error_page(
        request, 403, "Keine Berechtigung", "Diese Seite ist der Projektleitung vorbehalten."
    )


def not_found(request: Request) -> Response:
    return portal_of(request).error_page(
        request, 404, "Angebot nicht gefunden", "Dieses Angebot gibt es nicht (mehr)."
    )


async def managed_offering(request: Request, account: Account, offering_id: str) -> Answer | Response:
    """The offering with its ETag if the account may manage it; a German 404 or 403 page otherwise."""
    answer = await console_of(request).api.offering(offering_id)
    if answer is None:
        return not_found(request)
    if not account.may_manage(answer.body.get("node_id")):
        return forbidden(request)
    return answer


@dataclass(frozen=True)
class OfferingPost:
    form: dict[str, str]
    account: Account
    offering: Answer


async def offering_post(request: Request, offering_id: str) -> OfferingPost | Response:
    """A console form post about one offering: CSRF token and rate limits first, then a signed-in account,
    then an offering that account may manage; a German refusal (or the sign-in page) otherwise."""
    form = await submitted_form(request)
    if (refusal := await refused(request, form, [])) is not None:
        return refusal
    account = await signed_in(request)
    if account is None:
        return to_sign_in(request)
    found = await managed_offering(request, account, offering_id)
    return found if isinstance(found, Response) else OfferingPost(form, account, found)
