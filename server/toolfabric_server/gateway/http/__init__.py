"""The OpenAI-compatible HTTP API: R1V4's hosted chat-completions shape in front of the same agent loop.

`POST /api/v1/chat/completions` and `/v1/chat/completions` (stream or not), `GET /v1/models`,
`/healthz`, `/readyz`. The gateway process serves it beside gRPC when `TOOLFABRIC_HTTP_PORT` is set
(listening through gateway/policy/listeners.py).
"""

from toolfabric_server.gateway.http.app import create_app

__all__ = ["create_app"]
