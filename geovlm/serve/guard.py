"""ASGI middleware in front of every route: the API key and the body-size limit.

Both are checked before a route runs, so a refused request costs no parsing: a wrong or missing
key gets 401 (keys compared in constant time), a body over the limit 413, whether it declares
its length or streams it in chunks.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = ["Guard", "error_body"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Paths answered without a key (liveness checks).
OPEN_PATHS = frozenset({"/healthz"})


def error_body(message: str, kind: str, code: str) -> dict[str, Any]:
    """An error in OpenAI's format: ``{"error": {"message", "type", "code"}}``.

    Parameters
    ----------
    message
        One sentence for the user.
    kind
        OpenAI's error type, e.g. ``invalid_request_error``.
    code
        A short machine-readable code.

    Returns
    -------
    dict
    """
    return {"error": {"message": message, "type": kind, "code": code, "param": None}}


class Guard:
    """Refuses requests without the API key (401) or with a body over `max_body_bytes` (413).

    Parameters
    ----------
    app
        The application behind it.
    api_key
        The expected ``Authorization: Bearer`` key, or None to accept every request.
    max_body_bytes
        The largest body passed on.
    """

    def __init__(self, app: ASGIApp, *, api_key: str | None, max_body_bytes: int) -> None:
        self.app = app
        self.expected = f"Bearer {api_key}".encode() if api_key else None
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check one request, then pass it on with its body replayed."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        if self.expected is not None and scope["path"] not in OPEN_PATHS:
            given = headers.get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                await _answer(send, 401, error_body(
                    "missing or wrong API key: send Authorization: Bearer KEY.",
                    "authentication_error", "invalid_api_key"))
                return
        declared = headers.get(b"content-length", b"0")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            await self._too_large(send)
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_body_bytes:
                await self._too_large(send)
                return
            more = message.get("more_body", False)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": b"".join(chunks), "more_body": False}

        await self.app(scope, replay, send)

    async def _too_large(self, send: Send) -> None:
        await _answer(send, 413, error_body(
            f"request body over {self.max_body_bytes} bytes: send fewer or smaller images.",
            "invalid_request_error", "body_too_large"))


async def _answer(send: Send, status: int, body: dict[str, Any]) -> None:
    payload = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
    ]})
    await send({"type": "http.response.body", "body": payload})
