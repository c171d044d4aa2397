"""Deployment artefacts are valid and agree with the code: Kubernetes manifests against their schemas,
compose.yaml against the compose specification, RabbitMQ definitions against qti_runtime.broker,
the Postgres init script and the Dockerfile against the conventions. Nothing here is skipped."""

from __future__ import annotations

import importlib
import importlib.resources
import importlib.util
import json
import re
import shutil
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import kubernetes_validate
import pytest
import yaml

from qti_contracts.topology import DEAD_LETTER_EXCHANGE, SERVICES
from qti_runtime.broker import (
    DEAD_LETTERS,
    EVENTS,
    REPORTING,
    UNROUTED_EXCHANGE,
    UNROUTED_QUEUE,
    dead_letter_rabbit_queue,
)
from qti_runtime.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
SCHEMAS = Path(__file__).parent / "schemas"
KUBERNETES_VERSION = "1.30.0"
PORTS = {"portal": 8000, "catalogue": 8001, "registration": 8002, "notification": 8003, "reporting": 8004}
# The portal is deployed like a service, but it is a client of theirs (frontends/portal).
DEPLOYED = {*SERVICES, "portal"}
MODULES = {name: f"services.{name}" for name in SERVICES} | {"portal": "frontends.portal"}


def _load_script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _k8s_documents() -> list[tuple[str, dict[str, Any]]]:
    documents = []
    for path in sorted(K8S.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                documents.append((f"{path.name}:{document['kind']}/{document['metadata']['name']}", document))
    return documents


K8S_DOCUMENTS = _k8s_documents()


def _of_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for _, doc in K8S_DOCUMENTS if doc["kind"] == kind}


# --------------------------------------------------------------------------------------------------
# Kubernetes
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("where", "document"), K8S_DOCUMENTS, ids=[w for w, _ in K8S_DOCUMENTS])
def test_kubernetes_manifest_matches_its_schema(where: str, document: dict[str, Any]) -> None:
    if document["apiVersion"].startswith("keda.sh/"):
        schema_path = SCHEMAS / f"keda-{document['kind'].lower()}.json"
        assert schema_path.exists(), f"no schema for {where}"
        schema = json.loads(schema_path.read_text())
        validator_class = jsonschema.validators.validator_for(schema)
        validator_class.check_schema(schema)
        errors = sorted(validator_class(schema).iter_errors(document), key=lambda e: list(e.path))
        assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)
        return
    # Strict: unknown fields are errors too (the API server would drop them silently).
    kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_every_service_has_deployment_service_and_disruption_budget() -> None:
    deployments, services, budgets = (
        _of_kind("Deployment"),
        _of_kind("Service"),
        _of_kind("PodDisruptionBudget"),
    )
    assert set(deployments) == DEPLOYED
    assert set(services) == DEPLOYED
    assert set(budgets) == DEPLOYED
    secret_keys = set(_of_kind("Secret")["qti-secrets"]["stringData"])
    for name, deployment in deployments.items():
        pod = deployment["spec"]["template"]
        labels = pod["metadata"]["labels"]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
        assert services[name]["spec"]["selector"].items() <= labels.items()
        assert budgets[name]["spec"]["selector"]["matchLabels"].items() <= labels.items()
        [container] = pod["spec"]["containers"]
        assert container["command"] == ["python", "-m", MODULES[name]]
        assert container["ports"][0]["containerPort"] == PORTS[name]
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert {"cpu", "memory"} <= set(container["resources"]["requests"])
        assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
        for variable in container["env"]:
            ref = variable.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                assert ref["name"] == "qti-secrets" and ref["key"] in secret_keys, variable
        assert pod["spec"]["terminationGracePeriodSeconds"] > float(
            _of_kind("ConfigMap")["qti-config"]["data"]["QTI_SHUTDOWN_GRACE_SECONDS"]
        )


SECRET_VARIABLES = {
    "QTI_STAFF_TOKEN": "staff-token",
    "QTI_PSEUDONYM_KEY": "pseudonym-key",
    "QTI_LINK_SECRET": "link-secret",
}


