"""What the console's pages show, from the services' JSON: pure functions."""

from __future__ import annotations

from typing import Any

from frontends.portal.views import german_date, session_line

STATUS_LABELS = {
    "draft": "Entwurf",
    "published": "veröffentlicht",
    "cancelled": "abgesagt",
    "completed": "abgeschlossen",
}
CANCEL_CAUSES = {
    "participant": "von der Person",
    "organiser": "vom Knoten",
    "offering_cancelled": "Angebot abgesagt",
}


def offering_row(o: dict[str, Any]) -> dict[str, Any]:
    return {
        "offering_id": o["offering_id"],
        "title": o["title"],
        "node": o["node"]["name"],
        "status": STATUS_LABELS.get(o["status"], o["status"]),
        "starts": german_date(o["starts_at"]) if o.get("sessions") else "ohne Termin",
        "seats": f"{o.get('confirmed', 0)} / {o['capacity']}",
        "waitlisted": o.get("waitlisted", 0),
    }


def sessions_of(o: dict[str, Any]) -> list[dict[str, Any]]:
    return [{**s, "line": session_line(s), "number": i + 1} for i, s in enumerate(o.get("sessions") or [])]


def person(r: dict[str, Any]) -> str:
    p = r.get("participant") or {}
    return f"{p.get('given_name', '')} {p.get('family_name', '')}".strip()


def completion_text(r: dict[str, Any], sessions: list[dict[str, Any]]) -> tuple[str, str]:
    """(text, css modifier) about the 80 % threshold for one confirmed registration."""
    completion = r.get("completion")
    attended = r.get("attendance") or {}
    units = {str(s["session_id"]): int(s["teaching_units"]) for s in sessions}
    done = sum(u for sid, u in units.items() if attended.get(sid))
    total = sum(units.values()) or 1
    if completion is not None:
        share = round(100 * float(completion["attendance_ratio"]))
        if completion["completed"]:
            return f"abgeschlossen ({share} %, Schwelle 80 % erreicht)", "ok"
        return f"nicht abgeschlossen ({share} %, Schwelle 80 % nicht erreicht)", "warnung"
    recorded = sum(1 for sid in units if sid in attended)
    return (
        f"offen: {recorded} von {len(units)} Terminen erfasst, bisher {round(100 * done / total)} %",
        "offen",
    )


def registrations_view(registrations: list[dict[str, Any]], sessions: list[dict[str, Any]]) -> dict[str, Any]:
    confirmed, waiting, cancelled = [], [], []
    for r in registrations:
        row = {**r, "name": person(r), "company_name": (r.get("company") or {}).get("name", "")}
        if r["status"] == "confirmed":
            row["completion_text"], row["completion_class"] = completion_text(r, sessions)
            confirmed.append(row)
        elif r["status"] == "waitlisted":
            waiting.append(row)
        else:
            row["cause"] = CANCEL_CAUSES.get(r.get("cancel_cause") or "", "")
            cancelled.append(row)
    waiting.sort(key=lambda r: r.get("position") or 0)
    return {"confirmed": confirmed, "waiting": waiting, "cancelled": cancelled}
