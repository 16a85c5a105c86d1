"""Errors of the fetch service, named for what happened (each becomes one URL's error entry).

::

    ToolError (toolfabric_server.common.errors)
    └── FetchError                       anything that stopped one URL from being read
        ├── InvalidURL                   not a URL we can parse             kind=invalid_argument
        ├── BlockedURL                   refused by policy before connecting kind=blocked
        │   ├── UnsupportedScheme        not http/https
        │   ├── DisallowedPort           port not in TOOLFABRIC_FETCH_ALLOWED_PORTS
        │   ├── PrivateAddress           host resolves to a non-public address (SSRF guard)
        │   └── RobotsDisallowed         robots.txt forbids it (when robots are respected)
        ├── HostNotFound                 DNS has no address for the host     kind=unavailable
        ├── ConnectFailed                TCP/TLS connection failed           kind=unavailable
        ├── FetchTimeout                 connect/read/total timeout          kind=timeout
        ├── TooManyRedirects             redirect loop or chain too long     kind=invalid_argument
        ├── HTTPStatusError              the server answered 4xx/5xx         kind=http_status
        ├── BodyTooLarge                 over max_body_bytes (raw or decoded) kind=resource_exhausted
        ├── UnsupportedContentType       not HTML, text, PDF or an image     kind=unsupported_content
        └── UndecodableContent           binary junk, broken encoding/PDF    kind=unsupported_content
"""

from __future__ import annotations

from toolfabric_server.common.errors import ToolError


class FetchError(ToolError):
    kind = "fetch_error"


class InvalidURL(FetchError):
    kind = "invalid_argument"


class BlockedURL(FetchError):
    kind = "blocked"


class UnsupportedScheme(BlockedURL):
    pass


class DisallowedPort(BlockedURL):
    pass


class PrivateAddress(BlockedURL):
    pass


class RobotsDisallowed(BlockedURL):
    pass


class HostNotFound(FetchError):
    kind = "unavailable"


class ConnectFailed(FetchError):
    kind = "unavailable"


class FetchTimeout(FetchError):
    kind = "timeout"


class TooManyRedirects(FetchError):
    kind = "invalid_argument"


class HTTPStatusError(FetchError):
    kind = "http_status"

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class BodyTooLarge(FetchError):
    kind = "resource_exhausted"


class UnsupportedContentType(FetchError):
    kind = "unsupported_content"


class UndecodableContent(FetchError):
    kind = "unsupported_content"
