"""Each service's committed OpenAPI document is what its app serves."""

from __future__ import annotations

import pytest

from qti_contracts import SERVICES
from qti_host import openapi


@pytest.mark.parametrize("service", SERVICES)
def test_committed_openapi_matches_the_app(service: str) -> None:
    path = openapi.document_path(service)
    assert path.exists(), f"{path} missing: run python -m qti_host.openapi"
    assert path.read_text("utf-8") == openapi.render(openapi.openapi_document(service)), (
        f"{path} is out of date: run python -m qti_host.openapi"
    )


def test_interface_endpoints_are_documented() -> None:
    paths = {service: set(openapi.openapi_document(service)["paths"]) for service in SERVICES}
    assert {"/nodes", "/offerings", "/offerings/{offering_id}"} <= paths["catalogue"]
    assert {
        "/registrations",
        "/registrations/requests/{request_id}",
        "/registrations/{registration_id}",
        "/registrations/{registration_id}/cancel",
    } <= paths["registration"]
    assert {"/kpis", "/exports/kpis.csv", "/exports/kpis.xlsx", "/dashboard"} <= paths["reporting"]
    for service in SERVICES:
        assert {"/healthz", "/readyz", "/metrics"} <= paths[service]
