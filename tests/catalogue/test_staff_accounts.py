"""The staff directory against real Postgres: sign-in, lockout, accounts, audit log, hostile input."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
import pytest_asyncio
from argon2 import PasswordHasher
from catalogue.harness import GOTHA, PROBLEM, STAFF, Service, isolated_service, offering_body
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devtools import demo
from devtools.demo_data import DEMO_STAFF, node_id_for
from qti_runtime.db import Database
from qti_runtime.settings import Settings
from services.catalogue import privacy, staff_accounts, staff_api
from services.catalogue.handlers import Conflict, Invalid
from services.catalogue.staff_rules import LOCKOUT_DURATION, StaffAccount
from support import Isolation

pytestmark = pytest.mark.asyncio(loop_scope="session")

PASSWORD = "richtig-langes-passwort"
JSON_HEADERS = {**STAFF, "content-type": "application/json"}
SOEMMERDA = node_id_for("soemmerda")


class Clock:
    """The staff endpoints' clock: the real time unless a test sets `now`."""

    def __init__(self) -> None:
        self.now: datetime | None = None

    def __call__(self) -> datetime:
        return self.now or datetime.now(UTC)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def service(isolation: Isolation) -> AsyncIterator[Service]:
    async with isolated_service(isolation) as running:
        yield running


@pytest.fixture
def clock(service: Service) -> Iterator[Clock]:
    assert service.app is not None
    found = Clock()
    service.app.dependency_overrides[staff_api.utc_now] = found
    yield found
    service.app.dependency_overrides.clear()


async def add(service: Service, *, node: UUID | None = GOTHA, password: str = PASSWORD) -> StaffAccount:
    email = f"staff-{uuid4().hex[:8]}@example.de"
    now = datetime.now(UTC)
    return await staff_accounts.create_account(service.runtime.db, email, password, node_id=node, now=now)


async def sign_in(service: Service, email: str, password: str = PASSWORD) -> httpx.Response:
    return await service.client.post(
        "/staff/sign-in", json={"email": email, "password": password}, headers=STAFF
    )


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["detail"]
    assert "$argon2" not in response.text
    return body


async def audit(service: Service, **params: Any) -> list[dict[str, Any]]:
    response = await service.client.get("/staff/audit", params=params, headers=STAFF)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def test_every_route_needs_the_staff_token(service: Service) -> None:
    calls = [
        ("POST", "/staff/sign-in", {"email": "a@example.de", "password": PASSWORD}),
        ("GET", "/staff/accounts", None),
        ("GET", f"/staff/accounts/{uuid4()}", None),
        ("POST", "/staff/audit", {"actor_account_id": str(uuid4()), "action": "offering.edited"}),
        ("GET", "/staff/audit", None),
    ]
    for method, path, body in calls:
        missing = await service.client.request(method, path, json=body)
        assert "Token" in assert_problem(missing, 401)["detail"]
        wrong = await service.client.request(method, path, json=body, headers={"Authorization": "Bearer x"})
        assert_problem(wrong, 403)


async def test_sign_in_answers_with_the_account_and_never_a_hash(service: Service) -> None:
    account = await add(service)
    response = await sign_in(service, account.email.upper() + "  ", PASSWORD)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "account_id": str(account.account_id),
        "email": account.email,
        "role": "node",
        "node_id": str(GOTHA),
        "created_at": response.json()["created_at"],
        "disabled": False,
        "locked": False,
    }
    one = await service.client.get(f"/staff/accounts/{account.account_id}", headers=STAFF)
    listing = await service.client.get("/staff/accounts", headers=STAFF)
    assert one.json() == response.json()
    assert account.email in [item["email"] for item in listing.json()["items"]]
    for answer in (response, one, listing):
        assert "argon2" not in answer.text and "hash" not in answer.text
    entries = await audit(service)
    assert entries[0]["action"] == "staff.signed_in" and entries[0]["label"] == "Angemeldet"
    assert entries[0]["actor_account_id"] == str(account.account_id)
    assert PASSWORD not in json.dumps(entries)


