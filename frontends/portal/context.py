"""What every page handler needs: the adapters, the keys and the template environment."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse

from frontends.portal.backend import Backend
from frontends.portal.commands import CommandBus, ReplyStore
from frontends.portal.forms import PRIVACY_NOTICE_VERSION
from frontends.portal.security import CSRF_FIELD, FormKeys, Ownership, RateLimiter, RateRule
from frontends.portal.settings import PortalSettings
from qti_runtime.client_address import ClientAddress

TEMPLATES = Path(__file__).parent / "templates"


def template_environment() -> Environment:
    return Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )


@dataclass
class Portal:
    settings: PortalSettings
    backend: Backend
    bus: CommandBus
    replies: ReplyStore
    ownership: Ownership
    limiter: RateLimiter
    keys: FormKeys
    templates: Environment
    clients: ClientAddress

    @property
    def post_rule(self) -> RateRule:
        s = self.settings
        return RateRule("post", s.portal_posts_per_client, s.portal_rate_window_seconds)

    @property
    def email_rule(self) -> RateRule:
        s = self.settings
        return RateRule("email", s.portal_posts_per_email, s.portal_rate_window_seconds)

    def render(self, request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        context.setdefault("errors", {})
        context.setdefault("summary", [])
        context.setdefault("values", {})
        context["csrf_token"] = self.keys.csrf_token(session_of(request))
        context["notice_version"] = PRIVACY_NOTICE_VERSION
        html = self.templates.get_template(name).render(**context)
        return HTMLResponse(html, status_code=status_code, headers={"Cache-Control": "no-store"})

    def error_page(self, request: Request, status_code: int, heading: str, message: str) -> HTMLResponse:
        return self.render(request, "error.html", status_code, heading=heading, message=message)


def session_of(request: Request) -> str:
    return str(request.scope["state"]["session"])


def portal_of(request: Request) -> Portal:
    portal: Portal = request.app.state.portal
    return portal


async def submitted_form(request: Request) -> dict[str, str]:
    """The posted fields as text (files and repeated fields beyond the first are dropped)."""
    form = await request.form(max_files=0, max_fields=300)
    return {key: value for key, value in form.items() if isinstance(value, str)}


def csrf_ok(request: Request, form: dict[str, str]) -> bool:
    return portal_of(request).keys.csrf_valid(session_of(request), form.get(CSRF_FIELD))
