"""Request bytes that are not a valid message get INVALID_ARGUMENT, not UNKNOWN with a traceback.

grpcio decodes a request before the servicer runs and answers a decoding failure with UNKNOWN
(logging a traceback). This interceptor hands the Fabric's unary-request methods the raw bytes
and decodes them itself, so a malformed request is refused as what it is: the client's mistake.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from toolfabric.v1 import fabric_pb2 as pb
from toolfabric.v1.names import FABRIC_SERVICE

_METHODS = pb.DESCRIPTOR.services_by_name["Fabric"].methods_by_name


async def _decode(raw: bytes, decode: Callable[[bytes], Any], type_name: str, context: grpc.aio.ServicerContext) -> Any:
    try:
        return decode(raw)
    except DecodeError as exc:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                            f"the request is not a valid {type_name} message ({exc})")


class RejectUndecodableRequests(grpc.aio.ServerInterceptor):
    async def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        service, _, method = details.method.lstrip("/").partition("/")
        if handler is None or service != FABRIC_SERVICE or handler.request_streaming or method not in _METHODS:
            return handler
        decode, type_name = handler.request_deserializer, _METHODS[method].input_type.full_name
        if handler.unary_unary:
            unary = handler.unary_unary

            async def unary_unary(raw: bytes, context: grpc.aio.ServicerContext) -> Any:
                return await unary(await _decode(raw, decode, type_name, context), context)

            return grpc.unary_unary_rpc_method_handler(unary_unary, None, handler.response_serializer)
        stream = handler.unary_stream

        async def unary_stream(raw: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            async for response in stream(await _decode(raw, decode, type_name, context), context):
                yield response

        return grpc.unary_stream_rpc_method_handler(unary_stream, None, handler.response_serializer)
