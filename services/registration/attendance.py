"""Attendance: staff record who attended a session; the last session recorded decides completion."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, SecretStr

from qti_contracts import (
    CloudEvent,
    RegistrationAttendanceRecorded,
    RegistrationCompleted,
    RoutingKey,
    make_event,
)
from qti_runtime.unit_of_work import UnitOfWork
from services.registration import domain, feedback, store
from services.registration.access import Conflict, NotFound
from services.registration.domain import Status
from services.registration.repository import SOURCE


async def record_attendance(
    uow: UnitOfWork,
    offering_id: str,
    session_id: str,
    records: Mapping[str, bool],
    link_secret: SecretStr | None = None,
) -> int:
    """Record one session's attendance; returns how many records changed. Raises NotFound or Conflict.
    With `link_secret`, an attendee whose last session is recorded is invited to give feedback."""
    offering = await store.lock_offering(uow.conn, offering_id)
    if offering is None:
        raise NotFound(f"Das Angebot {offering_id} ist nicht bekannt.")
    units = {s["session_id"]: int(s["teaching_units"]) for s in offering.sessions}
    if session_id not in units:
        raise NotFound(f"Der Termin {session_id} gehört nicht zu diesem Angebot.")
    changed = 0
    for registration_id, attended in records.items():
        registration = await store.get_registration(uow.conn, registration_id, lock=True)
        if registration is None or registration.offering_id != offering_id:
            raise NotFound(f"Die Anmeldung {registration_id} gehört nicht zu diesem Angebot.")
        if registration.status != Status.CONFIRMED:
            raise Conflict(f"Die Anmeldung {registration_id} hat keinen bestätigten Platz.")
        if not await store.upsert_attendance(uow.conn, registration_id, session_id, attended):
            continue
        changed += 1
        recorded = RegistrationAttendanceRecorded(
            registration_id=registration_id, offering_id=offering_id, session_id=session_id, attended=attended
        )
        uow.emit(_event(RoutingKey.REGISTRATION_ATTENDANCE_RECORDED, recorded, registration_id))
        await _complete_if_last(uow, offering, registration, units, link_secret)
    return changed


async def _complete_if_last(
    uow: UnitOfWork,
    offering: store.OfferingRow,
    registration: store.RegistrationRow,
    units: dict[str, int],
    link_secret: SecretStr | None,
) -> None:
    attended = await store.attendance_of(uow.conn, registration.registration_id)
    if set(units) - set(attended):
        return  # not every session recorded yet
    if link_secret is not None and any(attended.values()):
        await feedback.invite_once(uow, link_secret, offering.offering_id, registration.registration_id)
    result = domain.completion(offering.offering.kind, units, attended)
    summary = {
        "attended_units": result.attended_units,
        "total_units": result.total_units,
        "attendance_ratio": result.ratio,
        "completed": result.completed,
        "certificate_eligible": result.certificate_eligible,
    }
    if registration.completion == summary:
        return
    await store.save_completion(uow.conn, registration.registration_id, summary)
    completed = RegistrationCompleted(
        registration_id=registration.registration_id, offering_id=offering.offering_id, **summary
    )
    uow.emit(_event(RoutingKey.REGISTRATION_COMPLETED, completed, registration.registration_id))


def _event(type_: str, payload: BaseModel, registration_id: str) -> CloudEvent[BaseModel]:
    return make_event(type_, payload, source=SOURCE, subject=registration_id, correlationid=registration_id)
