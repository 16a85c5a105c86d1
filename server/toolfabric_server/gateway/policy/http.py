"""The HTTP doors' side of the policy: an ASGI middleware that resolves the caller of every request.

Every path except the door's probes (`open_paths`) needs `Authorization: Bearer <key>`; a request
without a valid key is refused with 401 before the app sees it (the body in the door's own error
shape), and the app finds the caller in `principal_of(request)`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from toolfabric_server.gateway import admission
from toolfabric_server.gateway.exceptions import Unauthenticated
from toolfabric_server.gateway.policy.authentication import ANONYMOUS, Authenticator, Principal

_STATE = "toolfabric_principal"
ErrorBody = Callable[[str], dict[str, Any]]


def plain_error(message: str) -> dict[str, Any]:
    return {"error": message}


def principal_of(request: Request | Any) -> Principal:
    """The caller `RequireKey` resolved for this request (anonymous with auth off)."""
    return principal_in(getattr(request, "scope", None) or {})


def principal_in(scope: Scope) -> Principal:
    """The same, from an ASGI scope (for middleware inside the policy's)."""
    return scope.get(_STATE, ANONYMOUS)  # type: ignore[no-any-return]


class RequireKey:
    def __init__(self, app: ASGIApp, authenticator: Authenticator, open_paths: tuple[str, ...] = (),
                 error_body: ErrorBody = plain_error) -> None:
        self.app, self._auth, self._open, self._body = app, authenticator, open_paths, error_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        admission.arrived(time.monotonic())  # the door's admission wait counts from here (gateway/admission.py)
        if scope["type"] != "http" or scope.get("path") in self._open:
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        value = headers.get(b"authorization")
        try:
            scope[_STATE] = await self._auth.authenticate(value.decode("latin-1") if value else None)
        except Unauthenticated as exc:
            body = json.dumps(self._body(str(exc))).encode()
            await send({"type": "http.response.start", "status": 401, "headers": [
                (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                (b"www-authenticate", b"Bearer")]})
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)
