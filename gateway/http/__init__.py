"""The OpenAI-compatible HTTP API: R1V4's hosted chat-completions shape in front of the same agent loop.

`POST /api/v1/chat/completions` and `/v1/chat/completions` (stream or not), `GET /v1/models`,
`/healthz`, `/readyz`. The gateway process serves it beside gRPC when `TOOLFABRIC_HTTP_PORT` is set.
"""

from gateway.http.app import create_app
from gateway.http.server import HttpServer

__all__ = ["HttpServer", "create_app"]
