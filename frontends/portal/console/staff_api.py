"""The services' staff HTTP APIs, as the console uses them (bearer token, `X-Staff-Actor`).

Answers come back as `Answer` (status, JSON body, ETag) so that pages can show a refusal (404, 409,
412, 422) in German; an unreachable service or a 5xx raises `BackendUnavailable` (the 503 page).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from frontends.portal.backend import ID_PATTERN, BackendUnavailable


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any
    etag: str | None = None

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def detail(self) -> str:
        return str(self.body.get("detail", "")) if isinstance(self.body, dict) else ""

    @property
    def field_errors(self) -> list[dict[str, str]]:
        errors = self.body.get("errors") if isinstance(self.body, dict) else None
        return [e for e in errors or [] if isinstance(e, dict)]


@dataclass
class StaffApi:
    catalogue: httpx.AsyncClient
    registration: httpx.AsyncClient
    notification: httpx.AsyncClient
    reporting: httpx.AsyncClient

    @classmethod
    def connect(cls, urls: dict[str, str], token: str) -> StaffApi:
        """`urls`: the base URL of each service (catalogue, registration, notification, reporting)."""
        timeout = httpx.Timeout(15.0, connect=3.0)
        headers = {"Authorization": f"Bearer {token}"}
        clients = {
            name: httpx.AsyncClient(base_url=urls[name], timeout=timeout, headers=headers)
            for name in ("catalogue", "registration", "notification", "reporting")
        }
        return cls(**clients)

    async def close(self) -> None:
        for client in (self.catalogue, self.registration, self.notification, self.reporting):
            await client.aclose()

    async def _call(
        self,
        client: httpx.AsyncClient,
        method: str,
        path: str,
        *,
        expect: tuple[int, ...] = (),
        **kwargs: Any,
    ) -> Answer:
        try:
            response = await client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise BackendUnavailable(f"{method} {path}: {type(exc).__name__}") from exc
        refused = response.status_code in (401, 403) and response.status_code not in expect
        if response.status_code >= 500 or refused:
            # 401/403 from a service means the console's staff token is wrong: an operations problem.
            raise BackendUnavailable(f"{method} {path}: {response.status_code}")
        try:
            body = response.json()
        except ValueError:
            body = None
        return Answer(response.status_code, body, response.headers.get("etag"))

    # Staff directory (catalogue) -------------------------------------------------------------------------

    async def sign_in(self, email: str, password: str) -> dict[str, Any] | None:
        """The account if the directory accepts the password; None for every refusal (401, 422)."""
        body = {"email": email[:254], "password": password[:256]}
        answer = await self._call(self.catalogue, "POST", "/staff/sign-in", json=body, expect=(401,))
        return answer.body if answer.ok and isinstance(answer.body, dict) else None

    async def account(self, account_id: str) -> dict[str, Any] | None:
        if not ID_PATTERN.match(account_id):
            return None
        answer = await self._call(self.catalogue, "GET", f"/staff/accounts/{account_id}")
        return answer.body if answer.ok and isinstance(answer.body, dict) else None

    async def record_audit(self, body: dict[str, Any]) -> Answer:
        return await self._call(self.catalogue, "POST", "/staff/audit", json=body, expect=(403,))

    async def audit_log(self, limit: int) -> list[dict[str, Any]]:
        answer = await self._call(self.catalogue, "GET", "/staff/audit", params={"limit": str(limit)})
        return list(answer.body["items"]) if answer.ok else []

    # Catalogue -----------------------------------------------------------------------------------------

    async def nodes(self) -> list[dict[str, Any]]:
        answer = await self._call(self.catalogue, "GET", "/nodes")
        return list(answer.body["items"]) if answer.ok else []

    async def offerings(self, node_id: str | None) -> list[dict[str, Any]]:
        params = [("limit", "200")] + ([("node", node_id)] if node_id else [])
        answer = await self._call(self.catalogue, "GET", "/staff/offerings", params=params)
        return list(answer.body["items"]) if answer.ok else []

    async def offering(self, offering_id: str) -> Answer | None:
        """The offering (any status) with its ETag; None if there is no such offering."""
        if not ID_PATTERN.match(offering_id):
            return None
        answer = await self._call(self.catalogue, "GET", f"/staff/offerings/{offering_id}")
        return answer if answer.ok else None

    async def create_offering(self, body: dict[str, Any]) -> Answer:
        return await self._call(self.catalogue, "POST", "/offerings", json=body)

    async def edit_offering(self, offering_id: str, body: dict[str, Any], etag: str) -> Answer:
        return await self._call(
            self.catalogue, "PATCH", f"/offerings/{offering_id}", json=body, headers={"If-Match": etag}
        )

    async def offering_action(
        self, offering_id: str, action: str, etag: str | None, body: dict[str, Any] | None = None
    ) -> Answer:
        assert action in ("publish", "cancel", "complete")
        headers = {"If-Match": etag} if etag else {}
        return await self._call(
            self.catalogue, "POST", f"/offerings/{offering_id}/{action}", json=body, headers=headers
        )

    # Registration --------------------------------------------------------------------------------------

    async def registrations(self, offering_id: str) -> list[dict[str, Any]]:
        answer = await self._call(self.registration, "GET", f"/offerings/{offering_id}/registrations")
        return list(answer.body) if answer.ok and isinstance(answer.body, list) else []

    async def record_attendance(self, offering_id: str, session_id: str, records: dict[str, bool]) -> Answer:
        body = {"records": [{"registration_id": k, "attended": v} for k, v in records.items()]}
        path = f"/offerings/{offering_id}/sessions/{session_id}/attendance"
        return await self._call(self.registration, "PUT", path, json=body)

    async def promote(
        self, offering_id: str, registration_id: str, actor: str, over_capacity: bool
    ) -> Answer:
        path = f"/offerings/{offering_id}/registrations/{registration_id}/promote"
        return await self._call(
            self.registration,
            "POST",
            path,
            json={"over_capacity": over_capacity},
            headers={"X-Staff-Actor": actor},
        )

    # Notification: certificates ------------------------------------------------------------------------

    async def certificates(self, offering_id: str) -> list[dict[str, Any]]:
        answer = await self._call(self.notification, "GET", f"/offerings/{offering_id}/certificates")
        return list(answer.body) if answer.ok and isinstance(answer.body, list) else []

    async def certificate_action(
        self, code: str, action: str, actor: str, body: dict[str, Any] | None = None
    ) -> Answer:
        """`resend` or `revoke` (with `{"reason": ...}`); 404 unknown code, 409 refused, 422 bad reason."""
        assert action in ("resend", "revoke")
        return await self._call(
            self.notification, "POST", f"/certificates/{code}/{action}", json=body,
            headers={"X-Staff-Actor": actor},
        )  # fmt: skip

    # Reporting: feedback -------------------------------------------------------------------------------

    async def feedback_ratings(self) -> dict[str, Any]:
        answer = await self._call(self.reporting, "GET", "/feedback/ratings")
        return dict(answer.body) if answer.ok and isinstance(answer.body, dict) else {}

    async def feedback_comments(self, node_id: str) -> list[dict[str, Any]]:
        params = {"node": node_id, "limit": "1000"}
        answer = await self._call(self.reporting, "GET", "/feedback/comments", params=params)
        found = answer.body.get("comments") if answer.ok and isinstance(answer.body, dict) else None
        return [c for c in found or [] if isinstance(c, dict)]
