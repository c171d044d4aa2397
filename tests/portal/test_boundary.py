"""The portal reaches nothing but the public contract: no service code, no database, no third party."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from frontends.portal.settings import PortalSettings

FRONTENDS = Path(__file__).resolve().parents[2] / "frontends"


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_no_module_in_frontends_imports_a_service() -> None:
    sources = sorted(FRONTENDS.rglob("*.py"))
    assert len(sources) > 5
    offenders = {
        str(path.relative_to(FRONTENDS)): sorted(
            m for m in imported_modules(path) if m.split(".")[0] == "services"
        )
        for path in sources
    }
    assert {k: v for k, v in offenders.items() if v} == {}
    text = "\n".join(p.read_text() for p in sources)
    assert "asyncpg" not in text and "import_module" not in text and "__import__" not in text


def test_portal_settings_have_no_database() -> None:
    assert not [name for name in PortalSettings.model_fields if "database" in name or "db" in name.split("_")]
    assert not hasattr(PortalSettings(), "database_url")


def test_pages_load_nothing_from_third_parties() -> None:
    """No CDN, no web font, no tracker: every script, style sheet and image comes from the portal."""
    templates = "\n".join(p.read_text() for p in (FRONTENDS / "portal" / "templates").glob("*.html"))
    external = re.findall(r'<(?:script|link|img|iframe)[^>]+(?:src|href)="(?:https?:)?//', templates)
    assert external == []
    assert "<script>" not in templates  # no inline script (the CSP forbids it anyway)
    css = (FRONTENDS / "portal" / "static" / "portal.css").read_text()
    assert "url(" not in css and "@import" not in css


def test_production_refuses_the_development_staff_token() -> None:
    """The console holds the services' staff token: in production never the development value."""
    good = {
        "env": "production",
        "amqp_url": "amqp://frontend:geheim@broker:5672/",
        "portal_form_secret": "f" * 40,
    }
    problems = PortalSettings(**good).production_problems()  # type: ignore[arg-type]
    assert [p for p in problems if "QTI_STAFF_TOKEN" in p]
    assert PortalSettings(**good, staff_token="s" * 40).production_problems() == []  # type: ignore[arg-type]
