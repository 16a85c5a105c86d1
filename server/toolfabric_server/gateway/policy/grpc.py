"""The gRPC door's side of the policy: one interceptor resolves the caller of every call, once.

A call without a valid key is refused with UNAUTHENTICATED before its handler runs; otherwise the
handler runs with the caller in `current_principal()` (a context variable set in the handler's own
task). grpc.health.v1 and server reflection (service descriptions, no data) stay open for probes and
tools; every other service — Fabric, and any service added to the server later — needs a key: what is
open is listed here, never what is guarded.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from toolfabric_server.gateway import admission
from toolfabric_server.gateway.exceptions import Unauthenticated
from toolfabric_server.gateway.policy.authentication import ANONYMOUS, Authenticator, Principal

# Services served without a key (whole services: every method under these prefixes).
OPEN_SERVICES = ("/grpc.health.v1.Health/", "/grpc.reflection.v1alpha.ServerReflection/",
                 "/grpc.reflection.v1.ServerReflection/")
_CALLER: contextvars.ContextVar[Principal] = contextvars.ContextVar("toolfabric_caller", default=ANONYMOUS)


def current_principal() -> Principal:
    """The caller of the Fabric call being handled (set by `PolicyInterceptor`)."""
    return _CALLER.get()


class PolicyInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, authenticator: Authenticator) -> None:
        self._auth = authenticator

    async def intercept_service(self, continuation: Callable[[grpc.HandlerCallDetails],
                                                             Awaitable[grpc.RpcMethodHandler]],
                                details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None or details.method.startswith(OPEN_SERVICES):
            return handler
        try:
            principal = await self._auth.principal_of(details.invocation_metadata)  # type: ignore[attr-defined]
        except Unauthenticated as exc:
            return _wrapped(handler, None, str(exc))
        return _wrapped(handler, principal, "")


def _wrapped(handler: grpc.RpcMethodHandler, principal: Principal | None, refusal: str) -> grpc.RpcMethodHandler:
    """`handler` run as `principal`, or refusing with `refusal` when there is no principal."""
    inner = next(b for b in (handler.unary_unary, handler.unary_stream, handler.stream_unary,
                             handler.stream_stream) if b is not None)

    def mark_arrival(context: grpc.aio.ServicerContext) -> None:
        # The call's start as the client saw it: what its declared timeout says it waited before this handler.
        admission.arrived(time.monotonic() - admission.queued_s(context.invocation_metadata(),
                                                                context.time_remaining()))

    async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
        mark_arrival(context)
        if principal is None:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, refusal)
        _CALLER.set(principal)  # type: ignore[arg-type]
        return await inner(request, context)

    async def streaming(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        mark_arrival(context)
        if principal is None:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, refusal)
        _CALLER.set(principal)  # type: ignore[arg-type]
        async for item in inner(request, context):
            yield item

    factory = {(False, False): grpc.unary_unary_rpc_method_handler, (False, True): grpc.unary_stream_rpc_method_handler,
               (True, False): grpc.stream_unary_rpc_method_handler,
               (True, True): grpc.stream_stream_rpc_method_handler}[(handler.request_streaming,
                                                                      handler.response_streaming)]
    return factory(streaming if handler.response_streaming else unary,  # type: ignore[operator]
                   request_deserializer=handler.request_deserializer,
                   response_serializer=handler.response_serializer)
