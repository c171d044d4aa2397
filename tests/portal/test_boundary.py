"""The portal reaches nothing but the public contract: no service code, no service's database schema (its
only database is its own schema `portal`, for the staff console), no third party."""

from __future__ import annotations

import ast
import re
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from frontends.portal.console import accounts, audit
from frontends.portal.console.db import SCHEMA, migrate
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
    assert "import_module" not in text and "__import__" not in text
    # Only the console's own persistence talks to a database.
    users = {str(p.relative_to(FRONTENDS)) for p in sources if "asyncpg" in p.read_text()}
    assert users <= {
        f"portal/console/{m}.py" for m in ("db", "accounts", "sessions", "audit", "admin", "core")
    }


def test_portal_settings_have_only_its_own_database() -> None:
    names = [name for name in PortalSettings.model_fields if "database" in name or "db" in name.split("_")]
    assert names == ["portal_database_url"]
    assert not hasattr(PortalSettings(), "database_url")  # never the services' QTI_DATABASE_URL
    assert SCHEMA == "portal"


TABLE_REFERENCE = re.compile(
    r"\b(?:FROM|JOIN|INTO|UPDATE|TABLE(?: IF NOT EXISTS)?|REFERENCES|INDEX \w+ ON)\s+"
    r"(?!(?:SET|ONLY)\b)([A-Za-z_][A-Za-z0-9_.]*)\s*[ (]",
)


def sql_texts() -> list[str]:
    """Every SQL statement of the portal: string constants in its code and its migration files."""
    texts = [p.read_text() for p in (FRONTENDS / "portal" / "migrations").glob("*.sql")]
    for path in FRONTENDS.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            text = node.value if isinstance(node, ast.Constant) else None
            if isinstance(text, str) and re.search(r"\b(SELECT|INSERT|UPDATE|DELETE|CREATE)\b", text):
                texts.append(text)
    return texts


def test_every_table_the_portal_names_is_in_its_own_schema() -> None:
    """Catches `FROM registration.registrations` as well as an unqualified `FROM registrations`."""
    names = {m for text in sql_texts() for m in TABLE_REFERENCE.findall(text + " ")}
    assert len(names) >= 4
    assert {n for n in names if not n.startswith(("portal.", "pg_catalog."))} == set()


@pytest.fixture
async def restricted_url(database_url: str) -> str:
    """A login role that owns schema `portal` and may not even look into a service's schema."""
    role, password = f"portal_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    admin = await asyncpg.connect(database_url)
    try:
        await admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
        await admin.execute(f"CREATE SCHEMA portal AUTHORIZATION {role}")
        await admin.execute("CREATE SCHEMA registration")
        await admin.execute("CREATE TABLE registration.registrations (registration_id text PRIMARY KEY)")
        await admin.execute(f"REVOKE ALL ON SCHEMA public FROM {role}")
    finally:
        await admin.close()
    parts = urlsplit(database_url)
    return urlunsplit(parts._replace(netloc=f"{role}:{password}@{parts.hostname}:{parts.port or 5432}"))


async def test_the_console_works_with_a_role_limited_to_schema_portal(restricted_url: str) -> None:
    """What a deployment does (docs/portal.md): the console needs no right beyond its own schema."""
    pool = await asyncpg.create_pool(
        restricted_url, min_size=1, max_size=2, server_settings={"search_path": SCHEMA}
    )
    try:
        async with pool.acquire() as conn:
            await migrate(conn)
            account = await accounts.add_account(conn, "leitung@qti.example", "ein-langes-Passwort", None)
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.fetch("SELECT * FROM registration.registrations")
        assert await accounts.authenticate(pool, "leitung@qti.example", "ein-langes-Passwort") == account
        await audit.record(pool, account, "offering.published", "o-1")
        assert [e["action"] for e in await audit.entries(pool)] == ["offering.published"]
    finally:
        await pool.close()


def test_pages_load_nothing_from_third_parties() -> None:
    """No CDN, no web font, no tracker: every script, style sheet and image comes from the portal."""
    templates = "\n".join(p.read_text() for p in (FRONTENDS / "portal" / "templates").glob("*.html"))
    external = re.findall(r'<(?:script|link|img|iframe)[^>]+(?:src|href)="(?:https?:)?//', templates)
    assert external == []
    assert "<script>" not in templates  # no inline script (the CSP forbids it anyway)
    css = (FRONTENDS / "portal" / "static" / "portal.css").read_text()
    assert "url(" not in css and "@import" not in css


def test_production_refuses_the_development_staff_token() -> None:
    good = {
        "env": "production",
        "amqp_url": "amqp://frontend:geheim@broker:5672/",
        "portal_form_secret": "f" * 40,
    }
    problems = PortalSettings(**good).production_problems()  # type: ignore[arg-type]
    assert [p for p in problems if "QTI_STAFF_TOKEN" in p]
    assert PortalSettings(**good, staff_token="s" * 40).production_problems() == []  # type: ignore[arg-type]