async def test_unknown_address_wrong_password_and_disabled_get_the_same_answer(service: Service) -> None:
    account = await add(service)
    disabled = await add(service)
    await staff_accounts.disable_account(service.runtime.db, disabled.email, datetime.now(UTC))
    answers = [
        await sign_in(service, "niemand@example.de"),
        await sign_in(service, account.email, "falsches-passwort-123"),
        await sign_in(service, disabled.email),
    ]
    bodies = [assert_problem(answer, 401) for answer in answers]
    assert bodies[0] == bodies[1] == bodies[2]
    assert bodies[0]["code"] == "sign_in_failed" and "15 Minuten" in bodies[0]["detail"]
    shown = await service.client.get(f"/staff/accounts/{disabled.account_id}", headers=STAFF)
    assert shown.json()["disabled"] is True


async def test_five_failures_lock_and_the_lock_ends_after_fifteen_minutes(
    service: Service, clock: Clock
) -> None:
    account = await add(service)
    clock.now = start = datetime.now(UTC)
    for attempt in range(5):
        clock.now = start + timedelta(minutes=attempt)
        assert_problem(await sign_in(service, account.email, f"falsch-{attempt}-xxxxxxxx"), 401)
    locked_at = clock.now
    right_but_locked = await sign_in(service, account.email)
    assert assert_problem(right_but_locked, 401) == assert_problem(
        await sign_in(service, "x@example.de"), 401
    )
    shown = await service.client.get(f"/staff/accounts/{account.account_id}", headers=STAFF)
    assert shown.json()["locked"] is True
    clock.now = locked_at + LOCKOUT_DURATION - timedelta(seconds=1)
    assert_problem(await sign_in(service, account.email), 401)
    clock.now = locked_at + LOCKOUT_DURATION
    assert (await sign_in(service, account.email)).status_code == 200
    mine = [e for e in await audit(service) if e["actor_account_id"] == str(account.account_id)]
    assert [e["action"] for e in mine] == ["staff.signed_in"] + ["staff.sign_in_failed"] * 5
    assert mine[1]["detail"] == {"locked": True, "attempt": None}
    assert mine[2]["detail"] == {"locked": False, "attempt": 4}


async def test_a_success_resets_the_count(service: Service, clock: Clock) -> None:
    account = await add(service)
    clock.now = datetime.now(UTC)
    for _ in range(4):
        await sign_in(service, account.email, "daneben-daneben")
    assert (await sign_in(service, account.email)).status_code == 200
    for _ in range(4):
        await sign_in(service, account.email, "daneben-daneben")
    assert (await sign_in(service, account.email)).status_code == 200


async def test_an_old_hash_is_replaced_at_sign_in(service: Service) -> None:
    account = await add(service)
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(PASSWORD)
    async with service.runtime.db.pool.acquire() as conn:
        await conn.execute(
            "UPDATE staff_accounts SET password_hash = $2 WHERE account_id = $1", account.account_id, weak
        )
    assert (await sign_in(service, account.email)).status_code == 200
    async with service.runtime.db.pool.acquire() as conn:
        stored = await conn.fetchval(
            "SELECT password_hash FROM staff_accounts WHERE account_id = $1", account.account_id
        )
    assert stored != weak and not PasswordHasher().check_needs_rehash(stored)
    assert (await sign_in(service, account.email)).status_code == 200


async def test_accounts_need_an_existing_node_a_new_address_and_a_good_password(service: Service) -> None:
    db, now = service.runtime.db, datetime.now(UTC)
    with pytest.raises(Invalid) as unknown_node:
        await staff_accounts.create_account(db, "neu@example.de", PASSWORD, node_id=uuid4(), now=now)
    assert unknown_node.value.problems[0].field == "node_id"
    with pytest.raises(Invalid) as weak:
        await staff_accounts.create_account(db, "neu@example.de", "zu-kurz", node_id=None, now=now)
    assert "mindestens 12" in weak.value.problems[0].message
    account = await add(service)
    with pytest.raises(Conflict):
        await staff_accounts.create_account(db, account.email.title(), PASSWORD, node_id=None, now=now)


