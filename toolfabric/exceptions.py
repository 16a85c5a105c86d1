"""Errors the SDK raises, mapped from gRPC status codes::

    ToolfabricError
    ├── InvalidArgument   the request was rejected; the message says what is wrong
    ├── NotFound          unknown trajectory or image (or its record expired)
    ├── Unavailable       the gateway could not be reached
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


_BY_CODE = {cls.code: cls for cls in (InvalidArgument, NotFound, Unavailable, DeadlineExceeded)}


def from_rpc_error(exc: grpc.RpcError) -> ToolfabricError:
    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    details = exc.details() if hasattr(exc, "details") else str(exc)
    error = _BY_CODE.get(code, ToolfabricError)(details or str(code))
    error.code = code
    return error