def test_every_deployment_takes_its_secrets_and_own_broker_user_from_the_secret() -> None:
    secret = _of_kind("Secret")["qti-secrets"]["stringData"]
    for name, deployment in _of_kind("Deployment").items():
        if name == "portal":
            continue  # below: the portal has no database and is the broker's `frontend`
        [container] = deployment["spec"]["template"]["spec"]["containers"]
        refs = {
            variable["name"]: variable["valueFrom"]["secretKeyRef"]["key"]
            for variable in container["env"]
            if "secretKeyRef" in variable.get("valueFrom", {})
        }
        plain = {variable["name"] for variable in container["env"] if "value" in variable}
        assert SECRET_VARIABLES.items() <= refs.items(), (name, refs)
        assert refs["QTI_AMQP_URL"] == f"{name}-amqp-url"
        assert refs["QTI_DATABASE_URL"] == f"{name}-database-url"
        assert not plain & {*SECRET_VARIABLES, "QTI_AMQP_URL", "QTI_DATABASE_URL"}, name
        assert urlsplit(secret[f"{name}-amqp-url"]).username == name  # never guest, never another's


def test_the_portal_is_a_client_with_the_frontend_broker_user_and_no_database() -> None:
    secret = _of_kind("Secret")["qti-secrets"]["stringData"]
    [container] = _of_kind("Deployment")["portal"]["spec"]["template"]["spec"]["containers"]
    refs = {v["name"]: v["valueFrom"]["secretKeyRef"]["key"] for v in container["env"] if "valueFrom" in v}
    plain = {v["name"]: v["value"] for v in container["env"] if "value" in v}
    assert refs["QTI_AMQP_URL"] == "frontend-amqp-url"
    assert urlsplit(secret["frontend-amqp-url"]).username == "frontend"
    assert refs["QTI_PORTAL_FORM_SECRET"] == "portal-form-secret" and "QTI_REDIS_URL" in refs
    assert refs["QTI_STAFF_TOKEN"] == "staff-token"  # the console acts through the staff APIs
    assert "QTI_DATABASE_URL" not in refs | plain
    for service in ("catalogue", "registration"):
        assert plain[f"QTI_{service.upper()}_URL"].startswith(f"http://{service}.")


def test_secret_is_a_template_without_real_values() -> None:
    secret = _of_kind("Secret")["qti-secrets"]["stringData"]
    assert set(SECRET_VARIABLES.values()) <= set(secret)
    for key, value in secret.items():
        # A placeholder that a production service refuses: nothing real is ever committed.
        assert value == "change-me" or urlsplit(value).password == "change-me", key
    assert Settings(env="production", staff_token=secret["staff-token"]).production_problems()


def test_configmap_sets_production_and_holds_no_secret() -> None:
    data = _of_kind("ConfigMap")["qti-config"]["data"]
    assert data["QTI_ENV"] == "production"
    assert not set(data) & {*SECRET_VARIABLES, "QTI_AMQP_URL", "QTI_DATABASE_URL"}


def test_configmap_names_only_known_settings() -> None:
    known = {f"QTI_{name.upper()}" for name in Settings.model_fields}
    known |= {"QTI_SMTP_HOST", "QTI_SMTP_PORT"}  # notification's own settings
    data = _of_kind("ConfigMap")["qti-config"]["data"]
    assert set(data) <= known, set(data) - known


def test_registration_scales_on_its_command_queue() -> None:
    scaled = _of_kind("ScaledObject")["registration"]
    assert scaled["spec"]["scaleTargetRef"]["name"] == "registration"
    [trigger] = scaled["spec"]["triggers"]
    assert trigger["type"] == "rabbitmq"
    assert trigger["metadata"]["queueName"] == "registration.requests"
    auth = _of_kind("TriggerAuthentication")[trigger["authenticationRef"]["name"]]
    secret_keys = set(_of_kind("Secret")["qti-secrets"]["stringData"])
    assert {ref["key"] for ref in auth["spec"]["secretTargetRef"]} <= secret_keys
    # KEDA owns registration's HPA; a second one would fight it.
    assert "registration" not in _of_kind("HorizontalPodAutoscaler")