async def test_a_reset_password_works_and_ends_a_lock(service: Service) -> None:
    account = await add(service)
    for _ in range(5):
        await sign_in(service, account.email, "daneben-daneben")
    await staff_accounts.reset_password(service.runtime.db, account.email, "ein-ganz-neues-passwort")
    assert_problem(await sign_in(service, account.email), 401)
    assert (await sign_in(service, account.email, "ein-ganz-neues-passwort")).status_code == 200


# --- audit ---------------------------------------------------------------------------------------


async def record(service: Service, **body: Any) -> httpx.Response:
    return await service.client.post("/staff/audit", json=body, headers=STAFF)


async def test_audit_entries_are_listed_newest_first_and_by_node(service: Service) -> None:
    lead = await add(service, node=None)
    gotha = await add(service)
    created = await service.client.post("/offerings", json=offering_body(), headers=STAFF)
    offering_id = created.json()["offering_id"]
    first = await record(
        service, actor_account_id=str(gotha.account_id), action="offering.published", offering_id=offering_id
    )
    assert first.status_code == 201, first.text
    assert first.json()["node_id"] == str(GOTHA)  # from the offering
    second = await record(
        service,
        actor_account_id=str(lead.account_id),
        action="registration.promoted",
        node_id=str(SOEMMERDA),
        subject="reg-42",
        detail={"over_capacity": True, "position": 1, "note": '=HYPERLINK("x")'},
    )
    assert second.status_code == 201, second.text
    newest = await audit(service, limit=2)
    assert [e["id"] for e in newest] == [second.json()["id"], first.json()["id"]]
    assert newest[0]["detail"]["note"] == '=HYPERLINK("x")'  # kept as data; shown escaped
    assert newest[1]["label"] == "Angebot veröffentlicht" and newest[1]["actor_email"] == gotha.email
    page = await service.client.get("/staff/audit", params={"limit": 1}, headers=STAFF)
    after = await audit(service, limit=1, before=page.json()["next_before"])
    assert after[0]["id"] == first.json()["id"]
    assert all(e["node_id"] == str(SOEMMERDA) for e in await audit(service, node=str(SOEMMERDA)))


async def test_audit_refuses_other_nodes_disabled_and_unknown_actors(service: Service) -> None:
    gotha = await add(service)
    other = await record(
        service, actor_account_id=str(gotha.account_id), action="offering.edited", node_id=str(SOEMMERDA)
    )
    assert "Knoten" in assert_problem(other, 403)["detail"]
    unknown = await record(service, actor_account_id=str(uuid4()), action="offering.edited")
    assert assert_problem(unknown, 422)["errors"][0]["field"] == "actor_account_id"
    no_offering = await record(
        service, actor_account_id=str(gotha.account_id), action="offering.edited", offering_id=str(uuid4())
    )
    assert assert_problem(no_offering, 422)["errors"][0]["field"] == "offering_id"
    await staff_accounts.disable_account(service.runtime.db, gotha.email, datetime.now(UTC))
    disabled = await record(service, actor_account_id=str(gotha.account_id), action="offering.edited")
    assert "deaktiviert" in assert_problem(disabled, 403)["detail"]


