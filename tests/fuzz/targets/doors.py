"""Client input: the credentials a caller presents at a locked door (TOOLFABRIC_AUTH_REQUIRED=true).

The first byte picks the door: even, an HTTP request through the policy's middleware (policy/http.py,
in front of the step API, MCP and chat doors) with the rest as its `Authorization` header and path;
odd, the gRPC door's interceptor (policy/grpc.py) with the rest as `authorization` metadata.
Keys are verified against a real key store (SQLite) holding one real key.
Promises checked: without that key, every request is refused — HTTP 401 with a JSON body and
`WWW-Authenticate: Bearer`, gRPC UNAUTHENTICATED — the door's app is never reached, and nothing but
the documented refusal comes out (no exception, no 500).
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path
from typing import Any

import grpc

from gateway.policy.authentication import Authenticator
from gateway.policy.grpc import PolicyInterceptor
from gateway.policy.http import RequireKey
from services.common.api_keys import ApiKeyStore
from services.common.settings import AuthSettings

INSTRUMENT = ("gateway.policy", "services.common.api_keys")
_WORK = Path(tempfile.mkdtemp(prefix="toolfabric-fuzz-doors-"))
KEYS = ApiKeyStore(f"sqlite:///{_WORK / 'keys.sqlite3'}")
KEY, _ = KEYS.create("acme", "fuzz")
AUTH = Authenticator(AuthSettings(required=True, cache_ttl_s=0), KEYS)
LOOP = asyncio.new_event_loop()


async def _reached(scope: Any, receive: Any, send: Any) -> None:
    raise AssertionError("the door's app was reached without a valid key")


DOOR = RequireKey(_reached, AUTH, open_paths=("/health",))


class _Details(grpc.HandlerCallDetails):
    def __init__(self, metadata: tuple[tuple[str, Any], ...]) -> None:
        self.method = "/toolfabric.v1.Fabric/ListTools"
        self.invocation_metadata = metadata


async def _handler(details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
    return grpc.unary_unary_rpc_method_handler(_reached)


async def _http(header: bytes, path: str) -> None:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    scope = {"type": "http", "method": "POST", "path": path if path != "/health" else "/x",
             "headers": [(b"authorization", header)] if header else []}
    await DOOR(scope, receive, send)
    start, body = sent[0], sent[1]
    assert start["status"] == 401, start
    assert (b"www-authenticate", b"Bearer") in start["headers"]
    assert isinstance(json.loads(body["body"])["error"], str)


async def _grpc(value: str) -> None:
    handler = await PolicyInterceptor(AUTH).intercept_service(_handler, _Details((("authorization", value),)))

    class Context:
        async def abort(self, code: grpc.StatusCode, message: str) -> None:
            assert code == grpc.StatusCode.UNAUTHENTICATED and message, (code, message)
            raise _Refused

    try:
        await handler.unary_unary(b"", Context())
    except _Refused:
        return
    raise AssertionError("the handler ran without a valid key")


class _Refused(Exception):
    pass


def fuzz_one(data: bytes) -> None:
    if not data:
        return
    door, rest = data[0], data[1:]
    header, _, path = rest.partition(b"\n")
    if KEY.encode() in header:
        return  # the one valid key opens the door: not this target's question
    if door % 2 == 0:
        LOOP.run_until_complete(_http(header, "/" + path.decode("latin-1").lstrip("/")))
    else:
        LOOP.run_until_complete(_grpc(rest.decode("utf-8", "replace")))