# --------------------------------------------------------------------------------------------------
# Compose
# --------------------------------------------------------------------------------------------------


def _interpolate(text: str) -> str:
    """Compose's `${VAR:-default}` with an empty environment (what `docker compose config` does)."""
    return re.sub(r"\$\{[A-Z0-9_]+:-([^}]*)\}", r"\1", text)


def _docker_compose_available() -> bool:
    if shutil.which("docker") is None:
        return False
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30, check=False)
    return probe.returncode == 0


def test_compose_file_is_valid() -> None:
    path = DEPLOY / "compose.yaml"
    if _docker_compose_available():
        result = subprocess.run(
            ["docker", "compose", "-f", str(path), "config", "-q"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
    # Always also against the compose specification's JSON schema (shipped by check-jsonschema).
    schema_file = importlib.resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    schema = json.loads(schema_file.read_text())
    document = yaml.safe_load(_interpolate(path.read_text()))
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = list(validator.iter_errors(document))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_compose_takes_secrets_from_an_env_file_outside_git() -> None:
    document = yaml.safe_load(_interpolate((DEPLOY / "compose.yaml").read_text()))
    example = (DEPLOY / "secrets.env.example").read_text()
    listed = dict(line.split("=", 1) for line in example.splitlines() if line and not line.startswith("#"))
    assert set(listed) == {*SECRET_VARIABLES, "QTI_PORTAL_FORM_SECRET"}, "every secret of the stack"
    assert not any(listed.values()), "the example holds no value"
    assert "deploy/secrets.env" in (ROOT / ".gitignore").read_text().splitlines()
    for name in SERVICES:
        service = document["services"][name]
        assert service["environment"]["QTI_ENV"] == "production"
        assert service["env_file"] == [{"path": "./secrets.env", "required": True}]
        assert not set(service["environment"]) & set(SECRET_VARIABLES), name
        assert urlsplit(service["environment"]["QTI_AMQP_URL"]).username == name


def test_compose_services_are_complete() -> None:
    text = (DEPLOY / "compose.yaml").read_text()
    document = yaml.safe_load(_interpolate(text))
    services = document["services"]
    assert services["rabbitmq"]["image"].startswith("rabbitmq:3.13-management")
    assert services["postgres"]["image"] == "postgres:15"
    assert "mailpit" in services
    for name in SERVICES:
        service = services[name]
        env = service["environment"]
        assert env["SERVICE"] == name
        assert env["QTI_AMQP_URL"].startswith(f"amqp://{name}:") and env["QTI_AMQP_URL"].endswith("/qti")
        assert env["QTI_DATABASE_URL"].startswith(f"postgresql://{name}:")
        assert "/readyz" in " ".join(service["healthcheck"]["test"])
        assert str(PORTS[name]) in env.get("QTI_PORT_CHECK", "")
        assert f"${{{name.upper()}_REPLICAS:-" in text
        assert isinstance(service["deploy"]["replicas"], str | int)


def test_compose_runs_the_portal_behind_the_gateway_as_a_client() -> None:
    text = (DEPLOY / "compose.yaml").read_text()
    services = yaml.safe_load(_interpolate(text))["services"]
    portal = services["portal"]
    env = portal["environment"]
    assert env["SERVICE"] == "portal" and env["QTI_ENV"] == "production"
    assert urlsplit(env["QTI_AMQP_URL"]).username == "frontend" and "QTI_DATABASE_URL" not in env
    assert env["QTI_REDIS_URL"].startswith("redis://redis:") and "redis" in services
    assert env["QTI_TRUSTED_PROXIES"] and portal["env_file"] == [{"path": "./secrets.env", "required": True}]
    assert "${PORTAL_REPLICAS:-" in text and "8000:8000" in " ".join(services["gateway"]["ports"])
    assert "proxy_pass http://$u:8000" in (DEPLOY / "gateway" / "nginx.conf").read_text()


# --------------------------------------------------------------------------------------------------
# RabbitMQ definitions
# --------------------------------------------------------------------------------------------------


def _definitions() -> dict[str, Any]:
    document: dict[str, Any] = json.loads((DEPLOY / "rabbitmq" / "definitions.json").read_text())
    return document


def test_definitions_file_is_generated_from_the_runtime() -> None:
    generator = _load_script("rabbitmq_definitions")
    assert (DEPLOY / "rabbitmq" / "definitions.json").read_text() == generator.render(), (
        "deploy/rabbitmq/definitions.json is stale: run python scripts/rabbitmq_definitions.py"
    )


def test_definitions_exchanges_equal_the_runtime_declarations() -> None:
    declared = {e["name"]: e for e in _definitions()["exchanges"]}
    for exchange in (EVENTS, REPORTING, DEAD_LETTERS, UNROUTED_EXCHANGE):
        entry = declared.pop(exchange.name)
        assert entry["vhost"] == "qti"
        assert entry["type"] == exchange.type.value
        assert entry["durable"] is exchange.durable
        assert entry["auto_delete"] is exchange.auto_delete
        assert entry["arguments"] == dict(exchange.arguments or {})
    assert not declared
    assert _definitions()["exchanges"][0]["arguments"] == {"alternate-exchange": "qti.unrouted"}


def test_definitions_queues_equal_the_runtime_declarations() -> None:
    definitions = _definitions()
    queues = {q["name"]: q for q in definitions["queues"]}
    bindings = {(b["source"], b["destination"], b["routing_key"]) for b in definitions["bindings"]}
    generator = _load_script("rabbitmq_definitions")
    # The services' own declarations (from their runtimes) where a service exists, else the table.
    expected = {spec.name: spec for spec in generator.service_queues()}
    assert {spec.service for spec in expected.values()} == set(SERVICES)
    for rabbit_queue in [UNROUTED_QUEUE, *(dead_letter_rabbit_queue(s) for s in SERVICES)]:
        entry = queues.pop(rabbit_queue.name)
        assert entry["arguments"] == dict(rabbit_queue.arguments or {}), rabbit_queue.name
        assert entry["durable"] is True
    for name, spec in expected.items():
        entry = queues.pop(name, None)
        assert entry is not None, f"queue {name} missing from definitions.json"
        assert entry["arguments"] == dict(spec.rabbit_queue().arguments or {}), name
        assert entry["arguments"]["x-queue-type"] == "quorum"
        assert entry["arguments"]["x-delivery-limit"] == 5
        for key in spec.routing_keys:
            assert (spec.exchange.name, name, key) in bindings, (name, key)
        # Its routing keys, and its own name on qti.dead-letter (the consumer's retry copies).
        assert {(s, d, k) for s, d, k in bindings if d == name} == {
            *((spec.exchange.name, name, k) for k in spec.routing_keys),
            (DEAD_LETTER_EXCHANGE, name, name),
        }, name
    assert not queues, f"queues in definitions.json that no service declares: {sorted(queues)}"
    assert ("qti.events", "qti.reporting", "reporting.#") in bindings
    for service in SERVICES:
        assert ("qti.dead-letter", f"{service}.dead-letter", f"{service}.dead-letter") in bindings


def test_definitions_permissions_are_least_privilege() -> None:
    definitions = _definitions()
    permissions = {p["user"]: p for p in definitions["permissions"]}
    topics = {(p["user"], p["exchange"]): p for p in definitions["topic_permissions"]}
    shared = ("qti.events", "qti.reporting", "qti.dead-letter", "qti.unrouted", "amq.default")
    generator = _load_script("rabbitmq_definitions")
    for service in SERVICES:
        granted = permissions[service]
        assert granted["vhost"] == "qti"
        others = [s for s in SERVICES if s != service]
        for verb in ("configure", "write", "read"):
            pattern = re.compile(granted[verb])
            assert pattern.fullmatch(f"{service}.events") or pattern.fullmatch(f"{service}.requests")
            assert not any(pattern.fullmatch(f"{other}.events") for other in others), (service, verb)
            assert not any(pattern.fullmatch(f"{other}.dead-letter") for other in others), (service, verb)
        # The definitions create the shared exchanges; no service may (re)configure or delete them.
        assert not any(re.fullmatch(granted["configure"], name) for name in shared), service
        assert re.fullmatch(granted["write"], "qti.events")
        assert bool(re.fullmatch(granted["write"], "amq.default")) is (service == "registration")
        published = topics[(service, "qti.events")]["write"]
        assert all(re.fullmatch(published, key) for key in generator.published_routing_keys(service))
        foreign = [key for other in others for key in generator.published_routing_keys(other)]
        assert not any(re.fullmatch(published, key) for key in foreign), service
        dead_letters = topics[(service, "qti.dead-letter")]
        for verb in ("write", "read"):
            assert re.fullmatch(dead_letters[verb], f"{service}.dead-letter")
            assert not any(re.fullmatch(dead_letters[verb], f"{o}.dead-letter") for o in others)
    frontend = permissions["frontend"]
    assert re.fullmatch(frontend["read"], "frontend.reply.portal") and re.fullmatch(
        frontend["configure"], "frontend.reply.portal"
    )
    for verb in ("configure", "write", "read"):
        assert not any(re.fullmatch(frontend[verb], f"{s}.requests") for s in SERVICES)
        assert not re.fullmatch(frontend[verb], "amq.default")
    commands = topics[("frontend", "qti.events")]["write"]
    assert re.fullmatch(commands, "registration.requested")
    assert re.fullmatch(commands, "registration.cancellation_requested")
    assert not re.fullmatch(commands, "registration.confirmed")
    kpi = permissions["kpi-consumer"]
    read = re.compile(kpi["read"])
    assert read.fullmatch("qti.reporting") and read.fullmatch("kpi-consumer.dashboard")
    for forbidden in ("qti.events", "qti.dead-letter", "registration.requests", "reporting.events"):
        assert not read.fullmatch(forbidden), forbidden
    for verb in ("configure", "write"):
        assert not re.fullmatch(kpi[verb], "qti.reporting")
        assert not re.fullmatch(kpi[verb], "qti.events")
    [bounded] = [p for p in definitions["policies"] if p["name"] == "kpi-consumer-bounded"]
    assert bounded["definition"]["overflow"] == "drop-head"  # never refuse reporting's publish
    users = {u["name"]: u for u in definitions["users"]}
    assert all(users[s]["tags"] == [] for s in [*SERVICES, "frontend", "kpi-consumer"])
    assert "guest" not in users


# --------------------------------------------------------------------------------------------------
# Postgres and the image
# --------------------------------------------------------------------------------------------------


def test_postgres_init_gives_each_service_its_own_schema() -> None:
    sql = (DEPLOY / "postgres" / "init.sql").read_text()
    for service in SERVICES:
        assert re.search(rf"CREATE ROLE {service}\s+LOGIN", sql), service
        assert re.search(rf"CREATE SCHEMA {service}\s+AUTHORIZATION {service};", sql), service
    assert "REVOKE CREATE ON SCHEMA public FROM PUBLIC" in sql
    assert "SUPERUSER" not in sql.upper().replace("NOSUPERUSER", "")


def test_dockerfile_is_multi_stage_slim_and_non_root() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    stages = re.findall(r"^FROM\s+(\S+)", text, re.MULTILINE)
    assert len(stages) >= 2 and all(image.startswith("python:3.11-slim") for image in stages)
    users = re.findall(r"^USER\s+(\S+)", text, re.MULTILINE)
    assert users, "no USER instruction"
    final_user = users[-1].split(":")[0]
    assert final_user not in {"root", "0"}
    assert text.rfind("USER") > text.rfind("FROM"), "USER must be set in the final stage"
    assert "ARG SERVICE" in text and "services.${SERVICE}" in text
