"""Errors of the gateway::

    GatewayError
    ├── InvalidRequest      the client's request is wrong (→ INVALID_ARGUMENT, message says what)
    ├── ModelUnavailable    the model service failed or went silent (the trajectory fails)
    └── ToolDispatchError   a tool call could not be delivered or its result never came back
"""

from __future__ import annotations


class GatewayError(Exception):
    """Base of the gateway's errors."""


class InvalidRequest(GatewayError):
    """The client's request is invalid; the message says what is wrong."""


class ModelUnavailable(GatewayError):
    """The model service failed, closed the stream or went silent."""


class ToolDispatchError(GatewayError):
    """A tool call could not be delivered, or its result did not come back in time."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
