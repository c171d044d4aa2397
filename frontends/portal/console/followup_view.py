"""What the offering page shows after the course: its certificates (notification's staff API) and its
participants' feedback — the scores as reporting publishes them (small groups suppressed) and the
anonymous free-text comments, which only staff of the offering's node and the lead ever see."""

from __future__ import annotations

from datetime import date
from typing import Any

from frontends.portal.backend import BackendUnavailable
from frontends.portal.console.staff_api import StaffApi
from frontends.portal.views import moment
from qti_runtime.logging import get_logger

log = get_logger(__name__)

SUPPRESSED = "<5"  # reporting's marker of a group with fewer than five answers
SUPPRESSED_TEXT = "weniger als 5 Antworten"
WITHHELD_TEXT = "zurückgehalten (damit kleine Gruppen nicht errechnet werden können)"


def _day(value: str | None) -> str:
    return moment(value).strftime("%d.%m.%Y") if value else ""


def _calendar_day(value: str) -> str:
    try:
        return date.fromisoformat(value[:10]).strftime("%d.%m.%Y")
    except ValueError:
        return ""


def certificate_rows(certificates: list[dict[str, Any]], names: dict[str, str]) -> list[dict[str, Any]]:
    """One row per certificate: the person (from the node's own registrations), units, state."""
    rows = []
    for c in certificates:
        revoked = c.get("revoked_at")
        rows.append(
            {
                "code": str(c["code"]),
                "name": names.get(str(c.get("registration_id")), ""),
                "units": f"{c.get('attended_units', 0)} von {c.get('total_units', 0)} UE",
                "issued": _day(c.get("issued_at")),
                "revoked": bool(revoked),
                "state": f"widerrufen am {_day(revoked)}" if revoked else "gültig",
                "reason": c.get("revoked_reason") or "",
            }
        )
    return rows


def rating_view(published: dict[str, Any], offering_id: str) -> dict[str, Any] | None:
    """The offering's published scores; None when nobody has answered yet."""
    row = next((r for r in published.get("offering") or [] if r.get("group") == offering_id), None)
    if row is None:
        return None
    if row.get("suppressed"):
        text = SUPPRESSED_TEXT if row.get("marker") == SUPPRESSED else WITHHELD_TEXT
        return {"suppressed": True, "text": text}
    return {
        "suppressed": False,
        "answers": row["answers"],
        "rating": f"{row['rating']:.1f}".replace(".", ","),
        "usefulness": f"{row['usefulness']:.1f}".replace(".", ","),
        "recommend": f"{round(100 * float(row['would_recommend_share']))} %",
    }


async def followup_view(
    api: StaffApi, offering: dict[str, Any], registrations: list[dict[str, Any]]
) -> dict[str, Any]:
    """Certificates, scores and comments of the offering (the caller has checked the account's node).
    Notification or reporting being away costs only its section, not the page (the offering's other
    actions stay usable)."""
    offering_id = str(offering["offering_id"])
    names = {
        str(r["registration_id"]): " ".join(
            str((r.get("participant") or {}).get(k, "")) for k in ("given_name", "family_name")
        ).strip()
        for r in registrations
    }
    view: dict[str, Any] = {"certificates": [], "rating": None, "comments": [], "unavailable": []}
    try:
        view["certificates"] = certificate_rows(await api.certificates(offering_id), names)
    except BackendUnavailable as exc:
        log.warning("console.certificates_unavailable", reason=str(exc))
        view["unavailable"].append("certificates")
    try:
        view["rating"] = rating_view(await api.feedback_ratings(), offering_id)
        view["comments"] = [
            {"day": _calendar_day(str(c.get("received_on", ""))), "text": str(c.get("comment") or "")}
            for c in await api.feedback_comments(str(offering["node_id"]))
            if str(c.get("offering_id")) == offering_id and c.get("comment")
        ]
    except BackendUnavailable as exc:
        log.warning("console.feedback_unavailable", reason=str(exc))
        view["unavailable"].append("feedback")
    return view
