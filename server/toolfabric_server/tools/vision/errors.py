"""Errors of the vision service, each named for what happened (kinds in the observation)::

    ToolInputError
    ├── CodeRaised            the model's code raised                kind=code_error
    ├── BadBox                a box outside the image, too thin, …  kind=invalid_argument
    └── BadImageInput         an input image that cannot be used     kind=invalid_image
    ToolTimeout
    ├── SandboxWallTimeout    ran past the wall-time limit, killed   kind=timeout
    └── SandboxCpuTimeout     used up its CPU seconds                kind=timeout
    ToolResourceExhausted
    ├── SandboxMemoryExceeded ran out of its memory limit            kind=resource_exhausted
    ├── SandboxProcessLimit   could not start more processes/threads kind=resource_exhausted
    ├── SandboxFileSizeLimit  wrote a file over the size limit       kind=resource_exhausted
    └── SandboxKilled         died of a signal (crash, kill)         kind=killed
    ToolInternalError
    └── SandboxUnavailable    isolation layers required but missing  kind=sandbox_unavailable
"""

from __future__ import annotations

from toolfabric_server.common.errors import ToolInputError, ToolInternalError, ToolResourceExhausted, ToolTimeout


class CodeRaised(ToolInputError):
    kind = "code_error"


class BadBox(ToolInputError):
    """The box arguments cannot select a usable region; the message says why and what would."""


class BadImageInput(ToolInputError):
    kind = "invalid_image"


# `sandbox_limit` names the limit for traces and the sandbox-kill metric (toolfabric_server.common.telemetry.observe).
class SandboxWallTimeout(ToolTimeout):
    sandbox_limit = "wall"


class SandboxCpuTimeout(ToolTimeout):
    sandbox_limit = "cpu"


class SandboxMemoryExceeded(ToolResourceExhausted):
    sandbox_limit = "memory"


class SandboxProcessLimit(ToolResourceExhausted):
    sandbox_limit = "processes"


class SandboxFileSizeLimit(ToolResourceExhausted):
    sandbox_limit = "file_size"


class SandboxKilled(ToolResourceExhausted):
    kind = "killed"
    sandbox_limit = "signal"


class SandboxUnavailable(ToolInternalError):
    kind = "sandbox_unavailable"
