"""Errors shared by every service.

Each error is named for what happened, so callers can decide to retry or give up::

    FabricError
    ├── ConfigurationError        settings that cannot work together (fail at start-up)
    ├── BlobNotFound              an image reference that expired or never existed
    ├── InvalidImage              bytes that are not an acceptable image (corrupt, bomb, type)
    └── ToolError                 a tool call that failed; becomes an error observation
        ├── ToolInputError        arguments the model got wrong           kind=invalid_argument
        │   └── UnknownImage      an image name the trajectory never had  kind=unknown_image
        ├── ToolTimeout           the call ran past its time limit        kind=timeout
        ├── ToolResourceExhausted memory / process / output limits        kind=resource_exhausted
        ├── ToolUnavailable       a provider or upstream is down          kind=unavailable
        ├── CacheMiss             replay mode and nothing recorded        kind=cache_miss
        └── ToolInternalError     a bug on our side                       kind=internal

A service package with errors of its own keeps them in its own `errors.py`, subclassing these.
"""

from __future__ import annotations


class FabricError(Exception):
    """Base of every error raised by toolfabric's services."""


class ConfigurationError(FabricError):
    """Settings that cannot work together."""


class BlobNotFound(FabricError):
    """An image blob reference that is unknown or has expired."""


class InvalidImage(FabricError):
    """Bytes that cannot be accepted as an image; the message says why."""


class ToolError(FabricError):
    """A tool call failed in a way the model should be told about."""

    kind = "tool_error"


class ToolInputError(ToolError):
    kind = "invalid_argument"


class UnknownImage(ToolInputError):
    kind = "unknown_image"


class ToolTimeout(ToolError):
    kind = "timeout"


class ToolResourceExhausted(ToolError):
    kind = "resource_exhausted"


class ToolUnavailable(ToolError):
    kind = "unavailable"


class CacheMiss(ToolError):
    kind = "cache_miss"


class ToolInternalError(ToolError):
    kind = "internal"
