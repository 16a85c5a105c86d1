"""Errors of the gateway (the model's are `services.model.errors`)::

    GatewayError
    ├── InvalidRequest      the client's request is wrong (→ INVALID_ARGUMENT, message says what)
    │   └── ModelNotServed  it names a model Triton does not serve (now)
    └── ToolDispatchError   a tool call could not be delivered or its result never came back
"""

from __future__ import annotations


class GatewayError(Exception):
    """Base of the gateway's errors."""


class InvalidRequest(GatewayError):
    """The client's request is invalid; the message says what is wrong."""


class ModelNotServed(InvalidRequest):
    """The request names a model that Triton does not serve (not loaded, or not ready)."""


class ToolDispatchError(GatewayError):
    """A tool call could not be delivered, or its result did not come back in time."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
