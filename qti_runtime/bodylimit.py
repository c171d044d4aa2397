"""A request-body limit for every HTTP endpoint: 413 with a German problem detail (RFC 9457).

A pure ASGI middleware, so it sees the body before any routing or parsing. A declared `Content-Length`
over the limit is refused at once, before the app sees anything; a body without one (chunked) is counted
as it arrives and refused as soon as it passes the limit. (The rest of a refused body is read and
dropped, up to `DRAIN_BYTES`, only so that the client can read the answer.) A body within the limit is
held (it is at most the limit) and handed to the app as one message: the app parses it whole anyway.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from qti_runtime.http import problem_response

# How much of a refused body is read (and dropped) so that the client gets to read the 413.
DRAIN_BYTES = 1024 * 1024

# Staff routes that legitimately take more (an offering with 500 sessions, 1,000 attendance records).
LargeBodyRoute = tuple[str, str]  # (method, path template as in the router, e.g. "/offerings/{id}")


class BodyLimit:
    def __init__(
        self,
        app: ASGIApp,
        *,
        max_bytes: int,
        large_routes: Sequence[LargeBodyRoute] = (),
        large_max_bytes: int | None = None,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        large = large_max_bytes if large_max_bytes is not None else max_bytes
        self._larger: list[tuple[str, re.Pattern[str], int]] = [
            (method.upper(), compile_path(path)[0], large) for method, path in large_routes
        ]

    def limit_for(self, method: str, path: str) -> int:
        for allowed_method, pattern, limit in self._larger:
            if method == allowed_method and pattern.match(path):
                return limit
        return self.max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["method"], scope["path"])
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _too_large(limit, scope, receive, send, drain=declared <= limit + DRAIN_BYTES)
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away before its body was complete: nobody to answer
            body += message.get("body", b"")
            if len(body) > limit:
                await _too_large(limit, scope, receive, send, drain=message.get("more_body", False))
                return
            if not message.get("more_body", False):
                break
        pending: list[Message] = [{"type": "http.request", "body": bytes(body), "more_body": False}]

        async def replay() -> Message:
            return pending.pop() if pending else await receive()

        await self.app(scope, replay, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server refuses such requests; otherwise the body is counted
    return None


async def _too_large(limit: int, scope: Scope, receive: Receive, send: Send, *, drain: bool) -> None:
    """Answer 413. A client sends its whole body before it reads the answer; closing the connection on
    unread data resets it, and the client sees an error instead of the answer. So the rest of a body
    that is not far over the limit is read and thrown away first (never held); a larger one is not read,
    and the connection is closed after the answer."""
    complete = await _discard(receive, DRAIN_BYTES) if drain else False
    response = problem_response(
        413,
        f"Die Anfrage ist zu groß: Hier sind höchstens {_readable(limit)} ({limit} Bytes) erlaubt.",
        title="Anfrage zu groß",
        max_bytes=limit,
        headers=None if complete else {"Connection": "close"},
    )
    await response(scope, receive, send)


async def _discard(receive: Receive, budget: int) -> bool:
    """Read and drop the rest of the body, up to `budget` bytes; whether it ended within them."""
    while budget >= 0:
        message = await receive()
        if message["type"] != "http.request":
            return False
        budget -= len(message.get("body", b""))
        if not message.get("more_body", False):
            return budget >= 0
    return False


def _readable(size: int) -> str:
    if size >= 1024 * 1024 and size % (1024 * 1024) == 0:
        return f"{size // (1024 * 1024)} MiB"
    if size >= 1024 and size % 1024 == 0:
        return f"{size // 1024} KiB"
    return f"{size} Bytes"
