"""HTTP of certificates: the public check of a verification code, and the staff actions.

`GET /certificates/{code}` is public (the portal's `/bescheinigung/{code}` asks it): valid or revoked,
the course, its dates and the node, nothing about the person. It is rate-limited per client address, so
codes cannot be tried in bulk (2^80 codes are out of reach anyway). Staff (bearer token) re-send or
revoke a certificate and list an offering's certificates; `X-Staff-Actor` names who acted (recorded).
"""

# No `from __future__ import annotations`: FastAPI reads the endpoints' annotations at run time.
import unicodedata
from datetime import date, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header, Path, Query, Request
from pydantic import AfterValidator, BaseModel, Field
from starlette.exceptions import HTTPException

from qti_runtime.client_address import ClientAddress
from qti_runtime.db import Database
from qti_runtime.http import Problem, staff_guard
from qti_runtime.ratelimit import RateLimiter, Rule
from services.notification import certificate_store, certificates
from services.notification.certificate_handlers import CertificateHandlers, StaffActionRefused
from services.notification.certificates import Certificate
from services.notification.settings import NotificationSettings

UNKNOWN = "Eine Bescheinigung mit diesem Prüfcode ist nicht bekannt."


def _one_line(value: str) -> str:
    if any(unicodedata.category(ch) in {"Cc", "Cf", "Zl", "Zp"} for ch in value):
        raise ValueError("Steuerzeichen sind nicht erlaubt.")
    return value.strip()


OneLine = Annotated[str, Field(min_length=1, max_length=500), AfterValidator(_one_line)]


class CertificateCheck(BaseModel):
    """The public answer: no name, no registration, no attended units."""

    code: str
    status: Literal["valid", "revoked"]
    title: str
    kind: str
    first_day: date | None
    last_day: date | None
    total_units: int
    node_name: str
    issuer: str
    issued_on: date
    revoked_on: date | None


class RevokeBody(BaseModel):
    reason: OneLine = Field(description="Why (German, for the records).")


class StaffCertificate(BaseModel):
    code: str
    registration_id: str
    offering_id: str
    attended_units: int
    total_units: int
    issued_at: datetime
    revoked_at: datetime | None
    revoked_reason: str | None


def _staff_view(cert: Certificate) -> StaffCertificate:
    return StaffCertificate(
        code=cert.code,
        registration_id=cert.registration_id,
        offering_id=cert.offering_id,
        attended_units=cert.attended_units,
        total_units=cert.total_units,
        issued_at=cert.issued_at,
        revoked_at=cert.revoked_at,
        revoked_reason=cert.revoked_reason,
    )


def _code_or_404(text: str) -> str:
    code = certificates.normalise_code(text)
    if code is None:
        raise Problem(404, UNKNOWN)
    return code


def _actor(value: str | None) -> str:
    if value is None or not value.strip():
        raise Problem(422, "Bitte im Kopf X-Staff-Actor angeben, wer handelt.")
    try:
        return _one_line(value)[:100]
    except ValueError:
        raise Problem(422, "X-Staff-Actor darf keine Steuerzeichen enthalten.") from None


StaffActor = Annotated[str | None, Header(alias="X-Staff-Actor", max_length=200)]


def public_router(db: Database, settings: NotificationSettings) -> APIRouter:
    router = APIRouter(tags=["certificates"])
    limiter = RateLimiter(settings.pseudonym_key.get_secret_value())
    rule = Rule("certificate.lookup", settings.certificate_lookups_per_minute, 60)
    # Behind the portal, its X-Forwarded-For names the browser (QTI_TRUSTED_PROXIES).
    clients = ClientAddress(settings.trusted_proxies)

    @router.get(
        "/certificates/{code}",
        summary="Check a certificate's verification code (public; no personal data)",
        response_model=CertificateCheck,
    )
    async def check_certificate(code: str, request: Request) -> CertificateCheck:
        async with db.pool.acquire() as conn:
            verdict = await limiter.exceeded(conn, [(rule, clients.of(request))])
            if verdict is not None:
                raise HTTPException(
                    429,
                    "Zu viele Abfragen in kurzer Zeit. Bitte versuchen Sie es in einer Minute erneut.",
                    headers={"Retry-After": str(verdict.retry_after)},
                )
            cert = await certificate_store.by_code(conn, _code_or_404(code))
        if cert is None:
            raise Problem(404, UNKNOWN)
        return CertificateCheck.model_validate(certificates.public_view(cert))

    return router


def staff_router(db: Database, settings: NotificationSettings, handlers: CertificateHandlers) -> APIRouter:
    router = APIRouter(tags=["certificates"], dependencies=[Depends(staff_guard(settings.staff_token))])

    @router.get(
        "/offerings/{offering_id}/certificates",
        summary="Certificates of an offering (staff only)",
        response_model=list[StaffCertificate],
    )
    async def offering_certificates(
        offering_id: Annotated[str, Path(max_length=100)],
        limit: Annotated[int, Query(ge=1, le=1000)] = 500,
    ) -> list[StaffCertificate]:
        async with db.pool.acquire() as conn:
            return [_staff_view(c) for c in await certificate_store.of_offering(conn, offering_id, limit)]

    @router.post(
        "/certificates/{code}/resend",
        summary="Mail the certificate again (staff only)",
        response_model=StaffCertificate,
        status_code=202,
    )
    async def resend_certificate(code: str, actor: StaffActor = None) -> StaffCertificate:
        who = _actor(actor)
        try:
            cert = await handlers.resend(_code_or_404(code), who)
        except StaffActionRefused as exc:
            raise Problem(409, str(exc)) from None
        if cert is None:
            raise Problem(404, UNKNOWN)
        return _staff_view(cert)

    @router.post(
        "/certificates/{code}/revoke",
        summary="Revoke a certificate (staff only); the public check then says `revoked`",
        response_model=StaffCertificate,
    )
    async def revoke_certificate(code: str, body: RevokeBody, actor: StaffActor = None) -> StaffCertificate:
        who = _actor(actor)
        cert = await handlers.revoke(_code_or_404(code), who, body.reason)
        if cert is None:
            raise Problem(404, UNKNOWN)
        return _staff_view(cert)

    return router
