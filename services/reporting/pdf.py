"""The period report as a tagged PDF (PDF/UA-1), rendered by WeasyPrint from the page's templates."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Final

from pydantic_settings import BaseSettings, SettingsConfigDict
from weasyprint import HTML

from services.reporting.dashboard import TEMPLATES, render_report_html
from services.reporting.report import FullReport

PDF_MEDIA_TYPE: Final = "application/pdf"


class ReportIdentity(BaseSettings):
    """Who reports to whom, for the cover (QTI_REPORT_PROJECT, QTI_REPORT_FUNDER)."""

    model_config = SettingsConfigDict(env_prefix="QTI_REPORT_")

    project: str = "QTI-Knoten Thüringen"
    funder: str = "Zuwendungsgeber laut Zuwendungsbescheid"


def report_pdf(
    report: FullReport, node_names: Mapping[str, str], identity: ReportIdentity | None = None
) -> bytes:
    """The PDF; the same report gives the same bytes (its creation date is the report's own time)."""
    who = identity or ReportIdentity()
    html = render_report_html(
        report, node_names, project=who.project, funder=who.funder, created=report.generated_at
    )
    document = HTML(string=html, base_url=str(TEMPLATES)).render()
    document.metadata.created = _pdf_date(report.generated_at)
    document.metadata.modified = _pdf_date(report.generated_at)
    pdf: bytes = document.write_pdf(pdf_variant="pdf/ua-1", uncompressed_pdf=False)
    return pdf


def _pdf_date(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")
