"""`python -m frontends.portal`: the portal on QTI_PORTAL_PORT (default 8000)."""

from __future__ import annotations

import sys

import uvicorn

from frontends.portal.app import create_app
from frontends.portal.settings import PortalSettings
from qti_runtime.logging import configure_logging


def main() -> None:
    settings = PortalSettings()
    problems = settings.production_problems()
    if problems:
        sys.exit("QTI_ENV=production: Start verweigert / refusing to start:\n  - " + "\n  - ".join(problems))
    configure_logging("portal", settings.log_level)
    print(f"Portal: {settings.portal_url} (Port {settings.portal_port})", flush=True)
    # No access log: the personal token is part of the /meine-anmeldung/ paths.
    uvicorn.run(
        create_app(settings),
        host=settings.http_host,
        port=settings.portal_port,
        access_log=False,
        proxy_headers=False,
        log_level=settings.log_level.lower(),
    )


if __name__ == "__main__":
    main()
