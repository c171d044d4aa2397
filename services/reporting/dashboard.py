"""The German dashboard: one HTML page with server-rendered inline SVG charts, no scripts, no CDN."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from html import escape

from services.reporting.domain import SUPPRESSED, Row, Table, Value, format_value

_TILES = (
    ("offerings", "Angebote"),
    ("sessions", "Termine"),
    ("participants", "Teilnehmende"),
    ("participations", "Teilnahmen"),
    ("participant_hours", "Teilnehmendenstunden"),
    ("companies", "Erreichte Unternehmen"),
    ("utilisation", "Auslastung"),
    ("unmet_demand", "Ungedeckte Nachfrage"),
    ("completions", "Abschlüsse"),
    ("notification_delivery_rate", "Zustellquote"),
)
_PERCENT = {"utilisation", "notification_delivery_rate"}


def _show(key: str, value: Value) -> str:
    if value is None:
        return "–"
    if value == SUPPRESSED:
        return "&lt;5"
    if key in _PERCENT and isinstance(value, int | float):
        return f"{value * 100:.0f} %".replace(".", ",")
    return escape(format_value(value, decimal_comma=True))


def bar_chart(chart_id: str, title: str, rows: Sequence[Row], key: str, *, percent: bool = False) -> str:
    """Vertical bars with labels; suppressed values are drawn as a hatched stub labelled "<5"."""
    width, height, pad, label_space = 720, 260, 40, 70
    numeric = [v for r in rows if isinstance(v := r.values.get(key), int | float)]
    top = max([*numeric, 1.0 if percent else 1])
    slot = (width - 2 * pad) / max(1, len(rows))
    bar = max(4.0, slot * 0.6)
    plot = height - pad - label_space
    parts = [
        f'<svg id="{chart_id}" class="chart" role="img" aria-label="{escape(title)}" '
        f'viewBox="0 0 {width} {height}" width="100%" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
        f'<line x1="{pad}" y1="{pad + plot}" x2="{width - pad}" y2="{pad + plot}" stroke="#888"/>',
    ]
    if not rows:
        parts.append(f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle">Noch keine Daten</text>')
    for index, row in enumerate(rows):
        value = row.values.get(key)
        x = pad + index * slot + (slot - bar) / 2
        if isinstance(value, int | float):
            h = plot * float(value) / float(top)
            fill, text = "#1f6fb2", _show(key, value)
        else:
            h, fill, text = 4.0, "url(#hatch)", _show(key, value)
        y = pad + plot - h
        parts.append(
            f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}" fill="{fill}">'
            f"<title>{escape(row.label)}: {text}</title></rect>"
        )
        parts.append(f'<text x="{x + bar / 2:.1f}" y="{y - 4:.1f}" text-anchor="middle">{text}</text>')
        label = escape(row.label if len(row.label) <= 18 else row.label[:17] + "…")
        lx, ly = x + bar / 2, pad + plot + 14
        parts.append(
            f'<text x="{lx:.1f}" y="{ly:.1f}" text-anchor="end" '
            f'transform="rotate(-35 {lx:.1f} {ly:.1f})">{label}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def county_table(rows: Sequence[Row]) -> str:
    """Companies reached by their county (German labels of the closed list, "<5" for 1–4 companies)."""
    if not rows:
        return "<p>Noch keine Daten</p>"
    body = "".join(
        f'<tr><th scope="row">{escape(row.label)}</th>'
        f"<td>{_show('companies', row.values.get('companies'))}</td></tr>"
        for row in rows
    )
    return (
        '<table id="companies-by-county"><thead><tr><th scope="col">Landkreis</th>'
        f'<th scope="col">Erreichte Unternehmen</th></tr></thead><tbody>{body}</tbody></table>'
    )


def render(
    total: Row, by_month: Table, by_node: Table, company_counties: Sequence[Row], generated_at: datetime
) -> str:
    tiles = "".join(
        f'<div class="tile"><div class="value">{_show(key, total.values.get(key))}</div>'
        f'<div class="label">{label}</div></div>'
        for key, label in _TILES
    )
    charts = [
        bar_chart("chart-participations-month", "Teilnahmen je Monat", by_month.groups, "participations"),
        bar_chart("chart-offerings-month", "Angebote je Monat", by_month.groups, "offerings"),
        bar_chart("chart-participants-node", "Teilnehmende je Knoten", by_node.groups, "participants"),
        bar_chart("chart-offerings-node", "Angebote je Knoten", by_node.groups, "offerings"),
        bar_chart(
            "chart-utilisation-node", "Auslastung je Knoten", by_node.groups, "utilisation", percent=True
        ),
    ]
    titles = [
        "Teilnahmen je Monat",
        "Angebote je Monat",
        "Teilnehmende je Knoten",
        "Angebote je Knoten",
        "Auslastung je Knoten",
    ]
    sections = "".join(
        f"<section><h2>{escape(t)}</h2>{c}</section>" for t, c in zip(titles, charts, strict=True)
    )
    sections += (
        f"<section><h2>Erreichte Unternehmen nach Landkreis</h2>{county_table(company_counties)}</section>"
    )
    return f"""<!DOCTYPE html>
<html lang="de">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>QTI-Knoten Thüringen – Kennzahlen</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5rem; color: #1d1d1d; max-width: 1100px; }}
.tiles {{ display: grid; grid-template-columns: repeat(auto-fill, minmax(170px, 1fr)); gap: .75rem; }}
.tile {{ border: 1px solid #ccd; border-radius: 6px; padding: .75rem; background: #f6f8fb; }}
.tile .value {{ font-size: 1.6rem; font-weight: 600; }}
.chart text {{ font-size: 11px; fill: #333; }}
section {{ margin-top: 1.5rem; }}
table {{ border-collapse: collapse; }}
th, td {{ text-align: left; padding: .2rem .8rem .2rem 0; }}
footer {{ margin-top: 2rem; font-size: .85rem; color: #555; }}
</style>
</head>
<body>
<svg width="0" height="0" aria-hidden="true" style="position:absolute">
<defs><pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse">
<path d="M0,6 L6,0" stroke="#999" stroke-width="1.5"/></pattern></defs></svg>
<h1>QTI-Knoten Thüringen – Kennzahlen</h1>
<p>Gesamter Projektzeitraum. Stand: {escape(generated_at.strftime("%d.%m.%Y %H:%M"))} Uhr (UTC).</p>
<div class="tiles">{tiles}</div>
{sections}
<footer>Werte, hinter denen weniger als 5 Personen oder Unternehmen stehen, werden als „&lt;5“
ausgewiesen.
Downloads: <a href="/exports/kpis.csv">CSV</a> · <a href="/exports/kpis.xlsx">Excel</a> ·
<a href="/kpis">JSON</a></footer>
</body>
</html>
"""
