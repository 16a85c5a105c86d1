"""Errors of the search service, named for what happened so callers can fall through or give up.

    ToolError (toolfabric_server.common.errors)
    ├── ToolInputError
    │   └── QueryRejected           an empty, oversized or otherwise unusable query
    ├── ToolTimeout
    │   └── ProviderTimeout         a provider did not answer within its timeout
    ├── ToolUnavailable
    │   └── ProviderError           a provider failed; the next provider in order is tried
    │       ├── ProviderAuthError   the provider rejected our credentials (HTTP 401/403)
    │       ├── ProviderRateLimited the provider (or our own shared bucket) said slow down
    │       ├── ProviderBadResponse the reply was not the provider's documented JSON
    │       ├── ProviderNotConfigured  listed in the order but missing its URL/key
    │       └── ProviderUnsupported    the provider cannot do this kind of search
    └── AllProvidersFailed (ToolUnavailable)  every provider in order failed; says why for each

The service treats any `ProviderFailure` (unavailable or timed out, the union below) as "try
the next provider"; it is a union of the common bases because a failure shared through the
cache's single flight arrives in the waiting workers as its common base class.
"""

from __future__ import annotations

from toolfabric_server.common.errors import ToolInputError, ToolTimeout, ToolUnavailable


class QueryRejected(ToolInputError):
    """A query the service will not send anywhere (empty, too long)."""


class ProviderError(ToolUnavailable):
    """A provider failed to answer usefully."""

    def __init__(self, provider: str, message: str) -> None:
        super().__init__(f"{provider}: {message}")
        self.provider = provider


class ProviderAuthError(ProviderError):
    pass


class ProviderRateLimited(ProviderError):
    pass


class ProviderBadResponse(ProviderError):
    pass


class ProviderNotConfigured(ProviderError):
    pass


class ProviderUnsupported(ProviderError):
    pass


class ProviderTimeout(ToolTimeout):
    def __init__(self, provider: str, message: str) -> None:
        super().__init__(f"{provider}: {message}")
        self.provider = provider


# What makes the service try the next provider in order.
ProviderFailure = (ToolUnavailable, ToolTimeout)


class AllProvidersFailed(ToolUnavailable):
    """No provider in the configured order could answer."""
