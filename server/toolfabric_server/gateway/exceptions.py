"""Errors of the gateway (the model's are `toolfabric_server.model.errors`)::

    GatewayError
    ├── InvalidRequest      the client's request is wrong (→ INVALID_ARGUMENT, message says what)
    ├── ModelNotServed      the model it names is not served or not ready now (→ UNAVAILABLE / 503)
    ├── Unauthenticated     no API key, or a malformed, unknown or revoked one (→ UNAUTHENTICATED / 401)
    ├── LimitExceeded       the tenant is over one of its limits (→ RESOURCE_EXHAUSTED / 429, retry hint)
    ├── NotYours            another tenant's trajectory or image (→ NOT_FOUND: existence is not revealed)
    └── HandedOver          the gateway is shutting down; the trajectory goes on on another replica (→ UNAVAILABLE)

A tool call that could not be delivered is the engine's `toolfabric_server.engine.ports.ToolDispatchError`.
"""

from __future__ import annotations


class GatewayError(Exception):
    """Base of the gateway's errors."""


class InvalidRequest(GatewayError):
    """The client's request is invalid; the message says what is wrong, `field` which RunRequest field
    ("sampling.temperature", "images[0]"; "" when it is the request as a whole), for doors that name it."""

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(message)
        self.field = field


class ModelNotServed(GatewayError):
    """The request names a model that Triton does not serve (not loaded, or not ready)."""


class Unauthenticated(GatewayError):
    """The caller has no valid API key; the message says what is wrong with the one it sent."""


class LimitExceeded(GatewayError):
    """The tenant is over a limit; `retry_after_s` says when trying again can succeed."""

    def __init__(self, message: str, retry_after_s: float, limit: str) -> None:
        super().__init__(message)
        self.retry_after_s, self.limit = retry_after_s, limit


class NotYours(GatewayError):
    """A trajectory or image of another tenant, reported as not found."""


class HandedOver(GatewayError):
    """This gateway is shutting down and handed the trajectory to another replica; the message says how to
    Watch it from the next sequence number."""
