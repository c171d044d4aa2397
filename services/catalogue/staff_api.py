"""HTTP API of the staff directory: sign-in, accounts, audit log. Only the staff console calls it (it
needs the staff bearer token); accounts are created by operators (`qti staff add`), not over HTTP.

No answer ever contains a password or its hash. A failed sign-in is one 401 for every reason (unknown
address, wrong password, disabled, locked), so the answer does not tell whether an address has an
account; its text names the lockout rule so that a locked person knows what to do.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Final
from uuid import UUID

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from qti_runtime.db import Database
from qti_runtime.http import Problem, staff_guard
from qti_runtime.settings import Settings
from services.catalogue import staff_accounts, staff_store
from services.catalogue.domain import has_control_chars
from services.catalogue.handlers import CatalogueError
from services.catalogue.http_errors import command_problem, uuid_or_404
from services.catalogue.http_models import problems
from services.catalogue.http_queries import DEFAULT_LIMIT, LimitQuery
from services.catalogue.representations import json_response
from services.catalogue.staff_accounts import ACCOUNT_NOT_FOUND, AuditRequest, Forbidden
from services.catalogue.staff_rules import (
    ACTION_LABELS,
    EMAIL_MAX_LENGTH,
    PASSWORD_MAX_LENGTH,
    SUBJECT_MAX_LENGTH,
    Role,
    StaffAccount,
    is_locked,
)
from services.catalogue.staff_store import AuditEntry

SIGN_IN_FAILED: Final = (
    "Die Anmeldung ist fehlgeschlagen: E-Mail-Adresse oder Passwort stimmen nicht, oder das Konto ist "
    "gesperrt. Nach fünf Fehlversuchen innerhalb von 15 Minuten wird ein Konto für 15 Minuten gesperrt; "
    "bitte dann später erneut versuchen oder die Projektleitung fragen."
)


def utc_now() -> datetime:
    """The clock of the staff endpoints (a dependency, so that tests can set the time)."""
    return datetime.now(UTC)


Now = Annotated[datetime, Depends(utc_now)]


# --- bodies and answers --------------------------------------------------------------------------


class SignInBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: str = Field(max_length=EMAIL_MAX_LENGTH)
    password: str = Field(max_length=PASSWORD_MAX_LENGTH)


class AccountOut(BaseModel):
    account_id: UUID
    email: str
    role: Role = Field(description="`lead`: Projektleitung (alle Knoten, Protokoll); `node`: ein Knoten.")
    node_id: UUID | None = Field(description="Der Knoten von `node`-Konten; null bei der Projektleitung.")
    created_at: datetime
    disabled: bool
    locked: bool = Field(description="Nach fünf Fehlversuchen vorübergehend gesperrt.")


class AccountList(BaseModel):
    items: list[AccountOut]
    total: int


class AuditBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    actor_account_id: UUID
    action: str = Field(
        max_length=60, description="Eine Aktion der geschlossenen Liste, z. B. offering.published."
    )
    node_id: UUID | None = None
    offering_id: UUID | None = Field(default=None, description="Der Knoten ergibt sich dann aus dem Angebot.")
    subject: str | None = Field(
        default=None, max_length=SUBJECT_MAX_LENGTH, description="z. B. eine Anmelde-ID."
    )
    detail: dict[str, Any] | None = Field(
        default=None,
        description="Flach: höchstens 20 Schlüssel; Texte (≤ 200 Zeichen), ganze Zahlen, true/false.",
    )


class AuditEntryOut(BaseModel):
    id: int
    at: datetime
    actor_account_id: UUID
    actor_email: str
    action: str
    label: str = Field(description="Die Aktion auf Deutsch.")
    node_id: UUID | None
    offering_id: UUID | None
    subject: str | None
    detail: dict[str, Any]


class AuditPage(BaseModel):
    items: list[AuditEntryOut]
    next_before: int | None = Field(description="Für die nächste Seite als `before` angeben; null = Ende.")


def account_out(account: StaffAccount, now: datetime) -> AccountOut:
    return AccountOut(
        account_id=account.account_id,
        email=account.email,
        role=account.role,
        node_id=account.node_id,
        created_at=account.created_at,
        disabled=account.disabled,
        locked=is_locked(account.lockout, now),
    )


def audit_out(entry: AuditEntry) -> AuditEntryOut:
    return AuditEntryOut(
        id=entry.id,
        at=entry.at,
        actor_account_id=entry.actor_account_id,
        actor_email=entry.actor_email,
        action=entry.action,
        label=ACTION_LABELS.get(entry.action, entry.action),
        node_id=entry.node_id,
        offering_id=entry.offering_id,
        subject=entry.subject,
        detail=entry.detail,
    )


# --- endpoints -----------------------------------------------------------------------------------


class StaffDirectoryEndpoints:
    """Sign-in, the accounts and the audit log."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def sign_in(self, body: SignInBody, now: Now) -> Response:
        if has_control_chars(body.email):
            raise Problem(422, "email: Bitte eine E-Mail-Adresse ohne Steuerzeichen angeben.")
        account = await staff_accounts.sign_in(self._db, body.email, body.password, now)
        if account is None:
            raise Problem(401, SIGN_IN_FAILED, title="Anmeldung fehlgeschlagen", code="sign_in_failed")
        return json_response(account_out(account, now))

    async def get_account(self, account_id: Annotated[str, Path()], now: Now) -> Response:
        identifier = uuid_or_404(account_id, ACCOUNT_NOT_FOUND)
        async with self._db.pool.acquire() as conn:
            account = await staff_store.get_account(conn, identifier)
        if account is None:
            raise Problem(404, ACCOUNT_NOT_FOUND)
        return json_response(account_out(account, now))

    async def list_accounts(self, now: Now) -> Response:
        async with self._db.pool.acquire() as conn:
            accounts = await staff_store.list_accounts(conn)
        items = [account_out(account, now) for account in accounts]
        return json_response(AccountList(items=items, total=len(items)))

    async def record(self, body: AuditBody, now: Now) -> Response:
        request = AuditRequest(
            actor_account_id=body.actor_account_id,
            action=body.action,
            node_id=body.node_id,
            offering_id=body.offering_id,
            subject=body.subject,
            detail=body.detail,
        )
        try:
            entry = await staff_accounts.record_action(self._db, request, now)
        except Forbidden as exc:
            raise Problem(403, exc.message) from None
        except CatalogueError as exc:
            raise command_problem(exc) from None
        response = json_response(audit_out(entry), 201)
        return response

    async def audit_log(
        self,
        limit: LimitQuery = DEFAULT_LIMIT,
        before: Annotated[
            int | None, Query(ge=1, le=2**63 - 1, description="Nur Einträge vor dieser ID.")
        ] = None,
        node: Annotated[UUID | None, Query(description="Nur Einträge zu diesem Knoten.")] = None,
    ) -> Response:
        async with self._db.pool.acquire() as conn:
            entries = await staff_store.list_audit(conn, limit=limit + 1, before=before, node_id=node)
        page = entries[:limit]
        next_before = page[-1].id if len(entries) > limit else None
        return json_response(AuditPage(items=[audit_out(e) for e in page], next_before=next_before))


