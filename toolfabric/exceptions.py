"""Errors the SDK raises, mapped from gRPC status codes::

    ToolfabricError
    ├── InvalidArgument   the request was rejected; the message says what is wrong
    ├── NotFound          unknown trajectory or image (or its record expired, or another tenant's)
    ├── Unauthenticated   no API key, or a malformed, wrong or revoked one
    ├── ResourceExhausted over a tenant limit, or the gateway is busy; `retry_after_s` says when to try again
    ├── Unavailable       the gateway, Redis or the model service could not be reached
    └── DeadlineExceeded  the call ran past the client's timeout
"""

from __future__ import annotations

import grpc


class ToolfabricError(Exception):
    """Base of every SDK error; `code` is the gRPC status code."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN


class InvalidArgument(ToolfabricError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(ToolfabricError):
    code = grpc.StatusCode.NOT_FOUND


class Unavailable(ToolfabricError):
    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(ToolfabricError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class Unauthenticated(ToolfabricError):
    code = grpc.StatusCode.UNAUTHENTICATED


class ResourceExhausted(ToolfabricError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    retry_after_s: float = 0.0


_BY_CODE = {cls.code: cls for cls in (InvalidArgument, NotFound, Unavailable, DeadlineExceeded, Unauthenticated,
                                      ResourceExhausted)}


def from_rpc_error(exc: grpc.RpcError) -> ToolfabricError:
    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    details = exc.details() if hasattr(exc, "details") else str(exc)
    error = _BY_CODE.get(code, ToolfabricError)(details or str(code))
    error.code = code
    if isinstance(error, ResourceExhausted) and hasattr(exc, "trailing_metadata"):
        for key, value in exc.trailing_metadata() or ():
            # A tenant limit says `retry-after` (seconds); a busy gateway gRPC's own pushback (milliseconds).
            if key == "retry-after" and isinstance(value, str) and value.isdigit():
                error.retry_after_s = float(value)
            elif key == "grpc-retry-pushback-ms" and isinstance(value, str) and value.isdigit():
                error.retry_after_s = int(value) / 1000
    return error
