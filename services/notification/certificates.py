"""Certificates of attendance: the verification code and what a certificate states (pure, no I/O).

A certificate is issued once per registration, when `registration.completed` says the participant is
eligible (≥ 80 % of the teaching units, registration's rule). What it states (course, dates, units, node,
issuer) is frozen at issue time in `certificates`; the participant's name comes from the recipient when
the PDF is mailed, so the table holds no name or address.

The verification code is 80 random bits in base32 (RFC 4648 alphabet: no 0, 1, 8, 9, so no O/0 or I/1
confusion), written in four groups of four (`K7QF-2MZA-XW4D-9…`): short enough to type from paper, far too
many to guess (2^80; the public lookup is rate-limited on top).
"""

from __future__ import annotations

import base64
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from qti_contracts import OfferingState, RegistrationCompleted
from services.notification.render import to_berlin

CODE_BITS: Final = 80
_CODE_CHARS: Final = CODE_BITS // 5  # 16 base32 characters
_CODE_RE: Final = re.compile(r"^[A-Z2-7]{16}$")
_SEPARATORS: Final = re.compile(r"[\s\-–]")


def new_code() -> str:
    """A fresh verification code, e.g. `K7QF-2MZA-XW4D-P3RT`."""
    raw = base64.b32encode(secrets.token_bytes(CODE_BITS // 8)).decode("ascii")[:_CODE_CHARS]
    return "-".join(raw[i : i + 4] for i in range(0, _CODE_CHARS, 4))


def normalise_code(text: str) -> str | None:
    """The canonical code for what a person typed (case, blanks and dashes do not matter), or None if
    it cannot be a code. Bounded before any regular expression runs."""
    if len(text) > 40:
        return None
    compact = _SEPARATORS.sub("", text).upper()
    if not _CODE_RE.match(compact):
        return None
    return "-".join(compact[i : i + 4] for i in range(0, _CODE_CHARS, 4))


@dataclass(frozen=True, slots=True)
class Certificate:
    code: str
    registration_id: str
    offering_id: str
    title: str
    kind: str
    sessions: list[dict[str, Any]]
    attended_units: int
    total_units: int
    node_id: str
    node_name: str
    node_address: str
    issuer: str
    issued_at: datetime
    revoked_at: datetime | None = None
    revoked_reason: str | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def snapshot(self) -> dict[str, Any]:
        """What the mail's PDF needs, as JSON (kept in the delivery row's params)."""
        return {
            "code": self.code,
            "title": self.title,
            "kind": self.kind,
            "sessions": self.sessions,
            "attended_units": self.attended_units,
            "total_units": self.total_units,
            "node_name": self.node_name,
            "node_address": self.node_address,
            "issuer": self.issuer,
            "issued_at": self.issued_at.isoformat(),
        }


def issue(
    completed: RegistrationCompleted,
    state: OfferingState,
    node: dict[str, Any],
    issued_at: datetime,
) -> Certificate:
    """The certificate of an eligible completion; `node` is the node replica (name, address, host)."""
    sessions = [
        {
            "starts_at": s.starts_at.isoformat(),
            "ends_at": s.ends_at.isoformat(),
            "teaching_units": s.teaching_units,
        }
        for s in state.sessions
    ]
    return Certificate(
        code=new_code(),
        registration_id=completed.registration_id,
        offering_id=completed.offering_id,
        title=state.title,
        kind=state.kind.value,
        sessions=sessions,
        attended_units=completed.attended_units,
        total_units=completed.total_units,
        node_id=state.node_id,
        node_name=str(node["name"]),
        node_address=str(node["address"]),
        issuer=str(node["host"] or node["name"]),
        issued_at=issued_at,
    )


def public_view(certificate: Certificate) -> dict[str, Any]:
    """What anyone holding the code may learn: valid or revoked, the course, its dates and the node.
    Nothing about the person (no name, no registration id, no attended units)."""
    starts = [to_berlin(datetime.fromisoformat(s["starts_at"])) for s in certificate.sessions]
    ends = [to_berlin(datetime.fromisoformat(s["ends_at"])) for s in certificate.sessions]
    return {
        "code": certificate.code,
        "status": "revoked" if certificate.revoked else "valid",
        "title": certificate.title,
        "kind": certificate.kind,
        "first_day": min(starts).date().isoformat() if starts else None,
        "last_day": max(ends).date().isoformat() if ends else None,
        "total_units": certificate.total_units,
        "node_name": certificate.node_name,
        "issuer": certificate.issuer,
        "issued_on": to_berlin(certificate.issued_at).date().isoformat(),
        "revoked_on": to_berlin(certificate.revoked_at).date().isoformat()
        if certificate.revoked_at
        else None,
    }
