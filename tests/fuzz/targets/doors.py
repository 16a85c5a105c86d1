"""Client input: the credentials a caller presents at a locked door (TOOLFABRIC_AUTH_REQUIRED=true).

The first byte picks the door (mod 3): 0, an HTTP request through the policy's middleware (policy/http.py,
in front of the step API, MCP and chat doors) with the rest as its `Authorization` header and path;
1, the gRPC door's interceptor (policy/grpc.py) with the header as `authorization` metadata and the path
as the method (any service but health and reflection: a service added later is guarded too); 2, the blob
port's signed-URL check (common/blob_urls.grant) with the rest as path and query string.
Keys are verified against a real key store (SQLite) holding one real key.
Promises checked: without that key, every request is refused — HTTP 401 with a JSON body and
`WWW-Authenticate: Bearer`, gRPC UNAUTHENTICATED — the door's app is never reached, and nothing but
the documented refusal comes out (no exception, no 500); no URL the fuzzer makes up is granted a blob
(BadSignature, never another error).
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path
from typing import Any

import grpc

from toolfabric_server.common.api_keys import ApiKeyStore
from toolfabric_server.common.blob_urls import BadSignature, grant
from toolfabric_server.gateway.policy.authentication import Authenticator
from toolfabric_server.gateway.policy.grpc import OPEN_SERVICES, PolicyInterceptor
from toolfabric_server.gateway.policy.http import RequireKey
from toolfabric_server.gateway.settings import AuthSettings

INSTRUMENT = ("toolfabric_server.gateway.policy", "toolfabric_server.common.api_keys",
              "toolfabric_server.common.blob_urls")
BLOB_SECRET = "fuzz-" + "s" * 40
_WORK = Path(tempfile.mkdtemp(prefix="toolfabric-fuzz-doors-"))
KEYS = ApiKeyStore(f"sqlite:///{_WORK / 'keys.sqlite3'}")
KEY, _ = KEYS.create("acme", "fuzz")
AUTH = Authenticator(AuthSettings(required=True, cache_ttl_s=0), KEYS)
LOOP = asyncio.new_event_loop()


async def _reached(scope: Any, receive: Any, send: Any) -> None:
    raise AssertionError("the door's app was reached without a valid key")


DOOR = RequireKey(_reached, AUTH, open_paths=("/health",))


class _Details(grpc.HandlerCallDetails):
    def __init__(self, metadata: tuple[tuple[str, Any], ...], method: str = "/toolfabric.v1.Fabric/ListTools") -> None:
        self.method = method
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


async def _grpc(value: str, method: str) -> None:
    handler = await PolicyInterceptor(AUTH).intercept_service(_handler, _Details((("authorization", value),),
                                                                                 method))

    class Context:  # the parts of grpc.aio.ServicerContext the policy reads
        def invocation_metadata(self) -> tuple[tuple[str, Any], ...]:
            return (("authorization", value),)

        def time_remaining(self) -> float | None:
            return None

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
    if door % 3 == 0:
        LOOP.run_until_complete(_http(header, "/" + path.decode("latin-1").lstrip("/")))
    elif door % 3 == 1:
        method = "/" + path.decode("utf-8", "replace").lstrip("/")
        if not method.startswith(OPEN_SERVICES):  # probes and descriptions are open by decision
            LOOP.run_until_complete(_grpc(header.decode("utf-8", "replace"), method))
    else:
        url_path, _, query = rest.decode("utf-8", "replace").partition("?")
        try:
            granted = grant(url_path, query, secret=BLOB_SECRET)
        except BadSignature:
            return
        raise AssertionError(f"a made-up URL was granted {granted}")
