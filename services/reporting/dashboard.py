"""The German dashboard and the period report's HTML: one set of templates, rendered with Jinja2."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from qti_runtime.german import BERLIN
from services.reporting.report import FullReport, berlin_time
from services.reporting.views import (
    SUPPRESSION_NOTE,
    TILES,
    FilterForm,
    SnapshotLink,
    charts,
    filter_summary,
    indicator_lines,
    show,
)

TEMPLATES: Final = Path(__file__).with_name("templates")
_ENVIRONMENT: Final = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(["html", "j2"]),
    undefined=StrictUndefined,
    trim_blocks=False,
)


def _common(report: FullReport, node_names: Mapping[str, str]) -> dict[str, Any]:
    """What the page and the PDF both show."""
    total = report.tables[None].total
    return {
        "summary": filter_summary(report.filters, node_names),
        "generated_at": berlin_time(report.generated_at),
        "generated_iso": report.generated_at.astimezone(BERLIN).isoformat(timespec="minutes"),
        "tile_items": [(label, show(key, total.values.get(key))) for key, label in TILES],
        "charts": charts(report),
        "county_rows": [
            (row.label, show("companies", row.values["companies"])) for row in report.company_counties
        ],
        "note": SUPPRESSION_NOTE,
    }


def render_dashboard(
    report: FullReport,
    node_names: Mapping[str, str],
    form: FilterForm,
    snapshots: list[SnapshotLink],
    feedback: Mapping[str, Any] | None = None,
) -> str:
    """The page; `feedback`: the published scores (`services.reporting.feedback.publish`), if any."""
    template = _ENVIRONMENT.get_template("dashboard.html.j2")
    return template.render(**_common(report, node_names), form=form, snapshots=snapshots, feedback=feedback)


def render_report_html(
    report: FullReport, node_names: Mapping[str, str], *, project: str, funder: str, created: datetime
) -> str:
    """The HTML of the period report "Sachbericht Kennzahlen" (WeasyPrint makes the PDF of it)."""
    common = _common(report, node_names)
    return _ENVIRONMENT.get_template("report.html.j2").render(
        **common,
        project=project,
        funder=funder,
        period=common["summary"][0][1],
        indicators=indicator_lines(report.tables[None].total),
        created_iso=created.astimezone(BERLIN).isoformat(timespec="seconds"),
    )