def staff_directory_router(db: Database, settings: Settings) -> APIRouter:
    """The staff directory's routes, all behind the staff token."""
    endpoints = StaffDirectoryEndpoints(db)
    guard = staff_guard(settings.staff_token)
    router = APIRouter(
        tags=["Mitarbeiterkonten"], dependencies=[Depends(guard)], responses=problems(401, 403, 422)
    )
    router.add_api_route(
        "/staff/sign-in",
        endpoints.sign_in,
        methods=["POST"],
        response_model=AccountOut,
        summary="Anmeldung mit E-Mail-Adresse und Passwort prüfen",
        description="200 mit dem Konto, sonst 401 mit derselben Antwort für jeden Grund "
        "(unbekannte Adresse, falsches Passwort, deaktiviert, gesperrt).",
    )
    router.add_api_route(
        "/staff/accounts",
        endpoints.list_accounts,
        methods=["GET"],
        response_model=AccountList,
        summary="Alle Mitarbeiterkonten (ohne Passwörter)",
    )
    router.add_api_route(
        "/staff/accounts/{account_id}",
        endpoints.get_account,
        methods=["GET"],
        response_model=AccountOut,
        summary="Ein Mitarbeiterkonto: Rolle, Knoten, deaktiviert oder gesperrt",
        responses=problems(404),
    )
    router.add_api_route(
        "/staff/audit",
        endpoints.record,
        methods=["POST"],
        status_code=201,
        response_model=AuditEntryOut,
        summary="Eine Handlung im Protokoll festhalten",
    )
    router.add_api_route(
        "/staff/audit",
        endpoints.audit_log,
        methods=["GET"],
        response_model=AuditPage,
        summary="Das Protokoll, neueste Einträge zuerst",
    )
    return router