async def test_hostile_bodies_get_german_422s(service: Service) -> None:
    lead = await add(service, node=None)
    actor = str(lead.account_id)
    bodies: list[tuple[str, Any]] = [
        ("action", {"actor_account_id": actor, "action": "offering.deleted"}),
        ("action", {"actor_account_id": actor, "action": "staff.signed_in"}),
        ("subject", {"actor_account_id": actor, "action": "offering.edited", "subject": "a\u0000b"}),
        ("subject", {"actor_account_id": actor, "action": "offering.edited", "subject": "ü" * 201}),
        ("detail.x", {"actor_account_id": actor, "action": "offering.edited", "detail": {"x": {"y": 1}}}),
        ("detail.x", {"actor_account_id": actor, "action": "offering.edited", "detail": {"x": [[["x"]]]}}),
        ("detail", {"actor_account_id": actor, "action": "offering.edited", "detail": [1]}),
        (
            "actor_account_id",
            {"actor_account_id": "'; DROP TABLE staff_audit; --", "action": "offering.edited"},
        ),
        ("password", {"actor_account_id": actor, "action": "offering.edited", "password": "x"}),
        ("body", [1, 2, 3]),
    ]
    for field, body in bodies:
        response = await service.client.post("/staff/audit", json=body, headers=STAFF)
        problem = assert_problem(response, 422)
        assert field in [e["field"] for e in problem["errors"]], (field, problem)
    raw = await service.client.post("/staff/audit", content=b'{"a": ', headers=JSON_HEADERS)
    assert "JSON" in assert_problem(raw, 422)["detail"]
    for depth in (3_000, 30_000):  # nested deeper than the JSON parser recurses: still a German answer
        detail = "[" * depth + "1" + "]" * depth
        deep = f'{{"actor_account_id": "{actor}", "action": "offering.edited", "detail": {{"x": {detail}}}}}'
        response = await service.client.post("/staff/audit", content=deep.encode(), headers=JSON_HEADERS)
        assert response.status_code in (413, 422), response.text
        assert_problem(response, response.status_code)
    surrogate = "\\ud800"  # a lone surrogate: valid JSON, but no UTF-8 text
    for field, text in (
        ("subject", f'"subject": "a{surrogate}"'),
        ("detail.note", f'"detail": {{"note": "{surrogate}"}}'),
        ("detail", f'"detail": {{"{surrogate}": 1}}'),
        ("action", f'"action": "{surrogate}"'),
    ):
        action = "" if field == "action" else '"action": "offering.edited", '
        content = f'{{"actor_account_id": "{actor}", {action}{text}}}'.encode()
        response = await service.client.post("/staff/audit", content=content, headers=JSON_HEADERS)
        assert field in [e["field"] for e in assert_problem(response, 422)["errors"]], content


async def test_hostile_sign_ins_get_clear_answers(service: Service) -> None:
    cases: list[tuple[int, Any]] = [
        (422, {"email": "a@example.de\u0000", "password": PASSWORD}),
        (422, {"email": "a" * 300 + "@example.de", "password": PASSWORD}),
        (422, {"email": "a@example.de", "password": "p" * 257}),
        (422, {"email": ["a@example.de"], "password": PASSWORD}),
        (422, {"email": "a@example.de"}),
        (422, {"email": "a@example.de", "password": PASSWORD, "role": "lead"}),
        (401, {"email": "ä😀@exämple.de", "password": "😀" * 200}),
        (401, {"email": "", "password": ""}),
    ]
    for status, body in cases:
        response = await service.client.post("/staff/sign-in", json=body, headers=STAFF)
        assert_problem(response, status)
    huge = await service.client.post("/staff/sign-in", content=b"{" + b" " * 70_000 + b"}", headers=STAFF)
    assert_problem(huge, 413)
    for path in (f"/staff/accounts/{'x' * 500}", "/staff/accounts/00000000-0000-0000-0000-000000000000"):
        assert (
            "Mitarbeiterkonto" in assert_problem(await service.client.get(path, headers=STAFF), 404)["detail"]
        )
    for params in ({"limit": 0}, {"limit": 10_000}, {"before": -1}, {"node": "gotha"}, {"before": 2**70}):
        assert_problem(await service.client.get("/staff/audit", params=params, headers=STAFF), 422)


async def test_forget_person_pseudonymises_a_staff_account(service: Service) -> None:
    account = await add(service)
    assert (await sign_in(service, account.email)).status_code == 200
    assert await privacy.forget_person(service.runtime.db, account.email.upper()) >= 2
    assert_problem(await sign_in(service, account.email), 401)
    shown = (await service.client.get(f"/staff/accounts/{account.account_id}", headers=STAFF)).json()
    assert shown["email"] == f"geloescht-{account.account_id}@invalid" and shown["disabled"] is True
    assert account.email not in json.dumps(await audit(service, limit=200))


# --- fuzz ----------------------------------------------------------------------------------------

_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=40)
    | st.sampled_from(["\ud800", "=1+1", "<script>", "ä" * 300, "\u202e", "a\u0000b", "-1e999"])
)
_JSON = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def _bodies(fields: dict[str, st.SearchStrategy[Any]], count: int) -> list[Any]:
    """A fixed, derandomised set of bodies: the fields with hostile values, some missing, or any JSON."""
    shaped = st.fixed_dictionaries({}, optional={name: strategy | _JSON for name, strategy in fields.items()})
    found: list[Any] = []

    @settings(max_examples=count, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
    @given(shaped | _JSON)
    def collect(body: Any) -> None:
        found.append(body)

    collect()
    return found


async def test_fuzzed_bodies_never_get_a_server_error(service: Service) -> None:
    lead = await add(service, node=None)
    sign_in_fields = {"email": st.just(lead.email) | st.text(max_size=60), "password": st.text(max_size=40)}
    audit_fields = {
        "actor_account_id": st.just(str(lead.account_id)),
        "action": st.sampled_from(["offering.edited", "certificate.revoked"]),
        "node_id": st.just(str(GOTHA)) | st.uuids().map(str),
        "subject": st.text(max_size=60),
        "detail": st.dictionaries(st.text(max_size=10), _SCALARS, max_size=5),
    }
    for path, fields in (("/staff/sign-in", sign_in_fields), ("/staff/audit", audit_fields)):
        for body in _bodies(fields, 60):
            content = json.dumps(body, ensure_ascii=True, allow_nan=True).encode()
            response = await service.client.post(
                path, content=content, headers={**STAFF, "content-type": "application/json"}
            )
            assert response.status_code < 500, (path, body, response.text)
            if response.status_code >= 400:
                assert_problem(response, response.status_code)


async def test_sign_in_with_a_lone_surrogate_is_a_422(service: Service) -> None:
    for body in (
        b'{"email": "\\ud800@example.de", "password": "x"}',
        b'{"email": "a@b.de", "password": "\\udfff"}',
    ):
        response = await service.client.post("/staff/sign-in", content=body, headers=JSON_HEADERS)
        assert "ungültige Zeichen" in assert_problem(response, 422)["detail"]


async def test_demo_accounts_in_development_only(settings: Settings, isolation: Isolation) -> None:
    lines: list[str] = []
    await demo.run(settings, lines)
    assert [line.split()[0] for line in lines] == [staff.email for staff in DEMO_STAFF]
    assert all(staff.password in text for staff, text in zip(DEMO_STAFF, lines, strict=True))
    again: list[str] = []
    await demo.run(settings, again)
    assert all("gab es schon" in line for line in again)
    db = Database(settings.database_url, "catalogue", min_size=1, max_size=2)
    await db.connect()
    try:
        now = datetime.now(UTC)
        for staff in DEMO_STAFF:
            account = await staff_accounts.sign_in(db, staff.email, staff.password, now)
            assert account is not None and account.node_id == staff.node_id
    finally:
        await db.close()
    production_url = await isolation.create_database()
    try:
        production = settings.model_copy(update={"env": "production", "database_url": production_url})
        lines = []
        await demo.run(production, lines)
        assert lines == []
        db = Database(production_url, "catalogue", min_size=1, max_size=2)
        await db.connect()
        try:
            async with db.pool.acquire() as conn:
                assert await conn.fetchval("SELECT count(*) FROM staff_accounts") == 0
        finally:
            await db.close()
    finally:
        await isolation.drop_database(production_url)


async def test_concurrent_failures_are_all_counted(service: Service) -> None:
    account = await add(service)
    attempts = [sign_in(service, account.email, f"daneben-{index}-xxxxx") for index in range(5)]
    answers = await asyncio.gather(*attempts)
    assert [answer.status_code for answer in answers] == [401] * 5
    shown = await service.client.get(f"/staff/accounts/{account.account_id}", headers=STAFF)
    assert shown.json()["locked"] is True
    assert_problem(await sign_in(service, account.email), 401)
